"""The speech :class:`DataModule`: utterance records -> cached fbank features, tokens, labels; length-bucketed
batches bounded by total frames; bad audio skipped and counted (or a :class:`UserError` when ``strict``).

Every dataset component (synthetic corpora and the real-format readers) produces :class:`Utterance`
records per split and hands them to :func:`build_speech_module`.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch.utils.data import Dataset

from compressor.data.audio import MAX_ITEM_SECONDS, SAMPLE_RATE, AudioError, load_audio
from compressor.data.augment import AugmentArgs, augment
from compressor.data.base import DataModule
from compressor.data.featstore import FeatureStore, clean_stale, load_store, write_store
from compressor.data.features import NUM_BINS, fbank, feature_stats, per_feature_normalize
from compressor.data.text import normalize, out_of_alphabet
from compressor.data.tokenizers import (
    CharTokenizer,
    SentencePieceTokenizer,
    TeacherTokenizer,
    Tokenizer,
    build_tokenizer,
)
from compressor.errors import UserError
from compressor.progress import Progress
from compressor.registry import Args

FEATURE_CACHE_VERSION = 2
SLOTS = ("action", "object", "location")
#: batch keys loaded only when a model reads them (see :meth:`SpeechDataModule.request`)
ON_REQUEST_KEYS = ("audio", "audio_lengths")


@dataclass
class Utterance:
    """One utterance of a manifest. ``source`` is ``file:line`` for error messages."""

    id: str
    audio: Path
    text: str
    speaker: str = ""
    duration: float | None = None
    offset: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)  # intent / action / object / location
    source: str = ""
    #: False for audio without a transcript (``unlabelled`` sources, ``hide_labels``): a teacher labels it
    labelled: bool = True
    #: a transcript hidden by ``hide_labels``: never trained on, only to measure pseudo-labels against
    hidden_text: str | None = None


class SubsetArgs(Args):
    """K disjoint random subsets of the training split (``count`` = K), each a ``fraction`` of it or ``size``
    utterances; ``index`` picks one (seeds 000/001 average over 10 x 10% and 20 x 1% subsets)."""

    fraction: float | None = Field(default=None, gt=0, le=1)
    size: int | None = Field(default=None, ge=1)
    count: int = Field(default=1, ge=1)
    index: int = Field(default=0, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SubsetArgs:
        if (self.fraction is None) == (self.size is None):
            raise ValueError("give exactly one of 'fraction' or 'size'")
        if self.index >= self.count:
            raise ValueError(f"index {self.index} out of range for count {self.count}")
        return self


class FromTeacher(Args):
    """``tokenizer: {from_teacher: NAME}``: the data adopts the output units of the spec's model ``NAME`` (an
    external teacher that carries its vocabulary: ``hf_speech``, ``nemo_ctc``), so a student's logits and the
    teacher's are over the same units. ``tokens`` is filled in when the spec is loaded."""

    from_teacher: str = Field(min_length=1, description="the model (of this spec) whose vocabulary the data uses")
    tokens: list[str] | None = Field(default=None, description="resolved from the teacher when the spec loads")


class SpeechArgs(Args):
    """Arguments shared by every speech dataset."""

    tokenizer: Literal["char", "sentencepiece", "bpe", "unigram"] | FromTeacher = Field(
        default="char", description="characters of the language, SentencePiece (unigram) / BPE pieces, or "
                                    "{from_teacher: NAME}: the output units of the spec's teacher NAME"
    )
    vocab_size: int = Field(default=64, ge=3, description="SentencePiece vocabulary size, blank included")
    frontend: Literal["nemo", "nemo_transducer", "nemo_ctc", "nemo_online", "kaldi"] = Field(
        default="nemo",
        description="sherpa-onnx front end the features match: nemo (= nemo_transducer, the offline "
        "transducer recognizer), nemo_online (the streaming one), nemo_ctc, kaldi",
    )
    num_buckets: int = Field(default=6, ge=1, description="length buckets for training batches")
    max_frames: int | None = Field(default=None, ge=1, description="cap on padded frames per batch")
    strict: bool = Field(default=False, description="raise on bad audio/manifest lines instead of skipping")
    subset: SubsetArgs | None = Field(
        default=None, description="{fraction|size, count, index, seed}: subset index of count disjoint ones"
    )
    augment: AugmentArgs = Field(
        default_factory=AugmentArgs,
        description="train-split waveform augmentation {noise_snr: [lo, hi], speeds: [...], reverb, prob}",
    )
    max_duration: float | None = Field(default=None, gt=0, description="skip longer utterances (seconds)")
    max_item_seconds: float = Field(
        default=MAX_ITEM_SECONDS, gt=0,
        description="skip audio longer than this (seconds), read from the file's header before decoding "
        "(whatever the manifest's duration says): bounds one item's memory",
    )
    normalize: Literal["none", "per_feature"] = Field(
        default="none",
        description="per_feature: per-utterance mean/variance normalisation as sherpa-onnx applies for "
        "normalize_type=per_feature (info['normalize_type'] tells the exporter)",
    )
    unlabelled: str | list[str] | None = Field(
        default=None, description="more training audio without transcripts: folder(s) of audio files or NeMo "
        "manifest(s) whose lines need no 'text'; a teacher labels it (the sequence_kd strategy)")
    hide_labels: float | None = Field(
        default=None, ge=0, le=1, description="share of the training utterances whose transcripts are hidden "
        "(drawn once by the spec's seed; for semi-supervised benchmarks; 1: audio only): they train only on "
        "pseudo-labels")


# ------------------------------------------------------------------------------------------------
# Dataset and module
# ------------------------------------------------------------------------------------------------


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
    ) -> None:
        super().__init__(datasets, info)
        self.num_buckets = num_buckets
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
        for key in ("label", *SLOTS):
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

        Evaluation (``shuffle=False``): utterances sorted by length, cut in order. Training: utterances
        sorted by length into ``num_buckets`` equal buckets, shuffled within each bucket by (seed, epoch),
        the buckets laid end to end and cut into batches (a remainder shorter than half a batch dropped),
        and the batches shuffled. Deterministic in (seed, epoch), so a resumed run skips exactly the batches
        it consumed. With data-parallel training each global batch is split across ranks: keep
        ``max_frames`` at least world size x the longest utterance so no batch is smaller than the world.
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
        return self._bucketed(order, lengths, batch_size, random.Random(f"{seed}:{epoch}"))

    def _bucketed(self, order: list[int], lengths: list[int], batch_size: int, rng: random.Random
                  ) -> list[list[int]]:
        """Training batches from indices sorted by length: buckets shuffled inside, cut, batches shuffled."""
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
        """``len(self.batches(...))``; in constant time without ``max_frames`` (batches are cut by count)."""
        if self.max_frames is not None:
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


# ------------------------------------------------------------------------------------------------
# Building
# ------------------------------------------------------------------------------------------------


def _skip(
    skipped: list[dict[str, Any]],
    strict: bool,
    split: str,
    utt: Utterance | None,
    source: str,
    reason: str,
    message: str,
) -> None:
    if strict:
        raise UserError(f"{source}: {message}")
    skipped.append(
        {
            "split": split,
            "id": utt.id if utt else None,
            "source": source,
            "reason": reason,
            "message": message,
        }
    )


def _feature_cache_key(utts: list[Utterance], frontend: str, max_seconds: float = MAX_ITEM_SECONDS) -> str:
    limit = "" if max_seconds == MAX_ITEM_SECONDS else f":max{max_seconds}"
    h = hashlib.sha1(f"v{FEATURE_CACHE_VERSION}:{frontend}{limit}".encode())
    for u in utts:
        try:
            st = u.audio.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except (OSError, ValueError):  # ValueError: a NUL in the path, reported as a bad item later
            stamp = "missing"
        try:
            where = u.audio.resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop: the file is reported unreadable later
            where = Path(os.path.abspath(u.audio))
        h.update(f"{where}|{stamp}|{u.offset}|{u.duration if u.offset else ''}\n".encode())
    return h.hexdigest()[:16]


def extract_features(
    utts: list[Utterance], frontend: str, cache_dir: Path | None, desc: str | None = None,
    max_seconds: float = MAX_ITEM_SECONDS,
) -> tuple[FeatureStore, list[tuple[str, str] | None]]:
    """fbank features of every utterance, streamed to a memory-mapped cache file under ``cache_dir``
    (kept in memory without one); a bad file (see :func:`load_audio`, ``max_seconds`` its length limit) gets
    zero frames and its ``(reason, message)``. ``desc`` names the progress shown while they are computed (not
    when they come from the cache)."""
    data = index = producer = None
    if cache_dir is not None:
        key = _feature_cache_key(utts, frontend, max_seconds)
        producer = {"frontend": frontend, "key": key}
        folder = Path(cache_dir) / "features"
        folder.mkdir(parents=True, exist_ok=True)
        data, index = folder / f"{key}.f32", folder / f"{key}.json"
        clean_stale(folder)
        cached = load_store(data, index, len(utts), producer=producer)
        if cached is not None:
            return cached

    progress = Progress(desc or "", total=len(utts), unit="utt", enabled=desc is not None and len(utts) > 0)

    def compute(u: Utterance) -> torch.Tensor:
        try:
            wave = load_audio(u.audio, offset=u.offset, duration=u.duration if u.offset else None,
                              max_seconds=max_seconds)
            return fbank(wave, SAMPLE_RATE, frontend)  # type: ignore[arg-type]
        finally:
            progress.update()

    def is_error(e: BaseException) -> tuple[str, str] | None:
        return (e.reason, str(e)) if isinstance(e, AudioError) else None

    with progress:
        return write_store(utts, compute, data, index, is_error, producer=producer)


def draw_subset(n: int, args: SubsetArgs) -> list[int]:
    """Indices of subset ``index`` among ``count`` disjoint random subsets of ``range(n)``."""
    size = args.size if args.size is not None else max(1, int(round(n * float(args.fraction or 0))))
    if size * args.count > n:
        raise UserError(
            f"subset: {args.count} disjoint subsets of {size} need {size * args.count} training "
            f"utterances, the split has {n}"
        )
    perm = list(range(n))
    random.Random(f"subset:{args.seed}").shuffle(perm)
    return sorted(perm[args.index * size : (args.index + 1) * size])


def _usable(splits: dict[str, list[Utterance]], args: SpeechArgs, language: str, cache_dir: Path | None,
            skipped: list[dict[str, Any]], adopted: TeacherTokenizer | None
            ) -> tuple[dict[str, list[Utterance]], dict[str, FeatureStore]]:
    """The utterances of each split that can be used (the others added to ``skipped``) and their features."""
    if adopted is None:
        adopted = teacher_tokenizer(args)
    kept: dict[str, list[Utterance]] = {}
    feats_by_split: dict[str, FeatureStore] = {}
    if args.unlabelled is not None:
        from compressor.data.formats import read_unlabelled

        splits = dict(splits)
        splits["train"] = list(splits.get("train", []))
        for source in [args.unlabelled] if isinstance(args.unlabelled, str) else args.unlabelled:
            extra, bad = read_unlabelled(source, "train", strict=args.strict)
            splits["train"].extend(extra)
            skipped.extend(bad)
    for split, utts in splits.items():
        good: list[Utterance] = []
        for u in utts:
            if not u.labelled:
                if split != "train":
                    _skip(skipped, args.strict, split, u, u.source, "empty_text",
                          f"{u.id} has no transcript (only training audio may lack one)")
                    continue
                if args.max_duration is not None and u.duration is not None and u.duration > args.max_duration:
                    _skip(skipped, args.strict, split, u, u.source, "too_long",
                          f"{u.id} is longer than max_duration ({u.duration:.2f}s > {args.max_duration}s)")
                    continue
                good.append(u)
                continue
            if not isinstance(u.text, str):
                _skip(skipped, args.strict, split, u, u.source, "bad_text",
                      f"transcript of {u.id} is not a string: {u.text!r}"[:200])
                continue
            text = normalize(u.text)
            bad = out_of_alphabet(text, language)
            if not text:
                _skip(skipped, args.strict, split, u, u.source, "empty_text", f"empty transcript for {u.id}")
                continue
            if bad:
                _skip(
                    skipped,
                    args.strict,
                    split,
                    u,
                    u.source,
                    "alphabet",
                    f"transcript of {u.id} has characters outside the {language} alphabet: {''.join(bad)!r}",
                )
                continue
            unknown = adopted.unknown(text) if adopted is not None else []
            if unknown:
                _skip(skipped, args.strict, split, u, u.source, "alphabet",
                      f"transcript of {u.id} has characters outside the vocabulary of teacher "
                      f"'{adopted.teacher}': {''.join(unknown)!r}")  # type: ignore[union-attr]
                continue
            if args.max_duration is not None and u.duration is not None and u.duration > args.max_duration:
                _skip(
                    skipped,
                    args.strict,
                    split,
                    u,
                    u.source,
                    "too_long",
                    f"{u.id} is longer than max_duration ({u.duration:.2f}s > {args.max_duration}s)",
                )
                continue
            u.text = text
            good.append(u)
        store, errors = extract_features(good, args.frontend, cache_dir, desc=f"{args.frontend} features: {split}",
                                         max_seconds=args.max_item_seconds)
        keep: list[int] = []
        for i, (u, err) in enumerate(zip(good, errors)):
            if err is not None:
                reason, message = err
                _skip(skipped, args.strict, split, u, u.source or str(u.audio), reason, message)
                continue
            keep.append(i)
        kept[split] = [good[i] for i in keep]
        feats_by_split[split] = store.select(keep)
    return kept, feats_by_split


def _speech_split(utts: list[Utterance], feats: FeatureStore, tokenizer: Tokenizer,
                  label_values: dict[str, list[str]] | None, args: SpeechArgs, seed: int, split: str) -> SpeechSplit:
    """One split's dataset: its utterances tokenized and labelled (augmented when it is the training split)."""
    tokens, labels = [], []
    for u in utts:
        tokens.append(tokenizer.encode(u.text) if u.labelled else [])
        lab: dict[str, int] = {}
        if label_values:
            for key, out_key in (("intent", "label"), *((s, s) for s in SLOTS)):
                if key in label_values and key in u.labels:
                    lab[out_key] = label_values[key].index(u.labels[key])
        labels.append(lab)
    return SpeechSplit(utts, feats, tokens, labels, args.augment if split == "train" else None, args.frontend, seed,
                       args.normalize)


#: (data facts of a model description, the splits wanted): see :func:`only_splits`
_DESCRIBED: contextvars.ContextVar[tuple[dict[str, Any], list[str]] | None] = contextvars.ContextVar(
    "described_speech", default=None)


@contextlib.contextmanager
def only_splits(info: dict[str, Any], splits: list[str]) -> Iterator[None]:
    """Inside, :func:`build_speech_module` builds just ``splits``, its tokenizer, feature statistics and labels
    taken from ``info`` (the data facts a model description recorded) rather than learned from the training
    split: evaluating a finished run reads the one split it evaluates. Where ``info`` does not give the
    tokenizer, or a split is not there, the whole module is built as usual."""
    token = _DESCRIBED.set((info, list(splits)))
    try:
        yield
    finally:
        _DESCRIBED.reset(token)


def _described_tokenizer(info: dict[str, Any], args: SpeechArgs, language: str) -> Tokenizer | None:
    """The tokenizer the data facts ``info`` name (None when they do not give it or it does not match)."""
    kind, tokens = info.get("tokenizer"), info.get("tokens")
    tokenizer: Tokenizer | None = None
    if kind == "teacher":
        tokenizer = teacher_tokenizer(args)
    elif kind == "char":
        tokenizer = CharTokenizer(language)
    elif kind == "sentencepiece" and isinstance(info.get("bpe_model"), str) and Path(info["bpe_model"]).is_file():
        tokenizer = SentencePieceTokenizer.load(info["bpe_model"])
    if tokenizer is None or list(tokenizer.tokens) != tokens:
        return None
    return tokenizer


def _build_described(splits: dict[str, list[Utterance]], args: SpeechArgs, language: str, cache_dir: Path | None,
                     seed: int, skipped: list[dict[str, Any]], extra_info: dict[str, Any] | None
                     ) -> SpeechDataModule | None:
    """The module of the splits :func:`only_splits` asks for, or None to build it all."""
    described = _DESCRIBED.get()
    if described is None:
        return None
    info, wanted = described
    tokenizer = _described_tokenizer(info, args, language)
    if tokenizer is None or not wanted or any(s not in splits for s in wanted) or "feature_mean" not in info:
        return None
    label_values = None
    if info.get("slot_labels") or info.get("labels"):
        label_values = {**({"intent": info["labels"]} if info.get("labels") else {}), **info.get("slot_labels", {})}
    kept, feats = _usable({s: splits[s] for s in wanted}, args, language, cache_dir, skipped, None)
    datasets = {split: _speech_split(utts, feats[split], tokenizer, label_values, args, seed, split)
                for split, utts in kept.items()}
    out_info = {**info, **(extra_info or {}), "num_skipped": len(skipped)}
    return SpeechDataModule(datasets, out_info, num_buckets=args.num_buckets, max_frames=args.max_frames,
                            skipped=skipped, tokenizer=tokenizer)


def build_speech_module(
    splits: dict[str, list[Utterance]],
    args: SpeechArgs,
    *,
    language: str = "en",
    cache_dir: Path | None = None,
    seed: int = 0,
    label_values: dict[str, list[str]] | None = None,
    skipped: list[dict[str, Any]] | None = None,
    extra_info: dict[str, Any] | None = None,
) -> SpeechDataModule:
    """Turn per-split utterance records into a :class:`SpeechDataModule` (see the module docstring; inside
    :func:`only_splits`, just the splits it names)."""
    skipped = list(skipped or [])
    described = _build_described(splits, args, language, cache_dir, seed, skipped, extra_info)
    if described is not None:
        return described
    adopted = teacher_tokenizer(args)
    kept, feats_by_split = _usable(splits, args, language, cache_dir, skipped, adopted)
    if "train" not in kept or not kept["train"]:
        raise UserError(
            "the training split has no usable utterances"
            + (f" ({len(skipped)} skipped: first {skipped[0]['message']})" if skipped else "")
        )
    if args.subset is not None:
        idx = draw_subset(len(kept["train"]), args.subset)
        kept["train"] = [kept["train"][i] for i in idx]
        feats_by_split["train"] = feats_by_split["train"].select(idx)
    if args.hide_labels:
        hide_labels(kept["train"], args.hide_labels, seed)
    if not any(u.labelled for u in kept["train"]) and args.tokenizer in ("sentencepiece", "bpe", "unigram"):
        raise UserError(f"data.tokenizer: a {args.tokenizer} tokenizer learns its pieces from training transcripts "
                        f"and the training split has none; use tokenizer: char (or keep some transcripts)")

    texts = [u.text for u in kept["train"] if u.labelled]
    tokenizer = adopted or build_tokenizer(str(args.tokenizer), language, texts, args.vocab_size, seed)
    train_feats = feats_by_split["train"]
    if args.normalize == "per_feature":
        mean, std = feature_stats(per_feature_normalize(f) for f in train_feats)
    else:
        mean, std = feature_stats(train_feats)

    labels_info: dict[str, Any] = {}
    if label_values is None and any(u.labels for u in kept["train"]):
        label_values = {
            k: sorted({u.labels[k] for us in kept.values() for u in us if k in u.labels})
            for k in ("intent", *SLOTS)
        }
        label_values = {k: v for k, v in label_values.items() if v}
    if label_values:
        labels_info = {
            "labels": label_values.get("intent", []),
            "num_classes": len(label_values.get("intent", [])),
            "slot_labels": {k: label_values[k] for k in SLOTS if k in label_values},
        }

    datasets = {split: _speech_split(utts, feats_by_split[split], tokenizer, label_values, args, seed, split)
                for split, utts in kept.items()}

    info = _static_info(args, language)
    info.update({
        "tokens": list(tokenizer.tokens),
        "vocab_size": tokenizer.vocab_size,
        "blank_id": tokenizer.blank_id,
        "tokenizer": tokenizer.kind,
        "feature_mean": mean,
        "feature_std": std,
        "num_utterances": {s: len(u) for s, u in kept.items()},
        "num_unlabelled": sum(not u.labelled for u in kept["train"]),
        "num_skipped": len(skipped),
    })
    info.update(labels_info)
    info.update(extra_info or {})
    if cache_dir is not None:
        info.update(tokenizer_files(tokenizer, Path(cache_dir)))
    return SpeechDataModule(
        datasets,
        info,
        num_buckets=args.num_buckets,
        max_frames=args.max_frames,
        skipped=skipped,
        tokenizer=tokenizer,
    )


def hide_labels(utts: list[Utterance], share: float, seed: int) -> None:
    """Hide the transcripts of ``round(share * n)`` of the labelled ``utts`` (a draw fixed by ``seed``), in place:
    they become unlabelled and keep the transcript only in ``hidden_text``, to measure pseudo-labels against."""
    labelled = [i for i, u in enumerate(utts) if u.labelled]
    chosen = list(labelled)
    random.Random(f"hide_labels:{seed}").shuffle(chosen)
    for i in chosen[: round(share * len(labelled))]:
        u = utts[i]
        u.hidden_text, u.text, u.labelled = u.text, "", False


def tokenizer_files(tokenizer: Tokenizer, cache_dir: Path) -> dict[str, str]:
    """Write the sherpa-onnx ``tokens.txt`` (and a SentencePiece model) under the cache; their paths."""
    tok_dir = (
        cache_dir / "tokenizers"
        / hashlib.sha1(json.dumps(tokenizer.tokens, ensure_ascii=False).encode()).hexdigest()[:12]
    )
    out = {"tokens_file": str(tokenizer.write_tokens(tok_dir / "tokens.txt"))}
    if isinstance(tokenizer, SentencePieceTokenizer):
        out["bpe_model"] = str(tokenizer.save(tok_dir / "bpe.model"))
    return out


def _static_info(args: SpeechArgs, language: str) -> dict[str, Any]:
    """Facts that follow from the arguments alone."""
    return {
        "feature_dim": NUM_BINS,
        "sample_rate": SAMPLE_RATE,
        "frontend": args.frontend,
        "normalize_type": "" if args.normalize == "none" else args.normalize,
        "language": language,
        # keys every batch carries (labels only where the data has them); models' declared inputs are checked
        # against this at validation
        "batch_keys": ["features", "feature_lengths", "tokens", "token_lengths", "text", "ids"],
        # keys a batch carries when a model reading them asks (DataModule.request): 16 kHz waveforms
        "batch_keys_on_request": list(ON_REQUEST_KEYS),
        "augmented": args.augment.active(),  # waveform augmentation changes features from epoch to epoch
    }


def teacher_tokenizer(args: SpeechArgs) -> TeacherTokenizer | None:
    """The tokenizer of ``tokenizer: {from_teacher: NAME}`` (its tokens resolved when the spec loaded), else None."""
    if not isinstance(args.tokenizer, FromTeacher):
        return None
    if args.tokenizer.tokens is None:
        raise UserError(f"tokenizer.from_teacher: the vocabulary of '{args.tokenizer.from_teacher}' was not "
                        f"resolved (the spec loader fills it in)")
    return TeacherTokenizer(args.tokenizer.tokens, args.tokenizer.from_teacher)


def speech_info(args: SpeechArgs, language: str = "en", **extra: Any) -> dict[str, Any]:
    """What is known before any data is read (for validation-time model building)."""
    info = _static_info(args, language)
    adopted = teacher_tokenizer(args)
    if adopted is not None:
        info.update(tokens=list(adopted.tokens), vocab_size=adopted.vocab_size, blank_id=adopted.blank_id)
    elif args.tokenizer == "char":
        tok = CharTokenizer(language)
        info.update(tokens=list(tok.tokens), vocab_size=tok.vocab_size, blank_id=tok.blank_id)
    else:
        info.update(vocab_size=args.vocab_size, blank_id=args.vocab_size - 1)
    info.update(extra)
    return info
