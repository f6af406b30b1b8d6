"""Masking plugins: masked fractions against their expectation, padding never touched, off in evaluation and
in the exported graph, SpecAugment's widths and fill, token spans with the model's mask id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support import text_spec, write_spec
from support.plugin_ctx import build_strategy, feature_data, make_ctx

from compressor.core.errors import SpecError
from compressor.core.sequences import expected_span_fraction, span_mask
from compressor.external.hf_text import HFTextClassifierArgs, build_hf_text_classifier
from compressor.families.slu.classifier import SeqClassifierArgs, build_seq_classifier
from compressor.spec import load_spec


@pytest.mark.parametrize(("p", "span"), [(0.02, 10), (0.05, 5), (0.1, 2)])
def test_span_fraction_matches_expectation_and_never_touches_padding(p: float, span: int) -> None:
    torch.manual_seed(0)
    lengths = torch.randint(60, 200, (4000,))
    mask = span_mask(4000, 200, p, span, lengths)
    valid = torch.arange(200)[None] < lengths[:, None]
    assert not (mask & ~valid).any()
    measured = float(mask.sum()) / float(valid.sum())
    expected = float(sum(expected_span_fraction(p, span, int(n)) * int(n) for n in lengths)) / float(lengths.sum())
    assert measured == pytest.approx(expected, rel=0.03)
    # overlap makes the real fraction 1 - (1-p)^M, a little under the nominal p*M of seed 000
    assert 0.85 * p * span <= measured <= p * span


def _hidden_setup(**args):
    torch.manual_seed(0)
    data = feature_data([30, 50, 40], dim=4)
    student = build_seq_classifier(SeqClassifierArgs(hidden=16, layers=1, input_dim=4, num_classes=3))
    ctx = make_ctx({"student": student}, data)
    hm = build_strategy("hidden_masking", module="encoder", index=0, **args)
    hm.compressor_prepare_models(ctx)
    return ctx, hm, student


def test_hidden_masking_fraction_padding_and_eval() -> None:
    ctx, hm, student = _hidden_setup(time_prob=0.05, time_span=4, channel_prob=0.05, channel_span=2,
                                     mask_value=0.0)
    captured = {}
    student.encoder.register_forward_hook(lambda m, i, o: captured.__setitem__("h", o[0]))
    lengths = torch.tensor([50, 20, 35, 50])
    batch = {"features": torch.randn(4, 50, 4), "feature_lengths": lengths}
    fractions = []
    ctx.training = True
    for _ in range(200):
        ctx.scalars = {}
        hm.compressor_step_start(ctx)
        hm.compressor_transform_batch(ctx, batch)
        with torch.no_grad():
            student(batch)
        hm.compressor_loss_terms(ctx)
        fractions.append(ctx.scalars["hidden_masked"])
        h = captured["h"]
        for i, n in enumerate(lengths.tolist()):  # padding never masked (LSTM outputs there are not zero)
            assert (h[i, n:] != 0).all()
    t_frac = sum(expected_span_fraction(0.05, 4, n) * n for n in lengths.tolist()) / float(lengths.sum())
    c_frac = expected_span_fraction(0.05, 2, 16)
    expected = 1 - (1 - t_frac) * (1 - c_frac)
    assert float(np.mean(fractions)) == pytest.approx(expected, rel=0.08)
    ctx.training = False  # evaluation: untouched
    with torch.no_grad():
        out_eval = student(batch)["logits"]
    hm.compressor_finalize_student(ctx)
    assert not student.encoder._forward_hooks or all(
        getattr(f, "__self__", None) is not hm for f in student.encoder._forward_hooks.values())
    with torch.no_grad():
        assert torch.equal(student(batch)["logits"], out_eval)


def test_hidden_masking_is_not_in_the_exported_graph(tmp_path: Path) -> None:
    import onnxruntime as ort

    from compressor.export import graphs
    from compressor.families.slu.export import ClassifierGraph

    ctx, hm, student = _hidden_setup(time_prob=0.3, time_span=3)
    ctx.training = True
    batch = {"features": torch.randn(2, 40, 4), "feature_lengths": torch.tensor([40, 31])}
    hm.compressor_transform_batch(ctx, batch)
    with torch.no_grad():
        masked = student(batch)["logits"]
    hm.compressor_finalize_student(ctx)
    student.eval()
    with torch.no_grad():
        clean = student(batch)["logits"]
    assert not torch.allclose(masked, clean)
    g = graphs.GraphFile("model.onnx", ClassifierGraph(student), (batch["features"], batch["feature_lengths"]),
                         ["features", "feature_lengths"], ["logits"],
                         {"features": {0: "N", 1: "T"}, "feature_lengths": {0: "N"}, "logits": {0: "N"}})
    path = graphs.write_graph(g, tmp_path, 17)
    got = ort.InferenceSession(str(path)).run(None, {"features": batch["features"].numpy(),
                                                     "feature_lengths": batch["feature_lengths"].numpy()})[0]
    assert np.abs(got - clean.numpy()).max() < 1e-5


def test_hidden_masking_refuses_spans_longer_than_the_shortest_sequence() -> None:
    from compressor.core.errors import UserError

    with pytest.raises(UserError, match=r"time_span 31 exceeds the shortest training sequence at 'encoder' \(30"):
        _hidden_setup(time_prob=0.1, time_span=31)
    with pytest.raises(UserError, match="channel_span 17 exceeds the 16 channels"):
        _hidden_setup(channel_prob=0.1, channel_span=17)


def test_spec_augment_masks_within_lengths_with_the_mean() -> None:
    torch.manual_seed(0)
    data = feature_data([40, 60, 50], dim=20)
    data.info["feature_mean"] = [float(i) for i in range(20)]
    ctx = make_ctx({}, data)
    sa = build_strategy("spec_augment", freq_masks=2, freq_width=5, time_masks=2, time_width=30,
                        time_width_fraction=0.2)
    sa.compressor_prepare_models(ctx)
    fill = torch.arange(20.0)
    lengths = torch.tensor([60, 25, 45])
    x = torch.randn(3, 60, 20) * 0.1 + 100.0  # no real cell equals a channel mean by chance
    fractions = []
    for _ in range(100):
        batch = {"features": x, "feature_lengths": lengths}
        ctx.scalars = {}
        sa.compressor_transform_batch(ctx, batch)
        y = batch["features"]
        assert batch["features"] is not x and torch.equal(x, x.clone())  # a new tensor; the input untouched
        changed = y != x
        for i, n in enumerate(lengths.tolist()):
            assert not changed[i, n:].any()  # padding untouched
            c = changed[i, :n]
            assert torch.equal(y[i, :n][c], fill.expand(n, 20)[c])  # masked cells hold the channel mean
            full_time = c.all(1)  # frames masked across all channels: time masks
            runs = torch.diff(torch.cat([torch.tensor([0]), full_time.int(), torch.tensor([0])])).nonzero()
            widths = (runs[1::2] - runs[::2]).flatten().tolist()
            assert all(w <= 2 * int(0.2 * n) for w in widths)  # two masks of < 0.2 L each
        fractions.append(ctx.scalars["spec_augment_masked"])
        measured = float(changed.sum()) / float((lengths * 20).sum())
        assert ctx.scalars["spec_augment_masked"] == pytest.approx(measured)
    assert 0.05 < float(np.mean(fractions)) < 0.5


def test_spec_augment_time_warp_keeps_lengths_and_padding() -> None:
    torch.manual_seed(1)
    ctx = make_ctx({}, feature_data([40, 60], dim=6))
    sa = build_strategy("spec_augment", freq_masks=0, time_masks=0, time_warp=5)
    sa.compressor_prepare_models(ctx)
    x = torch.cumsum(torch.ones(2, 60, 6), 1)
    x[1, 45:] = -7.0
    batch = {"features": x, "feature_lengths": torch.tensor([60, 45])}
    sa.compressor_transform_batch(ctx, batch)
    y = batch["features"]
    assert y.shape == x.shape and torch.equal(y[1, 45:], x[1, 45:])
    assert not torch.equal(y, x) and (torch.diff(y[0, :, 0]) >= -1e-5).all()  # warped, still monotonic


def test_spec_augment_validation(tmp_path: Path, tiny_spec: dict) -> None:
    tiny_spec["stages"][1]["plugins"] = [{"name": "spec_augment", "freq_width": 9, "time_width": 3}]
    with pytest.raises(SpecError, match="freq_width 9 exceeds the data's 8 feature channels"):
        load_spec(write_spec(tmp_path / "a.yaml", tiny_spec))
    tiny_spec["stages"][1]["plugins"] = [{"name": "spec_augment", "freq_width": 3, "time_width": 6}]
    with pytest.raises(SpecError, match=r"time_width 6 is not below the shortest utterance \(6 frames\)"):
        load_spec(write_spec(tmp_path / "b.yaml", tiny_spec))
    tiny_spec["stages"][1]["plugins"] = [{"name": "hidden_masking", "module": "encoder", "time_prob": 1.5}]
    with pytest.raises(SpecError, match=r"plugins\[0\]\.time_prob: expected less than or equal to 1"):
        load_spec(write_spec(tmp_path / "c.yaml", tiny_spec))


def test_token_span_masking_uses_the_model_mask_id_and_spares_special_tokens(tiny_bert: Path) -> None:
    torch.manual_seed(0)
    model = build_hf_text_classifier(HFTextClassifierArgs(path=str(tiny_bert), num_classes=3))
    ctx = make_ctx({"teacher": model}, feature_data([3]))
    tm = build_strategy("token_span_masking", model="teacher", prob=0.1, span=2)
    texts = ["turn on the lights in the kitchen", "stop", "bring me the shoes and socks"] * 30
    fractions = []
    for _ in range(30):
        batch = {"text": texts}
        ctx.scalars = {}
        tm.compressor_transform_batch(ctx, batch)
        ids, lengths = batch["text_ids"], batch["text_id_lengths"]
        plain, _ = model.encode_text(texts)
        changed = ids != plain
        assert (ids[changed] == model.mask_token_id).all()
        special = torch.isin(plain, torch.tensor(model.special_token_ids))
        assert not (changed & special).any()  # [CLS], [SEP] and padding never masked
        fractions.append(ctx.scalars["tokens_masked"])
        real = (~special) & (torch.arange(ids.shape[1])[None] < lengths[:, None])
        assert ctx.scalars["tokens_masked"] == pytest.approx(float(changed.sum()) / float(real.sum()))
    assert 0.08 < float(np.mean(fractions)) < 0.2  # nominal p*M = 0.2, less with overlap and short sentences


def test_token_span_masking_needs_a_mask_id(tmp_path: Path, tiny_bert: Path) -> None:
    spec = text_spec(tmp_path, tiny_bert)
    spec["stages"][1]["plugins"] = [{"name": "token_span_masking", "model": "student"}]
    with pytest.raises(SpecError, match="model 'student' declares no mask token .*: set mask_id"):
        load_spec(write_spec(tmp_path / "a.yaml", spec))
