"""One utterance record: what every dataset reader produces and the speech data module reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: The key of an utterance's class label among its ``labels`` (an SLU corpus's intent); the data module gives it
#: as the batch key ``label`` and its values as ``info["labels"]``. Every other label key is a slot: the batch
#: key of its own name, its values in ``info["slot_labels"]``.
CLASS_LABEL = "intent"


@dataclass
class Utterance:
    """One utterance of a manifest. ``source`` is ``file:line`` for error messages."""

    id: str
    audio: Path
    text: str
    speaker: str = ""
    duration: float | None = None
    offset: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)  # the class label (CLASS_LABEL) and slots
    source: str = ""
    #: False for audio without a transcript (``unlabelled`` sources, ``hide_labels``): a teacher labels it
    labelled: bool = True
    #: a transcript hidden by ``hide_labels``: never trained on, only to measure pseudo-labels against
    hidden_text: str | None = None

