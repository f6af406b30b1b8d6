"""``summary.md``: what a run produced, for a person to read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compressor.spec import LoadedSpec


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "-" if v is None else str(v)


def _reference_notes(spec: Any, final: dict[str, dict[str, float]]) -> list[str]:
    """One line per reference: where it comes from and the relative change of this run's model against it."""
    out: list[str] = []
    for ref in spec.evaluate.references:
        own = final.get(ref.model, {})
        changes = [f"{k} {own[k]:.4f} vs {v:.4f} ({100 * (own[k] - v) / v:+.1f}% relative)"
                   for k, v in ref.metrics.items() if k in own and v]
        where = f" ({ref.source})" if ref.source else ""
        out.append(f"- {ref.model} against the reference *{ref.label}*{where}: "
                   + ("; ".join(changes) if changes else "no common metric"))
    return [""] + out if out else []


def _size_mb(run_dir: Path, name: str) -> str:
    path = run_dir / "final" / f"{name}.pt"
    return f"{path.stat().st_size / 1e6:.3g}" if path.exists() else "-"


def _relative(value: Any, base: Any) -> str:
    if not isinstance(value, (int, float)) or not isinstance(base, (int, float)) or not base:
        return "-"
    return f"{100 * (value - base) / base:+.1f}%"


def alone_markdown(run_dir: Path, spec: Any, results: dict[str, Any]) -> list[str]:
    """The table that answers whether compression paid: the teacher, the compressed model and the same model
    trained alone in this run (``baseline``), with the compressed model's relative difference to it."""
    info = results.get("alone")
    final, params = results.get("final", {}), results.get("parameters", {})
    if not info or info["model"] not in final:
        return []
    alone, source = info["model"], info["copies"]
    main = next((st.get("metric") for st in reversed(results.get("stages") or []) if st.get("metric")), None)
    restated = set(results.get("restated_metrics") or [])
    keys = sorted(k for k in final.get(source, {}) if k.rsplit("/", 1)[-1] not in restated
                  and (main is None or k.rsplit("/", 1)[-1] == main))
    rows = [(name, label) for name, label in (("teacher", "teacher"), (source, f"{source} (compressed)"),
                                              (alone, f"{alone} (the same {source} trained alone)"))
            if name in final or (name == "teacher" and name in params)]
    lines = ["", f"## {source} against the same {source} trained alone", "",
             "| model | parameters | size (MB) | " + " | ".join(keys) + " |", "|---|---:|---:|" + "---:|" * len(keys)]
    for name, label in rows:
        metrics = final.get(name, {})
        lines.append(f"| {label} | {params.get(name, 0):,} | {_size_mb(run_dir, name)} | "
                     + " | ".join(_fmt(metrics.get(k)) for k in keys) + " |")
    lines.append(f"| {source} vs {alone} (relative: ({source} - {alone}) / {alone}) | | | "
                 + " | ".join(_relative(final[source].get(k), final[alone].get(k)) for k in keys) + " |")
    left_out = sorted({n for p in info.get("plan", []) for n in p["left_out"]})
    kept = sorted({n for p in info.get("plan", []) for n in p["kept"]})
    lines += ["", f"{alone}: a fresh {source} (same initialisation) trained in this run through the stages that "
              f"trained {source} ({', '.join(p['stage'] for p in info.get('plan', []))}) with the same data, steps, "
              f"batches, optimizer and LR schedule"
              + (f", without {', '.join(left_out)}" if left_out else "")
              + (f", with {', '.join(kept)}" if kept else "") + "."]
    return lines


def write_summary(run_dir: Path, loaded: LoadedSpec, results: dict[str, Any], export_md: str = "") -> Path:
    spec = loaded.spec
    params = results.get("parameters", {})
    lines = [f"# Run summary: {spec.name}", ""]
    if spec.description:
        lines += [spec.description.strip(), ""]
    lines += [f"- spec: `{loaded.file}`", f"- run directory: `{run_dir}`", f"- seed: {spec.seed}", ""]
    lines += ["## Models", "", "| model | registry name | parameters |", "|---|---|---:|"]
    for name, ms in spec.saved_models().items():
        if name in spec.all_models() or name in params:
            lines.append(f"| {name} | {ms.name} | {params.get(name, 0):,} |")
    if params.get("teacher") and "student" in params and "teacher" not in results.get("untrained", []):
        ratio = params["student"] / params["teacher"]
        lines += ["", f"Student/teacher parameters: {ratio:.3f} ({1 / ratio:.2f}x smaller)." if ratio else ""]
    lines += ["", "## Stages", "", "| # | stage | steps | epochs | seconds | best validation |",
              "|---|---|---:|---:|---:|---|"]
    for i, st in enumerate(results.get("stages", []) + (results.get("alone") or {}).get("stages", [])):
        metric = st.get("metric")
        lines.append(f"| {i} | {st['stage']} | {st['steps']} | {st['epochs']} | {st['seconds']:.1f} | "
                     f"{metric} = {_fmt(st.get(f'best_{metric}'))} |")
    if results.get("init_from"):
        from compressor.run.init_from import markdown

        lines += ["", markdown(results["init_from"]).rstrip()]
    final = results.get("final", {})
    if final:
        keys = sorted({k for m in final.values() for k in m})
        counts = results.get("final_split_utterances") or {spec.evaluate.split: results.get("final_utterances")}
        cover = "; ".join(f"all {n} {split} utterances" if n else f"{split} split" for split, n in counts.items())
        lines += ["", f"## Final evaluation ({cover})", "",
                  "| model | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
        for name, metrics in final.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(metrics.get(k)) for k in keys) + " |")
            for ref in (r for r in spec.evaluate.references if r.model == name):
                cells = [_fmt(ref.metrics.get(k)) + (f" ± {ref.std[k]:.4f}" if k in ref.std else "") for k in keys]
                lines.append(f"| *reference: {ref.label}* | " + " | ".join(cells) + " |")
        lines += _reference_notes(spec, final)
        lines += alone_markdown(run_dir, spec, results)
    if results.get("sets"):
        from compressor.run.eval_sets import markdown

        lines += ["", markdown(results).rstrip()]
    sections = sorted((run_dir / "sections").glob("*.md")) if (run_dir / "sections").is_dir() else []
    for section in sections:  # what a plugin wrote for people to read (sequence_kd: its pseudo-label filters)
        lines += ["", section.read_text(encoding="utf-8").rstrip()]
    plots = sorted((run_dir / "plots").glob("*.png")) if (run_dir / "plots").exists() else []
    if plots:
        lines += ["", "## Plots", ""] + [f"- [{p.stem}](plots/{p.name})" for p in plots]
    if export_md:
        lines += ["", export_md.strip()]
    path = run_dir / "summary.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
