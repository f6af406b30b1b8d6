"""Export of CTC and RNN-T models: sherpa-onnx decodes the WAVs as PyTorch does; int8 guarded; report."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import pytest
import soundfile as sf
import torch
from test_export_fixtures import LETTERS, run_isolated, trained_ctc, trained_rnnt

from compressor.asr.task import RNNTTask
from compressor.errors import UserError
from compressor.export.base import ExportJob
from compressor.export.exporter import OnnxExportArgs, OnnxExporter, summary_markdown
from compressor.export.parity import torch_greedy

REPO = Path(__file__).resolve().parent.parent
ARGS = dict(decode_utterances=16, valid_utterances=16, bench_utterances=4, calibration_utterances=16)


@pytest.fixture(scope="module", params=["ctc", "rnnt"])
def exported(request, tmp_path_factory):
    torch.set_num_threads(1)
    model, task, data = trained_ctc() if request.param == "ctc" else trained_rnnt(steps=250)
    out = tmp_path_factory.mktemp(f"export_{request.param}")
    args = OnnxExportArgs(**ARGS)
    teacher = trained_rnnt(data, steps=20)[0] if request.param == "rnnt" else None
    job = ExportJob(model, "student", {"name": "quartznet" if request.param == "ctc" else "rnnt_lstm"}, task,
                    data, out, None, teacher, args)
    result = OnnxExporter(args).export(job)
    return request.param, model, data, out, result


def test_files_and_metadata(exported):
    family, model, data, out, result = exported
    names = sorted(p.name for p in result.files)
    if family == "rnnt":
        for part in ("encoder", "decoder", "joiner"):
            assert f"{part}.onnx" in names
        meta = ort.InferenceSession(str(out / "encoder.onnx")).get_modelmeta().custom_metadata_map
        assert meta["vocab_size"] == str(len(data.info["tokens"]) - 1)  # NeMo counts without the blank
        assert meta["pred_rnn_layers"] == "1" and meta["subsampling_factor"] == "3"
        assert result.report["streaming"]["exported"]
        assert "encoder.streaming.onnx" in names
        meta = ort.InferenceSession(str(out / "encoder.streaming.onnx")).get_modelmeta().custom_metadata_map
        assert meta["window_size"] == meta["chunk_shift"] == "24" and meta["cache_last_channel_dim1"] == "1"
    else:
        assert "model.onnx" in names
        meta = ort.InferenceSession(str(out / "model.onnx")).get_modelmeta().custom_metadata_map
        assert meta["vocab_size"] == str(len(data.info["tokens"]))
    lines = (out / "tokens.txt").read_text().splitlines()
    assert lines[-1] == f"<blk> {len(lines) - 1}"
    assert (out / "export_report.png").stat().st_size > 1000
    saved = json.loads((out / "export_report.json").read_text())
    assert saved["transcripts"]["exact_match"] == result.report["transcripts"]["exact_match"]


def test_parity_figures(exported):
    family, model, data, out, result = exported
    rep = result.report
    assert all(v < 1e-3 for v in rep["parity"]["max_abs_diff"].values())
    # several batch sizes and time lengths went through every graph
    assert all(len(shapes) >= 3 for shapes in rep["parity"]["shapes"].values())
    t = rep["transcripts"]
    assert t["exact_match"] >= 0.9
    assert t["nonempty_pytorch"] > 0.5  # a model that only emits blanks would make parity trivial
    assert t["wer_pytorch"] < 0.9
    assert abs(t["wer_sherpa"] - t["wer_pytorch"]) <= 0.1
    if family == "rnnt":
        st = rep["streaming"]
        assert st["exact_match_vs_pytorch_streaming"] >= 0.9 and st["max_abs_diff"] < 1e-3
        assert st["match_vs_offline"] >= 0.5  # same model, slightly different (online) front end
        assert st["int8_kept"] == (out / "encoder.streaming.int8.onnx").exists()
        # the report has the same keys whatever the int8 guards decided
        assert {"wer_online_int8", "int8_kept", "int8_reason"} <= set(st)
        if not rep["int8"]["kept"]:
            assert st["int8_kept"] is False and st["wer_online_int8"] is None
    q = rep["int8"]
    assert q["size_int8"] < q["size_fp32"]
    assert q["kept"] == (q["delta"] <= q["tolerance"])
    assert q["kept"] == (out / ("model.int8.onnx" if family == "ctc" else "encoder.int8.onnx")).exists()
    variants = [r["variant"] for r in rep["benchmark"]["rows"]]
    assert "student (PyTorch)" in variants and "student ONNX fp32" in variants
    if family == "rnnt":
        assert "teacher (PyTorch)" in variants
    assert all(r["rtf"] > 0 for r in rep["benchmark"]["rows"])
    assert "| student ONNX fp32 |" in result.summary_md


def test_streaming_report_without_offline_int8(exported, tmp_path):
    """When the offline int8 files were rejected, the streaming report keeps its keys and says why."""
    family, model, data, out, result = exported
    if family != "rnnt":
        pytest.skip("streaming export is RNN-T only")
    copy = tmp_path / "export"
    copy.mkdir()
    for name in ("decoder.onnx", "joiner.onnx", "tokens.txt"):
        (copy / name).write_bytes((out / name).read_bytes())
    args = OnnxExportArgs(**ARGS)
    task = RNNTTask(RNNTTask.Args(), data.info)
    job = ExportJob(model, "student", {"name": "rnnt_lstm"}, task, data, copy, None, None, args)
    st = OnnxExporter(args)._streaming(model, job, copy, 80, args, {"kept": False})
    assert st["int8_kept"] is False and st["wer_online_int8"] is None and "not kept" in st["int8_reason"]
    assert not (copy / "encoder.streaming.int8.onnx").exists()
    report = dict(result.report, streaming=st)
    assert "streaming int8: the offline int8" in summary_markdown(report)


def test_other_lengths_in_onnxruntime(exported):
    family, model, data, out, result = exported
    name = "encoder.onnx" if family == "rnnt" else "model.onnx"
    sess = ort.InferenceSession(str(out / name))
    for t in (9, 64, 333):
        x = torch.randn(2, 80, t) * 3 + torch.tensor(data.info["feature_mean"])[None, :, None]
        lens = torch.tensor([t, max(1, t - 5)])
        got = sess.run(None, {"audio_signal": x.numpy(), "length": lens.numpy()})[0]
        with torch.no_grad():
            if family == "rnnt":
                ref = model.encode(x.transpose(1, 2), lens)[0].transpose(1, 2)
            else:
                ref = model.forward_export(x, lens)
        assert got.shape == tuple(ref.shape)
        assert float((torch.from_numpy(got) - ref).abs().max()) < 1e-3


def test_example_script_without_this_project(exported, tmp_path):
    family, model, data, out, result = exported
    wavs, expected = [], []
    for i in range(3):
        item = data.dataset("test")[i]
        path = tmp_path / f"utt{i}.wav"
        sf.write(str(path), item["waveform"].numpy(), 16000, subtype="PCM_16")
        wavs.append(str(path))
        wave = torch.from_numpy(sf.read(str(path), dtype="float32")[0])
        from test_export_fixtures import _features

        feats = _features(wave, data.info["frontend"])
        expected.append("".join(LETTERS[i] for i in torch_greedy(family, model, feats)))
    # -S: no site module, so no .pth files and no editable-install finder for this project; only the
    # directories holding sherpa_onnx/numpy/soundfile are on the path, cwd is a temp dir.
    import numpy
    import sherpa_onnx

    modules = (sherpa_onnx, numpy, sf)
    check = run_isolated(["-c", "import compressor"], modules, tmp_path)
    assert check.returncode != 0, "the project is importable in the example's subprocess"
    proc = run_isolated([str(REPO / "examples" / "transcribe_sherpa.py"),
                         "--model-dir", str(out), *wavs], modules, tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = [line.split("\t", 1)[1] if "\t" in line else "" for line in proc.stdout.splitlines()]
    assert got == expected
    if family == "rnnt":  # online, 100 ms at a time: the PyTorch streaming decode on the online front end
        from compressor.export.frontend import sherpa_fbank
        from compressor.export.parity import torch_streaming_greedy

        proc = run_isolated([str(REPO / "examples" / "transcribe_sherpa.py"),
                             "--model-dir", str(out), "--streaming", *wavs], modules, tmp_path)
        assert proc.returncode == 0, proc.stderr
        got = [line.split("\t", 1)[1] if "\t" in line else "" for line in proc.stdout.splitlines()]
        want = []
        for path in wavs:
            wave = torch.from_numpy(sf.read(path, dtype="float32")[0])
            wave = torch.cat([wave, torch.zeros(int(0.3 * 16000))])
            ids = torch_streaming_greedy(model, sherpa_fbank(wave, 16000, "nemo_online"), 24)
            want.append("".join(LETTERS[i] for i in ids))
        assert got == want
        if (out / "encoder.streaming.int8.onnx").exists():
            proc = run_isolated([str(REPO / "examples" / "transcribe_sherpa.py"),
                                 "--model-dir", str(out), "--streaming", "--int8", *wavs], modules, tmp_path)
            assert proc.returncode == 0 and len(proc.stdout.splitlines()) == len(wavs), proc.stderr
    if (out / "model.int8.onnx").exists() or (out / "encoder.int8.onnx").exists():
        proc = run_isolated([str(REPO / "examples" / "transcribe_sherpa.py"),
                             "--model-dir", str(out), "--int8", *wavs], modules, tmp_path)
        assert proc.returncode == 0, proc.stderr


def test_token_lookup_accepts_sherpas_spelling():
    from compressor.export.parity import token_lookup

    ids = token_lookup(["▁", "a", "▁the", "<blk>"])
    assert ids[" "] == 0 and ids["▁"] == 0 and ids[" the"] == 2 and ids["<blk>"] == 3


def test_transcript_parity_failure_is_loud(tmp_path):
    """Features from the wrong front end (kaldi instead of sherpa's NeMo CTC one): a clear UserError."""
    from test_export_fixtures import tone_data

    data = tone_data("kaldi", sizes=(64, 8, 8))
    model, task, _ = trained_ctc(data, steps=150)
    args = OnnxExportArgs(**{**ARGS, "int8": False, "min_transcript_match": 1.0})
    job = ExportJob(model, "student", {"name": "quartznet"}, task, data, tmp_path, None, None, args)
    with pytest.raises(UserError, match="parity failed: sherpa-onnx transcripts.*front end"):
        OnnxExporter(args).export(job)


def test_int8_guard_keeps_fp32_when_int8_is_worse(tmp_path, monkeypatch):
    """A damaged 'int8' model (weights scrambled) must be rejected by the accuracy guard and deleted."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from compressor.export import quantize

    def damaged(src, dst, feeds=None):
        proto = onnx.load(str(src))
        rng = np.random.default_rng(0)
        for init in proto.graph.initializer:
            arr = numpy_helper.to_array(init)
            if arr.dtype == np.float32 and arr.size > 16:
                init.CopyFrom(numpy_helper.from_array(rng.standard_normal(arr.shape).astype(np.float32),
                                                      init.name))
        onnx.save(proto, str(dst))
        return dst

    monkeypatch.setattr(quantize, "quantize_static_file", damaged)
    model, task, data = trained_ctc()
    args = OnnxExportArgs(**{**ARGS, "int8_tolerance": 0.0})
    job = ExportJob(model, "student", {"name": "quartznet"}, task, data, tmp_path, None, None, args)
    result = OnnxExporter(args).export(job)
    q = result.report["int8"]
    assert not q["kept"] and q["int8"] > q["fp32"] and "kept fp32 only" in q["reason"]
    assert not (tmp_path / "model.int8.onnx").exists()
    assert all("int8" not in p.name for p in result.files)
    assert "student ONNX int8" not in [r["variant"] for r in result.report["benchmark"]["rows"]]


@pytest.mark.parametrize("family", ["ctc", "rnnt"])
def test_per_feature_normalisation_is_left_to_sherpa(family, tmp_path):
    """Data normalised per utterance: the metadata tells sherpa-onnx to do the same; parity holds."""
    from test_export_fixtures import tone_data

    data = tone_data("nemo_ctc" if family == "ctc" else "nemo", sizes=(64, 12, 12), normalize="per_feature")
    model, task, _ = trained_ctc(data, steps=120) if family == "ctc" else trained_rnnt(data, steps=200)
    args = OnnxExportArgs(**{**ARGS, "int8": False, "decode_utterances": 12})
    job = ExportJob(model, "student", {"name": family}, task, data, tmp_path, None, None, args)
    rep = OnnxExporter(args).export(job).report
    name = "model.onnx" if family == "ctc" else "encoder.onnx"
    meta = ort.InferenceSession(str(tmp_path / name)).get_modelmeta().custom_metadata_map
    assert meta["normalize_type"] == "per_feature" and rep["normalize_type"] == "per_feature"
    assert rep["transcripts"]["exact_match"] >= 0.9 and rep["transcripts"]["nonempty_pytorch"] > 0.5
    if family == "rnnt":
        assert not rep["streaming"]["exported"] and "per_feature" in rep["streaming"]["note"]
