"""Training cost of the RNN-T compression strategies, measured side by side in one run.

    python benchmarks/speed/lcmr_cost.py [--spec specs/rnnt_lcmr.yaml] [--batches 6] [--repeats 3]

On the spec's data, teacher and student (by default the headline's: its shipped teacher of Table 1's experiment-2
shape, the student of a third of its parameters, the large read-speech corpus), the same training batches go
through four kinds of optimizer step:

* ``student``: the student alone, RNN-T loss (the baseline of every ratio);
* ``lattice_kd``: the frozen teacher's lattice (no gradient) plus the student's RNN-T loss and the collapsed
  lattice KL (``plugins/lattice_kd.py``, alpha = 1e-3);
* ``lcmr_s2``: LCMR strategy 2 through the hybrid (``plugins/module_replacing.py``), the replacing rate taken
  from the spec's log-curriculum schedule at evenly spaced points of the stage, the last quarter being the
  fine-tuning phase (the student alone), so the mean is the stage's mean cost per step;
* ``teacher``: the teacher alone, for scale.

Time: the kinds run in turns (student, lattice KD, LCMR, teacher, then again in another order), so machine
load hits all alike; the median seconds per step over the repeats give the ratios. Peak memory: each kind runs
one step in a fresh process; on a CPU the step's peak is the process's peak resident set during the step
(``VmHWM``, reset just before it) minus its resident set before it, with buffers over 128 KiB mmapped so that
freed memory leaves the resident set; on a GPU it is ``torch.cuda.max_memory_allocated`` above the memory
allocated before the step. Writes ``lcmr_cost.md`` and ``lcmr_cost.json`` (``--prefix``) to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
KINDS = ("student", "lattice_kd", "lcmr_s2", "teacher")


def _setup(spec_path: Path, n_batches: int, device: str, overrides: list[str]) -> dict[str, Any]:
    """Data, task, models (teacher frozen, as in strategy 2) and ``n_batches`` training batches."""
    import itertools

    import torch

    from compressor.plugins import get_plugins
    from compressor.run.components import build_data, build_models, build_task
    from compressor.spec import load_spec

    plugins = get_plugins()
    loaded = load_spec(spec_path, overrides, registry=plugins.registry)
    data = build_data(loaded, plugins)
    task = build_task(loaded, plugins, data)
    models = build_models(loaded, plugins, data)
    dev = torch.device(device)
    for m in models.values():
        m.to(dev)
    index = next(i for i, s in enumerate(loaded.spec.stages) if any(p.name == "module_replacing" for p in s.plugins))
    stage = loaded.spec.stages[index]
    mr_args = next(a for p, a in zip(stage.plugins, loaded.stages[index].plugin_args) if p.name == "module_replacing")
    batch_size = stage.batch_size
    batches = list(itertools.islice(data.loader("train", batch_size, shuffle=True, seed=0, epoch=0), n_batches))
    from compressor.core.task import to_device

    return {"loaded": loaded, "plugins": plugins, "task": task, "models": models, "device": dev,
            "batches": [to_device(b, dev) for b in batches], "mr_args": mr_args, "stage": stage}


class _Ctx:
    """The bits of a StageContext the strategies read in these measurements."""

    def __init__(self, env: dict[str, Any], total_steps: int) -> None:
        import torch

        self.models = dict(env["models"])
        self.task = env["task"]
        self.device = env["device"]
        self.forward_model = "student"
        self.step, self.epoch, self.total_steps, self.total_epochs = 0, 0, total_steps, 1
        self.steps_per_epoch, self.batch_error, self.training, self.scalars = total_steps, None, True, {}
        self.name = "cost"
        self.torch = torch

    def model(self, name: str) -> Any:
        return self.models[name]

    def log_scalar(self, name: str, value: float) -> None:
        self.scalars[name] = float(value)

    def forward_once(self, name: str, batch: dict[str, Any]) -> Any:
        """The model's forward on the batch (the teacher's for lattice KD: frozen, so without gradients)."""
        from compressor.core.context import SharedForward

        model = self.models[name]
        with self.torch.set_grad_enabled(any(p.requires_grad for p in model.parameters())):
            return SharedForward(self.task.forward(model, batch), {})


def make_stepper(env: dict[str, Any], kind: str) -> Any:
    """A function ``step(i)`` doing one optimizer step of ``kind`` on batch ``i``."""
    import torch

    from compressor.core.losses import LossTerms

    task, models = env["task"], env["models"]
    teacher, student = models["teacher"], models["student"]
    teacher.requires_grad_(False)
    teacher.eval()
    n = len(env["batches"])
    if kind == "teacher":
        teacher.requires_grad_(True)
        teacher.train()
        model, params, extra = teacher, list(teacher.parameters()), None
    elif kind == "student":
        model, params, extra = student, list(student.parameters()), None
    elif kind == "lattice_kd":
        from plugins.lattice_kd import LatticeKD

        kd = LatticeKD(LatticeKD.Args(teacher="teacher", alpha=1e-3))
        ctx = _Ctx(env, n)
        model, params, extra = student, list(student.parameters()), ("kd", kd, ctx)
    else:  # lcmr_s2: the hybrid, p from the schedule over the stage, the last part fine-tuning
        from plugins.module_replacing import ModuleReplacing

        strategy = ModuleReplacing(env["mr_args"])
        ctx = _Ctx(env, n)
        strategy.compressor_prepare_models(ctx)
        model = ctx.models[strategy.args.wrapper]
        model.train()
        params = [p for p in student.parameters()]
        extra = ("mr", strategy, ctx)
    model.train()
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step(i: int) -> None:
        batch = env["batches"][i % n]
        if extra is not None and extra[0] == "mr":
            extra[2].step = i % n
            extra[1].compressor_step_start(extra[2])
        out = task.forward(model, batch)
        losses = LossTerms()
        losses.add("task", task.loss(out, batch))
        if extra is not None and extra[0] == "kd":
            extra[1].compressor_loss_terms(extra[2], batch, out, losses)
        total = losses.total()
        if total.requires_grad:
            total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> None:
    """Release freed heap memory and reset the process's peak resident set (VmHWM; Linux >= 4.0)."""
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def memory_child(args: argparse.Namespace) -> None:
    """One step of ``args.memory_child`` in this fresh process; print its peak memory as JSON."""
    import torch

    torch.set_num_threads(args.threads)
    env = _setup(args.spec, args.batches, args.device, args.set)
    step = make_stepper(env, args.memory_child)
    if env["device"].type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(args.batch_index)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:  # large buffers are mmapped (MALLOC_MMAP_THRESHOLD_, set by the parent), so RSS follows live memory
        _reset_peak_rss()
        base = _status_kib("VmRSS")
        step(args.batch_index)
        peak = (_status_kib("VmHWM") - base) * 1024
    print(json.dumps({"kind": args.memory_child, "peak_bytes": int(peak)}))


def measure_memory(args: argparse.Namespace) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {k: [] for k in KINDS}
    for rep in range(args.memory_repeats):
        for kind in KINDS:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", kind, "--spec", str(args.spec),
                   "--batches", str(args.batches), "--device", args.device, "--threads", str(args.threads),
                   "--batch-index", str(args.batch_index)]
            for s in args.set:
                cmd += ["--set", s]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MALLOC_MMAP_THRESHOLD_": "131072"}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
            if proc.returncode != 0:
                raise SystemExit(f"memory run of {kind} failed:\n{proc.stderr[-3000:]}")
            value = json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"]
            out[kind].append(value)
            print(f"  memory {kind:10s} repeat {rep}: {value / 2**20:.1f} MiB", flush=True)
    return out


def measure_time(args: argparse.Namespace) -> dict[str, list[float]]:
    import torch

    torch.set_num_threads(args.threads)
    env = _setup(args.spec, args.batches, args.device, args.set)
    steppers = {k: make_stepper(env, k) for k in KINDS}
    for k in KINDS:  # warm-up: first-call allocations and kernels
        steppers[k](0)
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    for rep in range(args.repeats):
        order = KINDS if rep % 2 == 0 else tuple(reversed(KINDS))
        for kind in order:
            if env["device"].type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for i in range(args.batches):
                steppers[kind](i)
            if env["device"].type == "cuda":
                torch.cuda.synchronize()
            times[kind].append((time.perf_counter() - t0) / args.batches)
            print(f"  time {kind:10s} repeat {rep}: {1000 * times[kind][-1]:.0f} ms/step", flush=True)
    return times


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", type=Path, default=REPO / "specs" / "rnnt_lcmr.yaml")
    p.add_argument("--set", action="append", default=[], help="spec override KEY=VALUE (repeatable)")
    p.add_argument("--batches", type=int, default=8,
                   help="training batches per timed repeat (= the steps of the LCMR stage measured)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory-repeats", type=int, default=2)
    p.add_argument("--batch-index", type=int, default=0, help="the batch of the memory measurement")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--prefix", default="lcmr_cost", help="file names of the results: PREFIX.md, PREFIX.json")
    p.add_argument("--memory-child", choices=KINDS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args)
        return 0
    t0 = time.time()
    print("peak memory of one step, each in a fresh process:", flush=True)
    memory = measure_memory(args)
    print("time per step, kinds in turns:", flush=True)
    times = measure_time(args)
    med_t = {k: statistics.median(v) for k, v in times.items()}
    med_m = {k: statistics.median(v) for k, v in memory.items()}
    ratios = {
        "memory_lattice_kd_over_rnnt": med_m["lattice_kd"] / med_m["student"],
        "memory_lcmr_s2_over_rnnt": med_m["lcmr_s2"] / med_m["student"],
        "time_lcmr_s2_over_student": med_t["lcmr_s2"] / med_t["student"],
        "time_lattice_kd_over_student": med_t["lattice_kd"] / med_t["student"],
        "time_teacher_over_student": med_t["teacher"] / med_t["student"],
    }
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    load = os.getloadavg()
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load[0]:.1f} at the end, "
               f"{args.threads} torch thread(s), device {args.device}, torch {torch.__version__}")
    cmd = "python benchmarks/speed/lcmr_cost.py " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    record = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
              "machine": machine, "command": cmd.strip(), "spec": str(args.spec), "overrides": args.set,
              "batches": args.batches, "repeats": args.repeats, "memory_bytes": memory,
              "seconds_per_step": times, "ratios": ratios, "wall_seconds": time.time() - t0}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.prefix}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    target = "meets" if ratios["memory_lattice_kd_over_rnnt"] <= 1.25 else "misses"
    lines = [
        "# Training cost of lattice KD and LCMR vs the student alone, side by side",
        "",
        f"`{record['command']}` at commit {commit}, {record['date']}; {machine}; the 2-core VM is shared "
        "with other jobs, so absolute times are not comparable across runs, only these ratios.",
        f"Spec `{Path(args.spec).name}` {' '.join(args.set)}: the same {args.batches} training batches for every "
        "kind; peak memory of one step in a fresh process (CPU: growth of the peak resident set over the "
        "resident set before the step), median of the repeats; time per step median over repeats run in turns.",
        "",
        "| step | peak memory of a step (MiB) | time per step (ms) | memory vs student | time vs student |",
        "|---|---:|---:|---:|---:|",
    ]
    labels = {"student": "student alone (plain RNN-T)", "lattice_kd": "lattice KD (student + frozen teacher)",
              "lcmr_s2": "LCMR strategy 2 (stage mean: hybrid, then fine-tuning)", "teacher": "teacher alone"}
    for k in KINDS:
        lines.append(f"| {labels[k]} | {med_m[k] / 2**20:.1f} | {1000 * med_t[k]:.0f} | "
                     f"{med_m[k] / med_m['student']:.2f} | {med_t[k] / med_t['student']:.2f} |")
    lines += ["", f"- peak memory, lattice KD step / plain RNN-T step: **{ratios['memory_lattice_kd_over_rnnt']:.2f}**"
              f" (target ≤ 1.25: {target})",
              f"- time per step, LCMR strategy 2 / student alone: **{ratios['time_lcmr_s2_over_student']:.2f}**",
              f"- time per step, lattice KD / student alone: **{ratios['time_lattice_kd_over_student']:.2f}**",
              "", f"Raw values: `{args.prefix}.json`. Wall time {record['wall_seconds'] / 60:.1f} min."]
    text = "\n".join(lines) + "\n"
    (args.out / f"{args.prefix}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
