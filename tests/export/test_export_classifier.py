"""Classifier export from fbank to logits + labels.txt, and the onnxruntime-only example on WAV files."""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import soundfile as sf
import torch
from support import REPO
from support.tones import LETTERS, run_isolated, tone_data, train

from compressor.export.base import ExportJob
from compressor.export.exporter import OnnxExportArgs, OnnxExporter
from compressor.families.slu.classifier import SeqClassifierArgs, build_seq_classifier
from compressor.families.slu.task import Classification


def test_classifier_export_and_onnxruntime_example(tmp_path):
    torch.set_num_threads(1)
    data = tone_data("nemo", sizes=(64, 16, 16))  # label = the first tone of the utterance
    torch.manual_seed(0)
    model = build_seq_classifier(SeqClassifierArgs(encoder="conv", hidden=32, layers=2), data.info)
    task = Classification(Classification.Args(), data.info)
    model = train(model, task, data, steps=80, lr=3e-3)
    out = tmp_path / "export"
    out.mkdir()
    args = OnnxExportArgs(bench_utterances=4, calibration_utterances=16)
    job = ExportJob(model, "student", {"name": "seq_classifier"}, task, data, out, None, None, args)
    result = OnnxExporter(args).export(job)
    rep = result.report
    assert rep["family"] == "classifier" and rep["classification"]["agreement"] >= 0.9
    assert (out / "labels.txt").read_text().split() == LETTERS
    assert rep["int8"]["methods"]["model.onnx"].startswith("static")  # conv encoder: calibrated int8
    meta = ort.InferenceSession(str(out / "model.onnx")).get_modelmeta().custom_metadata_map
    assert meta["labels"] == ",".join(LETTERS)

    wavs, expected = [], []
    for i in range(4):
        item = data.dataset("test")[i]
        path = tmp_path / f"u{i}.wav"
        sf.write(str(path), item["waveform"].numpy(), 16000, subtype="FLOAT")
        wavs.append(str(path))
        with torch.no_grad():
            batch = data.collate([item])
            expected.append(LETTERS[int(model(batch)["logits"].argmax())])
    import onnxruntime

    proc = run_isolated([str(REPO / "examples" / "classify_onnxruntime.py"),
                         "--model-dir", str(out), *wavs], (onnxruntime, np, sf), tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = [line.split("\t")[1] for line in proc.stdout.splitlines()]
    assert got == expected
    # the export folder is self-sufficient: its own copy of the example, run from the folder, no --model-dir
    readme = (out / "README.md").read_text()
    assert "## Decode" in readme and "python classify_onnxruntime.py a.wav" in readme and "fbank(" in readme
    proc = run_isolated(["classify_onnxruntime.py", *wavs], (onnxruntime, np, sf), out)
    assert proc.returncode == 0, proc.stderr
    assert [line.split("\t")[1] for line in proc.stdout.splitlines()] == expected

    # the front end comes from the export: a --frontend that disagrees is refused, one that agrees accepted
    import json

    manifest = json.loads((out / "model.json").read_text())
    assert manifest["training_frontend"]["name"] == "nemo_transducer" and manifest["labels"] == "labels.txt"
    art = manifest["artefacts"][0]
    assert art["runtime"] == "onnxruntime" and art["frontend_computed_by"] == "caller"
    assert art["figures"]["accuracy"]["split"] == "test" and art["figures"]["accuracy"]["utterances"] == 16
    assert meta["frontend"] == "nemo_transducer" and meta["frontend_window"] == "povey"
    proc = run_isolated([str(REPO / "examples" / "classify_onnxruntime.py"), "--model-dir", str(out),
                         "--frontend", "kaldi", *wavs[:1]], (onnxruntime, np, sf), tmp_path)
    assert proc.returncode == 2 and "--frontend kaldi disagrees with the export" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_isolated([str(REPO / "examples" / "classify_onnxruntime.py"), "--model-dir", str(out),
                         "--frontend", "nemo", *wavs[:1]], (onnxruntime, np, sf), tmp_path)
    assert proc.returncode == 0 and proc.stdout.split("\t")[1] == expected[0]


def test_numpy_frontend_matches_the_data_layer():
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import classify_onnxruntime as ex
    finally:
        sys.path.pop(0)
    from compressor.data.features import fbank

    wave = torch.randn(12345).mul(0.1)
    for frontend in ("nemo", "nemo_ctc", "nemo_online", "kaldi"):
        ref = fbank(wave, 16000, frontend=frontend).numpy()
        got = ex.fbank(wave.numpy(), frontend)
        assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-3
