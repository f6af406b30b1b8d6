"""The tone corpus the export tests train on (support.tones) is deterministic."""

from __future__ import annotations

import torch
from support.tones import tone_data


def test_tone_data_is_deterministic() -> None:
    a, b = tone_data(sizes=(2, 1, 1)), tone_data(sizes=(2, 1, 1))
    assert torch.equal(a.dataset("train")[0]["waveform"], b.dataset("train")[0]["waveform"])
    assert a.info["blank_id"] == len(a.info["tokens"]) - 1
