"""Readers for the corpus layouts that stay ours (LibriSpeech and users' lhotse manifests come through lhotse:
:mod:`compressor.data.lhotse_io`, :mod:`compressor.data.recipes`). Each returns :class:`Utterance` records for
one split plus the manifest problems it found (missing fields, bad JSON, unreadable rows) as skip records;
audio problems are found later, when features are extracted.

* NeMo JSONL manifests: one JSON object a line with ``audio_filepath``, ``duration``, ``text`` (optional
  ``offset``, ``speaker``, and for SLU ``intent``/``action``/``object``/``location``); relative audio paths
  are relative to the manifest's folder.
* Fluent Speech Commands CSV (``data/{train,valid,test}_data.csv``): columns ``path, speakerId,
  transcription, action, object, location``; paths relative to the corpus root (the CSV folder's parent
  when the CSV lives in ``data/``).
* Common Voice TSV (``train.tsv``, ``dev.tsv``, ``test.tsv``): columns ``client_id, path, sentence``; clips in
  ``clips/`` beside the TSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from compressor.core.errors import UserError
from compressor.data.utterance import CLASS_LABEL, Utterance

Skips = list[dict[str, Any]]

#: The slot columns of a Fluent Speech Commands CSV (its intent is their concatenation).
FSC_SLOTS = ("action", "object", "location")
#: The SLU label fields a NeMo manifest line may carry: Fluent Speech Commands' intent and slots.
MANIFEST_LABELS = (CLASS_LABEL, *FSC_SLOTS)


def _problem(skips: Skips, strict: bool, split: str, source: str, reason: str, message: str) -> None:
    if strict:
        raise UserError(f"{source}: {message}")
    skips.append({"split": split, "id": None, "source": source, "reason": reason, "message": message})


def unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file (missing, a symlink loop, a directory, no permission), or None."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "not found"
    except OSError as e:  # ELOOP (a symlink loop), ENAMETOOLONG, EACCES on a parent ...
        return f"cannot be read ({e.strerror or e})"
    if not os.path.isfile(path):
        return "is not a file" if not os.path.isdir(path) else "is a directory, not a file"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None


def _need_file(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    why = unreadable(p)
    if why is not None:
        raise UserError(f"{what} {why}: {p}")
    return p


def _text_rows(path: Path) -> Any:
    """The file's text, or a :class:`UserError` naming it (not UTF-8, unreadable)."""
    try:
        return io.StringIO(path.read_text(encoding="utf-8"), newline="")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e})") from None


def _number(value: Any) -> float | None:
    """A finite, non-negative number from a manifest field, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) and x >= 0 else None


def read_nemo_manifest(
    path: str | Path, split: str, *, strict: bool = False, require_text: bool = True
) -> tuple[list[Utterance], Skips]:
    """Utterances of a NeMo JSONL manifest; with ``require_text=False`` (audio without transcripts) a line may
    lack ``text`` and every utterance comes back unlabelled (its text, if any, is ignored)."""
    path = _need_file(path, "NeMo manifest")
    utts: list[Utterance] = []
    skips: Skips = []
    try:
        with open(path, "rb") as f:
            raw_lines = f.read().split(b"\n")
    except OSError as e:
        raise UserError(f"NeMo manifest cannot be read ({e.strerror or e}): {path}") from None
    for n, raw in enumerate(raw_lines, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            _problem(skips, strict, split, f"{path}:{n}", "bad_line", f"not UTF-8 text ({e.reason})")
            continue
        if not line.strip():
            continue
        source = f"{path}:{n}"
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, a 5000-digit number, [[[[...]]]]
            msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e).split(":")[0] or "nested too deeply"
            _problem(skips, strict, split, source, "bad_line", f"not valid JSON ({msg})")
            continue
        if not isinstance(row, dict):
            _problem(skips, strict, split, source, "bad_line", "a manifest line must be a JSON object")
            continue
        missing = [k for k in ("audio_filepath", "duration", "text")[: 3 if require_text else 2] if k not in row]
        if missing:
            _problem(
                skips, strict, split, source, "missing_field", f"missing field(s): {', '.join(missing)}"
            )
            continue
        if require_text and not isinstance(row["text"], str):
            _problem(skips, strict, split, source, "bad_text",
                     f"'text' must be a string, got {json.dumps(row['text'])[:40]}")
            continue
        if not isinstance(row["audio_filepath"], str) or not row["audio_filepath"].strip():
            _problem(skips, strict, split, source, "bad_line",
                     f"'audio_filepath' must be a non-empty string, got {json.dumps(row['audio_filepath'])[:40]}")
            continue
        duration = _number(row["duration"])
        offset = _number(row.get("offset", 0.0) or 0.0)
        if duration is None or offset is None:
            bad = row["duration"] if duration is None else row.get("offset")
            _problem(
                skips, strict, split, source, "bad_line",
                f"bad duration/offset: {bad!r} (expected a finite number >= 0)"
            )
            continue
        audio = Path(row["audio_filepath"]).expanduser()
        if not audio.is_absolute():
            audio = path.parent / audio
        labels = {k: str(row[k]) for k in MANIFEST_LABELS if k in row}
        utts.append(
            Utterance(
                id=str(row.get("id", f"{path.stem}-{n}")),
                audio=audio,
                text=str(row["text"]) if require_text else "",
                speaker=str(row.get("speaker", "")),
                duration=duration,
                offset=offset,
                labels=labels,
                source=source,
                labelled=require_text,
            )
        )
    return utts, skips


def read_fsc_csv(
    path: str | Path, split: str, *, audio_root: str | Path | None = None, strict: bool = False
) -> tuple[list[Utterance], Skips]:
    path = _need_file(path, "Fluent Speech Commands CSV")
    root = (
        Path(audio_root).expanduser()
        if audio_root
        else (path.parent.parent if path.parent.name == "data" else path.parent)
    )
    utts: list[Utterance] = []
    skips: Skips = []
    with _text_rows(path) as f:
        reader = csv.DictReader(f)
        need = ("path", "speakerId", "transcription", *FSC_SLOTS)
        absent = [c for c in need if c not in (reader.fieldnames or [])]
        if absent:
            raise UserError(
                f"{path}:1: FSC CSV lacks column(s) {', '.join(absent)} (has "
                f"{', '.join(reader.fieldnames or [])})"
            )
        for n, row in enumerate(reader, 2):
            source = f"{path}:{n}"
            empty = [c for c in need if not (row.get(c) or "").strip()]
            if empty:
                _problem(skips, strict, split, source, "missing_field", f"empty field(s): {', '.join(empty)}")
                continue
            labels = {k: row[k].strip() for k in FSC_SLOTS}
            labels[CLASS_LABEL] = "_".join(labels[k].replace(" ", "_") for k in FSC_SLOTS)
            rel = row["path"].strip()
            utts.append(
                Utterance(
                    id=Path(rel).stem,
                    audio=root / rel,
                    text=row["transcription"],
                    speaker=row["speakerId"].strip(),
                    labels=labels,
                    source=source,
                )
            )
    return utts, skips


def read_common_voice(
    path: str | Path, split: str, *, clips_dir: str | Path | None = None, strict: bool = False
) -> tuple[list[Utterance], Skips]:
    path = _need_file(path, "Common Voice TSV")
    clips = Path(clips_dir).expanduser() if clips_dir else path.parent / "clips"
    utts: list[Utterance] = []
    skips: Skips = []
    with _text_rows(path) as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        absent = [c for c in ("client_id", "path", "sentence") if c not in (reader.fieldnames or [])]
        if absent:
            raise UserError(f"{path}:1: Common Voice TSV lacks column(s) {', '.join(absent)}")
        for n, row in enumerate(reader, 2):
            source = f"{path}:{n}"
            if not (row.get("path") or "").strip() or row.get("sentence") is None:
                _problem(skips, strict, split, source, "missing_field", "empty 'path' or 'sentence'")
                continue
            rel = row["path"].strip()
            utts.append(
                Utterance(
                    id=Path(rel).stem,
                    audio=clips / rel,
                    text=row["sentence"],
                    speaker=(row.get("client_id") or "").strip(),
                    source=source,
                )
            )
    return utts, skips


#: audio file suffixes :func:`read_audio_folder` picks up
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")


def read_audio_folder(path: str | Path, split: str, *, strict: bool = False) -> tuple[list[Utterance], Skips]:
    """Every audio file under the folder ``path`` (recursively, sorted), as unlabelled utterances: audio without
    transcripts for a teacher to label. Ids are the paths relative to the folder."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"audio folder {unreadable(root) or 'is not a folder'}: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"audio folder has no audio files ({', '.join(AUDIO_SUFFIXES)}): {root}")
    utts = [Utterance(id=p.relative_to(root).as_posix(), audio=p, text="", source=str(p), labelled=False)
            for p in files]
    return utts, []


def read_unlabelled(path: str | Path, split: str = "train", *, strict: bool = False
                    ) -> tuple[list[Utterance], Skips]:
    """Audio without transcripts from a folder of audio files or a NeMo manifest whose lines need no ``text``."""
    p = Path(path).expanduser()
    if p.is_dir():
        return read_audio_folder(p, split, strict=strict)
    why = unreadable(p)
    if why is not None:
        raise UserError(f"data.unlabelled: {p} {why} (give a folder of audio files or a manifest without text)")
    return read_nemo_manifest(p, split, strict=strict, require_text=False)
