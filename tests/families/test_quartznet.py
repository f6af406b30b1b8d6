"""QuartzNet B×R (seed 003 Table 1): shapes, parameter counts, masking, presets."""

from __future__ import annotations

import pytest
import torch

from compressor.core.errors import SpecError
from compressor.families.ctc.quartznet import QuartzNetArgs, build_quartznet, describe
from compressor.plugins import get_registry

EN = {"vocab_size": 29, "blank_id": 28, "feature_dim": 64}  # NeMo's English QuartzNet: 64 mels, 28 chars + blank


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_15x5_has_the_papers_18_9m_parameters_and_table_1_rows():
    with torch.device("meta"):
        model = build_quartznet(QuartzNetArgs(preset="15x5", size="paper"), EN)
    assert count(model) == 18_924_381
    assert round(count(model) / 1e6, 1) == 18.9  # Table 1: "Params, M 18.9"
    rows = [(r["block"], r["R"], r["K"], r["C"], r["S"]) for r in describe(model)]
    assert rows == [("C1", 1, 33, 256, 1), ("B1", 5, 33, 256, 3), ("B2", 5, 39, 256, 3), ("B3", 5, 51, 512, 3),
                    ("B4", 5, 63, 512, 3), ("B5", 5, 75, 512, 3), ("C2", 1, 87, 512, 1), ("C3", 1, 1, 1024, 1),
                    ("C4", 1, 1, 29, 1)]
    assert len(model.encoder.layers) == 1 + 15 + 2
    c1, c2 = model.encoder.layers[0].units[0].depthwise, model.encoder.layers[-2].units[0].depthwise
    assert c1.stride == (2,) and c2.dilation == (2,) and model.encoder.layers[-1].units[0].depthwise is None
    assert all(layer.residual is not None for layer in model.encoder.layers[1:16])


def test_5x3_and_scaled_sizes():
    with torch.device("meta"):
        m53 = build_quartznet(QuartzNetArgs(preset="5x3", size="paper"), EN)
        cpu = build_quartznet(QuartzNetArgs(preset="15x5", size="cpu"), EN)
        tiny = build_quartznet(QuartzNetArgs(preset="15x5", size="tiny"), EN)
    # B = 5 blocks of R = 3 units at Table 1 widths: 4.64M (the paper quotes 6.4M for its 5x3; 5x5 is 6.7M)
    assert count(m53) == 4_639_581
    assert len(m53.encoder.layers) == 1 + 5 + 2 and len(m53.encoder.layers[1].units) == 3
    assert [r["C"] for r in describe(cpu)][:8] == [64, 64, 64, 128, 128, 128, 128, 256]
    assert [r["K"] for r in describe(tiny)][:7] == [7, 7, 7, 9, 11, 13, 15]
    assert count(tiny) < count(cpu) < count(m53)


def test_padding_does_not_change_an_utterance():
    """Masked convolutions: an utterance decodes the same alone or padded in a batch (eval mode)."""
    torch.manual_seed(0)
    model = build_quartznet(QuartzNetArgs(preset="5x2", size="tiny"), {**EN, "feature_dim": 80}).eval()
    x = torch.randn(2, 90, 80)
    lengths = torch.tensor([90, 47])
    batched = model({"features": x, "feature_lengths": lengths})
    alone = model({"features": x[1:, :47], "feature_lengths": lengths[1:]})
    n = int(alone["logit_lengths"][0])
    assert batched["logit_lengths"].tolist() == [45, 23] and n == 23
    assert torch.allclose(batched["log_probs"][1, :n], alone["log_probs"][0, :n], atol=1e-5)


def test_registered_and_preset_checked():
    reg = get_registry()
    assert reg.has("model", "quartznet")
    with pytest.raises(SpecError, match="BxR with B a positive multiple of 5"):
        reg.parse_args("model", "quartznet", {"preset": "7x5"}, ("student",))
    assert reg.parse_args("model", "quartznet", {"preset": "10x5"}, ()).preset == "10x5"


class Alternating(torch.nn.Module):
    """A fake NeMo-CTC model: emits a, b, a, b, ... on every one of its ceil(T / 2) output frames and claims
    all of them valid, so the transcript sherpa-onnx returns counts the frames it decodes."""

    subsampling_factor = 2
    vocab_size = 3

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + 1, 2, rounding_mode="floor")

    def forward_export(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        frames = torch.arange((features.shape[2] + 1) // 2)
        ids = frames % 2
        logits = torch.nn.functional.one_hot(ids, 3).float() * 10.0
        return torch.log_softmax(logits, -1)[None].expand(features.shape[0], -1, -1)


def test_sherpa_onnx_decodes_floor_t_over_2_frames_as_quartznet_counts_them(tmp_path):
    """sherpa-onnx decodes floor(T / 2) frames of a NeMo CTC model (whatever its length output says); the
    model's valid lengths must agree, or a token emitted on the extra frame of an odd-length input is lost."""
    import numpy as np
    import sherpa_onnx

    from compressor.data.features import fbank
    from compressor.export import graphs, parity
    from compressor.families.ctc.export import CTCGraph

    t = 101
    graph = graphs.GraphFile("model.onnx", CTCGraph(Alternating()), (torch.randn(1, 80, t), torch.tensor([t])),
                             ["audio_signal", "length"], ["logprobs", "logprobs_length"],
                             {"audio_signal": {0: "N", 2: "T"}, "length": {0: "N"}, "logprobs": {0: "N", 1: "T_out"},
                              "logprobs_length": {0: "N"}},
                             {"vocab_size": "3", "subsampling_factor": "2", "normalize_type": "",
                              "model_type": "EncDecCTCModelBPE"})
    path = graphs.write_graph(graph, tmp_path, 17)
    graphs.write_tokens(["a", "b", "<blk>"], tmp_path / "tokens.txt")
    rec = sherpa_onnx.OfflineRecognizer.from_nemo_ctc(model=str(path), tokens=str(tmp_path / "tokens.txt"),
                                                      num_threads=1)
    model = build_quartznet(QuartzNetArgs(preset="5x1", size="tiny"), {**EN, "feature_dim": 80})
    for seconds in (0.50, 0.51):  # an even and an odd number of feature frames
        wave = np.random.default_rng(0).standard_normal(int(seconds * 16000)).astype(np.float32) * 0.1
        frames = fbank(torch.from_numpy(wave), 16000, "nemo_ctc").shape[0]
        (decoded,) = parity.sherpa_decode(rec, [wave], {"a": 0, "b": 1})
        assert len(decoded) == frames // 2 == int(model.output_lengths(torch.tensor([frames]))[0]), frames
