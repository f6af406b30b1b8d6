"""What a model's structure tells before it runs: the feature widths a module reads and writes, and how
the named modules of a teacher and a student pair up (groups of teacher modules onto student modules), with
the state the pair shares outside its paired modules."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from compressor.core.errors import did_you_mean


def in_out_dims(module: nn.Module) -> tuple[int | None, int | None]:
    """Feature widths a module reads and writes, inferred from its first and last known layers."""

    def dims(m: nn.Module) -> tuple[int, int] | None:
        if isinstance(m, nn.RNNBase):
            out = m.proj_size if getattr(m, "proj_size", 0) else m.hidden_size
            return m.input_size, out * (2 if m.bidirectional else 1)
        if isinstance(m, nn.Linear):
            return m.in_features, m.out_features
        if isinstance(m, nn.MultiheadAttention):
            return m.embed_dim, m.embed_dim
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            return m.in_channels, m.out_channels
        if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) == 1:
            return m.normalized_shape[0], m.normalized_shape[0]
        if isinstance(m, nn.Embedding):
            return None
        return None

    known = [d for d in (dims(m) for m in module.modules()) if d is not None]
    if not known:
        return None, None
    return known[0][0], known[-1][1]


def find_module(model: nn.Module, path: str, who: str) -> nn.Module:
    """The submodule at ``path`` of the ``who`` model (``KeyError`` naming the closest module otherwise)."""
    modules = dict(model.named_modules())
    if path not in modules:
        names = [n for n in modules if n]
        raise KeyError(f"no module '{path}' in the {who}{did_you_mean(path, names)}")
    return modules[path]


@dataclass(frozen=True)
class Pairing:
    """The teacher modules one student module (or consecutive student modules) stands in for."""

    teacher: tuple[str, ...]
    student: tuple[str, ...]


def pair_containers(teacher: nn.Module, student: nn.Module, t_path: str, s_path: str) -> list[Pairing]:
    """Split the ``t_path`` container's N children evenly over the ``s_path`` container's M children."""
    t_children = [n for n, _ in find_module(teacher, t_path, "teacher").named_children()]
    s_children = [n for n, _ in find_module(student, s_path, "student").named_children()]
    if not t_children or not s_children:
        raise ValueError(f"'{t_path if not t_children else s_path}' has no child modules to pair")
    n, m = len(t_children), len(s_children)
    if n % m != 0 or n < m:
        raise ValueError(f"{n} teacher modules in '{t_path}' cannot be split evenly onto {m} student modules "
                         f"in '{s_path}'; list the groups explicitly under 'modules:'")
    k = n // m
    return [Pairing(tuple(f"{t_path}.{c}" for c in t_children[i * k:(i + 1) * k]),
                    (f"{s_path}.{s_children[i]}",)) for i in range(m)]


def validate_pairings(teacher: nn.Module, student: nn.Module, pairings: list[Pairing]) -> None:
    """Raise ``ValueError`` for unknown names, overlaps, non-consecutive groups or mismatched widths."""
    t_mods, s_mods = dict(teacher.named_modules()), dict(student.named_modules())
    seen: dict[str, set[str]] = {"teacher": set(), "student": set()}
    for g in pairings:
        for who, paths, mods in (("teacher", g.teacher, t_mods), ("student", g.student, s_mods)):
            for p in paths:
                if p not in mods or not p:
                    raise ValueError(f"no module '{p}' in the {who}{did_you_mean(p, [n for n in mods if n])}")
                for q in seen[who]:
                    if p == q or p.startswith(q + ".") or q.startswith(p + "."):
                        raise ValueError(f"{who} module '{p}' is paired twice (overlaps '{q}')")
                seen[who].add(p)
            check_consecutive(paths, mods, who)
        t_in, _ = in_out_dims(t_mods[g.teacher[0]])
        _, t_out = in_out_dims(t_mods[g.teacher[-1]])
        s_in, _ = in_out_dims(s_mods[g.student[0]])
        _, s_out = in_out_dims(s_mods[g.student[-1]])
        if t_in is not None and s_in is not None and t_in != s_in:
            raise ValueError(f"student module {list(g.student)} reads width {s_in} but teacher group "
                             f"{list(g.teacher)} reads {t_in}: paired modules must take the same input")
        if t_out is not None and s_out is not None and t_out != s_out:
            raise ValueError(f"student module {list(g.student)} writes width {s_out} but teacher group "
                             f"{list(g.teacher)} writes {t_out}: paired modules must give the same output")


def check_consecutive(paths: tuple[str, ...], mods: dict[str, nn.Module], who: str) -> None:
    """Grouped modules must run one after another: consecutive children of one ModuleList/Sequential."""
    if len(paths) == 1:
        return
    parents = {p.rpartition(".")[0] for p in paths}
    idx = [p.rpartition(".")[2] for p in paths]
    parent = mods.get(next(iter(parents)))
    ok = (len(parents) == 1 and isinstance(parent, (nn.ModuleList, nn.Sequential))
          and all(i.isdigit() for i in idx) and [int(i) for i in idx] == list(range(int(idx[0]),
                                                                                   int(idx[0]) + len(idx))))
    if not ok:
        raise ValueError(f"{who} group {list(paths)} must be consecutive children of one "
                         "ModuleList/Sequential (they run one after another)")


def shared_keys(teacher: nn.Module, student: nn.Module, pairings: list[Pairing]) -> list[str]:
    """Student state keys outside its paired modules (the parts shared with the teacher)."""
    prefixes = tuple(p + "." for g in pairings for p in g.student)
    return [k for k in student.state_dict() if not k.startswith(prefixes)]


def check_shared(teacher: nn.Module, student: nn.Module, pairings: list[Pairing]) -> None:
    """Raise ``ValueError`` for a student tensor outside the paired modules that the teacher cannot share."""
    t_state = teacher.state_dict()
    for key, value in student.state_dict().items():
        if key.startswith(tuple(p + "." for g in pairings for p in g.student)):
            continue
        if key not in t_state:
            raise ValueError(f"student tensor '{key}' is outside the paired modules and has no teacher "
                             "counterpart to share; pair its module or set copy_shared: false")
        if tuple(t_state[key].shape) != tuple(value.shape):
            raise ValueError(f"student '{key}' {tuple(value.shape)} and teacher {tuple(t_state[key].shape)} "
                             "differ in shape: parts outside the paired modules must match (copy_shared)")


@torch.no_grad()
def copy_shared(teacher: nn.Module, student: nn.Module, pairings: list[Pairing]) -> None:
    """Copy the teacher's tensors outside the paired modules into the student (the shared parts)."""
    t_state = teacher.state_dict()
    s_state = student.state_dict()
    for key in shared_keys(teacher, student, pairings):
        s_state[key].copy_(t_state[key])
