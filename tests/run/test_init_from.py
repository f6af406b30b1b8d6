"""init_from: partial loading by name and shape (a new alphabet gets a new decoder), the report in the summary,
pre-training specs run once and reused, and bad sources refused at validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from support import SPECS, write_spec

from compressor.core.checkpoint import load_state_dict_file
from compressor.core.errors import SpecError
from compressor.plugins import get_plugins
from compressor.run.components import build_data, build_models
from compressor.run.engine import run_spec
from compressor.spec import load_spec


def tiny_ctc(tmp_path: Path, **changes: object) -> dict:
    spec = yaml.safe_load((SPECS / "tiny_ctc.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    spec["stages"][0]["steps"] = 2
    spec.update(changes)
    return spec


class Opaque:
    """Not a tensor: torch.load(weights_only=True) refuses to build it."""


@pytest.fixture(scope="module")
def english_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("english")
    return run_spec(write_spec(tmp / "en.yaml", tiny_ctc(tmp, name="english")))


def german(tmp_path: Path, init_from: dict) -> dict:
    spec = tiny_ctc(tmp_path, name="german")
    spec["data"]["language"] = "de"
    spec["student"]["init_from"] = init_from
    return spec


def test_new_alphabet_loads_the_encoder_and_reinitialises_the_decoder(tmp_path: Path, english_run: Path) -> None:
    path = write_spec(tmp_path / "de.yaml", german(tmp_path, {"run": str(english_run)}))
    plugins = get_plugins()
    loaded = load_spec(path)
    data = build_data(loaded, plugins)
    assert len(data.info["tokens"]) == 33  # German: 31 letters, space, blank (English has 29)
    reports: dict = {}
    model = build_models(loaded, plugins, data, reports)["student"]
    fresh = build_models(loaded, plugins, data)["student"].state_dict()  # the same seeded initialisation
    english = load_state_dict_file(english_run / "final" / "student.pt")
    state = model.state_dict()
    rep = reports["student"]
    assert set(rep["loaded"]) == set(state) - {"decoder.weight", "decoder.bias"}
    for key in rep["loaded"]:
        assert torch.equal(state[key], english[key]), key
    assert [s["key"] for s in rep["skipped"]] == ["decoder.weight", "decoder.bias"]
    assert "shape (29, 64, 1) in the source, (33, 64, 1) here" in rep["skipped"][0]["reason"]
    for key in ("decoder.weight", "decoder.bias"):
        assert torch.equal(state[key], fresh[key]) and not torch.equal(state[key], fresh[key] * 0)
    assert rep["parameters_loaded"] == rep["parameters"] - 33 * 64 - 33


def test_the_run_writes_the_table_into_its_summary(tmp_path: Path, english_run: Path) -> None:
    spec = german(tmp_path, {"run": str(english_run), "exclude": ["encoder.layers.7"]})
    run_dir = run_spec(write_spec(tmp_path / "de.yaml", spec))
    summary = (run_dir / "summary.md").read_text()
    assert "## Initialisation (init_from)" in summary
    assert "| encoder.layers.0 | 7 | 0 | 0 |  |" in summary  # C1: 2 convs and a batch norm (5 tensors)
    assert "| encoder.layers.7 | 0 | 6 | 6 | excluded |" in summary  # C3: 1 conv and a batch norm
    assert "| decoder | 0 | 2 | 2 | shape (29, 64, 1) in the source, (33, 64, 1) here; shape (29,) in the " \
           "source, (33,) here |" in summary
    report = json.loads((run_dir / "init_from.json").read_text())
    assert report["student"]["source"] == str(english_run / "final" / "student.pt")


def test_a_pretraining_spec_runs_once_and_is_reused(tmp_path: Path) -> None:
    pre = write_spec(tmp_path / "pre.yaml", tiny_ctc(tmp_path / "ignored", name="pre"))
    spec = tiny_ctc(tmp_path, name="fine")
    spec["student"]["init_from"] = {"spec": str(pre), "set": ["seed=5"], "include": ["encoder"]}
    path = write_spec(tmp_path / "fine.yaml", spec)
    first, second = run_spec(path), run_spec(path)
    pre_runs = sorted((tmp_path / "runs" / "pre").glob("*/final/COMPLETE"))
    assert len(pre_runs) == 1  # in the fine-tuning spec's output_dir, run once, reused the second time
    assert yaml.safe_load((pre_runs[0].parent.parent / "resolved_spec.yaml").read_text())["seed"] == 5
    for run_dir in (first, second):
        rep = json.loads((run_dir / "init_from.json").read_text())["student"]
        assert rep["source"].startswith(str(pre_runs[0].parent.parent))
        assert all(k.startswith("encoder.") for k in rep["loaded"])
        assert {s["key"].split(".")[0] for s in rep["skipped"]} == {"cmvn_mean", "cmvn_std", "decoder"}


@pytest.mark.parametrize("init, message", [
    ({"run": "nowhere"}, "run directory not found"),
    ({"run": "RUN", "include": ["encoder.layer.*"]}, "include pattern 'encoder.layer.\\*' matches no weight of "
                                                     "the source; did you mean 'encoder.layers"),
    ({"run": "RUN", "include": ["decoder"]}, "included weight 'decoder.weight' has shape \\(29, 64, 1\\) in the "
                                            "source but \\(33, 64, 1\\)"),
    ({"run": "RUN", "exclude": ["*"]}, "loads no weight: the source has cmvn_mean, cmvn_std, decoder, encoder"),
    ({"checkpoint": "OTHER"}, "loads no weight: the source has proj; this model has cmvn_mean, cmvn_std, "
                              "decoder, encoder \\(no name in common\\)"),
    ({"checkpoint": "PICKLE"}, "cannot load checkpoint"),
    ({"run": "RUN", "checkpoint": "OTHER"}, "exactly one of 'run', 'checkpoint' or 'spec'"),
    ({"run": "RUN", "model": "teacher"}, "has no model 'teacher'"),
])
def test_bad_sources_are_refused_at_validation(tmp_path: Path, english_run: Path, init: dict, message: str
                                               ) -> None:
    torch.save({"proj.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    torch.save({"model": Opaque()}, tmp_path / "pickle.pt")  # an arbitrary object: refused by weights_only
    names = {"RUN": str(english_run), "OTHER": str(tmp_path / "other.pt"), "PICKLE": str(tmp_path / "pickle.pt")}
    init = {k: names.get(v, v) if isinstance(v, str) else v for k, v in init.items()}
    with pytest.raises(SpecError, match=message) as err:
        load_spec(write_spec(tmp_path / "de.yaml", german(tmp_path, init)))
    assert "student.init_from" in str(err.value)


def test_checkpoint_and_init_from_together_are_refused(tmp_path: Path, english_run: Path) -> None:
    spec = german(tmp_path, {"run": str(english_run)})
    spec["student"]["checkpoint"] = str(english_run / "final" / "student.pt")
    with pytest.raises(SpecError, match="either 'checkpoint'.*or 'init_from'"):
        load_spec(write_spec(tmp_path / "de.yaml", spec))
