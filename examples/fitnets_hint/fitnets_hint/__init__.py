"""FitNets hint loss (Romero et al., 2015) as a third-party compressor strategy.

The student's output at a named intermediate layer (the *guided* layer) is mapped by a small trained
regressor to the width of the teacher's named layer (the *hint* layer), and their mean squared error is added
to the loss::

    plugins:
      - name: fitnets_hint
        student_layer: encoder      # a submodule name of the student (``dict(model.named_modules())``)
        teacher_layer: encoder
        weight: 0.5

Sequence outputs (B, T, H) are compared frame by frame over the shorter common length, averaged over the real
frames of each utterance only (padding is left out: ``compressor.core.sequences.valid_lengths`` and
``length_mask``); modules that return tuples (LSTMs) contribute their first element (``module_output``). The
teacher runs once per step, shared with any other strategy that needs it (``ctx.forward_once``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from compressor import Args, LossTerms, StageContext, Strategy, hookimpl
from compressor.core.sequences import length_mask, module_output, probe, valid_lengths
from compressor.spec import CheckContext


class FitNetsHint(Strategy):
    """MSE between a regressed student intermediate layer and a teacher intermediate layer."""

    name = "fitnets_hint"

    class Args(Args):
        student_layer: str
        teacher_layer: str
        teacher: str = "teacher"
        student: str = "student"
        weight: float = Field(default=1.0, ge=0)

    def __init__(self, args: Args) -> None:
        super().__init__(args)
        self._captured: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        for role, layer in (("teacher", args.teacher_layer), ("student", args.student_layer)):
            model_name = getattr(args, role)
            if model_name not in check.model_names():
                raise check.error(f"no model named '{model_name}'", role)
            names = dict(check.build_model(model_name).named_modules())
            if layer not in names:
                from compressor.core.errors import did_you_mean

                raise check.error(f"no layer '{layer}' in the {role}{did_you_mean(layer, [n for n in names if n])}",
                                  f"{role}_layer")

    def _capture(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self._captured["student"] = module_output(output, 0)

    @hookimpl
    def compressor_prepare_models(self, ctx: StageContext) -> None:
        student, teacher = ctx.model(self.args.student), ctx.model(self.args.teacher)
        s_layer = dict(student.named_modules())[self.args.student_layer]
        self._handles = [s_layer.register_forward_hook(self._capture)]
        ctx.watch(self.args.teacher, [self.args.teacher_layer])  # its output comes with the shared forward
        # One forward of each in eval mode on a real batch tells the two widths the regressor must map.
        batch = next(iter(ctx.data.loader("train", 2, shuffle=False)))
        _, s_out = probe(student, batch, [self.args.student_layer], forward=ctx.task.forward)
        _, t_out = probe(teacher, batch, [self.args.teacher_layer], forward=ctx.task.forward)
        s_dim = module_output(s_out[self.args.student_layer], 0).shape[-1]
        t_dim = module_output(t_out[self.args.teacher_layer], 0).shape[-1]
        ctx.models["hint_regressor"] = nn.Linear(s_dim, t_dim)

    @hookimpl
    def compressor_loss_terms(self, ctx: StageContext, batch: dict[str, Any], outputs: dict[str, torch.Tensor],
                              losses: LossTerms) -> None:
        guided = self._captured["student"]  # filled by the student's forward pass that produced `outputs`
        shared = ctx.forward_once(self.args.teacher, batch)  # one teacher forward per step, for every strategy
        hint = module_output(shared.modules[self.args.teacher_layer], 0).detach().float()
        regressed = ctx.models["hint_regressor"](guided).float()
        if regressed.dim() == 3 and hint.dim() == 3:  # (B, T, H): the real frames of each utterance only
            n = min(regressed.shape[1], hint.shape[1])
            regressed, hint = regressed[:, :n], hint[:, :n]
            lengths = valid_lengths(ctx.model(self.args.student), batch, n)
            error = ((regressed - hint) ** 2).mean(-1)  # (B, n)
            value = error[length_mask(lengths, n)].mean() if lengths is not None else error.mean()
        else:
            value = F.mse_loss(regressed, hint)
        losses.add("hint", value, self.args.weight)

    @hookimpl
    def compressor_finalize_student(self, ctx: StageContext) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        ctx.models.pop("hint_regressor", None)  # training aid only: not part of the student


@hookimpl
def compressor_register(registry) -> None:
    registry.add("strategy", FitNetsHint.name, FitNetsHint)
