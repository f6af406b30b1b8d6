"""Layer freezing for transfer learning: keep the lower layers of a pre-trained model fixed while the rest
adapts (Kunze et al. freeze Wav2Letter's lower convolutions, seed 003 Sec. 2.1), optionally thawing them
gradually (ULMFiT-style, from the output side down).

Spec::

    plugins:
      - name: layer_freezing
        model: student                      # a model the stage trains
        first_blocks: 6                     # the first N children of the model's block stack ...
        # blocks: encoder.layers            # ... (default: the model's ``block_container``; QuartzNet's is
        #                                   #     encoder.layers = C1, B1 ... B5 repeats, C2, C3)
        modules: ["cmvn*", "encoder.layers.1[0-5]"]   # and/or glob patterns over module names
        frozen_fraction: {name: linear, start: 1.0, end: 0.0}   # optional gradual unfreezing (any schedule)
        frozen_mode: eval                   # frozen groups in eval mode: batch-norm statistics fixed, dropout off

What is frozen is a list of *groups* in model order: each of the first N blocks, and each module a pattern
matches (a match inside an already matched module belongs to it). A frozen group's parameters get no
gradient, so the optimizer never changes them (bit for bit, weight decay included), and it stays in eval mode,
so its batch-norm running statistics do not move and its dropout is off (``frozen_mode: batch_norm_eval``: only
the batch norms; ``train``: as the rest of the model). The engine switches models back to train mode after
every evaluation; this plugin re-applies the mode before every step. At the end of the stage the groups are
released: the next stage decides again. With ``frozen_fraction`` the
first ``ceil(f_t * G)`` of the G groups are frozen at step t: a schedule falling from 1 to 0 thaws the group
nearest the output first. Every step logs ``trainable_parameters`` (of that model) and ``frozen_groups``.

Patterns, block stacks and the schedule are checked at validation against the model built on the meta
device; a pattern that matches nothing is refused with the closest module name.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Literal

from pydantic import Field, model_validator
from torch import nn

from compressor.core.context import StageContext
from compressor.core.errors import did_you_mean
from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Args, Registry
from compressor.core.schedules import Schedule, ScheduleArg
from compressor.core.strategy import Strategy
from compressor.spec import CheckContext


def block_stack(model: nn.Module, path: str | None) -> tuple[str, nn.Module]:
    """The container whose children are the model's blocks: ``path`` or the model's ``block_container``."""
    path = path or getattr(model, "block_container", None)
    if not path:
        raise ValueError(f"{type(model).__name__} names no block stack: give 'blocks' (the path of a "
                         "ModuleList/Sequential)")
    modules = dict(model.named_modules())
    if path not in modules:
        raise KeyError(f"no module '{path}'{did_you_mean(path, [n for n in modules if n])}")
    stack = modules[path]
    if not isinstance(stack, (nn.ModuleList, nn.Sequential)):
        raise ValueError(f"'{path}' is a {type(stack).__name__}, not a ModuleList/Sequential of blocks")
    return path, stack


def frozen_groups(model: nn.Module, patterns: list[str], first_blocks: int | None, blocks: str | None
                  ) -> list[str]:
    """Module names to freeze, one per group, in model order; raises on patterns matching nothing."""
    names = [n for n, _ in model.named_modules() if n]
    chosen: set[str] = set()
    if first_blocks:
        path, stack = block_stack(model, blocks)
        children = [n for n, _ in stack.named_children()]
        if first_blocks > len(children):
            raise ValueError(f"first_blocks is {first_blocks} but '{path}' has {len(children)} blocks")
        chosen.update(f"{path}.{c}" for c in children[:first_blocks])
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise KeyError(f"pattern '{pattern}' matches no module of the model"
                           f"{did_you_mean(pattern, names)}")
        chosen.update(hits)
    # A module inside another chosen module belongs to that group.
    top = [n for n in chosen if not any(n.startswith(o + ".") for o in chosen if o != n)]
    order = {n: i for i, n in enumerate(names)}
    return sorted(top, key=order.__getitem__)


class LayerFreezing(Strategy):
    """Freeze modules by name pattern or the first N blocks (batch norms in eval), optionally thawing gradually.

    Logs the trainable parameter count every step.
    """

    needs_teacher = False  # acts on the trained model's own inputs or layers: kept when it trains alone

    name = "layer_freezing"

    class Args(Args):
        model: str = Field(default="student", description="the model whose layers are frozen (trained by the stage)")
        modules: list[str] = Field(default_factory=list,
                                   description="glob patterns over module names (fnmatch), e.g. encoder.layers.0")
        first_blocks: int | None = Field(default=None, ge=1, description="freeze the first N blocks of the stack")
        blocks: str | None = Field(default=None, description="the block stack (default: the model's "
                                                             "block_container, e.g. encoder.layers)")
        frozen_fraction: ScheduleArg | None = Field(
            default=None, description="schedule of the fraction of groups kept frozen (1 = all, 0 = none); "
                                      "groups thaw from the output side. None: frozen for the whole stage")
        frozen_mode: Literal["eval", "batch_norm_eval", "train"] = Field(
            default="eval", description="eval: frozen groups in eval mode (batch-norm statistics fixed, dropout "
                                        "off); batch_norm_eval: only their batch norms; train: as the model")

        @model_validator(mode="after")
        def _something(self) -> LayerFreezing.Args:
            if not self.modules and not self.first_blocks:
                raise ValueError("give 'modules' (name patterns) and/or 'first_blocks'")
            return self

    def __init__(self, args: Args) -> None:
        super().__init__(args)
        self.schedule: Schedule | None = args.frozen_fraction.build() if args.frozen_fraction is not None else None
        self.groups: list[str] = []
        self._params: list[list[nn.Parameter]] = []
        self._modules: list[list[nn.Module]] = []
        self._model: nn.Module | None = None

    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        check.require_model(args.model)
        if args.model not in check.stage.train:
            raise check.error(f"model '{args.model}' is not trained in stage '{check.stage.name}' (train: "
                              f"{', '.join(check.stage.train)}): there is nothing to freeze", "model")
        model = check.build_model(args.model)
        try:
            groups = frozen_groups(model, args.modules, args.first_blocks, args.blocks)
        except KeyError as e:
            raise check.error(str(e).strip("'\""), "blocks" if "pattern" not in str(e) else "modules") from None
        except ValueError as e:
            raise check.error(str(e), "first_blocks") from None
        frozen = {id(p) for g in groups for p in model.get_submodule(g).parameters()}
        if args.frozen_fraction is None and all(id(p) in frozen for p in model.parameters()):
            raise check.error(f"these patterns freeze every parameter of '{args.model}' for the whole stage",
                              "modules" if args.modules else "first_blocks")

    # -- hooks ---------------------------------------------------------------------------------------
    @hookimpl
    def compressor_prepare_models(self, ctx: StageContext) -> None:
        model = ctx.model(self.args.model)
        self._model = model
        self.groups = frozen_groups(model, self.args.modules, self.args.first_blocks, self.args.blocks)
        seen: set[int] = set()
        self._params, self._modules = [], []
        for g in self.groups:
            module = model.get_submodule(g)
            params = [p for p in module.parameters() if id(p) not in seen]
            seen.update(id(p) for p in params)
            self._params.append(params)
            if self.args.frozen_mode == "batch_norm_eval":
                self._modules.append([m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)])
            else:
                self._modules.append(list(module.modules()))
        if self.schedule is None:
            # Frozen for the whole stage: out of the optimizer altogether.
            self._apply(len(self.groups))
        # With a schedule every parameter must be in the optimizer (built after this hook) so that thawed
        # groups train; freezing then happens per step (no gradient = no update, weight decay included).

    @hookimpl
    def compressor_step_start(self, ctx: StageContext) -> None:
        k = self.frozen_count(ctx)
        self._apply(k)
        assert self._model is not None
        ctx.log_scalar("trainable_parameters", sum(p.numel() for p in self._model.parameters() if p.requires_grad))
        ctx.log_scalar("frozen_groups", k)

    @hookimpl
    def compressor_finalize_student(self, ctx: StageContext) -> None:
        for params in self._params:  # the next stage decides for itself
            for p in params:
                p.requires_grad_(True)
        if self._model is not None:
            self._model.train(self._model.training)

    # -- helpers -------------------------------------------------------------------------------------
    def frozen_count(self, ctx: StageContext) -> int:
        """Groups frozen at this step: all of them, or ``ceil(f_t * G)`` under a schedule."""
        n = len(self.groups)
        if self.schedule is None:
            return n
        f = min(max(float(self.schedule(ctx)), 0.0), 1.0)
        return min(n, math.ceil(f * n - 1e-9))

    def _apply(self, k: int) -> None:
        training = self._model.training if self._model is not None else True
        for i, (params, modules) in enumerate(zip(self._params, self._modules)):
            frozen = i < k
            for p in params:
                p.requires_grad_(not frozen)
            for m in modules:
                m.training = training and not (frozen and self.args.frozen_mode != "train")


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", LayerFreezing.name, LayerFreezing)
