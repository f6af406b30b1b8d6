"""The speech :class:`DataModule`: splits of cached fbank features, tokens and labels; length-bucketed batches
bounded by total frames.

Every dataset component (synthetic corpora and the real-format readers) produces
:class:`~compressor.data.utterance.Utterance` records per split and hands them to
:func:`compressor.data.speech_build.build_speech_module`, which builds this module.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils.data import Dataset

from compressor.core.errors import UserError
from compressor.data.audio import SAMPLE_RATE, AudioError, load_audio
from compressor.data.augment import AugmentArgs, augment
from compressor.data.base import DataModule
from compressor.data.featstore import FeatureStore
from compressor.data.features import fbank, per_feature_normalize
from compressor.data.sampling import bucketed_batches
from compressor.data.tokenizers import Tokenizer
from compressor.data.utterance import Utterance

#: batch keys loaded only when a model reads them (see :meth:`SpeechDataModule.request`)
ON_REQUEST_KEYS = ("audio", "audio_lengths")


class SpeechSplit(Dataset):
    """One split: items are dicts with ``features`` (T, 80), ``tokens``, ``text``, ``id`` (+ SLU labels)."""

    def __init__(
        self,
        utts: list[Utterance],
        features: FeatureStore | list[torch.Tensor],
        tokens: list[list[int]],
        labels: list[dict[str, int]],
        augment_args: AugmentArgs | None = None,
        frontend: str = "nemo",
        seed: int = 0,
        normalize: str = "none",
    ) -> None:
        self.utts = utts
        self.features = features
        self.tokens = tokens
        self.labels = labels
        self.augment_args = augment_args if augment_args is not None and augment_args.active() else None
        self.frontend = frontend
        self.normalize = normalize
        self.seed = seed
        self.epoch = 0
        #: also load each utterance's 16 kHz waveform (batch keys ``audio``/``audio_lengths``), for models
        #: that read waveforms (see :meth:`SpeechDataModule.request`)
        self.waveforms = False
        self.lengths = (
            features.lengths if isinstance(features, FeatureStore) else [int(f.shape[0]) for f in features]
        )

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.item(i, self.epoch)

    def item(self, i: int, epoch: int) -> dict[str, Any]:
        """Example ``i`` as seen in ``epoch`` (augmentation draws from (seed, epoch, i))."""
        u = self.utts[i]
        feats = wave = None
        if self.augment_args is not None or self.waveforms:
            try:
                wave = load_audio(u.audio, offset=u.offset, duration=u.duration if u.offset else None)
            except AudioError as e:  # changed on disk since the corpus was read: fall back to the clean features
                if self.waveforms:  # a model reads the waveform itself: nothing to fall back to
                    raise UserError(f"{u.source or u.audio}: {e}") from None
                wave = None
            if wave is not None and self.augment_args is not None:
                wave = augment(wave, self.augment_args, seed=(self.seed * 1_000_003 + epoch) * 1_000_003 + i)
                feats = fbank(wave, SAMPLE_RATE, self.frontend)  # type: ignore[arg-type]
        if feats is None:
            feats = self.features[i]
        if self.normalize == "per_feature":
            feats = per_feature_normalize(feats)
        item: dict[str, Any] = {"features": feats, "tokens": self.tokens[i], "text": u.text, "id": u.id,
                                "labelled": u.labelled}
        if self.waveforms:
            item["audio"] = torch.as_tensor(wave, dtype=torch.float32).reshape(-1)
        item.update(self.labels[i])
        return item


class _EpochView(Dataset):
    """A split bound to one epoch, so a loader's augmentation never depends on later ``batches`` calls."""

    def __init__(self, split: SpeechSplit, epoch: int) -> None:
        self.split = split
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.split.item(i, self.epoch)


class SpeechDataModule(DataModule):
    """Speech splits with padding collation and length-bucketed, frame-bounded batches.

    ``skipped`` lists every utterance left out (split, id, source file:line, reason, message); the engine
    writes it to the run directory as ``skipped.jsonl``.
    """

    def __init__(
        self,
        datasets: dict[str, SpeechSplit],
        info: dict[str, Any],
        *,
        num_buckets: int = 6,
        max_frames: int | None = None,
        skipped: list[dict[str, Any]] | None = None,
        tokenizer: Tokenizer | None = None,
        sampler: str = "lhotse",
    ) -> None:
        super().__init__(datasets, info)
        self.num_buckets = num_buckets
        #: how training batches are drawn: ``lhotse`` (its BucketingSampler) or ``length_buckets``
        self.sampler = sampler
        self._memo: tuple[tuple[Any, ...], list[list[int]]] | None = None
        self.max_frames = max_frames
        self.skipped: list[dict[str, Any]] = list(skipped or [])
        self.tokenizer = tokenizer
        #: whether training batches include utterances without a transcript; a strategy that labels them
        #: (``sequence_kd``) turns it on, without one they are left out of training
        self.include_unlabelled = False

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        if not items:
            raise ValueError("empty batch")
        blank = int(self.info.get("blank_id", 0))
        lengths = torch.tensor([it["features"].shape[0] for it in items], dtype=torch.int64)
        feats = torch.zeros(len(items), int(lengths.max()), items[0]["features"].shape[1])
        for i, it in enumerate(items):
            feats[i, : it["features"].shape[0]] = it["features"]
        tok_lengths = torch.tensor([len(it["tokens"]) for it in items], dtype=torch.int64)
        tokens = torch.full((len(items), max(1, int(tok_lengths.max()))), blank, dtype=torch.int64)
        for i, it in enumerate(items):
            if it["tokens"]:
                tokens[i, : len(it["tokens"])] = torch.tensor(it["tokens"], dtype=torch.int64)
        batch: dict[str, Any] = {
            "features": feats,
            "feature_lengths": lengths,
            "tokens": tokens,
            "token_lengths": tok_lengths,
            "text": [it["text"] for it in items],
            "ids": [it["id"] for it in items],
        }
        if not all(it.get("labelled", True) for it in items):
            batch["labelled"] = torch.tensor([bool(it.get("labelled", True)) for it in items], dtype=torch.bool)
        for key in ("label", *self.info.get("slot_labels", {})):  # the class label and the slots the data has
            if key in items[0]:
                batch[key] = torch.tensor([it[key] for it in items], dtype=torch.int64)
        if "audio" in items[0]:
            samples = torch.tensor([it["audio"].shape[0] for it in items], dtype=torch.int64)
            audio = torch.zeros(len(items), int(samples.max()))
            for i, it in enumerate(items):
                audio[i, : it["audio"].shape[0]] = it["audio"]
            batch["audio"], batch["audio_lengths"] = audio, samples
        return batch

    def request(self, keys: Iterable[str]) -> None:
        """Also give the on-request batch keys among ``keys``: ``audio`` (B, S) float 16 kHz waveforms in
        [-1, 1], zero-padded, with ``audio_lengths`` (B,) samples (the augmented waveform when the data augments,
        the one the features were computed from). Without a request batches stay as they were."""
        if {"audio", "audio_lengths"} & set(keys):
            for ds in self.datasets.values():
                if isinstance(ds, SpeechSplit):
                    ds.waveforms = True

    def batches(
        self, split: str, batch_size: int, *, shuffle: bool, seed: int, epoch: int
    ) -> list[list[int]]:
        """Length-bucketed batches of at most ``batch_size`` utterances and ``max_frames`` padded frames.

        Evaluation (``shuffle=False``): utterances sorted by length, cut in order. Training: with the ``lhotse``
        sampler (the default), lhotse's duration-bucketing sampler over ``num_buckets`` buckets, shuffled by
        (seed, epoch), every utterance once (see :mod:`compressor.data.sampling`); with ``length_buckets``,
        utterances sorted by length into ``num_buckets`` equal buckets, shuffled within each bucket, the buckets
        laid end to end and cut into batches (a remainder shorter than half a batch dropped), and the batches
        shuffled. Deterministic in (seed, epoch), so a resumed run skips exactly the batches it consumed. With
        data-parallel training each global batch is split across ranks: keep ``max_frames`` at least world size
        x the longest utterance so no batch is smaller than the world.
        """
        ds = self.dataset(split)
        assert isinstance(ds, SpeechSplit)
        ds.epoch = epoch
        lengths = ds.lengths
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
        keep = self._trainable(ds)
        if keep is not None:
            order = [i for i in order if keep[i]]
            if not order and lengths:
                raise UserError(f"split '{split}' has no transcripts to train on (all {len(lengths)} utterances are "
                                f"audio only): a stage training on it needs a labeller, the sequence_kd strategy")
        if not shuffle:
            return self._cut(order, lengths, batch_size)
        return self._bucketed(order, lengths, batch_size, seed, epoch)

    def _bucketed(self, order: list[int], lengths: list[int], batch_size: int, seed: int, epoch: int
                  ) -> list[list[int]]:
        """Training batches from indices sorted by length, by the module's sampler (the last result memoised:
        the trainer asks for an epoch's count and then its batches)."""
        key = (self.sampler, tuple(order), batch_size, self.max_frames, self.num_buckets, seed, epoch)
        if self._memo is not None and self._memo[0] == key:
            return [list(b) for b in self._memo[1]]
        if self.sampler == "lhotse":
            out = bucketed_batches(lengths, order, batch_size, max_frames=self.max_frames,
                                   num_buckets=self.num_buckets, seed=seed, epoch=epoch)
        else:
            out = self._length_buckets(order, lengths, batch_size, random.Random(f"{seed}:{epoch}"))
        self._memo = (key, out)
        return [list(b) for b in out]

    def _length_buckets(self, order: list[int], lengths: list[int], batch_size: int, rng: random.Random
                        ) -> list[list[int]]:
        """Buckets shuffled inside, cut, batches shuffled (the ``length_buckets`` sampler)."""
        k = max(1, min(self.num_buckets, len(order)))
        mixed: list[int] = []
        for b in range(k):
            bucket = order[b * len(order) // k : (b + 1) * len(order) // k]
            rng.shuffle(bucket)
            mixed.extend(bucket)
        out = self._cut(mixed, lengths, batch_size)
        if len(out) > 1 and len(out[-1]) < max(2, batch_size // 2):
            out.pop()  # a short remainder (a different random one each epoch), as the default batching drops
        rng.shuffle(out)
        return out

    def _trainable(self, ds: Dataset) -> list[bool] | None:
        """Which utterances batches may hold (``None``: all): utterances without a transcript are left out unless
        a labeller (``include_unlabelled``) is on."""
        utts = getattr(ds, "utts", None)
        if self.include_unlabelled or utts is None or all(u.labelled for u in utts):
            return None
        return [u.labelled for u in utts]

    def num_batches(self, split: str, batch_size: int, *, shuffle: bool, seed: int, epoch: int) -> int:
        """``len(self.batches(...))``; in constant time for ``length_buckets`` without ``max_frames`` (batches
        are cut by count)."""
        if self.max_frames is not None or (shuffle and self.sampler == "lhotse"):
            return super().num_batches(split, batch_size, shuffle=shuffle, seed=seed, epoch=epoch)
        ds = self.dataset(split)
        keep = self._trainable(ds)
        n = len(ds) if keep is None else sum(keep)
        k = -(-n // batch_size)
        last = n % batch_size or batch_size
        return k - 1 if shuffle and k > 1 and last < max(2, batch_size // 2) else k

    def epoch_dataset(self, split: str, epoch: int) -> Dataset:
        """The split bound to ``epoch`` (see :class:`_EpochView`), so augmentation varies by epoch."""
        ds = self.dataset(split)
        return _EpochView(ds, epoch) if isinstance(ds, SpeechSplit) else ds

    def _cut(self, order: list[int], lengths: list[int], batch_size: int) -> list[list[int]]:
        out: list[list[int]] = []
        cur: list[int] = []
        longest = 0
        for i in order:
            new_longest = max(longest, lengths[i])
            too_many = len(cur) >= batch_size
            too_long = self.max_frames is not None and cur and new_longest * (len(cur) + 1) > self.max_frames
            if cur and (too_many or too_long):
                out.append(cur)
                cur, new_longest = [], lengths[i]
            cur.append(i)
            longest = new_longest
        if cur:
            out.append(cur)
        return out

