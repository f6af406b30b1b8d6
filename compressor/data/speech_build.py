"""Utterance records -> a :class:`~compressor.data.speech.SpeechDataModule`: bad audio and transcripts skipped
and counted (or a :class:`UserError` when ``strict``), features extracted and cached, tokenizer learned or
adopted, labels indexed.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from compressor.core.errors import UserError
from compressor.data.audio import SAMPLE_RATE
from compressor.data.extract import extract_features
from compressor.data.featstore import FeatureStore
from compressor.data.features import NUM_BINS, feature_stats, per_feature_normalize
from compressor.data.formats import read_unlabelled
from compressor.data.speech import ON_REQUEST_KEYS, SpeechDataModule, SpeechSplit
from compressor.data.speech_args import SpeechArgs, draw_subset, teacher_tokenizer
from compressor.data.text import normalize, out_of_alphabet
from compressor.data.tokenizers import (
    CharTokenizer,
    SentencePieceTokenizer,
    TeacherTokenizer,
    Tokenizer,
    build_tokenizer,
)
from compressor.data.utterance import CLASS_LABEL, Utterance


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


def _usable(splits: dict[str, list[Utterance]], args: SpeechArgs, language: str, cache_dir: Path | None,
            skipped: list[dict[str, Any]], adopted: TeacherTokenizer | None
            ) -> tuple[dict[str, list[Utterance]], dict[str, FeatureStore]]:
    """The utterances of each split that can be used (the others added to ``skipped``) and their features."""
    if adopted is None:
        adopted = teacher_tokenizer(args)
    kept: dict[str, list[Utterance]] = {}
    feats_by_split: dict[str, FeatureStore] = {}
    if args.unlabelled is not None:
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
            for key, values in label_values.items():
                if key in u.labels:
                    lab["label" if key == CLASS_LABEL else key] = values.index(u.labels[key])
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
        label_values = {**({CLASS_LABEL: info["labels"]} if info.get("labels") else {}), **info.get("slot_labels", {})}
    kept, feats = _usable({s: splits[s] for s in wanted}, args, language, cache_dir, skipped, None)
    datasets = {split: _speech_split(utts, feats[split], tokenizer, label_values, args, seed, split)
                for split, utts in kept.items()}
    out_info = {**info, **(extra_info or {}), "num_skipped": len(skipped)}
    return SpeechDataModule(datasets, out_info, num_buckets=args.num_buckets, sampler=args.sampler,
                            max_frames=args.max_frames,
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
    """Turn per-split utterance records into a :class:`SpeechDataModule` (bad items skipped, features cached,
    labels indexed; inside :func:`only_splits`, just the splits it names)."""
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
        label_values = label_values_of([u for us in kept.values() for u in us])
    if label_values:
        labels_info = {
            "labels": label_values.get(CLASS_LABEL, []),
            "num_classes": len(label_values.get(CLASS_LABEL, [])),
            "slot_labels": {k: v for k, v in label_values.items() if k != CLASS_LABEL},
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
        sampler=args.sampler,
        max_frames=args.max_frames,
        skipped=skipped,
        tokenizer=tokenizer,
    )


def build_eval_module(
    splits: dict[str, list[Utterance]],
    args: SpeechArgs,
    *,
    language: str = "en",
    cache_dir: Path | None = None,
    seed: int = 0,
    skipped: list[dict[str, Any]] | None = None,
    extra_info: dict[str, Any] | None = None,
) -> SpeechDataModule:
    """A module of evaluation splits only (no training split): transcripts tokenised by characters (or the
    teacher's units), feature statistics of all its audio. A run reading it as a named evaluation set
    tokenises its transcripts again with the run's tokenizer; models keep their own training statistics."""
    skipped = list(skipped or [])
    adopted = teacher_tokenizer(args)
    kept, feats_by_split = _usable(splits, args, language, cache_dir, skipped, adopted)
    if not any(kept.values()):
        raise UserError("the evaluation splits have no usable utterances"
                        + (f" ({len(skipped)} skipped: first {skipped[0]['message']})" if skipped else ""))
    tokenizer: Tokenizer = adopted or CharTokenizer(language)
    mean, std = feature_stats(f for store in feats_by_split.values() for f in store)
    datasets = {split: _speech_split(utts, feats_by_split[split], tokenizer, None, args, seed, split)
                for split, utts in kept.items()}
    info = _static_info(args, language)
    info.update({"tokens": list(tokenizer.tokens), "vocab_size": tokenizer.vocab_size,
                 "blank_id": tokenizer.blank_id, "tokenizer": tokenizer.kind, "feature_mean": mean,
                 "feature_std": std, "num_utterances": {s: len(u) for s, u in kept.items()},
                 "num_skipped": len(skipped)})
    info.update(extra_info or {})
    return SpeechDataModule(datasets, info, num_buckets=args.num_buckets, sampler=args.sampler,
                            max_frames=args.max_frames, skipped=skipped, tokenizer=tokenizer)


def label_values_of(utts: list[Utterance]) -> dict[str, list[str]]:
    """The values of every label key the utterances carry (sorted): the class label first, then the slots in the
    order the reader gave them."""
    keys = list(dict.fromkeys(k for u in utts for k in u.labels))
    keys.sort(key=lambda k: k != CLASS_LABEL)
    return {k: sorted({u.labels[k] for u in utts if k in u.labels}) for k in keys}


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

