"""Module replacing (BERT-of-Theseus; seed 002's LCMR for RNN-T, Eq. 1-5).

A *module* is a group of layers. Each student module stands in for a group of teacher modules. At every
training step an independent draw ``r_i ~ Bernoulli(p)`` per student module decides whether the student
module replaces its teacher group (Eq. 1-2)::

    p_i = (1 - r_i) * H_i^teacher(p_{i-1}) + r_i * H_i^student(p_{i-1})

and the hybrid is trained with the task loss alone (Eq. 3). The replacing rate ``p`` follows a registered
schedule (``constant``, ``linear``, ``log_curriculum`` = Eq. 5, ``exponential``, or a third party's) and
is logged every step as ``replacing_rate``. The student modules, trained in place, *are* the compact
student's modules (Eq. 4); the parts of the model that are not replaced (embeddings, projections, the joint
network) are shared from the teacher, as in BERT-of-Theseus, and copied into the student.

Fine-tuning (Fig. 2: module replacing for epochs 0-75, the student alone for 75-100, under one learning-rate
schedule, Sec. 4): ``finetune: 0.25`` makes the last quarter of the stage fine-tune the combined student,
every one of its parameters, shared parts included, with the stage's optimizer and LR schedule carrying on.
With ``finetune: 0`` (the default) the stage only replaces modules and a following stage fine-tunes.

Two training strategies (seed 002, Sec. 3.1), chosen by the stage:

* strategy 1, teacher trained too (from scratch): ``train: [teacher, student]``
* strategy 2, pre-trained teacher frozen, only student modules update: ``train: [student], frozen: [teacher]``

Spec::

    stages:
      - name: lcmr
        train: [student]
        frozen: [teacher]
        plugins:
          - name: module_replacing
            modules:                                   # explicit groups ...
              - {teacher: [encoder.layers.0, encoder.layers.1], student: [encoder.layers.0]}
              - {teacher: [encoder.layers.2, encoder.layers.3], student: [encoder.layers.1]}
              - {teacher: [predictor.layers.0, predictor.layers.1], student: [predictor.layers.0]}
            # containers: [encoder.layers, predictor.layers]   # ... or pair containers' children evenly
            replacing_rate: {name: log_curriculum, base: 40, reach_at: 0.75}
            finetune: 0.25                             # last 25% of the stage: the student alone
            init_student: first                        # student modules start as their groups' first layers

Initialisation: by default the student modules keep their own (random) initialisation; ``init_student: first``
(or ``last``) copies into each student module the weights of the first (last) teacher modules of its group,
as BERT-of-Theseus initialises its successor from the predecessor's layers, when their shapes match (checked
at validation). With residual layers the student then starts as the teacher with layers left out.

Nothing here is RNN-T specific: any model whose teacher and student modules are named works (a Transformer
encoder's ``layers.N``, an MLP's ``blocks.N``). How it works: the hybrid (``ctx.models["theseus"]``, the
stage's forward model) is a shallow copy of the teacher's module tree in which the first module of each
teacher group is replaced by a switch and the rest of the group by pass-throughs; all layers are shared
objects, so neither the teacher's nor the student's own structure (or checkpoint keys) changes. Grouped
teacher modules must run one after another, each one's output feeding the next (a ModuleList/Sequential
stack); a module returning a tuple (an LSTM's ``(output, state)``) feeds its first element on. In eval mode
the hybrid uses every student module, so validation during the stage measures the student. In the
fine-tuning phase the hybrid runs the student model itself; whether it has begun is a buffer of the hybrid
(``finetuning``), so checkpoints, the best-model hand-off and a resumed run all know it.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, model_validator
from torch import nn

from compressor.core.context import StageContext
from compressor.core.errors import UserError
from compressor.core.hookspecs import hookimpl
from compressor.core.introspect import Pairing, check_shared, copy_shared, pair_containers, validate_pairings
from compressor.core.registry import Args, Registry
from compressor.core.schedules import Schedule, ScheduleArg
from compressor.core.strategy import Strategy
from compressor.spec import CheckContext

# --------------------------------------------------------------------------------------------------
# Pairing
# --------------------------------------------------------------------------------------------------


class ModuleGroup(BaseModel):
    """One student module (a list of consecutive layers) standing in for a group of teacher layers."""

    teacher: list[str] = Field(min_length=1)
    student: list[str] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _listify(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {k: ([v] if isinstance(v, str) else v) for k, v in data.items()}
        return data


class ContainerPair(BaseModel):
    teacher: str
    student: str


# --------------------------------------------------------------------------------------------------
# The hybrid model
# --------------------------------------------------------------------------------------------------


def _main(out: Any) -> Any:
    """The part of a module's output the next layer reads: an LSTM's output of ``(output, state)``."""
    return out[0] if isinstance(out, tuple) else out


def _run_chain(chain: nn.ModuleList, args: tuple, kwargs: dict[str, Any]) -> Any:
    """Run layers one after another; extra arguments (masks) reach every layer except an RNN's initial
    state, which belongs to the first layer only."""
    out = chain[0](*args, **kwargs)
    for layer in list(chain)[1:]:
        if isinstance(layer, nn.RNNBase):
            out = layer(_main(out))
        else:
            out = layer(_main(out), *args[1:], **kwargs)
    return out


class _Gates:
    """Per-step draws shared by the switches (not a module: holds no weights)."""

    def __init__(self, n: int) -> None:
        self.r = torch.ones(n)
        self.pending: dict[int, Any] = {}


class ReplaceSwitch(nn.Module):
    """Stands where a teacher group starts: runs the teacher group (r_i = 0) or the student's (r_i = 1)."""

    def __init__(self, index: int, teacher: list[nn.Module], student: list[nn.Module], gates: _Gates,
                 group_size: int) -> None:
        super().__init__()
        self.index = index
        self.teacher = nn.ModuleList(teacher)
        self.student = nn.ModuleList(student)
        self._gates = gates
        self._group_size = group_size
        t_rnn, s_rnn = isinstance(teacher[-1], nn.RNNBase), isinstance(student[-1], nn.RNNBase)
        self._adapt = "wrap" if t_rnn and not s_rnn else "unwrap" if s_rnn and not t_rnn else None

    def use_student(self) -> bool:
        return (not self.training) or bool(self._gates.r[self.index] > 0.5)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.use_student():
            out = _run_chain(self.student, args, kwargs)
            if self._adapt == "wrap":
                out = (out, None)
            elif self._adapt == "unwrap":
                out = out[0]
        else:
            out = _run_chain(self.teacher, args, kwargs)
        if self._group_size > 1:
            self._gates.pending[self.index] = out
        return out

    def __getattr__(self, name: str) -> Any:
        # Containers may inspect their layers (nn.TransformerEncoder reads layers[0].self_attn): the switch
        # answers for the teacher module it stands in for.
        try:
            return super().__getattr__(name)
        except AttributeError:
            teacher = self._modules.get("teacher")
            if teacher is None or name.startswith("_"):
                raise
            return getattr(teacher[0], name)


class PassThrough(nn.Module):
    """Stands at the other positions of a teacher group: returns the group's output (already computed)."""

    def __init__(self, index: int, gates: _Gates) -> None:
        super().__init__()
        self.index = index
        self._gates = gates

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.index not in self._gates.pending:
            raise RuntimeError(f"module group {self.index} ran out of order: a grouped teacher module was "
                               "called before the first module of its group")
        return self._gates.pending[self.index]


class TheseusModel(nn.Module):
    """The teacher with its module groups switchable to student modules (shares every layer).

    Once :meth:`start_finetuning` has been called it runs the ``student`` model itself (every attribute the
    task or a decoder reads, ``encode``/``predict``/``join`` included, then comes from the student).
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, pairings: list[Pairing]) -> None:
        super().__init__()
        self.pairings = pairings
        self.gates = _Gates(len(pairings))
        self.student = student  # registered, so a DDP wrapper of the hybrid also syncs the student's own parts
        self.register_buffer("finetuning", torch.zeros((), dtype=torch.uint8))
        t_mods, s_mods = dict(teacher.named_modules()), dict(student.named_modules())
        root = _shallow(teacher)
        copies: dict[str, nn.Module] = {"": root}

        def copied(path: str) -> nn.Module:
            if path not in copies:
                parent_path, _, name = path.rpartition(".")
                parent = copied(parent_path)
                new = _shallow(t_mods[path])
                parent._modules[name] = new
                copies[path] = new
            return copies[path]

        for i, g in enumerate(pairings):
            switch = ReplaceSwitch(i, [t_mods[p] for p in g.teacher], [s_mods[p] for p in g.student],
                                   self.gates, len(g.teacher))
            for j, path in enumerate(g.teacher):
                parent_path, _, name = path.rpartition(".")
                copied(parent_path)._modules[name] = switch if j == 0 else PassThrough(i, self.gates)
        self.model = root

    def draw(self, p: float) -> torch.Tensor:
        """r_i ~ Bernoulli(p) for every student module (Eq. 1), from torch's global generator."""
        self.gates.r = torch.bernoulli(torch.full((len(self.pairings),), float(p)))
        return self.gates.r

    def set_gates(self, r: list[int] | torch.Tensor) -> None:
        self.gates.r = torch.as_tensor(r, dtype=torch.float32)

    @property
    def is_finetuning(self) -> bool:
        return bool(self._buffers["finetuning"])

    def start_finetuning(self) -> None:
        """From now on run the combined student alone (Eq. 4), every one of its parameters trainable."""
        self._buffers["finetuning"].fill_(1)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_finetuning:
            return self.student(*args, **kwargs)
        self.gates.pending.clear()
        try:
            return self.model(*args, **kwargs)
        finally:
            self.gates.pending.clear()

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            model = self._modules.get("model")
            if model is None or name.startswith("_"):
                raise
            if self.is_finetuning:
                return getattr(self._modules["student"], name)
            return getattr(model, name)  # encode/predict/join etc. of the hybrid tree


def _shallow(module: nn.Module) -> nn.Module:
    """A new module object sharing all parameters, buffers and children, with its own child table."""
    new = copy.copy(module)
    new._modules = dict(module._modules)
    return new


# --------------------------------------------------------------------------------------------------
# The strategy
# --------------------------------------------------------------------------------------------------


class _EndClock:
    def __init__(self, steps: int, epochs: int) -> None:
        self.step, self.epoch = steps, max(0, epochs - 1)
        self.total_steps, self.total_epochs = steps, epochs
        self.steps_per_epoch = max(1, steps // max(1, epochs))
        self.batch_error = None


def finetune_start(fraction: float, total_steps: int) -> int | None:
    """The first step of the fine-tuning phase (the last ``fraction`` of the stage), or None without one."""
    if fraction <= 0:
        return None
    return min(total_steps - 1, max(0, round((1.0 - fraction) * total_steps)))


def end_value(schedule: Schedule, total_steps: int, total_epochs: int) -> float:
    """The replacing rate when the stage ends (after its last step), and at its last step; the larger."""
    last = schedule.final_value(total_steps, total_epochs)
    return max(last, schedule(_EndClock(total_steps, total_epochs)))


def init_from_groups(teacher: nn.Module, student: nn.Module, pairings: list[Pairing], which: str,
                     dry_run: bool = False) -> None:
    """Copy into the student modules of every group the weights of the group's first (``which="first"``) or
    last teacher modules, one teacher module per student module; every shape is checked before any copy."""
    t_mods, s_mods = dict(teacher.named_modules()), dict(student.named_modules())
    copies: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []
    for pair in pairings:
        k = len(pair.student)
        if k > len(pair.teacher):
            raise ValueError(f"student modules {list(pair.student)} outnumber their teacher group")
        sources = pair.teacher[:k] if which == "first" else pair.teacher[-k:]
        for t_name, s_name in zip(sources, pair.student):
            t_state, s_state = t_mods[t_name].state_dict(), s_mods[s_name].state_dict()
            if t_state.keys() != s_state.keys() or any(t_state[n].shape != s_state[n].shape for n in t_state):
                raise ValueError(f"teacher module '{t_name}' and student module '{s_name}' differ in shape: "
                                 f"init_student: {which} needs them equal")
            copies.append((t_state, s_state))
    if not dry_run:
        with torch.no_grad():
            for t_state, s_state in copies:
                for n, tensor in s_state.items():
                    tensor.copy_(t_state[n])


class ModuleReplacing(Strategy):
    """Progressive module replacing (BERT-of-Theseus / LCMR): student modules replace teacher groups."""

    name = "module_replacing"

    class Args(Args):
        teacher: str = "teacher"
        student: str = "student"
        modules: list[ModuleGroup] | None = Field(
            default=None, description="explicit groups: [{teacher: [a, b], student: [c]}, ...]")
        containers: list[str | ContainerPair] | None = Field(
            default=None,
            description="pair containers' children evenly, e.g. [encoder.layers, predictor.layers]")
        replacing_rate: ScheduleArg = Field(
            default_factory=lambda: ScheduleArg(name="log_curriculum", base=40.0),
            description="p, the replacing rate: any registered schedule (or a number, a constant rate)")
        copy_shared: bool = Field(
            default=True, description="share the teacher's unpaired parts (embedding, joint network) with "
                                      "the student: copied at the start and at the end of the stage")
        allow_partial: bool = Field(
            default=False, description="accept a schedule that ends below p = 1 (e.g. constant 0.75 followed "
                                       "by a fine-tuning stage, as in seed 002's Table 5)")
        finetune: float = Field(
            default=0.0, ge=0, lt=1,
            description="fraction of the stage, at its end, that fine-tunes the combined student alone with "
                        "every student parameter trained and the stage's optimizer and LR schedule carrying "
                        "on (seed 002: epochs 75-100 of 100 = 0.25); 0 = a later stage fine-tunes")
        wrapper: str = Field(default="theseus", description="name of the hybrid in ctx.models")
        init_student: Literal["random", "first", "last"] = Field(
            default="random",
            description="start each student module as a copy of the first (or last) modules of its teacher group "
                        "(BERT-of-Theseus initialises the successor from the predecessor's layers); random: "
                        "the student's own initialisation")

        @model_validator(mode="after")
        def _one_way(self) -> ModuleReplacing.Args:
            if (self.modules is None) == (self.containers is None):
                raise ValueError("give exactly one of 'modules' (explicit groups) or 'containers' "
                                 "(even split)")
            return self

    def __init__(self, args: Args) -> None:
        super().__init__(args)
        self.schedule: Schedule = args.replacing_rate.build()
        self.hybrid: TheseusModel | None = None
        self._previous_forward: str | None = None
        self.finetune_start: int | None = None

    # -- pairing ------------------------------------------------------------------------------------
    def pairings(self, teacher: nn.Module, student: nn.Module) -> list[Pairing]:
        if self.args.modules is not None:
            return [Pairing(tuple(g.teacher), tuple(g.student)) for g in self.args.modules]
        out: list[Pairing] = []
        for item in self.args.containers or []:
            t, s = (item, item) if isinstance(item, str) else (item.teacher, item.student)
            out += pair_containers(teacher, student, t, s)
        return out

    # -- validation ---------------------------------------------------------------------------------
    @classmethod
    def check(cls, args: Args, check: CheckContext) -> None:
        names = check.model_names()
        for key in ("teacher", "student"):
            name = getattr(args, key)
            check.require_model(name, key)
        if args.teacher == args.student:
            raise check.error("teacher and student must be different models", "student")
        stage = check.stage
        if args.student not in stage.train:
            raise check.error(f"the student '{args.student}' must be listed under the stage's train")
        if args.teacher not in stage.train and args.teacher not in stage.frozen:
            raise check.error(f"list the teacher '{args.teacher}' under the stage's train (strategy 1: "
                              "trained with the student) or frozen (strategy 2: pre-trained, only student "
                              "modules update)")
        if args.wrapper in names:
            raise check.error(f"wrapper name '{args.wrapper}' is already a model's name", "wrapper")
        # checkpoints were checked against their models before any strategy check (spec.check_checkpoint)
        teacher, student = check.build_model(args.teacher), check.build_model(args.student)
        strategy = cls.__new__(cls)
        strategy.args = args
        try:
            pairings = strategy.pairings(teacher, student)
        except (KeyError, ValueError) as e:
            raise check.error(str(e).strip("'\""), "containers") from None
        where = "modules" if args.modules is not None else "containers"
        try:
            validate_pairings(teacher, student, pairings)
            if args.copy_shared:
                check_shared(teacher, student, pairings)
        except ValueError as e:
            raise check.error(str(e), where) from None
        if args.init_student != "random":
            try:
                init_from_groups(teacher, student, pairings, args.init_student, dry_run=True)
            except ValueError as e:
                raise check.error(str(e), "init_student") from None
        schedule = args.replacing_rate.build()  # validated with the spec by ScheduleArg
        if not args.allow_partial and args.finetune == 0:
            check_reaches_one(check, schedule)

    # -- hooks --------------------------------------------------------------------------------------
    @hookimpl
    def compressor_prepare_models(self, ctx: StageContext) -> None:
        teacher, student = ctx.model(self.args.teacher), ctx.model(self.args.student)
        pairings = self.pairings(teacher, student)
        validate_pairings(teacher, student, pairings)
        if self.args.copy_shared:
            copy_shared(teacher, student, pairings)
        if self.args.init_student != "random":  # a resumed run's checkpoint overwrites this afterwards
            init_from_groups(teacher, student, pairings, self.args.init_student)
        self.finetune_start = finetune_start(self.args.finetune, ctx.total_steps)
        if self.finetune_start is None and not self.args.allow_partial:
            final = end_value(self.schedule, ctx.total_steps, ctx.total_epochs)
            if final < 1.0 - 1e-6:
                raise UserError(f"stage '{ctx.name}': the replacing rate ends at p = {final:.3f} < 1 after "
                                f"{ctx.total_steps} steps; the student would never run alone "
                                "(set allow_partial: true if a fine-tuning stage follows)")
        self.hybrid = TheseusModel(teacher, student, pairings).to(ctx.device)
        ctx.models[self.args.wrapper] = self.hybrid
        self._previous_forward = ctx.forward_model
        ctx.forward_model = self.args.wrapper

    @hookimpl
    def compressor_step_start(self, ctx: StageContext) -> None:
        assert self.hybrid is not None
        if self.finetune_start is not None and ctx.step >= self.finetune_start:
            if not self.hybrid.is_finetuning:  # (a run resumed within the phase has it set already)
                if self.args.copy_shared:
                    copy_shared(ctx.model(self.args.teacher), ctx.model(self.args.student), self.hybrid.pairings)
                self.hybrid.start_finetuning()
            ctx.log_scalar("replacing_rate", 1.0)
            ctx.log_scalar("student_modules_used", 1.0)
            return
        p = float(min(max(self.schedule(ctx), 0.0), 1.0))
        r = self.hybrid.draw(p)
        ctx.log_scalar("replacing_rate", p)
        ctx.log_scalar("student_modules_used", float(r.mean()))

    @hookimpl
    def compressor_finalize_student(self, ctx: StageContext) -> None:
        teacher, student = ctx.model(self.args.teacher), ctx.model(self.args.student)
        # After fine-tuning the student's shared parts are its own (copying would undo the fine-tuning); the
        # best-model hand-off may have restored weights from before it, which the hybrid's buffer records.
        if self.args.copy_shared and self.hybrid is not None and not self.hybrid.is_finetuning:
            copy_shared(teacher, student, self.hybrid.pairings)
        ctx.models.pop(self.args.wrapper, None)
        if ctx.forward_model == self.args.wrapper:
            ctx.forward_model = self._previous_forward or self.args.student
        self.hybrid = None


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def check_reaches_one(check: CheckContext, schedule: Schedule, key: str = "replacing_rate") -> None:
    """Refuse a schedule that ends below p = 1 over the stage (or for any plausible stage length)."""
    stage = check.stage
    budgets: list[tuple[int, int]]
    if stage.steps is not None:
        epochs = stage.epochs or 1
        budgets = [(stage.steps, min(epochs, stage.steps))]
    elif getattr(schedule.args, "unit", "step") == "epoch":
        budgets = [(stage.epochs or 1, stage.epochs or 1)]
    else:  # steps per epoch unknown before the data is built: try a range, refuse if none reaches 1
        epochs = stage.epochs or 1
        budgets = [(epochs * spe, epochs) for spe in (1, 10, 100, 1000, 10000)]
    finals = [end_value(schedule, s, e) for s, e in budgets]
    if max(finals) < 1.0 - 1e-6:
        p = finals[0] if len(finals) == 1 else max(finals)
        raise check.error(f"the {key} schedule ends at p = {p:.3g} < 1, so the student never runs alone "
                          "(raise it to reach 1, or set allow_partial: true when a fine-tuning stage "
                          "follows)",
                          key)
    if any(math.isnan(f) for f in finals):
        raise check.error(f"the {key} schedule gives NaN", key)


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("strategy", ModuleReplacing.name, ModuleReplacing)
