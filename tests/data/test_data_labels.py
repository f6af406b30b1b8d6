"""Labels are the dataset's: the speech module indexes whatever class label and slots its utterances carry."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from compressor.data.speech_args import SpeechArgs
from compressor.data.speech_build import build_speech_module, label_values_of
from compressor.data.utterance import CLASS_LABEL, Utterance

torch.set_num_threads(1)


def _utt(tmp_path: Path, i: int, labels: dict[str, str]) -> Utterance:
    t = np.arange(8000) / 16000
    path = tmp_path / f"u{i}.wav"
    sf.write(str(path), (0.3 * np.sin(2 * math.pi * (200 + 50 * i) * t)).astype(np.float32), 16000)
    return Utterance(id=f"u{i}", audio=path, text="red light", labels=labels)


def test_any_slot_names_become_batch_keys(tmp_path: Path) -> None:
    rows = [{"colour": "red", CLASS_LABEL: "paint"}, {CLASS_LABEL: "wash", "colour": "blue", "size": "big"},
            {CLASS_LABEL: "paint", "colour": "blue", "size": "small"}]
    utts = [_utt(tmp_path, i, r) for i, r in enumerate(rows)]
    dm = build_speech_module({"train": utts[:2], "valid": utts[2:]}, SpeechArgs(), cache_dir=None)
    assert dm.info["labels"] == ["paint", "wash"] and dm.info["num_classes"] == 2
    assert dm.info["slot_labels"] == {"colour": ["blue", "red"], "size": ["big", "small"]}
    batch = dm.collate([dm.dataset("train")[i] for i in range(2)])
    assert batch["label"].tolist() == [0, 1] and batch["colour"].tolist() == [1, 0]
    assert "size" not in batch  # not every utterance of the batch has one: the first item decides, as before


def test_label_values_put_the_class_label_first() -> None:
    utts = [Utterance(id="a", audio=Path("a.wav"), text="x", labels={"action": "on", "object": "lamp",
                                                                       CLASS_LABEL: "on_lamp"})]
    assert list(label_values_of(utts)) == [CLASS_LABEL, "action", "object"]
    assert label_values_of([]) == {}
