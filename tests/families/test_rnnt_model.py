"""The RNN-T model family, its task (loss, decoding, WER/CER) and the Table 1 presets."""

from __future__ import annotations

import pytest
import torch
from torchaudio.functional import rnnt_loss

from compressor.families.asr.metrics import ErrorCounter, detokenize, wer
from compressor.families.rnnt.decoding import beam_search, greedy_search
from compressor.families.rnnt.model import TABLE1_PARAMETERS_M, RNNTArgs, build_rnnt, count_parameters
from compressor.families.rnnt.task import RNNTTask

TOKENS = [chr(ord("a") + i) for i in range(8)] + ["▁", "<blk>"]  # blank last
INFO = {"feature_dim": 80, "vocab_size": len(TOKENS), "tokens": TOKENS, "blank_id": len(TOKENS) - 1}


def _batch(b: int = 3, t: int = 45, u: int = 5, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([t - 6 * i for i in range(b)])
    token_lengths = torch.tensor([u - (i % 2) for i in range(b)])
    tokens = torch.randint(0, 8, (b, u), generator=g)
    return {"features": torch.randn(b, t, 80, generator=g), "feature_lengths": lengths, "tokens": tokens,
            "token_lengths": token_lengths}


def test_lattice_shapes_and_loss_is_torchaudio_rnnt_loss() -> None:
    torch.manual_seed(0)
    model = build_rnnt(RNNTArgs(size="tiny", stack=3), INFO)
    batch = _batch()
    out = model(batch)
    assert out["logits"].shape == (3, 15, 6, len(TOKENS))
    assert out["logit_lengths"].tolist() == [15, 13, 11]
    task = RNNTTask(RNNTTask.Args(), INFO)
    expected = rnnt_loss(out["logits"], batch["tokens"].int(), out["logit_lengths"].int(),
                         batch["token_lengths"].int(), blank=len(TOKENS) - 1)
    assert torch.allclose(task.loss(out, batch), expected)


def test_presets_match_table1_parameter_counts() -> None:
    with torch.device("meta"):
        models = {p: build_rnnt(RNNTArgs(preset=p, size="paper"), {"vocab_size": 1024})
                  for p in ("exp1_teacher", "exp1_student", "exp2_teacher", "exp2_student")}
    sizes = {p: count_parameters(m) for p, m in models.items()}
    t1 = models["exp1_teacher"]
    assert len(t1.encoder.layers) == 4 and len(t1.predictor.layers) == 2
    assert t1.encoder.layers[1].hidden_size == 1024 and t1.predictor.layers[0].hidden_size == 512
    # Table 1 of seed 002, as printed: 40.61M / 21.71M (exp 1), 57.4M / 30.11M (exp 2); within 1%.
    for preset, table in {"exp1_teacher": 40.61, "exp1_student": 21.71, "exp2_teacher": 57.4,
                          "exp2_student": 30.11}.items():
        assert abs(sizes[preset] / 1e6 - table) / table < 0.01, (preset, sizes[preset])
    assert TABLE1_PARAMETERS_M["exp1_teacher"] == 40.61
    # by hand: an LSTM layer has 4H(in + H) weights and 8H biases; the time reduction doubles one input (2048)
    def lstm(i: int, h: int) -> int:
        return 4 * h * (i + h) + 8 * h
    enc = lstm(80 * 3, 1024) + lstm(2048, 1024) + 1024 * 512 + 512
    pred = 1024 * 512 + lstm(512, 512) + 512 * 512 + 512
    joint = 512 * 1024 + 1024
    assert sizes["exp1_student"] == enc + pred + joint
    # the reduction sits at a module boundary: teacher layer 2 and student layer 1 both read 2048 inputs
    assert t1.encoder.layers[2].input_size == 2048 == models["exp1_student"].encoder.layers[1].input_size


def test_time_reduction_halves_frames_and_refuses_a_layer_outside_the_encoder() -> None:
    model = build_rnnt(RNNTArgs(size="tiny", encoder_layers=2, time_reduction=2), INFO)
    batch = _batch()
    out = model(batch)
    assert out["logit_lengths"].tolist() == [7, 6, 5]  # (45, 39, 33) // 3 // 2
    assert out["logits"].shape[1] == 7
    with pytest.raises(ValueError, match="reduce_at"):
        RNNTArgs(size="tiny", encoder_layers=2, time_reduction=2, reduce_at=2)


def test_cmvn_from_data_info_is_baked_in() -> None:
    info = dict(INFO, feature_mean=[1.0] * 80, feature_std=[2.0] * 80)
    model = build_rnnt(RNNTArgs(size="tiny"), info)
    assert torch.all(model.encoder.cmvn_mean == 1.0) and torch.all(model.encoder.cmvn_std == 2.0)
    assert "encoder.cmvn_mean" in model.state_dict()


def test_blank_must_be_last() -> None:
    with pytest.raises(ValueError, match="blank"):
        build_rnnt(RNNTArgs(size="tiny"), dict(INFO, blank_id=0))


def test_incremental_prediction_equals_full_sequence() -> None:
    torch.manual_seed(1)
    model = build_rnnt(RNNTArgs(size="tiny", pred_layers=2), INFO).eval()
    tokens = torch.randint(0, 8, (2, 4))
    full, _ = model.predict(tokens)
    state = None
    steps = []
    for i in range(4):
        out, state = model.predict(tokens[:, i:i + 1], state)
        steps.append(out)
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-6)
    assert state[0].shape == (2, 2, model.predictor.hidden)


def test_overfit_then_greedy_and_beam_decode_the_transcripts() -> None:
    torch.manual_seed(0)
    model = build_rnnt(RNNTArgs(size="tiny", encoder_hidden=48, joint_dim=48), INFO)
    batch = _batch(b=2, t=36, u=4, seed=3)
    task = RNNTTask(RNNTTask.Args(), INFO)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        loss = task.loss(model(batch), batch)
        loss.backward()
        opt.step()
    model.eval()
    refs = [batch["tokens"][i, : int(batch["token_lengths"][i])].tolist() for i in range(2)]
    assert greedy_search(model, batch["features"], batch["feature_lengths"], INFO["blank_id"]) == refs
    beams = beam_search(model, batch["features"], batch["feature_lengths"], INFO["blank_id"], beam_width=3)
    assert beams == refs
    metrics = task.evaluate(model, [batch], torch.device("cpu"))
    assert metrics["wer"] == 0.0 and metrics["cer"] == 0.0 and metrics["loss"] < 1.0
    beam = RNNTTask(RNNTTask.Args(decoding="beam", beam_width=2), INFO).evaluate(model, [batch],
                                                                                 torch.device("cpu"))
    assert beam["wer"] == 0.0


def test_untrained_model_has_high_error_and_metrics_are_reported() -> None:
    model = build_rnnt(RNNTArgs(size="tiny"), INFO)
    metrics = RNNTTask(RNNTTask.Args(), INFO).evaluate(model, [_batch()], torch.device("cpu"))
    assert set(metrics) == {"loss", "wer", "cer"} and metrics["wer"] > 0.5


def test_wer_cer_and_detokenize() -> None:
    assert detokenize([8, 0, 1, 8, 2, 9], TOKENS, 9) == "ab c"
    assert wer(["the cat sat"], ["the cat sat down"]) == pytest.approx(0.25)
    c = ErrorCounter()
    c.add("abc", "abd")
    assert c.wer == 1.0 and c.cer == pytest.approx(1 / 3)


def test_ctc_auxiliary_term_is_ctc_loss_of_the_joint_with_zero_prediction() -> None:
    torch.manual_seed(0)
    model = build_rnnt(RNNTArgs(size="tiny", stack=2), INFO)
    batch = _batch(t=40, u=4)
    out = model(batch)
    enc, enc_lengths = model.encode(batch["features"], batch["feature_lengths"])
    assert torch.allclose(out["ctc_logits"], model.joiner.out(torch.tanh(enc)))
    plain = RNNTTask(RNNTTask.Args(), INFO).loss(out, batch)
    with_ctc = RNNTTask(RNNTTask.Args(ctc_weight=0.5), INFO).loss(out, batch)
    ctc = torch.nn.functional.ctc_loss(out["ctc_logits"].log_softmax(-1).transpose(0, 1), batch["tokens"],
                                       enc_lengths, batch["token_lengths"], blank=INFO["blank_id"],
                                       reduction="sum") / 3
    assert torch.allclose(with_ctc, plain + 0.5 * ctc, rtol=1e-5)


def test_residual_lstm_layers_are_lstms_with_skip_connections_where_widths_match() -> None:
    from compressor.families.rnnt.model import ResidualLSTM

    torch.manual_seed(0)
    model = build_rnnt(RNNTArgs(size="tiny", encoder_layers=3), INFO)
    layers = model.encoder.layers
    assert all(isinstance(m, torch.nn.LSTM) for m in layers)
    assert [m.residual for m in layers] == [False, True, True]
    x = torch.randn(2, 5, layers[1].input_size)
    out, _ = layers[1](x)
    plain, _ = torch.nn.LSTM.forward(layers[1], x)
    assert torch.allclose(out, plain + x)
    assert "encoder.layers.1.weight_ih_l0" in model.state_dict()
    assert not ResidualLSTM(4, 4, residual=False).residual
    assert not build_rnnt(RNNTArgs(size="tiny", residual=False), INFO).encoder.layers[1].residual


def test_offline_export_metadata_counts_the_time_reduction() -> None:
    from compressor.families.rnnt.export import rnnt_graphs, supports_streaming

    reduced = build_rnnt(RNNTArgs(size="tiny", encoder_layers=2, time_reduction=2), INFO)
    (enc, *_) = rnnt_graphs(reduced, 80)
    assert enc.metadata["subsampling_factor"] == "6"  # 3 stacked frames, then 2 concatenated outputs
    assert not supports_streaming(reduced)  # chunks are not aligned with the reduction: no streaming graph
    plain = build_rnnt(RNNTArgs(size="tiny"), INFO)
    assert rnnt_graphs(plain, 80)[0].metadata["subsampling_factor"] == "3" and supports_streaming(plain)
