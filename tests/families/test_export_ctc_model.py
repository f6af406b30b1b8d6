"""The CTC family the export is tested on: quartznet + task ctc (registered through the ctc plugin)."""

from __future__ import annotations

import pytest
import torch

from compressor.families.asr.greedy import ctc_greedy
from compressor.families.ctc.quartznet import QuartzNetArgs, build_quartznet
from compressor.families.ctc.task import CTCTask
from compressor.plugins import get_registry


def test_registered():
    reg = get_registry()
    assert reg.has("model", "quartznet") and not reg.has("model", "conv_ctc") and reg.has("task", "ctc")


def test_greedy_merges_repeats_and_drops_blanks():
    blank = 3
    frames = [0, 0, 3, 0, 1, 1, 3, 3, 2, 2]
    log_probs = torch.full((1, len(frames), 4), -10.0)
    log_probs[0, torch.arange(len(frames)), torch.tensor(frames)] = 0.0
    assert ctc_greedy(log_probs, torch.tensor([10]), blank) == [[0, 0, 1, 2]]
    assert ctc_greedy(log_probs, torch.tensor([5]), blank) == [[0, 0, 1]]


def test_shapes_lengths_and_blank_check():
    info = {"vocab_size": 6, "feature_dim": 80, "blank_id": 5, "tokens": list("abcde") + ["<blk>"]}
    model = build_quartznet(QuartzNetArgs(size="tiny"), info).eval()
    batch = {"features": torch.randn(3, 51, 80), "feature_lengths": torch.tensor([51, 40, 7])}
    out = model(batch)
    assert out["log_probs"].shape == (3, 26, 6)
    assert out["logit_lengths"].tolist() == [25, 20, 3]  # floor(T / 2): what sherpa-onnx decodes
    assert torch.allclose(out["log_probs"].exp().sum(-1), torch.ones(3, 26), atol=1e-5)
    with pytest.raises(ValueError, match="blank to be the last token"):
        build_quartznet(QuartzNetArgs(size="tiny"), {**info, "blank_id": 0})


def test_task_learns_and_reports_wer():
    from support.tones import trained_ctc

    model, task, data = trained_ctc(steps=100)
    metrics = task.evaluate(model, data.loader("test", 8), torch.device("cpu"))
    assert set(metrics) == {"loss", "wer", "cer"}
    assert metrics["cer"] < 0.5 and metrics["loss"] < 1.0
    batch = next(iter(data.loader("test", 8)))
    assert 0.0 <= task.batch_error(model(batch), batch) <= 1.0
    assert isinstance(task, CTCTask) and task.blank_id == len(data.info["tokens"]) - 1


def test_frontends_agree_with_the_data_layer():
    """compressor.export.frontend (verified against sherpa-onnx) == compressor.data.features.fbank."""
    from compressor.data.features import fbank
    from compressor.export.frontend import sherpa_fbank

    wave = torch.randn(9999) * 0.1
    for data_name, sherpa_name in (("nemo", "nemo_transducer"), ("nemo_ctc", "nemo_ctc"), ("kaldi", "kaldi")):
        diff = (fbank(wave, 16000, frontend=data_name) - sherpa_fbank(wave, 16000, sherpa_name)).abs().max()
        assert float(diff) < 1e-3, data_name
