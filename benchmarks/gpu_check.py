"""The GPU check: the LCMR recipe and one recipe at ``paper`` sizes with bf16 autocast, a DDP launch through
``torchrun``, and the figures a GPU user needs: throughput, peak memory, the bf16 / fp32 speed ratio.

    python benchmarks/gpu_check.py --plan            # what it will run and about how long, then exit
    python benchmarks/gpu_check.py                   # on a CUDA machine (about 8 minutes on one H100)
    python benchmarks/gpu_check.py --device cpu --size tiny --steps 2 --engine-steps 2   # the same path on a CPU

Parts (each prints one line and goes into ``--out``/gpu_check.json):

1. **throughput**: seed 002's experiment-1 teacher and student (``rnnt_lstm``, Table 1 at ``--size``) and seed
   003's QuartzNet 15x5, each trained for ``--steps`` steps on random batches (after ``--warmup``), once in fp32
   and once under ``torch.autocast(dtype=bfloat16)``: utterances per second, peak memory, bf16 / fp32 speed-up.
2. **ddp**: the same training step of the LCMR student wrapped in ``DistributedDataParallel``, launched by
   ``torchrun --nproc_per_node N`` (nccl on CUDA, gloo on a CPU); rank 0 reports.
3. **engine**: ``compressor run`` of the paper-size LCMR recipe (``specs/rnnt_lcmr_paper.yaml``: teacher trained in
   the run, then module replacing; the headline ``specs/rnnt_lcmr.yaml`` compresses its shipped CPU-size teacher,
   so its models cannot be resized) and of a recipe (``specs/quartznet_pretrain_en.yaml``, QuartzNet 15x5) at
   ``--size`` with ``trainer.precision: bf16``, every stage cut to ``--engine-steps`` steps and no export: the
   product path end to end, its wall time and test WER (meaningless after so few steps; the point is that it runs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
#: The models of part 1: name -> (builder, its arguments, the task) at a given size.
MODELS = ("lcmr_teacher", "lcmr_student", "quartznet_15x5")
#: Batch shapes per size: utterances, frames (10 ms), tokens per utterance, vocabulary (seed 002: 1023 word
#: pieces + blank; the QuartzNet uses its own 29-character alphabet).
SHAPES: dict[str, dict[str, int]] = {"paper": {"batch": 32, "frames": 600, "tokens": 24, "vocab": 1024},
                                     "cpu": {"batch": 16, "frames": 300, "tokens": 12, "vocab": 64},
                                     "tiny": {"batch": 2, "frames": 60, "tokens": 4, "vocab": 16}}
ENGINE_SPECS = {"lcmr": REPO / "specs" / "rnnt_lcmr_paper.yaml",
                "recipe": REPO / "specs" / "quartznet_pretrain_en.yaml"}
#: Rough seconds on one H100 for the plan (the engine runs include corpus synthesis on the CPU).
H100_SECONDS = {"throughput": 25.0, "ddp": 40.0, "engine": 150.0}


def build(name: str, size: str, vocab: int) -> tuple[torch.nn.Module, Any]:
    """The model and its task (whose ``loss(outputs, batch)`` trains it)."""
    info = {"vocab_size": vocab, "feature_dim": 80}
    if name.startswith("lcmr_"):
        from compressor.families.rnnt.model import RNNTArgs, build_rnnt
        from compressor.families.rnnt.task import RNNTTask

        preset = "exp1_teacher" if name == "lcmr_teacher" else "exp1_student"
        return build_rnnt(RNNTArgs(preset=preset, size=size), info), RNNTTask(RNNTTask.Args(), info)
    from compressor.families.ctc.quartznet import QuartzNetArgs, build_quartznet
    from compressor.families.ctc.task import CTCTask

    info = {"vocab_size": 29, "feature_dim": 80}
    return build_quartznet(QuartzNetArgs(preset="15x5", size=size), info), CTCTask(CTCTask.Args(), info)


def batch_for(size: str, vocab: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    shape = SHAPES[size]
    g = torch.Generator().manual_seed(seed)
    b, t, u = shape["batch"], shape["frames"], shape["tokens"]
    out = {"features": torch.randn(b, t, 80, generator=g), "feature_lengths": torch.full((b,), t),
           "tokens": torch.randint(0, vocab - 1, (b, u), generator=g), "token_lengths": torch.full((b,), u)}
    return {k: v.to(device) for k, v in out.items()}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on the device (CUDA or CPU), or nothing for fp32: the path the engine takes on a GPU."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of the device (CUDA: allocated tensors) or of this process (CPU: max resident set)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Wrap = Callable[[torch.nn.Module], torch.nn.Module]


def train_steps(model: torch.nn.Module, task: Any, batch: dict[str, torch.Tensor], device: torch.device,
                precision: str, steps: int, warmup: int, wrap: Wrap | None = None) -> dict[str, Any]:
    """``warmup`` + ``steps`` optimizer steps on one batch; the timed steps' throughput and the peak memory."""
    model = model.to(device).train()
    trained = wrap(model) if wrap is not None else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out_dtype = None
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        with autocast(device, precision):
            outputs = trained(batch)
            loss = task.loss(outputs, batch)
        out_dtype = str(next(v for v in outputs.values() if v.is_floating_point()).dtype)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    seconds = time.perf_counter() - t0
    n = int(batch["features"].shape[0])
    return {"precision": precision, "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "utterances_per_s": steps * n / seconds, "peak_memory_mb": peak_memory_mb(device),
            "output_dtype": out_dtype, "loss": float(loss.detach())}


def throughput(name: str, size: str, device: torch.device, steps: int, warmup: int) -> dict[str, Any]:
    """Part 1 for one model: fp32 and bf16 runs from the same initial weights, and their speed ratio."""
    vocab = SHAPES[size]["vocab"]
    out: dict[str, Any] = {"model": name, "size": size, "device": str(device)}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model, task = build(name, size, vocab)
        out["parameters"] = sum(p.numel() for p in model.parameters())
        vocab_used = 29 if name.startswith("quartznet") else vocab
        out[precision] = train_steps(model, task, batch_for(size, vocab_used, device), device, precision, steps,
                                     warmup)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    out["bf16_speedup"] = out["bf16"]["utterances_per_s"] / out["fp32"]["utterances_per_s"]
    return out


def ddp_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Part 2, inside a ``torchrun`` process: the LCMR student's training step under DDP (and bf16)."""
    import torch.distributed as dist

    use_cuda = args.device != "cpu" and torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
        torch.manual_seed(0)
        vocab = SHAPES[args.size]["vocab"]
        model, task = build("lcmr_student", args.size, vocab)
        ids = [local] if use_cuda else None
        result = train_steps(model, task, batch_for(args.size, vocab, device, seed=dist.get_rank()), device,
                             args.precision, args.steps, args.warmup,
                             wrap=lambda m: torch.nn.parallel.DistributedDataParallel(m, device_ids=ids))
        result.update(world_size=dist.get_world_size(), backend=dist.get_backend(), device=str(device))
        # every rank's weights are the same after the all-reduced steps
        flat = torch.cat([p.detach().float().flatten()[:64] for p in model.parameters()])
        gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, flat)
        result["ranks_agree"] = all(bool(torch.equal(gathered[0], g)) for g in gathered)
        return result
    finally:
        dist.destroy_process_group()


def ddp_command(args: argparse.Namespace, port: int = 29541) -> list[str]:
    """The ``torchrun`` launch of part 2 (``python -m torch.distributed.run``, the same program)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.nproc), "--master_port",
            str(port), str(Path(__file__).resolve()), "--ddp-worker", "--device", args.device, "--size", args.size,
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--precision", args.precision]


def run_ddp(args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(ddp_command(args), capture_output=True, text=True, env=env, timeout=args.timeout)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("DDP_RESULT ")]
    if done.returncode != 0 or not lines:
        return {"ok": False, "returncode": done.returncode, "stderr": done.stderr[-3000:]}
    return {"ok": True, **json.loads(lines[-1][len("DDP_RESULT "):])}


def engine_spec(which: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The LCMR recipe or the QuartzNet one at ``--size`` with bf16, every stage cut to ``--engine-steps``, no
    export."""
    spec = yaml.safe_load(ENGINE_SPECS[which].read_text(encoding="utf-8"))
    for role in ("teacher", "student"):
        if role in spec and spec[role].get("name") != "pretrained":  # a shipped model has its own size
            spec[role]["size"] = args.size
    if which == "recipe":
        spec["student"]["preset"] = "15x5"
    spec["name"] = f"gpu_check_{which}"
    spec["output_dir"] = str(out / "runs")
    spec["trainer"] = {**spec.get("trainer", {}), "device": args.device, "precision": args.precision,
                       "progress_bar": False, "log_every": max(1, args.engine_steps)}
    if args.device != "cpu":
        spec["trainer"]["threads"] = None
    for st in spec["stages"]:
        st.pop("epochs", None)
        st["steps"] = args.engine_steps
        st["eval"] = {"every": args.engine_steps, "max_batches": 1}
        for plugin in st.get("plugins", []):
            rate = plugin.get("replacing_rate", {})
            if plugin.get("name") == "module_replacing" and "duration" in rate:
                rate["duration"] = max(1, args.engine_steps // 2)
    spec.pop("export", None)
    ev = spec.get("evaluate", {})
    for key in ("references", "sets", "extra_splits"):  # one test set, the student only: minutes matter here
        ev.pop(key, None)
    ev.update(models=["student"], before_training=False)
    if args.size == "tiny":  # seconds-sized corpus for the CPU test
        spec["data"] = {**spec["data"], "train_size": 48, "valid_size": 8, "test_size": 8, "num_speakers": 6}
        if "vocab_size" in spec["data"]:
            spec["data"]["vocab_size"] = 32
    return spec


def run_engine(which: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    path = out / f"{which}.yaml"
    path.write_text(yaml.safe_dump(engine_spec(which, args, out), sort_keys=False), encoding="utf-8")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "compressor", "run", str(path)], capture_output=True, text=True,
                          timeout=args.timeout, cwd=REPO)
    result: dict[str, Any] = {"spec": str(path), "ok": done.returncode == 0, "seconds": time.perf_counter() - t0}
    if done.returncode != 0:
        result["stderr"] = done.stderr[-3000:]
        return result
    (complete,) = sorted((out / "runs").glob(f"gpu_check_{which}*/*/final/COMPLETE"))[-1:]
    record = json.loads(complete.read_text(encoding="utf-8"))
    result["final"] = record.get("final", {})
    result["parameters"] = record.get("parameters", {})
    result["stage_seconds"] = {s["stage"]: s["seconds"] for s in record.get("stages", [])}
    return result


def plan(args: argparse.Namespace) -> list[tuple[str, float]]:
    """The parts this invocation runs and their rough seconds on one H100 (a CPU at tiny size: seconds too)."""
    parts: list[tuple[str, float]] = []
    if "throughput" in args.parts:
        parts += [(f"throughput {m} fp32 + bf16, {args.steps} steps", H100_SECONDS["throughput"]) for m in MODELS]
    if "ddp" in args.parts:
        parts.append((f"torchrun --nproc_per_node {args.nproc}: DDP lcmr_student {args.precision}",
                      H100_SECONDS["ddp"]))
    if "engine" in args.parts:
        parts += [(f"compressor run {ENGINE_SPECS[w].name} at size {args.size}, {args.precision}, "
                   f"{args.engine_steps} steps per stage", H100_SECONDS["engine"]) for w in ENGINE_SPECS]
    return parts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--plan", action="store_true", help="print the parts and their expected time, then exit")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--size", choices=tuple(SHAPES), default="paper")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="of the DDP and engine parts")
    p.add_argument("--parts", nargs="+", choices=("throughput", "ddp", "engine"),
                   default=["throughput", "ddp", "engine"])
    p.add_argument("--steps", type=int, default=20, help="timed steps per throughput run")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--nproc", type=int, default=1, help="torchrun processes (GPUs) for the DDP part")
    p.add_argument("--engine-steps", type=int, default=60, help="steps per stage of the engine runs")
    p.add_argument("--timeout", type=int, default=480, help="seconds per subprocess")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "gpu_check")
    p.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device == "cuda" and not args.plan and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available (use --device cpu for the CPU path)")
    if args.steps < 1 or args.warmup < 0 or args.engine_steps < 1 or args.nproc < 1:
        p.error("--steps, --engine-steps and --nproc must be at least 1, --warmup at least 0")
    return args


def line(part: dict[str, Any]) -> str:
    """One printed line per throughput result."""
    fp, bf = part["fp32"], part["bf16"]
    return (f"{part['model']:15s} {part['parameters'] / 1e6:7.2f}M  fp32 {fp['utterances_per_s']:8.1f} utt/s "
            f"{fp['peak_memory_mb']:8.0f} MB | bf16 {bf['utterances_per_s']:8.1f} utt/s {bf['peak_memory_mb']:8.0f} MB"
            f" | bf16/fp32 speed {part['bf16_speedup']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ddp_worker:
        result = ddp_worker(args)
        if int(os.environ.get("RANK", 0)) == 0:
            print("DDP_RESULT " + json.dumps(result), flush=True)
        return 0
    parts = plan(args)
    print(f"GPU check ({args.device}, size {args.size}): {len(parts)} parts, about "
          f"{sum(s for _, s in parts) / 60:.1f} min on one H100")
    for what, seconds in parts:
        print(f"  {what:80s} ~{seconds:4.0f} s")
    if args.plan:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else
                              f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
                              "torch": torch.__version__, "size": args.size, "parts": {}}
    t0 = time.perf_counter()
    if "throughput" in args.parts:
        report["parts"]["throughput"] = []
        for name in MODELS:
            got = throughput(name, args.size, device, args.steps, args.warmup)
            report["parts"]["throughput"].append(got)
            print(line(got), flush=True)
    if "ddp" in args.parts:
        got = run_ddp(args)
        report["parts"]["ddp"] = got
        print(f"ddp: {'ok' if got['ok'] else 'FAILED'}" + (
            f", world {got['world_size']} ({got['backend']}), {got['utterances_per_s']:.1f} utt/s, "
            f"{got['peak_memory_mb']:.0f} MB, ranks agree: {got['ranks_agree']}" if got["ok"] else
            f"\n{got['stderr']}"), flush=True)
    if "engine" in args.parts:
        report["parts"]["engine"] = {}
        for which in ENGINE_SPECS:
            got = run_engine(which, args, args.out)
            report["parts"]["engine"][which] = got
            print(f"engine {which}: {'ok' if got['ok'] else 'FAILED'} in {got['seconds']:.0f} s" + (
                f"; stages {got['stage_seconds']}" if got["ok"] else f"\n{got['stderr']}"), flush=True)
    report["seconds"] = time.perf_counter() - t0
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"done in {report['seconds']:.0f} s; {args.out / 'gpu_check.json'}")
    failed = [k for k, v in report["parts"].items() if isinstance(v, dict) and v.get("ok") is False]
    failed += [f"engine {k}" for k, v in report["parts"].get("engine", {}).items() if not v["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
