"""The ``mix`` dataset: several speech datasets interleaved with ratios, sharing one alphabet and tokenizer.

Continual learning (seed 003, Sec. 4) fine-tunes on target data *and* some of the pre-training data so the
model does not forget the source. A spec says::

    data:
      name: mix
      datasets:
        - {name: shifted, condition: accent, ratio: 0.5}        # target
        - {name: read_speech, language: en, ratio: 0.5}         # source
      epoch_size: 1200           # utterances per training epoch (default: all training utterances)
      eval_datasets: [0]         # whose valid/test splits the mix's valid/test are (default: all)
      tokenizer: char            # one tokenizer for the mix, trained on all training transcripts

Every training epoch draws ``round(epoch_size * ratio_d / sum(ratios))`` utterances from dataset d, walking
through an endless series of shuffles of its training split (a small target is cycled through, a large
source sampled without repeats until it is exhausted), deterministically in (seed, epoch); the drawn
utterances are then length-bucketed and batched together, so each batch mixes the datasets in about the
given ratios. Global CMVN statistics are computed over all training splits.

Refused before any work: datasets whose features differ (sample rate, front end, dimension, normalisation),
datasets of different languages (one alphabet), and ``tokenizer``/``vocab_size`` set on a dataset rather than
on the mix.
"""

from __future__ import annotations

import bisect
import random
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from torch.utils.data import Dataset

from compressor.core.errors import SpecError, UserError, format_path
from compressor.core.registry import Args
from compressor.data.compat import feature_clash, retokenize
from compressor.data.features import feature_stats, per_feature_normalize
from compressor.data.speech import SpeechDataModule, _EpochView
from compressor.data.speech_args import SAMPLER_HELP, Sampler
from compressor.data.speech_build import tokenizer_files
from compressor.data.tokenizers import CharTokenizer, build_tokenizer
from compressor.data.utterance import Utterance
from compressor.plugins import get_registry

RESERVED = ("name", "ratio")
MIX_OWNS = ("tokenizer", "vocab_size")


class MixArgs(Args):
    """Several speech datasets interleaved with ratios (target + source), one alphabet and tokenizer."""

    datasets: list[dict[str, Any]] = Field(min_length=2, description="[{name, ratio, ...that dataset's "
                                                                     "arguments}, ...]")
    epoch_size: int | None = Field(default=None, ge=1, description="training utterances per epoch (default: "
                                                                   "the sum of the training splits)")
    eval_datasets: list[int] | None = Field(default=None, description="indices of the datasets whose "
                                                                      "valid/test splits form the mix's")
    tokenizer: Literal["char", "sentencepiece", "bpe", "unigram"] = "char"
    vocab_size: int = Field(default=64, ge=3, description="SentencePiece vocabulary size, blank included")
    num_buckets: int = Field(default=6, ge=1)
    max_frames: int | None = Field(default=None, ge=1)
    sampler: Sampler = Field(default="length_buckets", description=SAMPLER_HELP)

    @field_validator("datasets")
    @classmethod
    def _parts(cls, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, ref in enumerate(parts):
            parse_part(ref, i)
        return parts

    @model_validator(mode="after")
    def _compatible(self) -> MixArgs:
        infos = [part_info(ref, i) for i, ref in enumerate(self.datasets)]
        check_infos(infos)
        for i in self.eval_datasets or []:
            if not 0 <= i < len(self.datasets):
                raise ValueError(f"eval_datasets: no dataset {i} (the mix has {len(self.datasets)})")
        return self


def parse_part(ref: Any, i: int) -> tuple[str, float, Any]:
    """``(dataset name, ratio, validated args)`` of ``datasets[i]``; ``ValueError`` naming the item."""
    if not isinstance(ref, dict) or "name" not in ref:
        raise ValueError(f"datasets[{i}] needs a dataset 'name' (and a 'ratio')")
    ratio = ref.get("ratio", 1.0)
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not ratio > 0:
        raise ValueError(f"datasets[{i}].ratio must be a positive number (got {ratio!r})")
    if ref["name"] == "mix":
        raise ValueError(f"datasets[{i}]: a mix cannot contain a mix")
    for key in MIX_OWNS:
        if key in ref:
            raise ValueError(f"datasets[{i}].{key}: set '{key}' on the mix itself (one tokenizer for all)")
    values = {k: v for k, v in ref.items() if k not in RESERVED}
    try:
        args = get_registry().parse_args("dataset", ref["name"], values, ("datasets", i))
    except SpecError as e:
        raise ValueError(f"{format_path(e.path)}: {e.message}") from None
    return ref["name"], float(ratio), args


def part_info(ref: dict[str, Any], i: int) -> dict[str, Any]:
    """What ``datasets[i]`` tells before any data exists (front end, sample rate, language)."""
    name, _, args = parse_part(ref, i)
    hint = get_registry().get("dataset", name).extra.get("info")
    return {"index": i, "name": name, **(dict(hint(args)) if hint else {})}


def check_infos(infos: list[dict[str, Any]]) -> None:
    first = infos[0]
    for info in infos[1:]:
        clash = feature_clash(first, info)
        if clash is not None:
            key, message = clash
            raise ValueError(f"datasets[{info['index']}].{key}: {message} (datasets[0]): the datasets of a mix "
                             "must compute the same features")
        if first.get("language") and info.get("language") and first["language"] != info["language"]:
            raise ValueError(f"datasets[{info['index']}] is language '{info['language']}' but datasets[0] is "
                             f"'{first['language']}': the datasets of a mix share one alphabet")


class ConcatSplit(Dataset):
    """Splits of several datasets end to end (global index = offset of its dataset + local index)."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts
        self.offsets = [0]
        for p in parts:
            self.offsets.append(self.offsets[-1] + len(p))
        self.lengths: list[int] = [n for p in parts for n in p.lengths]
        self.utts: list[Utterance] = [u for p in parts for u in p.utts]
        self.epoch = 0

    def __len__(self) -> int:
        return self.offsets[-1]

    def locate(self, i: int) -> tuple[int, int]:
        d = bisect.bisect_right(self.offsets, i) - 1
        return d, i - self.offsets[d]

    def item(self, i: int, epoch: int) -> dict[str, Any]:
        d, j = self.locate(i)
        return self.parts[d].item(j, epoch)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.item(i, self.epoch)


class MixDataModule(SpeechDataModule):
    """Training batches drawn from several datasets in the given ratios (see the module docstring)."""

    def __init__(self, datasets: dict[str, ConcatSplit], info: dict[str, Any], ratios: list[float],
                 epoch_size: int, **kw: Any) -> None:
        super().__init__(datasets, info, **kw)  # type: ignore[arg-type]
        self.ratios = ratios
        self.epoch_size = epoch_size
        self._perms: dict[tuple[int, int, int], list[int]] = {}

    def counts(self) -> list[int]:
        """Utterances drawn from each dataset per training epoch (largest remainders, summing to epoch_size)."""
        total = sum(self.ratios)
        exact = [self.epoch_size * r / total for r in self.ratios]
        counts = [int(x) for x in exact]
        for d in sorted(range(len(exact)), key=lambda d: counts[d] - exact[d])[: self.epoch_size - sum(counts)]:
            counts[d] += 1
        return counts

    def _stream(self, seed: int, d: int, start: int, n: int, size: int) -> list[int]:
        """Positions ``start .. start+n`` of dataset d's endless series of shuffles (shuffle k of (seed, d, k))."""
        out = []
        for pos in range(start, start + n):
            k, r = divmod(pos, size)
            key = (seed, d, k)
            if key not in self._perms:
                if len(self._perms) > 64:
                    self._perms.clear()
                perm = list(range(size))
                random.Random(f"mix:{seed}:{d}:{k}").shuffle(perm)
                self._perms[key] = perm
            out.append(self._perms[key][r])
        return out

    def epoch_indices(self, seed: int, epoch: int) -> list[int]:
        """The training utterances (global indices, with repeats when a dataset is oversampled) of ``epoch``."""
        ds = self.dataset("train")
        assert isinstance(ds, ConcatSplit)
        out: list[int] = []
        for d, n in enumerate(self.counts()):
            size = ds.offsets[d + 1] - ds.offsets[d]
            out += [ds.offsets[d] + j for j in self._stream(seed, d, epoch * n, n, size)]
        return out

    def batches(self, split: str, batch_size: int, *, shuffle: bool, seed: int, epoch: int) -> list[list[int]]:
        ds = self.dataset(split)
        assert isinstance(ds, ConcatSplit)
        ds.epoch = epoch
        lengths = ds.lengths
        if not shuffle:
            return self._cut(sorted(range(len(lengths)), key=lambda i: (lengths[i], i)), lengths, batch_size)
        order = sorted(self.epoch_indices(seed, epoch), key=lambda i: (lengths[i], i))
        return self._bucketed(order, lengths, batch_size, seed, epoch)

    def epoch_dataset(self, split: str, epoch: int) -> Dataset:
        return _EpochView(self.dataset(split), epoch)  # type: ignore[arg-type]


def build_mix(args: MixArgs, *, cache_dir: Path | None = None, seed: int = 0) -> MixDataModule:
    """Several speech datasets interleaved with ratios (target + source), one alphabet and tokenizer."""
    registry = get_registry()
    parts: list[SpeechDataModule] = []
    ratios: list[float] = []
    for i, ref in enumerate(args.datasets):
        name, ratio, part_args = parse_part(ref, i)
        module = registry.get("dataset", name).factory(part_args, cache_dir=cache_dir, seed=seed)
        if not isinstance(module, SpeechDataModule):
            raise UserError(f"mix datasets[{i}] ({name}) is not speech data with transcripts")
        if any(not u.labelled for u in getattr(module.dataset("train"), "utts", [])):
            raise UserError(f"mix datasets[{i}] ({name}): audio without transcripts (unlabelled, hide_labels) is "
                            f"not mixed; give it to a single dataset, whose batches leave it to sequence_kd")
        parts.append(module)
        ratios.append(ratio)
    try:
        check_infos([{"index": i, **p.info} for i, p in enumerate(parts)])
    except ValueError as e:
        raise UserError(f"mix: {e}") from None
    language = str(parts[0].info.get("language", "en"))
    texts = [u.text for p in parts for u in p.dataset("train").utts]  # type: ignore[attr-defined]
    tokenizer = build_tokenizer(args.tokenizer, language, texts, args.vocab_size, seed)
    for i, p in enumerate(parts):
        retokenize(p, tokenizer, language, f"mix datasets[{i}]")
    evaluated = args.eval_datasets if args.eval_datasets is not None else list(range(len(parts)))
    splits = {"train": ConcatSplit([p.dataset("train") for p in parts])}
    for split in ("valid", "test"):
        chosen = [parts[d].dataset(split) for d in evaluated if split in parts[d].datasets]
        if chosen:
            splits[split] = ConcatSplit(chosen)
    normalize = parts[0].info.get("normalize_type") == "per_feature"
    train_feats = (f for p in parts for f in p.dataset("train").features)  # type: ignore[attr-defined]
    mean, std = feature_stats(per_feature_normalize(f) if normalize else f for f in train_feats)
    info = dict(parts[0].info)
    info.update(feature_mean=mean, feature_std=std,
                num_utterances={s: len(d) for s, d in splits.items()},
                num_skipped=sum(int(p.info.get("num_skipped", 0)) for p in parts),
                parts=[{"name": args.datasets[i]["name"], "ratio": ratios[i],
                        "corpus": p.info.get("corpus"), "train": len(p.dataset("train"))}
                       for i, p in enumerate(parts)])
    info.pop("corpus_dir", None)
    info.pop("corpus", None)
    if cache_dir is not None:
        info.update(tokenizer_files(tokenizer, Path(cache_dir)))
    skipped = [{**item, "dataset": i} for i, p in enumerate(parts) for item in p.skipped]
    epoch_size = args.epoch_size or len(splits["train"])
    return MixDataModule(splits, info, ratios, epoch_size, num_buckets=args.num_buckets, sampler=args.sampler,
                         max_frames=args.max_frames, skipped=skipped, tokenizer=tokenizer)


def mix_check(args: MixArgs) -> None:
    """Each dataset's own validation-time check (speakers, disk space for its corpus)."""
    registry = get_registry()
    for i, ref in enumerate(args.datasets):
        name, _, part_args = parse_part(ref, i)
        check = registry.get("dataset", name).extra.get("check")
        if check is None:
            continue
        try:
            check(part_args)
        except SpecError as e:
            raise SpecError(e.message, ("datasets", i, *e.path)) from None
        except UserError as e:
            raise SpecError(str(e), ("datasets", i)) from None


def mix_info(args: MixArgs) -> dict[str, Any]:
    """Validation-time facts: the first dataset's, with the mix's tokenizer."""
    info = part_info(args.datasets[0], 0)
    info.pop("index", None)
    info.pop("name", None)
    if args.tokenizer == "char":
        tok = CharTokenizer(str(info.get("language", "en")))
        info.update(tokens=list(tok.tokens), vocab_size=tok.vocab_size, blank_id=tok.blank_id)
    else:
        info.update(vocab_size=args.vocab_size, blank_id=args.vocab_size - 1)
    return info
