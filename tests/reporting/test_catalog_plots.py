"""What ``compressor plugins`` shows of each argument, and the choices behind the run plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field
from support.reliability import cli, one_line

from compressor.cli import main
from compressor.reporting.catalog import choices, schema_rows, type_text, yaml_value
from compressor.run.plots import collect, log_scale, noisy, panels, write_plots


class Pair(BaseModel):
    teacher: list[str]
    student: str


class Example(BaseModel):
    loss: Literal["kl", "mse"] = "kl"
    preset: Literal["a", "b"] | None = None
    alpha: float | Literal["complement"] = 1.0
    layers: int = Field(default=2, ge=1, le=8)
    groups: list[Pair] | None = None
    weight: dict = Field(default_factory=lambda: {"name": "constant", "value": 1.0})
    name: str


def test_types_read_as_a_spec_is_written() -> None:
    rows = {r["name"]: r for r in schema_rows(Example)}
    assert rows["loss"]["type"] == "kl | mse" and rows["loss"]["choices"] == ["kl", "mse"]
    assert rows["preset"]["type"] == "a | b | null" and rows["preset"]["choices"] == ["a", "b", None]
    assert rows["alpha"]["type"] == "float | complement" and rows["alpha"]["choices"] == ["complement"]
    assert rows["layers"]["bounds"] == ">= 1, <= 8"
    assert rows["groups"]["type"] == "list[{teacher: list[str], student: str}] | null"
    assert yaml_value(rows["weight"]["default"]) == "{name: constant, value: 1.0}"
    assert rows["name"]["required"] and not rows["loss"]["required"]
    assert type_text(int | None) == "int | null" and choices(int) is None


def test_plugins_lists_choices_optimizers_and_lr_schedules(capsys) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "      loss: kl | mse | l1 | smooth_l1 = kl" in out
    assert "      alpha: float | complement = 1.0" in out
    assert "preset: exp1_teacher | exp1_student | exp2_teacher | exp2_student | null = null" in out
    optimizers = out.split("  optimizers:\n", 1)[1].split("\n  LR schedules:", 1)[0]
    for name in ("adamw", "adam", "sgd", "novograd", "lamb"):
        assert f"\n    {name}: " in "\n" + optimizers, name
    schedules = out.split("  LR schedules:\n", 1)[1]
    for name in ("constant", "cosine", "linear", "exponential"):
        assert f"    {name}: " in schedules, name
    assert main(["plugins", "--kind", "optimizer", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    kinds = {c["kind"] for p in listing for c in p["components"]}
    assert kinds == {"optimizer"}
    assert main(["plugins", "logit_kd"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("logit_kd  (compressor") and "optimizers" not in out
    code, err = cli(capsys, "plugins", "logit_kdd")
    assert code == 2 and "did you mean 'logit_kd'?" in one_line(err)


def _records(losses: list[float], kd: list[float] | None = None) -> list[dict]:
    out = []
    for i, value in enumerate(losses):
        rec = {"stage": "s0" if i < len(losses) // 2 else "s1", "stage_index": 0 if i < len(losses) // 2 else 1,
               "step": i + 1 if i < len(losses) // 2 else i + 1 - len(losses) // 2, "lr": 0.001 / (1 + i),
               "loss/task": value}
        total = value
        if kd is not None:
            rec["loss/kd"] = kd[i]
            rec["weight/kd"] = 0.5 + 0.1 * i  # a schedule: constant weights are not plotted
            rec["kd_weight"] = 0.5 + 0.1 * i
            total += (0.5 + 0.1 * i) * kd[i]
        rec["loss/total"] = total
        out.append(rec)
    out.append({"type": "eval", "stage": "s1", "stage_index": 1, "step": len(losses) // 2, "valid/wer": 0.3})
    return out


def test_repeated_series_are_left_out() -> None:
    series, spans = collect(_records([3.0, 2.0, 1.5, 1.2]))
    assert "loss/total" not in series and "loss/task" in series  # one term: total repeats it
    series, _ = collect(_records([3.0, 2.0, 1.5, 1.2], kd=[1.0, 0.8, 0.7, 0.6]))
    assert {"loss/total", "loss/task", "loss/kd", "kd_weight"} <= set(series)
    assert "weight/kd" not in series  # the strategy logs the same values as kd_weight
    assert spans == [("s0", 0, 2), ("s1", 2, 4)]
    assert [title for title, _ in panels(series)] == ["training losses", "validation metrics", "learning rate",
                                                     "scheduled values"]


def test_log_scale_and_smoothing_choices() -> None:
    assert log_scale([540.0] + [2.0] * 50)  # one spike must not flatten the converged region
    assert not log_scale([3.0, 2.0, 1.5])
    assert not log_scale([540.0, 0.0, 2.0])  # zero or below: no log axis
    assert noisy([1.0, 2.0] * 40) and not noisy([float(i) for i in range(80)])


def test_write_plots(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in _records([540.0] + [2.0 + (i % 3) * 0.1 for i in range(79)])]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    names = {p.name for p in write_plots(tmp_path)}
    assert names == {"loss_task.png", "lr.png", "valid_wer.png", "overview.png"}
    assert (tmp_path / "plots" / "overview.png").stat().st_size > 20_000


@pytest.mark.parametrize("value,text", [(None, "null"), ("kl", "kl"), ([1, 2], "[1, 2]"), ((0.9, 0.999),
                                                                                             "[0.9, 0.999]")])
def test_yaml_values(value, text) -> None:
    assert yaml_value(value) == text


def test_schedule_or_number_arguments_read_as_such() -> None:
    from compressor.reporting.catalog import catalog

    rows = {(c["name"], a["name"]): a for p in catalog() for c in p["components"] for a in c.get("args", [])}
    for key in (("logit_kd", "weight"), ("logit_kd", "gamma"), ("module_replacing", "replacing_rate")):
        assert rows[key]["type"].startswith("number | schedule"), rows[key]
    from compressor.plugins import get_registry

    entry = get_registry().get("strategy", "logit_kd")
    assert entry.args.model_validate({"weight": 0.5}).weight.name == "constant"  # a number is a constant


def test_the_student_alone_lies_over_the_stage_it_repeats(tmp_path) -> None:
    """The student trained alone runs its stages with indices 0, 1 again: the plots place them by name, over the
    stage they repeat (same steps, so the two curves compare step for step), drawn as a second, dashed series."""
    from compressor.run.plots import split_alone, stage_offsets

    records = [{"stage": s, "stage_index": i, "step": n} for s, i, n in
               (("teacher", 0, 100), ("lcmr", 1, 60), ("finetune", 2, 20), ("lcmr_alone", 0, 60),
                ("finetune_alone", 1, 20))]
    offsets, spans = stage_offsets(records)
    assert offsets == {"teacher": 0, "lcmr": 100, "finetune": 160, "lcmr_alone": 100, "finetune_alone": 160}
    assert spans == [("teacher", 0, 100), ("lcmr", 100, 160), ("finetune", 160, 180)]
    own, alone = split_alone({"lcmr": [(110, 0.5)], "lcmr_alone": [(110, 0.6)]})
    assert own == {"lcmr": [(110, 0.5)]} and alone == {"lcmr_alone": [(110, 0.6)]}
