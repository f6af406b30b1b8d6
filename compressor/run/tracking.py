"""Experiment tracking: a run's spec, metrics and plots sent to TensorBoard (default) or Weights & Biases.

``trainer.tracking`` in the spec lists the trackers (``[tensorboard]`` by default; ``[tensorboard, wandb]``;
``[]`` for none). Every tracker gets

* the spec as run (``resolved_spec.yaml``): TensorBoard text ``spec``, W&B ``config``;
* every record of ``metrics.jsonl``: per-step losses, weights, LR and scheduled values, and evaluations,
  under ``STAGE/KEY`` against the stage's optimizer step (W&B: each stage has its own step axis
  ``STAGE/step``, so stages line up like with like); the final evaluation under ``final/MODEL/KEY``
  (W&B: the run summary);
* the run's plots (``plots/*.png``) as images.

TensorBoard writes event files into ``RUN_DIR/tensorboard`` (``tensorboard --logdir runs``). Weights & Biases
is an optional extra (``pip install -e ".[wandb]"``); it follows its own environment variables, so
``WANDB_MODE=offline`` logs into ``RUN_DIR/wandb`` without network or account (``wandb sync`` uploads it
later); ``WANDB_PROJECT`` names the project (default: the spec's name). A resumed run continues the same
W&B run (its id is kept in ``RUN_DIR/wandb_id``).
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from compressor.core.errors import UserError

TRACKERS = ("tensorboard", "wandb")
_PACKAGES = {"tensorboard": ("tensorboard", 'pip install "tensorboard>=2.14"'),
             "wandb": ("wandb", 'pip install -e ".[wandb]" (or pip install wandb)')}
_SKIP = {"step", "epoch", "stage_index", "global_step", "stage", "type", "model"}


def check_available(names: Iterable[str]) -> None:
    """Refuse (exit code 2, before any work) a tracker whose package is not installed, naming the fix."""
    for name in names:
        module, fix = _PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(f"trainer.tracking: '{name}' needs the {module} package, which is not installed: {fix}")


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if k not in _SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoardTracker:
    """Event files in ``RUN_DIR/tensorboard`` (torch's ``SummaryWriter``)."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log_spec(self, spec: dict[str, Any], text: str) -> None:
        self.writer.add_text("spec", "```yaml\n" + text + "\n```", 0)

    def log(self, record: dict[str, Any]) -> None:
        if record.get("type") == "final":
            for k, v in _numbers(record).items():
                self.writer.add_scalar(f"final/{record.get('model')}/{k}", v, 0)
        elif "step" in record:
            for k, v in _numbers(record).items():
                self.writer.add_scalar(f"{record.get('stage', '')}/{k}", v, int(record["step"]))

    def log_plots(self, paths: list[Path]) -> None:
        import matplotlib.image as mpimg

        for path in paths:
            image = mpimg.imread(str(path))[..., :3]  # RGBA floats in [0, 1] -> RGB
            self.writer.add_image(f"plots/{path.stem}", image, 0, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A Weights & Biases run in ``RUN_DIR/wandb`` (online, or offline with ``WANDB_MODE=offline``)."""

    def __init__(self, run_dir: Path) -> None:
        import wandb

        self.wandb = wandb
        id_file = run_dir / "wandb_id"
        run_id = id_file.read_text(encoding="utf-8").strip() if id_file.exists() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id + "\n", encoding="utf-8")
        self.run_dir = run_dir
        self.run_id = run_id
        self.run: Any = None
        self._stages: set[str] = set()

    def _start(self, config: dict[str, Any] | None) -> Any:
        if self.run is None:
            name = str((config or {}).get("name") or self.run_dir.parent.name)
            self.run = self.wandb.init(project=os.environ.get("WANDB_PROJECT", name), dir=str(self.run_dir),
                                       id=self.run_id, name=f"{name}/{self.run_dir.name}", resume="allow",
                                       config=config, settings=self.wandb.Settings(console="off"))
        return self.run

    def log_spec(self, spec: dict[str, Any], text: str) -> None:
        self._start(spec)

    def log(self, record: dict[str, Any]) -> None:
        run = self._start(None)
        if record.get("type") == "final":
            for k, v in _numbers(record).items():
                run.summary[f"final/{record.get('model')}/{k}"] = v
            return
        if "step" not in record:
            return
        stage = str(record.get("stage", ""))
        if stage not in self._stages:  # each stage its own step axis
            run.define_metric(f"{stage}/step")
            run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
            self._stages.add(stage)
        run.log({f"{stage}/step": int(record["step"]), **{f"{stage}/{k}": v for k, v in _numbers(record).items()}})

    def log_plots(self, paths: list[Path]) -> None:
        if paths:
            self._start(None).log({f"plots/{p.stem}": self.wandb.Image(str(p)) for p in paths})

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def open_trackers(run_dir: Path, names: Iterable[str]) -> list[Any]:
    """The trackers ``names`` (see :data:`TRACKERS`) writing for ``run_dir``."""
    check_available(names)
    classes = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker}
    return [classes[name](run_dir) for name in dict.fromkeys(names)]
