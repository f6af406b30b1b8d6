"""Freeze named modules of a model for a stage (an ASR-pre-trained acoustic module under an SLU head).

Modules are matched by name with shell-style patterns (``acoustic``, ``encoder.layers.[0-3]``,
``encoder.*.norm``); a matched module and everything inside it stops receiving gradients, and (with
``eval_mode: true``, the default) stays in eval mode for the whole stage even when the engine switches the
model back to training after an evaluation, so batch norms keep their statistics and dropout stays off. The
number of trainable parameters of the model is logged every step (``trainable_parameters``). At the end of the
stage the modules are released; the next stage decides again.

Spec::

    plugins:
      - {name: layer_freezing, model: student, modules: [acoustic]}
"""

from __future__ import annotations

import fnmatch
import types

from pydantic import Field
from torch import nn

from compressor.context import StageContext
from compressor.errors import did_you_mean
from compressor.hookspecs import hookimpl
from compressor.registry import Args, Registry
from compressor.sequences import unwrap
from compressor.spec import CheckContext
from compressor.strategy import Strategy


def _pinned_train(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def matching_modules(model: nn.Module, patterns: list[str]) -> dict[str, nn.Module]:
    """Modules whose names match a pattern, outermost only (a matched module's children are inside it)."""
    out: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if not name or any(name.startswith(prefix + ".") for prefix in out):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            out[name] = module
    return out


class LayerFreezing(Strategy):
    """Named modules get no gradients (and stay in eval mode) for the stage."""

    name = "layer_freezing"

    class Args(Args):
        model: str = "student"
        modules: list[str] = Field(min_length=1, description="module names or shell patterns to freeze")
        eval_mode: bool = Field(default=True, description="keep frozen modules in eval mode (batch-norm "
                                                          "statistics and dropout)")

    def __init__(self, args: Args) -> None:
        super().__init__(args)
        self.frozen: dict[str, nn.Module] = {}

    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        names = check.model_names()
        if args.model not in names:
            raise check.error(f"no model named '{args.model}'{did_you_mean(args.model, names)}", "model")
        stage = check.stage
        if args.model not in stage.train and args.model != stage.forward_model:
            raise check.error(f"'{args.model}' is not trained in this stage: there is nothing to freeze", "model")
        model = check.try_build_model(args.model)
        if model is None:  # checked when the run builds it
            return
        modules = [n for n, _ in model.named_modules() if n]
        for i, pattern in enumerate(args.modules):
            if not any(fnmatch.fnmatchcase(n, pattern) for n in modules):
                raise check.error(f"'{pattern}' matches no module of '{args.model}'{did_you_mean(pattern, modules)}",
                                  "modules", i)

    @hookimpl
    def compressor_prepare_models(self, ctx: StageContext) -> None:
        model = unwrap(ctx.model(self.args.model))
        self.frozen = matching_modules(model, self.args.modules)
        for module in self.frozen.values():
            module.requires_grad_(False)
            if self.args.eval_mode:
                module.eval()
                module.train = types.MethodType(_pinned_train, module)  # type: ignore[method-assign]

    @hookimpl
    def compressor_step_start(self, ctx: StageContext) -> None:
        model = ctx.model(self.args.model)
        ctx.log_scalar("trainable_parameters", sum(p.numel() for p in model.parameters() if p.requires_grad))

    @hookimpl
    def compressor_finalize_student(self, ctx: StageContext) -> None:
        for module in self.frozen.values():
            if "train" in module.__dict__:
                del module.train
        model = ctx.model(self.args.model)
        model.train(model.training)
        self.frozen = {}


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", LayerFreezing.name, LayerFreezing)
