"""What an LCMR run actually trained: parameters moved per phase, replacing rate reached, shared parts, LR.

    python benchmarks/seed002_lcmr/lcmr_diagnosis.py RUN_DIR [RUN_DIR ...]

For each finished run of a spec with a ``module_replacing`` stage (the old two-stage headline, module
replacing then a separate fine-tuning stage, or the single stage with a ``finetune`` phase):

* **which parameters move**: the student's weights are rebuilt as the run initialised them (same seed) and
  compared with the weights handed over by the module-replacing stage (``checkpoints/<stage>-best.pt``) and
  with the final weights, per parameter group: the student modules that replace teacher groups (LSTM layers)
  and the parts shared with the teacher (embedding, projections, joint network), as ``|w_b - w_a| / |w_a|``;
* **shared parts**: whether the student's shared parts equal the teacher's at each point;
* **replacing rate**: the first step at which p = 1, the share of the module-replacing steps spent at p = 1
  with the teacher's shared parts still frozen in the hybrid (strategy 2), the mean p and the mean share of
  student modules drawn;
* **learning rate**: per stage, the LR at its first steps, peak and end, next to seed 002's Sec. 4 shape
  (linear warm-up, constant, exponential decay over one schedule across module replacing and fine-tuning).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch


def _groups(keys: list[str], paired: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k in keys:
        if k.startswith(paired):
            name = "replacing modules: " + ".".join(k.split(".")[:3])
        else:
            name = "shared: " + ".".join(k.split(".")[:-1])
        out.setdefault(name, []).append(k)
    return out


def _rel(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys: list[str]) -> float:
    num = sum(float((b[k].float() - a[k].float()).pow(2).sum()) for k in keys)
    den = sum(float(a[k].float().pow(2).sum()) for k in keys)
    return (num ** 0.5) / max(den ** 0.5, 1e-12)


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys: list[str]) -> bool:
    return all(k in b and torch.equal(a[k], b[k]) for k in keys)


def diagnose(run_dir: Path) -> tuple[str, dict[str, Any]]:
    from compressor.core.checkpoint import load_checkpoint
    from compressor.core.rundir import read_metrics
    from compressor.plugins import get_plugins
    from compressor.run.components import build_data, build_models
    from compressor.spec import load_spec
    from plugins.module_replacing import ModuleReplacing

    plugins = get_plugins()
    loaded = load_spec(run_dir / "resolved_spec.yaml", registry=plugins.registry, check_machine=False)
    spec = loaded.spec
    mr_index = next(i for i, s in enumerate(spec.stages) if any(p.name == "module_replacing" for p in s.plugins))
    mr_stage = spec.stages[mr_index]
    mr_args = next(a for p, a in zip(mr_stage.plugins, loaded.stages[mr_index].plugin_args)
                   if p.name == "module_replacing")
    data = build_data(loaded, plugins)
    models = build_models(loaded, plugins, data)  # the initial weights of the run (seeded), teacher from its ckpt
    strategy = ModuleReplacing(mr_args)
    teacher_m, student_m = models[mr_args.teacher], models[mr_args.student]
    if mr_index > 0:  # the teacher was trained by an earlier stage of this run: take its final weights
        teacher_m.load_state_dict(load_checkpoint(run_dir / "final" / f"{mr_args.teacher}.pt"))
    pairings = strategy.pairings(teacher_m, student_m)
    paired = tuple(p + "." for g in pairings for p in g.student)
    init = {k: v.clone() for k, v in student_m.state_dict().items()}
    teacher = teacher_m.state_dict()
    best_path = run_dir / "checkpoints" / f"{mr_stage.name}-best.pt"
    if not best_path.exists():
        raise SystemExit(f"{run_dir}: no {best_path.relative_to(run_dir)}, so the weights the module-replacing stage "
                         f"handed over were not kept (the stage never evaluated, or its handoff is 'last'); "
                         f"give it eval.every")
    best = load_checkpoint(best_path)
    after_mr = best["models"][mr_args.student]
    final = load_checkpoint(run_dir / "final" / f"{mr_args.student}.pt")
    keys = [k for k in init if init[k].is_floating_point()]
    groups = _groups(keys, paired)
    strategy2 = mr_args.teacher in mr_stage.frozen
    two_stage = len(spec.stages) > mr_index + 1
    records = read_metrics(run_dir)
    steps = [r for r in records if r.get("stage") == mr_stage.name and "type" not in r]
    rates = [float(r.get("replacing_rate", 0.0)) for r in steps]
    used = [float(r.get("student_modules_used", 0.0)) for r in steps]
    first_one = next((i + 1 for i, p in enumerate(rates) if p >= 1.0 - 1e-9), None)
    ft_frac = float(getattr(mr_args, "finetune", 0.0))
    ft_start = round((1 - ft_frac) * len(steps)) if ft_frac > 0 else len(steps)
    at_one_frozen = sum(1 for i, p in enumerate(rates) if p >= 1.0 - 1e-9 and i < ft_start)
    lr_rows = []
    for st in spec.stages:
        lrs = [float(r["lr"]) for r in records if r.get("stage") == st.name and "type" not in r and "lr" in r]
        if lrs:
            lr_rows.append((st.name, len(lrs), lrs[0], max(lrs), lrs[-1], st.optimizer.name))
    name = f"{spec.name} ({run_dir.name})"
    lines = [f"### {name}", "",
             f"Strategy {'2 (teacher frozen)' if strategy2 else '1 (teacher trained too)'}; module replacing "
             f"stage `{mr_stage.name}` of {len(steps)} steps"
             + (f", then {len(spec.stages) - mr_index - 1} separate fine-tuning stage(s)" if two_stage else "")
             + (f", last {ft_frac:.0%} of it fine-tuning the student alone" if ft_frac > 0 else "") + ".", "",
             "| student parameter group | tensors | moved in module replacing (init -> hand-over) | "
             "moved afterwards (hand-over -> final) | = teacher's after module replacing | = teacher's at the end |",
             "|---|---:|---:|---:|---|---|"]
    summary: dict[str, Any] = {"run": str(run_dir), "groups": {}}
    for g, ks in sorted(groups.items()):
        shared = g.startswith("shared")
        eq_mr = _equal(after_mr, teacher, ks) if shared else False
        eq_end = _equal(final, teacher, ks) if shared else False
        a, b = _rel(init, after_mr, ks), _rel(after_mr, final, ks)
        summary["groups"][g] = {"moved_mr": a, "moved_after": b, "teacher_after_mr": eq_mr, "teacher_end": eq_end}
        lines.append(f"| {g} | {len(ks)} | {a:.3f} | {b:.3f} | {'yes' if eq_mr else 'no' if shared else '-'} | "
                     f"{'yes' if eq_end else 'no' if shared else '-'} |")
    mean_p = sum(rates) / max(1, len(rates))
    lines += ["", f"- replacing rate: p0 = {rates[0]:.3f}, p = 1 first at step {first_one} of {len(steps)}; "
              f"mean p {mean_p:.3f}; mean share of student modules drawn {sum(used) / max(1, len(used)):.3f}",
              f"- module-replacing steps at p = 1 while the hybrid still runs the teacher's frozen shared parts: "
              f"{at_one_frozen} ({at_one_frozen / max(1, len(steps)):.0%} of the stage)"
              + (" — the student's own embedding, projections and joint network do not train there" if strategy2
                 else ""),
              "- learning rate per stage (steps, first, peak, last, optimizer): "
              + "; ".join(f"`{n}` {k} steps {a:.2e} / {m:.2e} / {z:.2e} ({o})" for n, k, a, m, z, o in lr_rows)]
    summary.update(first_p1=first_one, mr_steps=len(steps), mean_p=mean_p, at_one_frozen=at_one_frozen,
                   lr=lr_rows)
    return "\n".join(lines) + "\n", summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=None, help="write the markdown here (and .json beside it)")
    args = p.parse_args(argv)
    texts, data = [], []
    for run in args.runs:
        text, summary = diagnose(run)
        texts.append(text)
        data.append(summary)
        print(text, flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(texts), encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
