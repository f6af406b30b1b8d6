"""FitNets hint loss (Romero et al., 2015) as a third-party compressor strategy.

The student's output at a named intermediate layer (the *guided* layer) is mapped by a small trained
regressor to the width of the teacher's named layer (the *hint* layer), and their mean squared error is added
to the loss::

    plugins:
      - name: fitnets_hint
        student_layer: encoder      # a submodule name of the student (``dict(model.named_modules())``)
        teacher_layer: encoder
        weight: 0.5

Sequence outputs (B, T, H) are compared frame by frame over the shorter common length; modules that return
tuples (LSTMs) contribute their first element.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from compressor import Args, LossTerms, StageContext, Strategy, hookimpl
from compressor.spec import CheckContext


def _first_tensor(output: Any) -> torch.Tensor:
    while isinstance(output, (tuple, list)):
        output = output[0]
    return output


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
                from compressor.errors import did_you_mean

                raise check.error(f"no layer '{layer}' in the {role}{did_you_mean(layer, [n for n in names if n])}",
                                  f"{role}_layer")

    def _hook(self, key: str):
        def capture(module: nn.Module, inputs: Any, output: Any) -> None:
            self._captured[key] = _first_tensor(output)
        return capture

    @hookimpl
    def compressor_prepare_models(self, ctx: StageContext) -> None:
        student, teacher = ctx.model(self.args.student), ctx.model(self.args.teacher)
        s_layer = dict(student.named_modules())[self.args.student_layer]
        t_layer = dict(teacher.named_modules())[self.args.teacher_layer]
        self._handles = [s_layer.register_forward_hook(self._hook("student")),
                         t_layer.register_forward_hook(self._hook("teacher"))]
        # One forward pass in eval mode on a real batch tells the two widths the regressor must map.
        batch = next(iter(ctx.data.loader("train", 2, shuffle=False)))
        was = (student.training, teacher.training)
        student.eval()
        teacher.eval()
        with torch.no_grad():
            student(batch)
            teacher(batch)
        student.train(was[0])
        teacher.train(was[1])
        s_dim, t_dim = self._captured["student"].shape[-1], self._captured["teacher"].shape[-1]
        ctx.models["hint_regressor"] = nn.Linear(s_dim, t_dim)

    @hookimpl
    def compressor_loss_terms(self, ctx: StageContext, batch: dict[str, Any], outputs: dict[str, torch.Tensor],
                              losses: LossTerms) -> None:
        guided = self._captured["student"]  # filled by the student's forward pass that produced `outputs`
        with torch.no_grad():
            ctx.task.forward(ctx.model(self.args.teacher), batch)
        hint = self._captured["teacher"].detach()
        if guided.dim() == 3 and hint.dim() == 3:
            n = min(guided.shape[1], hint.shape[1])
            guided, hint = guided[:, :n], hint[:, :n]
        regressed = ctx.models["hint_regressor"](guided)
        losses.add("hint", F.mse_loss(regressed.float(), hint.float()), self.args.weight)

    @hookimpl
    def compressor_finalize_student(self, ctx: StageContext) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        ctx.models.pop("hint_regressor", None)  # training aid only: not part of the student


@hookimpl
def compressor_register(registry) -> None:
    registry.add("strategy", FitNetsHint.name, FitNetsHint)
