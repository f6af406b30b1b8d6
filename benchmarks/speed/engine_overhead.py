"""Engine overhead: the same model, data and loss trained by a plain PyTorch loop and by the engine.

Both loops train an LSTM classifier on the same synthetic feature sequences with AdamW and cross-entropy, on
the same number of threads. Runs alternate (plain, engine, plain, engine, ...) so machine noise hits both
alike; the median time per optimizer step of each is compared. The engine's time includes everything it does
per step (hook calls, the metrics log line, LR scheduling) and its epoch-end checkpoint and evaluation.

    python benchmarks/speed/engine_overhead.py [--steps 200] [--repeats 3] [--hidden 256]

Prints the ratio engine / plain (target <= 1.05).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from compressor.plugins import get_registry
from compressor.run.engine import run_spec


def data_args(steps: int, batch: int) -> dict:
    return {"name": "synthetic_features", "num_classes": 8, "feature_dim": 40, "min_frames": 40,
            "max_frames": 60, "train_size": steps * batch, "valid_size": 64, "test_size": 64}


def plain_loop(steps: int, batch: int, hidden: int) -> float:
    """Seconds per step of a hand-written loop over the same DataModule batches."""
    reg = get_registry()
    data = reg.build("dataset", data_args(steps, batch))
    torch.manual_seed(0)
    model = reg.build("model", {"name": "seq_classifier", "hidden": hidden, "layers": 2}, info=data.info)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    loader = data.loader("train", batch, shuffle=True, seed=0, epoch=0)
    start = time.perf_counter()
    n = 0
    for b in loader:
        loss = F.cross_entropy(model(b)["logits"], b["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += 1
    return (time.perf_counter() - start) / n


def engine_loop(steps: int, batch: int, hidden: int, workdir: Path) -> float:
    """Seconds per step of the engine (from its own step clock), for one stage of one epoch."""
    spec = {
        "name": "overhead", "seed": 0, "output_dir": str(workdir),
        "task": {"name": "classification"}, "data": data_args(steps, batch),
        "student": {"name": "seq_classifier", "hidden": hidden, "layers": 2},
        "trainer": {"progress_bar": False},
        "stages": [{"name": "train", "train": ["student"], "epochs": 1, "batch_size": batch,
                    "optimizer": {"name": "adamw", "lr": 1e-3}, "eval": {"every": "never"}}],
        "evaluate": {"split": "test", "models": ["student"]},
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    run_dir = run_spec(path)
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps_done = [r for r in records if r.get("stage") == "train" and "type" not in r]
    return steps_done[-1]["time"] / len(steps_done)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)  # what the engine sets: same for both loops
    plain, engine = [], []
    with tempfile.TemporaryDirectory() as tmp:
        plain_loop(20, args.batch, args.hidden)  # warm-up: imports, allocator, kernels
        for i in range(args.repeats):
            order = ("plain", "engine") if i % 2 == 0 else ("engine", "plain")  # alternate who goes first
            for which in order:
                if which == "plain":
                    plain.append(plain_loop(args.steps, args.batch, args.hidden))
                else:
                    engine.append(engine_loop(args.steps, args.batch, args.hidden, Path(tmp) / str(i)))
            print(f"repeat {i}: plain {plain[-1] * 1e3:.2f} ms/step, engine {engine[-1] * 1e3:.2f} ms/step")
    p, e = statistics.median(plain), statistics.median(engine)
    print(f"median plain  {p * 1e3:.2f} ms/step")
    print(f"median engine {e * 1e3:.2f} ms/step")
    print(f"engine/plain time-per-step ratio: {e / p:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
