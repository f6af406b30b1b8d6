"""Evaluation on several named sets in one run, so that forgetting shows in the summary (seed 003 Tables 3–5:
WER on the source *and* the target data, before and after fine-tuning)::

    evaluate:
      models: [student]
      before_training: true                       # also evaluate the models as built (pre-trained) first
      sets:
        target: {split: test}                     # the run's own data
        source: {data: {name: read_speech, language: en, frontend: nemo_ctc}, split: test}

A set without ``data`` is a split of the run's data. A set with ``data`` names any dataset; its transcripts
are tokenised with the run's tokenizer (the model's vocabulary), so its alphabet must fit the run's (English
fits German and Spanish; nothing Latin fits Russian) and its features must be computed the same way. Both
are checked before any work. ``--set evaluate.sets.source=null`` drops a set.

Results go to ``final/COMPLETE`` under ``sets`` (``{"start"|"final": {model: {set: metrics}}}``) and into a
table in ``summary.md``: a row per model (and per model before training), a column per set and metric.
"""

from __future__ import annotations

from typing import Any

from compressor.core.errors import UserError
from compressor.data.base import DataModule
from compressor.data.cache import default_cache_dir
from compressor.data.compat import retokenize
from compressor.run.components import request_model_inputs, untrained_models


def set_data(run: Any, name: str) -> tuple[DataModule, str]:
    """The data module and split of set ``name`` (built once per run, retokenised with the run's tokenizer)."""
    es = run.loaded.spec.evaluate.sets[name]
    if es.data is None:
        return run.data, es.split
    cache: dict[str, Any] = run.eval_data
    if name not in cache:
        registry = run.plugins.registry
        args = registry.parse_args("dataset", es.data.name, es.data.args(), ("evaluate", "sets", name, "data"))
        module = registry.get("dataset", es.data.name).factory(args, cache_dir=default_cache_dir(), seed=run.seed)
        request_model_inputs(run.loaded, registry, module)
        tokenizer = getattr(run.data, "tokenizer", None)
        if tokenizer is None:
            raise UserError("evaluate.sets: the run's data has no tokenizer to read other sets with")
        retokenize(module, tokenizer, str(run.data.info.get("language", "en")), f"evaluate.sets.{name}",
                   [es.split])
        cache[name] = module
    return cache[name], es.split


def evaluate(run: Any, when: str) -> None:
    """Evaluate ``evaluate.models`` on every named set; store under ``run.results["sets"][when]``."""
    spec = run.loaded.spec
    if not spec.evaluate.sets:
        return
    out = run.results.setdefault("sets", {}).setdefault(when, {})
    skipped = untrained_models(spec) if when == "final" else []
    for model_name in [*spec.evaluate.models, *spec.trained_alone()]:
        if model_name not in run.models or model_name in skipped:
            continue
        model = run.models[model_name]
        was_training = model.training
        model.eval()
        for set_name in spec.evaluate.sets:
            data, split = set_data(run, set_name)
            try:
                loader = data.loader(split, spec.stages[-1].batch_size, shuffle=False, seed=run.seed)
            except KeyError as e:
                raise UserError(f"evaluate.sets.{set_name}: {e.args[0]}") from None
            metrics = run.task.evaluate(model, loader, run.device)
            out.setdefault(model_name, {})[set_name] = metrics
            run.log({"type": "eval_set", "when": when, "model": model_name, "set": set_name,
                     **{f"{set_name}/{k}": v for k, v in metrics.items()}})
        model.train(was_training)


def markdown(results: dict[str, Any], main_metric: str = "wer") -> str:
    """Rows: each model before training (when evaluated) and after; columns: each set's metrics."""
    sets = results.get("sets") or {}
    rows: list[tuple[str, dict[str, dict[str, float]]]] = []
    for when, label in (("start", " (before training)"), ("final", "")):
        for model, by_set in (sets.get(when) or {}).items():
            rows.append((model + label, by_set))
    if not rows:
        return ""
    names = list(dict.fromkeys(s for _, by_set in rows for s in by_set))
    metrics = list(dict.fromkeys(k for _, by_set in rows for m in by_set.values() for k in m if k != "loss"))
    metrics.sort(key=lambda k: k != main_metric)
    cols = [(s, k) for s in names for k in metrics]
    lines = ["## Evaluation on named sets", "", "| model | " + " | ".join(f"{s} {k}" for s, k in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for label, by_set in rows:
        cells = [by_set.get(s, {}).get(k) for s, k in cols]
        lines.append(f"| {label} | " + " | ".join("-" if v is None else f"{v:.4f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"
