"""Base class of strategy plugins (logit KD, module replacing, lattice KD, ...).

A strategy is a class whose methods implement hooks from :mod:`compressor.core.hookspecs`; the engine creates one
instance per stage that lists it and registers it for that stage only. A minimal strategy::

    from compressor import Args, Strategy, hookimpl

    class L2Hint(Strategy):
        name = "l2_hint"

        class Args(Args):
            weight: float = 1.0

        @hookimpl
        def compressor_loss_terms(self, ctx, batch, outputs, losses):
            ...
            losses.add("hint", value, self.args.weight)

    @hookimpl
    def compressor_register(registry):
        registry.add("strategy", L2Hint.name, L2Hint)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from compressor.core.registry import Args, NoArgs


@dataclass(frozen=True)
class Augmentation:
    """What a strategy changes in training inputs: batch ``keys`` it rewrites (``features`` for SpecAugment,
    token ids for span masking) and ``models`` whose internal activations it perturbs (hidden masking).

    Teacher-output caching is refused when a frozen teacher reads one of those keys or is one of those models:
    its outputs would then change from epoch to epoch.
    """

    keys: frozenset[str] = field(default_factory=frozenset)
    models: frozenset[str] = field(default_factory=frozenset)


class Strategy:
    """One compression strategy, configured by its validated ``Args``."""

    name: ClassVar[str] = ""
    Args: ClassVar[type[Args]] = NoArgs
    #: Whether the strategy reads a teacher (or any model beside the one trained). Training a student alone
    #: (the spec's ``baseline``) keeps only strategies that declare ``False`` (data-side ones: SpecAugment,
    #: masking); the default leaves an undeclared strategy out of that baseline, so it stays a student alone.
    needs_teacher: ClassVar[bool] = True
    #: Whether the strategy gives audio without transcripts its labels (pseudo-labels): a stage with one trains
    #: on that audio too, so its step budget counts it.
    labels_audio: ClassVar[bool] = False

    def __init__(self, args: Args) -> None:
        self.args = args

    @classmethod
    def check(cls, args: Args, check: Any) -> None:
        """Validate the strategy against the whole spec before any work; raise ``check.error(...)``.

        ``check`` (a :class:`compressor.spec.CheckContext`) gives the spec, the stage and its key path, and
        builds models on the meta device (no memory) so module names and shapes can be checked.
        """

    @classmethod
    def augments(cls, args: Args) -> Augmentation:
        """What this strategy changes in training inputs (see :class:`Augmentation`); nothing by default."""
        return Augmentation()

    def state_dict(self) -> dict[str, Any]:
        """State to store in checkpoints (counters, running statistics); tensors and plain values only."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.args!r})"
