"""Optimizers as registered components (kind ``optimizer``): a stage names one, ``{name: lamb, lr: 1e-3}``.

Built in: ``adamw``, ``adam``, ``sgd`` (torch) and ``novograd``, ``lamb`` from the maintained
``pytorch-optimizer`` library (NovoGrad as seed 003 trains QuartzNet; LAMB as seed 002 trains the RNN-T).
A third party adds one from ``compressor_register``::

    registry.add("optimizer", "my_opt", build_my_opt, args=MyOptArgs)   # build_my_opt(args, params)

``args`` must subclass :class:`OptimizerArgs` (every optimizer has a learning rate and a weight decay).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from pydantic import Field, field_validator

from compressor.core.registry import Args

Params = Iterable[torch.nn.Parameter]


def _unit_interval(name: str) -> Callable[[tuple[float, float]], tuple[float, float]]:
    def check(v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"{name} must be in [0, 1)")
        return v

    return check


class OptimizerArgs(Args):
    """What every optimizer takes: the base learning rate (the LR schedule scales it) and weight decay."""

    lr: float = Field(default=1e-3, gt=0, le=10, allow_inf_nan=False, description="base learning rate")
    weight_decay: float = Field(default=0.0, ge=0, le=10, allow_inf_nan=False)


class AdamArgs(OptimizerArgs):
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0, allow_inf_nan=False)

    _betas = field_validator("betas")(_unit_interval("betas"))


class SGDArgs(OptimizerArgs):
    momentum: float = Field(default=0.9, ge=0, lt=1)
    nesterov: bool = False


class NovoGradArgs(OptimizerArgs):
    """NovoGrad (Ginsburg et al. 2019), layer-wise second moments; seed 003 trains QuartzNet with it."""

    betas: tuple[float, float] = Field(default=(0.95, 0.25), description="(β1, β2); seed 003 uses 0.95, 0.25")
    grad_averaging: bool = False
    eps: float = Field(default=1e-8, gt=0, allow_inf_nan=False)

    _betas = field_validator("betas")(_unit_interval("betas"))


class LambArgs(OptimizerArgs):
    """LAMB (You et al. 2020), layer-wise trust ratio; seed 002 trains the RNN-T with it."""

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-6, gt=0, allow_inf_nan=False)

    _betas = field_validator("betas")(_unit_interval("betas"))


def build_adamw(args: AdamArgs, params: Params) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay), torch's implementation."""
    return torch.optim.AdamW(params, lr=args.lr, betas=args.betas, eps=args.eps, weight_decay=args.weight_decay)


def build_adam(args: AdamArgs, params: Params) -> torch.optim.Optimizer:
    """Adam (L2 weight decay), torch's implementation."""
    return torch.optim.Adam(params, lr=args.lr, betas=args.betas, eps=args.eps, weight_decay=args.weight_decay)


def build_sgd(args: SGDArgs, params: Params) -> torch.optim.Optimizer:
    """SGD with momentum, torch's implementation."""
    return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
                           weight_decay=args.weight_decay)


def build_novograd(args: NovoGradArgs, params: Params) -> torch.optim.Optimizer:
    """NovoGrad from pytorch-optimizer (seed 003's optimizer)."""
    from pytorch_optimizer import NovoGrad

    return NovoGrad(params, lr=args.lr, betas=args.betas, weight_decay=args.weight_decay,
                    grad_averaging=args.grad_averaging, eps=args.eps)


def build_lamb(args: LambArgs, params: Params) -> torch.optim.Optimizer:
    """LAMB from pytorch-optimizer (seed 002's optimizer)."""
    from pytorch_optimizer import Lamb

    return Lamb(params, lr=args.lr, betas=args.betas, weight_decay=args.weight_decay, eps=args.eps)


BUILTIN_OPTIMIZERS: list[tuple[str, Callable[..., torch.optim.Optimizer], type[OptimizerArgs]]] = [
    ("adamw", build_adamw, AdamArgs),
    ("adam", build_adam, AdamArgs),
    ("sgd", build_sgd, SGDArgs),
    ("novograd", build_novograd, NovoGradArgs),
    ("lamb", build_lamb, LambArgs),
]
