"""A stage whose strategy labels audio without transcripts counts that audio in its step budget, before the
strategy has run (the engine checks every stage's budget up front)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from compressor.core.errors import UserError
from compressor.plugins import get_registry
from compressor.run.trainer import labels_audio, stage_budget


class AudioOnly:
    """64 utterances, none with a transcript: batches only when unlabelled audio is included."""

    def __init__(self) -> None:
        self.include_unlabelled = False

    def num_batches(self, split: str, batch_size: int, **_: object) -> int:
        return 64 // batch_size if self.include_unlabelled else 0


def stage(*plugins: str) -> SimpleNamespace:
    return SimpleNamespace(name="distil", epochs=None, steps=10, batch_size=16, grad_accum=1,
                           plugins=[SimpleNamespace(name=p) for p in plugins])


def test_a_labeller_makes_audio_without_transcripts_count() -> None:
    registry = get_registry()
    assert labels_audio(registry, stage("sequence_kd")) and not labels_audio(registry, stage("logit_kd"))
    data = AudioOnly()
    with pytest.raises(UserError, match="no full step"):
        stage_budget(data, stage("logit_kd"), seed=0)
    per_epoch, total = stage_budget(data, stage("sequence_kd"), seed=0, with_unlabelled=True)
    assert total == 10 and per_epoch == [4, 4, 2]
    assert data.include_unlabelled is False  # the data module is left as it was
