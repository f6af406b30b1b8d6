"""lhotse manifests in and out: a CutSet (or RecordingSet + SupervisionSet) becomes :class:`Utterance` records
for the speech data module, and utterance records become a CutSet a user can take into icefall or NeMo.

Labels travel in a supervision's ``custom`` field: ``intent`` (the class label) and ``slots`` (a mapping of slot
name to value), or lhotse's ``slu`` recipe's ``frames`` (Fluent Speech Commands' action, object, location).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from compressor.core.errors import UserError
from compressor.data.utterance import CLASS_LABEL, Utterance

#: The slots of Fluent Speech Commands, in the order lhotse's ``slu`` recipe gives them as ``frames``.
FSC_SLOTS = ("action", "object", "location")


def _load(path: str | Path, what: str) -> Any:
    """The lhotse manifest at ``path`` (any lhotse manifest type), or a :class:`UserError` naming the file."""
    from lhotse import load_manifest

    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"lhotse {what} manifest {'is not a file' if p.exists() else 'not found'}: {p}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_manifest(p)
    except UnicodeDecodeError as e:
        raise UserError(f"{p}: not a lhotse {what} manifest (not UTF-8 text: {e.reason})") from None
    except Exception as e:  # lhotse raises ValueError, KeyError, JSONDecodeError, gzip errors ... on bad input
        raise UserError(f"{p}: not a lhotse {what} manifest ({type(e).__name__}: {str(e)[:160]})") from None


def load_cuts(cuts: str | Path | None = None, recordings: str | Path | None = None,
              supervisions: str | Path | None = None) -> Any:
    """A CutSet from a cuts manifest, or from a recordings and a supervisions manifest."""
    from lhotse import CutSet, RecordingSet, SupervisionSet

    if cuts is not None:
        out = _load(cuts, "cuts")
        if not isinstance(out, CutSet):
            raise UserError(f"{Path(cuts).expanduser()}: a lhotse cuts manifest was expected, this holds a "
                            f"{type(out).__name__}")
        return out
    if recordings is None or supervisions is None:
        raise UserError("lhotse data: give 'cuts', or both 'recordings' and 'supervisions', for each split")
    recs, sups = _load(recordings, "recordings"), _load(supervisions, "supervisions")
    for path, got, want in ((recordings, recs, RecordingSet), (supervisions, sups, SupervisionSet)):
        if not isinstance(got, want):
            raise UserError(f"{Path(path).expanduser()}: a lhotse {want.__name__} manifest was expected, this "
                            f"holds a {type(got).__name__}")
    return cuts_from(recs, sups, str(supervisions))


def cuts_from(recordings: Any, supervisions: Any, where: str) -> Any:
    """The CutSet of a RecordingSet and a SupervisionSet (supervisions of unknown recordings are an error)."""
    from lhotse import CutSet

    known = set(recordings.ids)
    lost = [s.recording_id for s in supervisions if s.recording_id not in known]
    if lost:
        raise UserError(f"{where}: {len(lost)} supervision(s) name recordings the recordings manifest lacks "
                        f"(first: {lost[0]})")
    return CutSet.from_manifests(recordings=recordings, supervisions=supervisions)


def _labels(custom: dict[str, Any] | None) -> dict[str, str]:
    if not custom:
        return {}
    labels: dict[str, str] = {}
    if "intent" in custom:
        labels[CLASS_LABEL] = str(custom["intent"])
    slots = custom.get("slots")
    frames = custom.get("frames")
    if isinstance(slots, dict):
        labels.update({str(k): str(v) for k, v in slots.items()})
    elif isinstance(frames, (list, tuple)) and len(frames) == len(FSC_SLOTS):
        labels.update({k: str(v) for k, v in zip(FSC_SLOTS, frames, strict=True)})
        labels.setdefault(CLASS_LABEL, "_".join(labels[k].replace(" ", "_") for k in FSC_SLOTS))
    return labels


def _audio_path(cut: Any, where: str) -> Path:
    rec = cut.recording
    if rec is None:
        raise UserError(f"{where}: cut {cut.id} has no recording")
    files = [s for s in rec.sources if s.type == "file"]
    if len(rec.sources) != 1 or not files:
        kinds = ", ".join(s.type for s in rec.sources)
        raise UserError(f"{where}: recording {rec.id} has sources of type {kinds}; only one audio file per "
                        f"recording is read (lhotse 'file' sources)")
    return Path(str(files[0].source)).expanduser()


def utterances(cuts: Any, split: str, where: str) -> tuple[list[Utterance], list[dict[str, Any]]]:
    """One utterance per supervision of every cut (a cut without supervisions is skipped and counted);
    ``where`` names the manifest in messages."""
    utts: list[Utterance] = []
    skips: list[dict[str, Any]] = []
    for cut in cuts:
        if not cut.supervisions:
            skips.append({"split": split, "id": cut.id, "source": where, "reason": "missing_field",
                          "message": f"cut {cut.id} has no supervision"})
            continue
        audio = _audio_path(cut, where)
        for sup in cut.supervisions:
            if not isinstance(sup.text, str):
                skips.append({"split": split, "id": str(sup.id), "source": f"{where}:{sup.id}",
                              "reason": "missing_field", "message": f"supervision {sup.id} has no text"})
                continue
            utts.append(Utterance(
                id=str(cut.id if len(cut.supervisions) == 1 else sup.id),
                audio=audio,
                text=sup.text,
                speaker=str(sup.speaker or ""),
                duration=float(sup.duration),
                offset=float(cut.start + max(0.0, sup.start)),
                labels=_labels(sup.custom),
                source=f"{where}:{sup.id}",
            ))
    return utts, skips


def to_cuts(utts: Iterable[Utterance]) -> Any:
    """A CutSet of utterance records: a recording per audio file (its header read), a supervision with the
    transcript, speaker and labels (``custom``: ``intent`` and ``slots``) per utterance."""
    from lhotse import CutSet, Recording, SupervisionSegment
    from lhotse.cut import MonoCut

    cuts = []
    for u in utts:
        rec = Recording.from_file(u.audio, recording_id=u.id)
        slots = {k: v for k, v in u.labels.items() if k != CLASS_LABEL}
        custom = {**({"intent": u.labels[CLASS_LABEL]} if CLASS_LABEL in u.labels else {}),
                  **({"slots": slots} if slots else {})}
        duration = rec.duration if u.duration is None else min(rec.duration - u.offset, u.duration)
        sup = SupervisionSegment(id=u.id, recording_id=rec.id, start=0.0, duration=duration, channel=0,
                                 text=u.text, speaker=u.speaker or None, custom=custom or None)
        cuts.append(MonoCut(id=u.id, start=u.offset, duration=duration, channel=0, recording=rec,
                            supervisions=[sup]))
    return CutSet.from_cuts(cuts)


def write_cuts(utts: Iterable[Utterance], path: Path) -> Path:
    """Write :func:`to_cuts` of ``utts`` to ``path`` (``.jsonl.gz``) atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.jsonl.gz")
    to_cuts(utts).to_file(tmp)
    os.replace(tmp, path)
    return path
