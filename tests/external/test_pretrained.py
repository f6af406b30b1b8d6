"""Shipped models: ``compressor teacher ship`` writes a finished run's model as model.safetensors + model.json, and
``{name: pretrained, path | id}`` uses it as any spec's model (here the frozen teacher of module replacing)."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from support import run_cli, write_spec
from support.tones import write_tone_corpus

from compressor.core.errors import SpecError, UserError

TEACHER = {"name": "rnnt_lstm", "size": "tiny", "encoder_layers": 2, "pred_layers": 2}
STUDENT = {"name": "rnnt_lstm", "size": "tiny", "encoder_layers": 1, "pred_layers": 1}


def _spec(root: Path, corpus: Path, name: str, teacher: dict, stage: dict, frontend: str = "nemo") -> dict:
    return {"name": name, "seed": 0, "output_dir": str(root / "runs" / name), "task": {"name": "rnnt"},
            "data": {"name": "nemo_manifest", "train": str(corpus / "train.jsonl"),
                     "valid": str(corpus / "valid.jsonl"), "test": str(corpus / "test.jsonl"), "frontend": frontend},
            "teacher": teacher, "student": STUDENT, "trainer": {"progress_bar": False, "threads": 1},
            "stages": [{"batch_size": 8, "optimizer": {"name": "adamw", "lr": 0.003}, **stage}],
            "evaluate": {"split": "test", "models": ["teacher", "student"] if "lcmr" in name else ["teacher"]}}


def _lcmr(root: Path, corpus: Path, teacher: dict, **kw) -> dict:
    return _spec(root, corpus, "tiny_lcmr", teacher, {
        "name": "lcmr", "train": ["student"], "frozen": ["teacher"], "steps": 4,
        "plugins": [{"name": "module_replacing", "teacher": "teacher", "student": "student",
                     "containers": ["encoder.layers", "predictor.layers"], "replacing_rate": {"name": "linear"}}]},
        **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(root, tone corpus, run directory of a tiny RNN-T teacher trained for 3 steps)."""
    from compressor.run.engine import run_spec

    root = tmp_path_factory.mktemp("pretrained")
    corpus = write_tone_corpus(root / "tones")
    spec = _spec(root, corpus, "tiny_rnnt", TEACHER, {"name": "teacher", "train": ["teacher"], "steps": 3})
    return root, corpus, run_spec(write_spec(root / "teacher.yaml", spec))


@pytest.fixture(scope="module")
def shipped(trained: tuple[Path, Path, Path]) -> Path:
    root, _, run_dir = trained
    out = root / "shipped" / "tiny_tone"
    done = run_cli("teacher", "ship", str(run_dir), "--model", "teacher", "--name", "tiny_tone", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert str(out) in done.stdout and "pretrained" in done.stdout
    return out


def _safetensors_header(path: Path) -> dict:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n])


def test_ship_writes_safetensors_description_and_tokenizer_and_no_pickle(trained, shipped):
    _, _, run_dir = trained
    assert sorted(p.name for p in shipped.iterdir()) == ["model.json", "model.safetensors", "tokens.txt"]
    for f in shipped.iterdir():
        head = f.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK", f"{f.name} is a pickle or a torch zip"
    header = _safetensors_header(shipped / "model.safetensors")
    dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    assert "F32" in dtypes and not dtypes & {"F16", "BF16", "F64"}
    desc = json.loads((shipped / "model.json").read_text())
    assert desc["family"] == "rnnt_lstm" and desc["args"]["encoder_layers"] == 2
    assert desc["weights"]["sha256"] == hashlib.sha256((shipped / "model.safetensors").read_bytes()).hexdigest()
    results = json.loads((run_dir / "final" / "COMPLETE").read_text())
    assert desc["parameters"] == results["parameters"]["teacher"]
    assert desc["trained"]["spec"] == "tiny_rnnt" and desc["trained"]["steps"] == 3
    assert desc["trained"]["final"]["test"]["wer"] == results["final"]["teacher"]["test/wer"]
    assert desc["tokenizer"]["files"] == {"tokens_file": "tokens.txt"}
    assert desc["info"]["tokens_file"] == "tokens.txt"  # the run's own path is not recorded


def test_ship_refuses_a_missing_model_and_an_existing_folder(trained, shipped, tmp_path):
    _, _, run_dir = trained
    done = run_cli("teacher", "ship", str(run_dir), "--model", "teachr", "--name", "x", "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and "final/teachr.pt" in done.stderr and "teacher" in done.stderr
    assert not (tmp_path / "x").exists()
    done = run_cli("teacher", "ship", str(run_dir), "--model", "teacher", "--name", "tiny_tone", "--out",
                   str(shipped))
    assert done.returncode == 2 and "already exists" in done.stderr and "--force" in done.stderr
    done = run_cli("teacher", "ship", str(run_dir), "--model", "teacher", "--name", "a/b")
    assert done.returncode == 2 and "--name" in done.stderr
    done = run_cli("teacher", "ship", str(run_dir.parent), "--model", "teacher", "--name", "x", "--out",
                   str(tmp_path / "x"))
    assert done.returncode == 2 and "holds runs, not a run" in done.stderr and str(run_dir) in done.stderr


def test_the_shipped_model_gives_the_outputs_of_the_original(trained, shipped):
    from compressor.core.describe import load_described, read_description
    from compressor.external.pretrained import PretrainedArgs, build_pretrained
    from compressor.plugins import get_plugins

    _, _, run_dir = trained
    weights = run_dir / "final" / "teacher.pt"
    original = load_described(weights, read_description(weights), get_plugins().registry, "original")
    loaded = build_pretrained(PretrainedArgs(path=str(shipped)))
    assert type(loaded) is type(original)  # the family's own module: module names, export unit and keys as trained
    g = torch.Generator().manual_seed(0)
    batch = {"features": torch.randn(2, 40, 80, generator=g), "feature_lengths": torch.tensor([40, 31]),
             "tokens": torch.randint(0, 28, (2, 3), generator=g), "token_lengths": torch.tensor([3, 2])}
    with torch.no_grad():
        a, b = original(batch), loaded(batch)
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key


def test_lcmr_with_the_shipped_teacher_runs_and_the_run_evaluates(trained, shipped):
    from safetensors.torch import load_file

    from compressor.run.engine import run_spec
    from compressor.run.finished import evaluate_run

    root, corpus, _ = trained
    run_dir = run_spec(write_spec(root / "lcmr.yaml", _lcmr(root, corpus, {"name": "pretrained",
                                                                           "path": str(shipped)})))
    final_teacher = torch.load(run_dir / "final" / "teacher.pt", weights_only=True)
    for key, value in load_file(str(shipped / "model.safetensors")).items():  # frozen: untouched
        assert torch.equal(final_teacher[key], value), key
    desc = json.loads((run_dir / "final" / "teacher.model.json").read_text())
    assert desc["family"] == "rnnt_lstm" and desc["args"]["encoder_layers"] == 2  # loads without the folder
    results = json.loads((run_dir / "final" / "COMPLETE").read_text())
    again = evaluate_run(run_dir, "test", ["teacher"])
    assert again["teacher"]["wer"] == results["final"]["teacher"]["test/wer"]
    assert again["teacher"]["loss"] == pytest.approx(results["final"]["teacher"]["test/loss"], rel=1e-5)
    done = run_cli("export", str(run_dir), "--model", "teacher", "--out", str(root / "teacher_export"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert any((root / "teacher_export").rglob("*.onnx"))


def test_changed_or_missing_weights_are_refused_naming_the_file(trained, shipped, tmp_path):
    from compressor.external.pretrained import PretrainedArgs, build_pretrained

    root, corpus, _ = trained
    tampered = tmp_path / "tampered"
    shutil.copytree(shipped, tampered)
    raw = bytearray((tampered / "model.safetensors").read_bytes())
    raw[-3] ^= 1
    (tampered / "model.safetensors").write_bytes(bytes(raw))
    spec = write_spec(tmp_path / "tampered.yaml", _lcmr(tmp_path, corpus, {"name": "pretrained",
                                                                          "path": str(tampered)}))
    assert run_cli("validate", str(spec)).returncode == 0  # validation reads model.json only
    done = run_cli("run", str(spec))
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{tampered / 'model.safetensors'}: SHA-256 does not match" in done.stderr
    assert "Traceback" not in done.stderr
    (tampered / "model.safetensors").unlink()
    with pytest.raises(UserError, match="model.safetensors is missing"):
        build_pretrained(PretrainedArgs(path=str(tampered)))
    with pytest.raises(SpecError, match=r"at teacher: .*no such shipped model folder"):
        from compressor.spec import load_spec

        load_spec(write_spec(tmp_path / "none.yaml", _lcmr(tmp_path, corpus, {"name": "pretrained",
                                                                             "path": str(tmp_path / "none")})))


def test_data_that_does_not_fit_the_shipped_model_is_refused_naming_the_keys(trained, shipped, tmp_path):
    from compressor.external.pretrained import PretrainedArgs, build_pretrained
    from compressor.spec import load_spec

    _, corpus, _ = trained
    spec = _lcmr(tmp_path, corpus, {"name": "pretrained", "path": str(shipped)}, frontend="kaldi")
    with pytest.raises(SpecError, match=r"at teacher\.path: .*\(data\.frontend\).*'nemo'.*'kaldi'"):
        load_spec(write_spec(tmp_path / "kaldi.yaml", spec))
    desc = json.loads((shipped / "model.json").read_text())
    other = {**desc["info"], "tokens": desc["units"][:-2] + ["z", "<blk>"]}
    with pytest.raises(UserError, match=r"path: .*\(data\.tokenizer\).*first difference at index 27"):
        build_pretrained(PretrainedArgs(path=str(shipped)), info=other)


def test_id_names_a_folder_shipped_with_the_package(shipped, tmp_path, monkeypatch):
    import compressor.external.pretrained as pretrained
    from compressor.core.registry import validate_model

    package = tmp_path / "package_pretrained"
    shutil.copytree(shipped, package / "tiny_tone")
    monkeypatch.setattr(pretrained, "PACKAGE_DIR", package)
    model = pretrained.build_pretrained(pretrained.PretrainedArgs(id="tiny_tone"))
    assert sum(p.numel() for p in model.parameters()) == json.loads((shipped / "model.json").read_text())[
        "parameters"]
    assert pretrained.units(pretrained.PretrainedArgs(id="tiny_tone"))[-1] == "<blk>"
    with pytest.raises(SpecError, match=r"at teacher: .*no shipped model 'tiny' .*shipped: tiny_tone"):
        validate_model(pretrained.PretrainedArgs, {"id": "tiny"}, ("teacher",))
    with pytest.raises(SpecError, match="not a folder name"):
        validate_model(pretrained.PretrainedArgs, {"id": "../tiny_tone"}, ("teacher",))
    with pytest.raises(SpecError, match="exactly one of 'id'"):
        validate_model(pretrained.PretrainedArgs, {"id": "tiny_tone", "path": str(shipped)}, ("teacher",))


def test_package_data_carries_every_file_a_shipped_folder_holds():
    import fnmatch

    import tomllib
    from support import REPO

    from compressor.core.shipped import DESCRIPTION, TOKENIZER_FILES, WEIGHTS

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["compressor"]
    for name in (DESCRIPTION, WEIGHTS, *TOKENIZER_FILES.values()):
        assert any(fnmatch.fnmatch(f"pretrained/rnnt_read_speech_en/{name}", p) for p in patterns), name
