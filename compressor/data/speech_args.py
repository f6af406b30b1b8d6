"""The arguments every speech dataset shares (tokenizer, front end, batching, subsets, augmentation)."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field, model_validator

from compressor.core.errors import UserError
from compressor.core.registry import Args
from compressor.data.audio import MAX_ITEM_SECONDS
from compressor.data.augment import AugmentArgs
from compressor.data.tokenizers import TeacherTokenizer

Sampler = Literal["lhotse", "length_buckets"]
SAMPLER_HELP = ("how training batches are drawn: lhotse (its BucketingSampler: duration buckets, every "
                "utterance once an epoch; the default of the lhotse dataset) or length_buckets (equal-count length "
                "buckets, a short remainder dropped; the default elsewhere, so the recipes' figures at a fixed seed "
                "stay as measured)")


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
    sampler: Sampler = Field(default="length_buckets", description=SAMPLER_HELP)
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


def teacher_tokenizer(args: SpeechArgs) -> TeacherTokenizer | None:
    """The tokenizer of ``tokenizer: {from_teacher: NAME}`` (its tokens resolved when the spec loaded), else None."""
    if not isinstance(args.tokenizer, FromTeacher):
        return None
    if args.tokenizer.tokens is None:
        raise UserError(f"tokenizer.from_teacher: the vocabulary of '{args.tokenizer.from_teacher}' was not "
                        f"resolved (the spec loader fills it in)")
    return TeacherTokenizer(args.tokenizer.tokens, args.tokenizer.from_teacher)

