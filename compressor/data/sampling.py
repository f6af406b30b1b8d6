"""Training batches from lhotse's duration-bucketing sampler, as lists of utterance indices.

The sampler sees one cut per utterance whose duration is its feature frame count, so lhotse's ``max_duration``
(which bounds ``batch size x the longest cut``: the padded size) is the data's ``max_frames``, and ``max_cuts``
the batch size. Its shuffling is seeded by a number drawn from (seed, epoch), so the batches of an epoch are a
function of the two: a resumed run recomputes them and skips the ones it consumed, which is what makes resuming
exact (no sampler state needs saving).
"""

from __future__ import annotations

import random
import warnings


def bucketed_batches(lengths: list[int], order: list[int], batch_size: int, *, max_frames: int | None,
                     num_buckets: int, seed: int, epoch: int) -> list[list[int]]:
    """Batches of the utterances ``order`` (indices into ``lengths``, frames each) from lhotse's
    :class:`~lhotse.dataset.BucketingSampler` (equal-duration buckets, each a shuffled
    :class:`~lhotse.dataset.SimpleCutSampler`; the sampler lhotse recommends for a CutSet in memory, linear in the
    utterances where the dynamic one reshuffles a bucket per batch): ``num_buckets`` buckets, shuffled by
    (seed, epoch), at most ``batch_size`` utterances and ``max_frames`` padded frames a batch (an utterance
    longer than that alone: see :func:`within`); every utterance once."""
    from lhotse import CutSet
    from lhotse.cut import MonoCut
    from lhotse.dataset import BucketingSampler, SimpleCutSampler

    if not order:
        return []
    # a cut's id is its position in ``order``: an index may repeat there (an oversampled dataset of a mix)
    cuts = CutSet.from_cuts(MonoCut(id=str(p), start=0.0, duration=float(lengths[i]), channel=0)
                            for p, i in enumerate(order))
    # lhotse's bucketing sampler does not pass its seed on to its buckets' samplers, only its epoch (each shuffles
    # by seed + epoch): the number drawn from (seed, epoch) is given as lhotse's epoch, its seed left 0
    draw = random.Random(f"lhotse:{seed}:{epoch}").getrandbits(31)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an eager CutSet (it is small: lengths only), a cut over max_duration
        limits = {"max_cuts": batch_size, "max_duration": None if max_frames is None else float(max_frames),
                  "shuffle": True, "drop_last": False, "seed": 0,
                  "world_size": 1, "rank": 0}  # the engine splits global batches across ranks itself
        buckets = min(num_buckets, len(order))
        sampler = (BucketingSampler(cuts, num_buckets=buckets, sampler_type=SimpleCutSampler, **limits)
                   if buckets > 1 else SimpleCutSampler(cuts, **limits))  # one bucket: lhotse's plain sampler
        sampler.set_epoch(draw)
        batches = [[order[int(c.id)] for c in batch] for batch in sampler]
    return [part for b in batches for part in within(b, lengths, max_frames)]


def within(batch: list[int], lengths: list[int], max_frames: int | None) -> list[list[int]]:
    """``batch`` cut, in its order, into parts of at most ``max_frames`` padded frames. lhotse closes a batch when
    one more cut as long as its longest would exceed ``max_duration``, so a longer last cut can overshoot it;
    ``max_frames`` is a hard bound (it bounds a batch's memory)."""
    if max_frames is None:
        return [batch]
    out: list[list[int]] = [[]]
    longest = 0
    for i in batch:
        if out[-1] and max(longest, lengths[i]) * (len(out[-1]) + 1) > max_frames:
            out.append([])
            longest = 0
        out[-1].append(i)
        longest = max(longest, lengths[i])
    return out
