"""The same student trained alone, in the same run (the spec's ``baseline``).

After the run's stages, a fresh copy of ``baseline.model`` -- built exactly as that model was (same seed, same
``checkpoint``/``init_from``) -- goes through the enabled stages that trained it, with their data, steps, batch
sizes, optimizer and LR schedule, but training only itself and keeping only the strategies that need no
teacher (``Strategy.needs_teacher`` false: SpecAugment, masking). No other model trains. Its stages are named
``<stage>_alone`` in ``metrics.jsonl``; its checkpoints carry the models the stages handed over, so a run
killed while it trains resumes exactly. ``_finish`` then evaluates, saves and reports it as ``<model>_alone``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from compressor.core.checkpoint import load_checked, set_rng_state
from compressor.core.progress import say
from compressor.core.registry import Registry
from compressor.run.components import Run, build_models
from compressor.run.trainer import StageRunner, save_stage_end
from compressor.spec import LoadedSpec

ALONE_PHASE = "alone"  # the ``phase`` of a checkpoint written while the model trains alone


def needs_teacher(registry: Registry, strategy: str) -> bool:
    """Whether a registered strategy reads a teacher (its ``needs_teacher``; true when it does not say)."""
    return bool(getattr(registry.get("strategy", strategy).factory, "needs_teacher", True))


def alone_spec(loaded: LoadedSpec, registry: Registry) -> tuple[LoadedSpec, list[dict[str, Any]]]:
    """The spec as the copy trained alone runs it: the enabled stages that train the model, each renamed
    ``<stage>_alone``, training only the model through itself, with only the strategies that need no teacher;
    and, per stage, the strategies kept and left out."""
    spec = loaded.spec
    assert spec.baseline is not None
    model = spec.baseline.model
    stages, resolved, plan = [], [], []
    for st, rs in zip(spec.stages, loaded.stages):
        if not st.enabled or model not in st.train:
            continue
        keep = [j for j, ref in enumerate(st.plugins) if not needs_teacher(registry, ref.name)]
        copy = st.model_copy(update={"name": f"{st.name}_alone", "train": [model], "frozen": [], "forward": None,
                                     "plugins": [st.plugins[j] for j in keep]})
        stages.append(copy)
        resolved.append(dataclasses.replace(rs, spec=copy, plugin_args=tuple(rs.plugin_args[j] for j in keep)))
        plan.append({"stage": st.name, "kept": [st.plugins[j].name for j in keep],
                     "left_out": [ref.name for j, ref in enumerate(st.plugins) if j not in keep]})
    return dataclasses.replace(loaded, spec=spec.model_copy(update={"stages": stages}), stages=tuple(resolved)), plan


def train_alone(run: Run, state: dict[str, Any] | None = None) -> None:
    """Train the copy of ``baseline.model`` alone and add it to ``run.models`` as ``<model>_alone``.

    ``state``: the last checkpoint when it was written in this phase (a resumed run), else None.
    """
    ((alone_name, source),) = run.loaded.spec.trained_alone().items()
    loaded, plan = alone_spec(run.loaded, run.plugins.registry)
    models = build_models(run.loaded, run.plugins, run.data, {}, run.pretrained, only=[source])
    for model in models.values():
        model.to(run.device)
    info = run.results.setdefault("alone", {"model": alone_name, "copies": source, "stages": [], "plan": plan})
    # every checkpoint of this phase carries the models the stages handed over, so a resume can finish them
    extra = {"phase": ALONE_PHASE, "trained": {n: m.state_dict() for n, m in run.models.items()}}
    alone = Run(loaded, run.plugins, run.run_dir, run.device, run.precision, run.data, run.task, models, run.rank,
                run.world_size, run.metrics, results=run.results, _stage_data=run._stage_data,
                pretrained=run.pretrained, checkpoint_extra=extra)
    alone.eval_data = run.eval_data
    start, mid_stage = 0, None
    if state is not None:
        start = state["stage_index"]
        if state["kind"] == "mid_stage":
            mid_stage = state
        else:
            for name, sd in state["models"].items():
                load_checked(models[name], sd, f"{run.run_dir}/checkpoints/last.pt ({alone_name})")
            set_rng_state(state["rng"])
    left_out = sorted({name for p in plan for name in p["left_out"]})
    say(f"training {source} alone (as {alone_name}) through {len(plan)} stage(s)"
        + (f", without {', '.join(left_out)}" if left_out else ""), enabled=run.is_main)
    for i in range(start, len(loaded.spec.stages)):
        info["stages"].append(StageRunner(alone, i).execute(mid_stage if i == start else None))
        save_stage_end(alone, i + 1)
    run.models[alone_name] = alone.models[source]
