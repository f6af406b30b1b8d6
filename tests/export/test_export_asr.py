"""Export of CTC and RNN-T models: sherpa-onnx decodes the WAVs as PyTorch does; int8 guarded; report."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest
import soundfile as sf
import torch
from support import REPO
from support.tones import LETTERS, run_isolated, trained_ctc, trained_rnnt

from compressor.core.errors import UserError
from compressor.export.base import ExportJob
from compressor.export.exporter import OnnxExportArgs, OnnxExporter, summary_markdown
from compressor.families.asr.greedy import torch_greedy
from compressor.families.rnnt.export import RNNTExport
from compressor.families.rnnt.task import RNNTTask

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
    st = RNNTExport(model, job, args)._streaming({"kept": False})
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
        from support.tones import _features

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
        from compressor.families.rnnt.export import torch_streaming_greedy

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


def test_export_folder_decodes_with_its_own_example(exported, tmp_path):
    """A device engineer with the export folder alone: its README says how, its example decodes."""
    family, model, data, out, result = exported
    wavs = []
    for i in range(2):
        item = data.dataset("test")[i]
        path = tmp_path / f"utt{i}.wav"
        sf.write(str(path), item["waveform"].numpy(), 16000, subtype="PCM_16")
        wavs.append(str(path))
    import numpy
    import sherpa_onnx

    readme = (out / "README.md").read_text()
    assert "## Decode" in readme and "python transcribe_sherpa.py a.wav" in readme
    assert "recognizer.decode_stream(stream)" in readme
    assert json.loads((out / "model.json").read_text())["decode_example"] == "transcribe_sherpa.py"
    assert out / "transcribe_sherpa.py" in result.files
    here = run_isolated(["transcribe_sherpa.py", *wavs], (sherpa_onnx, numpy, sf), out)
    assert here.returncode == 0, here.stderr
    there = run_isolated([str(REPO / "examples" / "transcribe_sherpa.py"), "--model-dir", str(out), *wavs],
                         (sherpa_onnx, numpy, sf), tmp_path)
    assert there.returncode == 0 and here.stdout == there.stdout and len(here.stdout.splitlines()) == 2


def test_token_lookup_accepts_sherpas_spelling():
    from compressor.export.parity import token_lookup

    ids = token_lookup(["▁", "a", "▁the", "<blk>"])
    assert ids[" "] == 0 and ids["▁"] == 0 and ids[" the"] == 2 and ids["<blk>"] == 3


def test_transcript_parity_failure_is_loud(tmp_path):
    """Features from the wrong front end (kaldi instead of sherpa's NeMo CTC one): a clear UserError."""
    from support.tones import tone_data

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
    from support.tones import tone_data

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


def test_manifest_readme_and_metadata(exported):
    """The export describes itself: model.json, README.md and the same facts in the ONNX metadata."""
    family, model, data, out, result = exported
    m = json.loads((out / "model.json").read_text())
    assert m["format"] == "compressor-export" and m["family"] == family and m["sample_rate"] == 16000
    assert m["blank_id"] == len(data.info["tokens"]) - 1 and m["tokens"] == "tokens.txt"
    want_fe = "nemo_ctc" if family == "ctc" else "nemo_transducer"
    assert m["training_frontend"]["name"] == want_fe
    first = m["artefacts"][0]
    assert m["recommended"] == first["name"] and first["frontend_matches_training"] is True
    assert first["frontend"]["name"] == want_fe and first["frontend"]["window"] in ("povey", "hann")
    assert first["model_type"] == ("nemo_ctc" if family == "ctc" else "nemo_transducer")
    wer = first["figures"]["wer"]
    assert wer["split"] == "test" and wer["utterances"] == 16 and wer["split_size"] == 16
    assert wer["value"] == result.report["transcripts"]["wer_sherpa"]
    if family == "rnnt":
        st = next(a for a in m["artefacts"] if a["name"] == "streaming")
        assert st["frontend"]["name"] == "nemo_online" and st["frontend"]["high_freq_hz"] == 8000
        assert st["frontend_matches_training"] is False and "measured on those features" in st["note"]
        assert st["streaming"]["chunk_frames"] == 24 and st["streaming"]["encoder_frames_per_chunk"] == 8
        assert st["call"] == "sherpa_onnx.OnlineRecognizer.from_transducer"
    readme = (out / "README.md").read_text()
    assert first["python"].replace("'", '"') in readme and "model_type" in readme
    assert "on all 16 test utterances" in readme
    name = "model.onnx" if family == "ctc" else "encoder.onnx"
    meta = ort.InferenceSession(str(out / name)).get_modelmeta().custom_metadata_map
    assert meta["load_call"] == first["python"] and meta["frontend"] == want_fe
    assert meta["sherpa_onnx_model_type"] == first["model_type"] and meta["sample_rate"] == "16000"
    assert meta["blank_id"] == str(m["blank_id"]) and meta["frontend_window"] == first["frontend"]["window"]
    # what sherpa-onnx itself reads is untouched
    assert meta["vocab_size"] and meta["normalize_type"] == ""
    if family == "rnnt":
        smeta = ort.InferenceSession(str(out / "encoder.streaming.onnx")).get_modelmeta().custom_metadata_map
        assert smeta["frontend"] == "nemo_online" and smeta["streaming_chunk_frames"] == "24"
    # every figure of the summary names its split and coverage
    assert "on all 16 test utterances" in result.summary_md and "on all 16 valid utterances" in result.summary_md
    assert "Latency on the first 4 of 16 test utterances" in result.summary_md


LOAD_FROM_MANIFEST = r'''
import json, sys
import numpy as np, soundfile as sf, sherpa_onnx
d = sys.argv[1]
m = json.load(open(d + "/model.json"))
for art in m["artefacts"]:
    cls_name, factory = art["call"].split(".")[-2:]
    make = getattr(getattr(sherpa_onnx, cls_name), factory)
    rec = make(**{k: d + "/" + v for k, v in art["files"].items()}, **art["kwargs"])
    for wav in sys.argv[2:]:
        x, sr = sf.read(wav, dtype="float32")
        s = rec.create_stream()
        if art["streaming"]:
            s.accept_waveform(sr, np.concatenate([x, np.zeros(int(art["streaming"]["tail_padding_seconds"] * sr),
                                                                 dtype=np.float32)]))
            s.input_finished()
            while rec.is_ready(s):
                rec.decode_stream(s)
            toks = rec.tokens(s)
        else:
            s.accept_waveform(sr, x)
            rec.decode_stream(s)
            toks = s.result.tokens
        print(art["name"] + "\t" + "".join(toks))
'''


def test_sherpa_loads_the_model_from_the_manifest_alone(exported, tmp_path):
    """A script that knows nothing but model.json (no file names, no model_type) decodes with every artefact."""
    import numpy
    import sherpa_onnx

    family, model, data, out, result = exported
    wavs, expected = [], []
    for i in range(3):
        item = data.dataset("test")[i]
        path = tmp_path / f"m{i}.wav"
        sf.write(str(path), item["waveform"].numpy(), 16000, subtype="FLOAT")
        wavs.append(str(path))
        expected.append("".join(LETTERS[j] for j in torch_greedy(family, model, item["features"])))
    script = tmp_path / "load.py"
    script.write_text(LOAD_FROM_MANIFEST)
    proc = run_isolated([str(script), str(out), *wavs], (sherpa_onnx, numpy, sf), tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split("\t") for line in proc.stdout.splitlines()]
    names = [a["name"] for a in json.loads((out / "model.json").read_text())["artefacts"]]
    assert [n for n, _ in lines] == [n for n in names for _ in wavs]
    offline = [text for n, text in lines if n == "offline"]
    assert offline == expected  # the recommended (matched) artefact gives the PyTorch transcripts


def test_examples_refuse_a_disagreeing_model_type(exported, tmp_path):
    import numpy
    import sherpa_onnx

    family, model, data, out, result = exported
    path = tmp_path / "a.wav"
    sf.write(str(path), data.dataset("test")[0]["waveform"].numpy(), 16000)
    proc = run_isolated([str(REPO / "examples" / "transcribe_sherpa.py"), "--model-dir", str(out),
                         "--model-type", "transducer", str(path)], (sherpa_onnx, numpy, sf), tmp_path)
    assert proc.returncode == 2 and "--model-type transducer disagrees with the export" in proc.stderr
    assert "Traceback" not in proc.stderr
    right = "nemo_ctc" if family == "ctc" else "nemo_transducer"
    proc = run_isolated([str(REPO / "examples" / "transcribe_sherpa.py"), "--model-dir", str(out),
                         "--model-type", right, str(path)], (sherpa_onnx, numpy, sf), tmp_path)
    assert proc.returncode == 0, proc.stderr
    if family == "rnnt":  # the streaming recognizer computes another front end than the model was trained on
        proc = run_isolated([str(REPO / "examples" / "transcribe_sherpa.py"), "--model-dir", str(out),
                             "--streaming", str(path)], (sherpa_onnx, numpy, sf), tmp_path)
        assert proc.returncode == 0 and "trained on 'nemo_transducer'" in proc.stderr


def test_rnnt_trained_on_the_online_front_end(tmp_path):
    """Trained on sherpa-onnx's online features: the streaming artefact is the matched, recommended one; the
    offline one is checked on the features its recognizer computes and marked as mismatched."""
    from support.tones import tone_data

    data = tone_data("nemo_online", sizes=(64, 12, 12))
    model, task, _ = trained_rnnt(data, steps=250)
    args = OnnxExportArgs(**{**ARGS, "int8": False, "decode_utterances": 12})
    job = ExportJob(model, "student", {"name": "rnnt_lstm"}, task, data, tmp_path, None, None, args)
    rep = OnnxExporter(args).export(job).report
    st, t = rep["streaming"], rep["transcripts"]
    assert st["frontend_matches_training"] is True and st["exact_match_vs_pytorch_streaming"] >= 0.9
    assert t["frontend_matches_training"] is False and t["exact_match"] >= 0.9
    assert t["pytorch_features"].startswith("nemo_transducer")
    # streaming decodes what the offline PyTorch decode of the training features gives
    assert st["match_vs_offline"] >= 0.9 and st["wer_online_sherpa"] <= st["wer_offline_pytorch"] + 0.05
    m = json.loads((tmp_path / "model.json").read_text())
    assert m["recommended"] == "streaming" and m["training_frontend"]["name"] == "nemo_online"
    assert [a["frontend_matches_training"] for a in m["artefacts"]] == [True, False]
    assert "not the one the model was trained on" in (tmp_path / "README.md").read_text()


def test_every_variant_is_rated_for_the_chart(exported):
    """The export chart puts WER against size and latency: every ASR variant has a WER on the same utterances."""
    family, model, data, out, result = exported
    rep = result.report
    quality = rep["benchmark"]["quality"]
    assert quality["metric"] == "wer" and quality["utterances"] == ARGS["decode_utterances"]
    rows = {r["variant"]: r for r in rep["benchmark"]["rows"]}
    t = rep["transcripts"]
    assert rows["student ONNX fp32"]["quality"] == t["wer_sherpa"]
    if t["pytorch_features"] == "data":
        assert rows["student (PyTorch)"]["quality"] == t["wer_pytorch"]
    assert all(0 <= r["quality"] <= 5 for r in rows.values()), rows
    if "student ONNX int8" in rows and rep["int8"]["kept"]:
        # measured on the test utterances of the chart, not the guard's validation ones
        assert abs(rows["student ONNX int8"]["quality"] - rows["student ONNX fp32"]["quality"]) <= 0.2
    if family == "rnnt":
        teacher = rows["teacher (PyTorch)"]["quality"]
        assert teacher > rows["student (PyTorch)"]["quality"]  # 20 steps of training against 250
    header = next(line for line in result.summary_md.splitlines() if line.startswith("| variant |"))
    assert header.endswith("| RTF | WER |")
    assert "| student ONNX fp32 |" in result.summary_md and "Pareto front" in result.summary_md
    assert (out / "export_report.png").stat().st_size > 30_000  # the chart has its three panels


def test_the_example_reports_a_bad_wav_in_one_line(exported, tmp_path):
    """A missing or unreadable WAV: one error line and exit code 2, not a traceback."""
    family, model, data, out, result = exported
    import numpy
    import sherpa_onnx

    bad = tmp_path / "not_audio.wav"
    bad.write_text("this is not a WAV file\n")
    for wav, fragment in ((tmp_path / "missing.wav", "no such file"), (bad, "cannot read the audio")):
        proc = run_isolated([str(REPO / "examples" / "transcribe_sherpa.py"), "--model-dir", str(out), str(wav)],
                            (sherpa_onnx, numpy, sf), tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[-1].startswith(f"error: {wav}: {fragment}"), proc.stderr
