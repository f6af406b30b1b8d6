"""Named evaluation sets (:mod:`compressor.run.eval_sets`), checked before any work."""

from __future__ import annotations

from compressor.core.errors import SpecError
from compressor.core.registry import Registry
from compressor.data.compat import alphabet_clash, feature_clash
from compressor.spec.checks import check_dataset
from compressor.spec.resolved import LoadedSpec


def check(loaded: LoadedSpec, registry: Registry) -> None:
    """Refuse sets whose data is unknown, computes other features or has letters the run cannot write."""
    spec = loaded.spec
    run_hint = registry.get("dataset", spec.data.name).extra.get("info")
    run_info = dict(run_hint(loaded.data_args)) if run_hint else {}
    for name, es in spec.evaluate.sets.items():
        if es is None or es.data is None:
            continue
        where = ("evaluate", "sets", name, "data")
        args = registry.parse_args("dataset", es.data.name, es.data.args(), where)
        check_dataset(registry, es.data.name, args, where)
        hint = registry.get("dataset", es.data.name).extra.get("info")
        info = dict(hint(args)) if hint else {}
        clash = feature_clash(run_info, info)
        if clash is not None:
            key, message = clash
            raise SpecError(f"{message} (the run's data): a set is read by the run's models, so its features "
                            "must be computed the same way", where + (key,))
        run_lang, lang = run_info.get("language"), info.get("language")
        if run_lang and lang:
            missing = alphabet_clash(str(run_lang), str(lang))
            if missing:
                raise SpecError(f"language '{lang}' has letters ({missing}) outside the run's '{run_lang}' "
                                "alphabet: the models cannot write its transcripts", where + ("language",))
