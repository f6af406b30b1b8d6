"""The engine loop of one training stage.

:class:`StageRunner` runs a stage of a spec: it activates the stage's strategies, lets them prepare the
models, builds the optimizer over what still requires gradients, and loops over deterministic batches with
gradient accumulation, clipping, autocast, evaluation, best-checkpoint tracking and atomic checkpoints that
a killed run resumes from exactly. The hook call order is documented in :mod:`compressor.core.hookspecs`.
"""

from __future__ import annotations

import contextlib
import math
import time
from itertools import islice
from typing import Any

import torch
from torch import nn

from compressor.core.checkpoint import load_checked, load_checkpoint, rng_state, save_atomic, set_rng_state
from compressor.core.context import StageContext
from compressor.core.errors import PluginError, UserError
from compressor.core.interrupts import deferred
from compressor.core.limits import MAX_STAGE_STEPS
from compressor.core.losses import LossTerms
from compressor.core.progress import Progress, duration, format_metrics, track
from compressor.core.task import to_device
from compressor.plugins import stage_strategies
from compressor.run.components import Run
from compressor.run.lr import build_optimizer, build_scheduler
from compressor.run.resume import spec_stamp


def unique_trainable(modules: list[nn.Module]) -> list[nn.Parameter]:
    seen: set[int] = set()
    out = []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def labels_audio(registry: Any, stage: Any) -> bool:
    """Whether one of ``stage``'s strategies labels audio without transcripts (``Strategy.labels_audio``)."""
    return any(getattr(registry.get("strategy", ref.name).factory, "labels_audio", False) for ref in stage.plugins)


def stage_budget(data: Any, stage: Any, seed: int, with_unlabelled: bool = False) -> tuple[list[int], int]:
    """Optimizer steps of each epoch of ``stage`` on ``data``, and the total (``steps`` caps ``epochs``).
    ``with_unlabelled``: the stage also trains on audio without transcripts (a strategy labels it).

    Raises :class:`UserError` when an epoch has no full step or the stage exceeds
    :data:`compressor.core.limits.MAX_STAGE_STEPS`.
    """
    if with_unlabelled and hasattr(data, "include_unlabelled"):
        before = data.include_unlabelled
        data.include_unlabelled = True
        try:
            return stage_budget(data, stage, seed)
        finally:
            data.include_unlabelled = before
    per_epoch: list[int] = []
    total = 0
    limit = stage.epochs if stage.epochs is not None else MAX_STAGE_STEPS
    while len(per_epoch) < limit:
        n = data.num_batches("train", stage.batch_size, shuffle=True, seed=seed, epoch=len(per_epoch))
        n //= stage.grad_accum
        if n == 0:
            raise UserError(f"stage '{stage.name}': batch_size {stage.batch_size} x grad_accum {stage.grad_accum} "
                            f"leaves no full step in an epoch of the training split")
        if stage.steps is not None and total + n >= stage.steps:
            per_epoch.append(stage.steps - total)
            total = stage.steps
            break
        per_epoch.append(n)
        total += n
        if total > MAX_STAGE_STEPS:
            raise UserError(f"stage '{stage.name}': {stage.epochs} epochs of {n} steps are more than "
                            f"{MAX_STAGE_STEPS:,} optimizer steps; give fewer epochs or cap them with 'steps'")
    return per_epoch, total


def terms_of(record: dict[str, Any]) -> list[str]:
    """The loss terms of a step's record (``loss/task``, ``loss/logit_kd``, a plugin's own), when there are
    several: with one term, it is the total."""
    terms = [k for k in record if k.startswith("loss/") and k != "loss/total"]
    return terms if len(terms) > 1 else []


def is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value < best if mode == "min" else value > best


def save_stage_end(run: Run, next_index: int) -> None:
    """The checkpoint between stages (main process only): the models as handed over, before stage
    ``next_index``, from which ``--resume`` continues."""
    if not run.is_main:
        return
    save_atomic({"kind": "stage_end", "stage_index": next_index,
                 "models": {n: m.state_dict() for n, m in run.models.items()},
                 "rng": rng_state(), "results": run.results,
                 "metrics_lines": run.metrics.count if run.metrics is not None else None,
                 **spec_stamp(run.loaded.raw), **run.checkpoint_extra},
                run.run_dir / "checkpoints" / "last.pt")


class StageRunner:
    """Runs stage ``index`` of ``run``'s spec, optionally resuming from a mid-stage checkpoint."""

    def __init__(self, run: Run, index: int) -> None:
        self.run = run
        self.index = index
        self.stage = run.loaded.spec.stages[index]
        self.data = run.data_for(index)
        self.task = run.task_for(index)
        metric = self.stage.eval.metric or self.task.main_metric
        self.metric = metric
        self.mode = self.stage.eval.mode or self.task.metric_mode
        self.best: float | None = None
        self.best_path = run.run_dir / "checkpoints" / f"{self.stage.name}-best.pt"

    # -- budget ------------------------------------------------------------------------------------
    def budget(self) -> tuple[list[int], int]:
        """Optimizer steps of each epoch, and the stage's total steps (``steps`` caps ``epochs``)."""
        return stage_budget(self.data, self.stage, self.run.seed, labels_audio(self.run.plugins.registry, self.stage))

    # -- the stage -----------------------------------------------------------------------------------
    def execute(self, resume: dict[str, Any] | None = None) -> dict[str, Any]:
        run, st = self.run, self.stage
        registry = run.plugins.registry
        strategies = []
        for ref, args in zip(st.plugins, run.loaded.stages[self.index].plugin_args):
            entry = registry.get("strategy", ref.name)
            try:
                strategies.append((ref.name, entry.factory(args)))
            except UserError:
                raise
            except (Exception, SystemExit) as e:
                raise PluginError(ref.name, "__init__", e, action="failed to start", package=entry.package) from e
        for name, model in run.models.items():
            trainable = name in st.train
            model.requires_grad_(trainable)
            model.train(trainable)
        per_epoch, total_steps = self.budget()
        ctx = StageContext(
            name=st.name, index=self.index, stage=st, models=dict(run.models), forward_model=st.forward_model,
            task=self.task, data=self.data, device=run.device, run_dir=run.run_dir, spec=run.loaded.raw,
            seed=run.seed, rank=run.rank, world_size=run.world_size, total_steps=total_steps,
            total_epochs=len(per_epoch), steps_per_epoch=per_epoch[0], loaded=run.loaded, registry=registry,
        )
        started = time.time()
        with stage_strategies(run.plugins, strategies):
            run.plugins.call("compressor_prepare_models", ctx=ctx)
            for model in ctx.models.values():
                model.to(run.device)
            forward_model = ctx.models[ctx.forward_model]
            # Trained: the stage's models, the model trained through, and any model a plugin added
            # (a hint regressor, a wrapper) — whatever of those still requires gradients.
            added = [m for n, m in ctx.models.items() if n not in run.models]
            params = unique_trainable([ctx.models[n] for n in st.train if n in ctx.models] + [forward_model]
                                      + added)
            if not params:
                raise UserError(f"stage '{st.name}' has no parameter left to train after its plugins prepared "
                                f"the models")
            loaded = run.loaded
            opt_args = loaded.stages[self.index].optimizer_args
            optimizer = build_optimizer(registry, st.optimizer, opt_args, params)
            scheduler = build_scheduler(registry, st.lr_schedule, loaded.stages[self.index].lr_schedule_args, optimizer,
                                        opt_args.lr, total_steps, epoch_steps=per_epoch)
            scaler = torch.amp.GradScaler("cuda") if run.precision == "fp16" else None
            train_model: nn.Module = forward_model
            if run.world_size > 1:
                unused = run.loaded.spec.trainer.find_unused_parameters
                if unused == "auto":  # a wrapper (e.g. module replacing) skips some parameters each step
                    unused = ctx.forward_model not in run.models
                train_model = nn.parallel.DistributedDataParallel(forward_model, find_unused_parameters=unused)

            start_epoch, skip = 0, 0
            if resume is not None:
                start_epoch, skip = self._restore(resume, ctx, optimizer, scheduler, scaler, strategies)

            self._loop(ctx, train_model, optimizer, scheduler, scaler, strategies, per_epoch, start_epoch, skip)

            if run.world_size > 1:  # rank 0 writes the best checkpoint; every rank loads it below
                torch.distributed.barrier()
            if st.handoff == "best" and self.best is not None and self.best_path.exists():
                best = load_checkpoint(self.best_path)
                for name, state in best["models"].items():
                    if name in ctx.models:
                        ctx.models[name].load_state_dict(state)
            run.plugins.call("compressor_finalize_student", ctx=ctx)
        for name in run.models:
            run.models[name] = ctx.models[name]
        return {"stage": st.name, "steps": ctx.step, "epochs": ctx.epoch + 1, "seconds": time.time() - started,
                f"best_{self.metric}": self.best, "metric": self.metric}

    def _loop(self, ctx: StageContext, train_model: nn.Module, optimizer: torch.optim.Optimizer,
              scheduler: Any, scaler: Any, strategies: list, per_epoch: list[int], start_epoch: int,
              skip: int) -> None:
        run, st = self.run, self.stage
        accum = st.grad_accum
        every = st.eval.every
        progress = self._progress(ctx)
        t0 = time.time()
        for epoch in range(start_epoch, len(per_epoch)):
            epoch_loss, epoch_steps, epoch_started = 0.0, 0, time.monotonic()
            epoch_terms: dict[str, float] = {}
            ctx.epoch = epoch
            ctx.steps_per_epoch = per_epoch[epoch]
            done_in_epoch = skip if epoch == start_epoch else 0
            remaining = per_epoch[epoch] * accum - done_in_epoch
            loader = self.data.loader("train", st.batch_size, shuffle=True, seed=run.seed, epoch=epoch,
                                     skip=done_in_epoch, rank=run.rank, world_size=run.world_size,
                                     num_workers=run.loaded.spec.trainer.num_workers)
            micro = 0
            logs: dict[str, float] = {}
            for batch in islice(loader, max(0, remaining)):
                # Ctrl-C / SIGTERM land between steps, not inside torch's forward, a custom autograd Function or the
                # backward pass, where an exception leaves the step half done
                with deferred():
                    if micro == 0:
                        ctx.scalars = {}
                        ctx.training = True
                        run.plugins.call("compressor_step_start", ctx=ctx)
                    batch = to_device(batch, run.device)
                    ctx.new_batch()
                    run.plugins.call("compressor_transform_batch", ctx=ctx, batch=batch)
                    last_micro = micro == accum - 1
                    sync = contextlib.nullcontext() if last_micro or run.world_size == 1 else train_model.no_sync()
                    with sync:
                        with run.autocast():
                            outputs = self.task.forward(train_model, batch)
                            losses = LossTerms()
                            losses.add("task", self.task.loss(outputs, batch))
                            ctx.defer_batch_error(self.task, outputs, batch)
                            run.plugins.call("compressor_loss_terms", ctx=ctx, batch=batch, outputs=outputs,
                                             losses=losses)
                            ctx.new_batch()  # the shared teacher forwards are no longer needed
                            total = losses.total()
                        if not torch.isfinite(total):
                            terms = ", ".join(f"{k}={v:.4g}" for k, v in losses.log_dict().items())
                            raise UserError(f"stage '{st.name}' step {ctx.step + 1}: the loss is "
                                            f"{float(total.detach())} ({terms}): training diverged; lower the "
                                            f"learning rate or the loss weights, or set grad_clip")
                        scaled = total / accum
                        if scaled.requires_grad:  # e.g. a module-replacing step that drew only frozen teacher modules
                            (scaler.scale(scaled) if scaler is not None else scaled).backward()
                for k, v in losses.log_dict().items():
                    logs[k] = logs.get(k, 0.0) + v / accum
                logs["loss/total"] = logs.get("loss/total", 0.0) + float(total.detach()) / accum
                micro += 1
                done_in_epoch += 1
                if micro < accum:
                    continue
                micro = 0
                lr = optimizer.param_groups[0]["lr"]
                with deferred():
                    self._optimizer_step(optimizer, scheduler, scaler)
                ctx.step += 1
                record = {"stage": st.name, "stage_index": self.index, "step": ctx.step, "epoch": epoch,
                          "lr": lr, **logs, **ctx.scalars,
                          "time": round(time.time() - t0, 3)}
                logs = {}
                run.log(record)
                epoch_loss += record["loss/total"]
                epoch_steps += 1
                for k in terms_of(record):
                    epoch_terms[k] = epoch_terms.get(k, 0.0) + record[k]
                if ctx.step % run.loaded.spec.trainer.log_every == 0:
                    progress.metrics(**{"loss": record["loss/total"], **{k: record[k] for k in terms_of(record)},
                                        "lr": lr, **ctx.scalars})
                progress.update(1)
                if isinstance(every, int) and ctx.step % every == 0:
                    evaluated = self._evaluate(ctx)
                    progress.line(f"step {ctx.step}: {self._eval_text(evaluated)}")
                if st.checkpoint_every and ctx.step % st.checkpoint_every == 0:
                    self._save(ctx, optimizer, scheduler, scaler, strategies, epoch, done_in_epoch)
                if ctx.step >= ctx.total_steps:
                    break
            metrics = self._evaluate(ctx) if every == "epoch" else {}
            run.plugins.call("compressor_epoch_end", ctx=ctx, metrics=metrics)
            self._save(ctx, optimizer, scheduler, scaler, strategies, epoch + 1, 0)
            progress.line(self._epoch_text(ctx, epoch, len(per_epoch), epoch_loss, epoch_steps,
                                           time.monotonic() - epoch_started, optimizer, metrics, progress,
                                           epoch_terms))
            if ctx.step >= ctx.total_steps:
                break
        progress.close(f"done, {ctx.step:,} steps in {duration(progress.elapsed)}"
                       + (f"; best {self.metric} {self.best:.4g}" if self.best is not None else ""))

    def _optimizer_step(self, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any) -> None:
        clip = self.stage.grad_clip
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if scaler is not None:
            scaler.unscale_(optimizer)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    def _progress(self, ctx: StageContext) -> Progress:
        """The stage's progress: a bar in a terminal (unless ``trainer.progress_bar`` is false), else a line per
        epoch; the main process only."""
        stages = len(self.run.loaded.spec.stages)
        return Progress(f"stage {self.index + 1}/{stages} {self.stage.name}", total=ctx.total_steps,
                        unit="step", initial=ctx.step, enabled=self.run.is_main,
                        bar=self.run.loaded.spec.trainer.progress_bar)

    def _eval_text(self, metrics: dict[str, float]) -> str:
        split = self.stage.eval.split
        main = f"{split}/{self.metric}"
        restated = {f"{split}/{k}" for k in self.task.restated_metrics} - {main}
        shown = {main: metrics.get(main), **{k: v for k, v in metrics.items() if k != main and k not in restated}}
        best = f" (best {self.best:.4g})" if self.best is not None else ""
        return format_metrics(shown) + best

    def _epoch_text(self, ctx: StageContext, epoch: int, epochs: int, loss_sum: float, steps: int,
                    seconds: float, optimizer: torch.optim.Optimizer, metrics: dict[str, float],
                    progress: Progress, terms: dict[str, float] | None = None) -> str:
        """``epoch 2/10: step 40/200, loss 1.234, loss/task 1.1, loss/logit_kd 0.27, lr 0.003, kd_weight 0.37;
        valid/wer 0.45 (best 0.43); 12.3s, stage 49s left`` (losses: the epoch's means; every term when there
        are several)."""
        train = {"loss": loss_sum / steps} if steps else {}
        if steps:
            train.update({k: v / steps for k, v in (terms or {}).items()})
        train["lr"] = optimizer.param_groups[0]["lr"]
        train.update(ctx.scalars)
        text = f"epoch {epoch + 1}/{epochs}: step {ctx.step:,}/{ctx.total_steps:,}, {format_metrics(train)}"
        if metrics:
            text += "; " + self._eval_text(metrics)
        done = ctx.step - progress.initial
        left = (ctx.total_steps - ctx.step) * progress.elapsed / done if done else 0.0
        text += f"; {duration(seconds)}"
        if ctx.step < ctx.total_steps:
            text += f", stage {duration(left)} left"
        return text

    # -- evaluation ------------------------------------------------------------------------------------
    def _evaluate(self, ctx: StageContext) -> dict[str, float]:
        st, run = self.stage, self.run
        model = ctx.models[ctx.forward_model]
        was_training = model.training
        model.eval()
        ctx.training = False
        loader = self.data.loader(st.eval.split, st.batch_size, shuffle=False, seed=run.seed)
        batches = islice(loader, st.eval.max_batches) if st.eval.max_batches else loader
        total = self.data.num_batches(st.eval.split, st.batch_size, shuffle=False, seed=run.seed, epoch=0)
        if st.eval.max_batches:
            total = min(total, st.eval.max_batches)
        batches = track(batches, f"{st.name}: validation on {st.eval.split}", total=total, enabled=run.is_main,
                        announce=False, report_end=False)  # the epoch's line reports the metrics
        metrics = self.task.evaluate(model, batches, run.device)
        model.train(was_training)
        ctx.training = True
        if self.metric not in metrics:
            raise UserError(f"stage '{st.name}': eval.metric '{self.metric}' is not among the task's metrics "
                            f"({', '.join(metrics)})")
        value = float(metrics[self.metric])
        improved = is_better(value, self.best, self.mode)
        if improved:
            self.best = value
            if run.is_main and st.handoff == "best":
                save_atomic({"models": {n: m.state_dict() for n, m in ctx.models.items()}, "step": ctx.step,
                             "metric": self.metric, "value": value}, self.best_path)
        record = {"type": "eval", "stage": st.name, "stage_index": self.index, "step": ctx.step,
                  "epoch": ctx.epoch, **{f"{st.eval.split}/{k}": v for k, v in metrics.items()},
                  "best": self.best}
        run.log(record)
        return {f"{st.eval.split}/{k}": v for k, v in metrics.items()}

    # -- checkpoints -----------------------------------------------------------------------------------
    def _save(self, ctx: StageContext, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
              strategies: list, epoch: int, batch_in_epoch: int) -> None:
        if not self.run.is_main:
            return
        state = {
            "kind": "mid_stage",
            "stage_index": self.index,
            "stage": self.stage.name,
            "position": {"epoch": epoch, "batch_in_epoch": batch_in_epoch, "step": ctx.step},
            "models": {n: m.state_dict() for n, m in ctx.models.items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "strategies": [s.state_dict() for _, s in strategies],
            "best": self.best,
            "rng": rng_state(),
            "results": self.run.results,
            "metrics_lines": self.run.metrics.count if self.run.metrics is not None else None,
            **spec_stamp(self.run.loaded.raw),
            **self.run.checkpoint_extra,
        }
        save_atomic(state, self.run.run_dir / "checkpoints" / "last.pt")

    def _restore(self, state: dict[str, Any], ctx: StageContext, optimizer: torch.optim.Optimizer,
                 scheduler: Any, scaler: Any, strategies: list) -> tuple[int, int]:
        for name, sd in state["models"].items():
            if name not in ctx.models:
                raise UserError(f"checkpoint has model '{name}' that stage '{self.stage.name}' does not build")
            load_checked(ctx.models[name], sd, f"{self.run.run_dir}/checkpoints/last.pt ({name})")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        for (_, strategy), sd in zip(strategies, state["strategies"]):
            strategy.load_state_dict(sd)
        self.best = state.get("best")
        pos = state["position"]
        ctx.step = pos["step"]
        ctx.epoch = pos["epoch"]
        set_rng_state(state["rng"])
        return pos["epoch"], pos["batch_in_epoch"]
