"""Seed 003 (Huang et al.): transfer learning with QuartzNet across languages, accents and domains, on the
synthetic corpora, over several seeds.

    python benchmarks/seed003_quartznet/quartznet_transfer.py --plan      # the runs and the expected time, then exit
    python benchmarks/seed003_quartznet/quartznet_transfer.py  # the benchmark (about 1 h on an idle 2-core VM)
    python benchmarks/seed003_quartznet/quartznet_transfer.py --tiny      # minutes: the whole pipeline at toy sizes

Every run is a ``compressor run`` of a spec derived from ``specs/quartznet_transfer.yaml`` (NovoGrad,
β = (0.95, 0.25), weight decay 0.001, cosine annealing after 12% warmup; from scratch LR ``--lr``, fine-tuning
LR ``--lr / 10``; the same step budget for scratch and fine-tuned runs of one experiment):

* English pre-training (the source models): a **small** model (``--small``, default QuartzNet 5x3) on
  ``--small-pretrain-size`` English utterances (the paper's WSJ model) and a **large** one (``--large``,
  default 15x5) on all 2,000 (the paper's 5D model), ``--pretrain-steps`` each. Each seed pre-trains its own,
  so the spread over seeds includes pre-training's; ``--shared-pretraining`` lets one pre-training (the first
  seed's) serve every seed, as the paper's one pre-trained model does. At ``size: cpu`` with ``--width`` the
  models are Table 1's shapes at a fraction of its channels and kernels: the tables name them so.
* (a) cross-language (Table 6): German, Spanish and Russian read speech (``--language-sizes`` training
  utterances; Russian smallest, as in the paper), each model size trained from scratch and fine-tuned from its
  English model with a new decoder, ``--language-steps`` steps; test WER. The paper reports the best run of an
  LR sweep, so every row tries the same two LRs (the scratch LR and LR / 10), from scratch and fine-tuned
  alike, and the better (by final validation WER, per seed) is compared; ``--large-finetune`` picks the large
  model's fine-tuning LRs.
* (b) accent (Tables 3–5): the pre-trained large model as is, trained from scratch on the accented set,
  fine-tuned on it, and fine-tuned on it mixed 1:1 with the English source data; test WER on the source
  (English read speech) and on the target (the accents), ``--accent-steps`` steps.
* (c) domain (Fig. 3): the finance-domain set, from scratch and fine-tuned, validation accuracy (1 − WER)
  every ``--domain-eval-every`` steps over ``--domain-steps`` steps, normalised to the best accuracy of the
  fine-tuned run; the steps each needs to reach 90% of it, and the ratio scratch / fine-tuned.

Writes ``quartznet_transfer.md`` (tables, the paper's claims checked one by one), ``quartznet_transfer.json``
(every number) and ``quartznet_transfer_{language,accent,domain}.png`` into ``--out``. Runs go to ``--work``;
finished runs are reused (a run's name carries a hash of its spec), so an interrupted benchmark continues.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/: reuse, stats
import stats  # noqa: E402
from reuse import finished, hashed, run_in_subprocess  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BASE_SPEC = REPO / "specs" / "quartznet_transfer.yaml"
LANGUAGES = ("de", "es", "ru")
LANG_NAMES = {"de": "German", "es": "Spanish", "ru": "Russian"}
SIZES = ("small", "large")
ENGLISH = {"name": "read_speech", "language": "en", "frontend": "nemo_ctc", "train_size": 2000}
ACCENT = {"name": "shifted", "condition": "accent", "frontend": "nemo_ctc"}
DOMAIN = {"name": "shifted", "condition": "domain", "frontend": "nemo_ctc", "train_size": 1200}
# Seconds per optimizer step at batch 16, one thread, width 0.125, for the plan: measured on the 2-core VM with two
# runs at a time and nothing else (other load slows it several-fold); per-run start-up comes on top.
SECONDS_PER_STEP = {"5x3": 0.09, "15x5": 0.36}
FIXED_SECONDS_PER_RUN = 15.0  # start-up, corpus and feature loading, evaluations


# --------------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------------


def model(args: argparse.Namespace, size: str) -> dict[str, Any]:
    preset = args.small if size == "small" else args.large
    out: dict[str, Any] = {"name": "quartznet", "preset": preset, "size": args.size}
    if args.width is not None:
        out["width"] = args.width
    return out


def stage(args: argparse.Namespace, steps: int, lr: float, eval_every: int, eval_batches: int) -> dict[str, Any]:
    return {"name": "train", "train": ["student"], "steps": steps, "batch_size": args.batch_size,
            "grad_clip": 1.0, "optimizer": {"name": "novograd", "lr": lr, "weight_decay": 0.001},
            "lr_schedule": {"name": "cosine", "warmup_fraction": 0.12},
            "eval": {"every": max(1, eval_every), "max_batches": eval_batches}}


def tiny_corpus(args: argparse.Namespace, data: dict[str, Any], train: int | None = None) -> dict[str, Any]:
    if not args.tiny:
        return dict(data)
    return dict(data, train_size=train or 48, valid_size=16, test_size=16, num_speakers=6)


def spec(args: argparse.Namespace, name: str, seed: int, data: dict[str, Any], student: dict[str, Any],
         st: dict[str, Any], sets: dict[str, Any] | None = None, before: bool = False) -> dict[str, Any]:
    base = yaml.safe_load(BASE_SPEC.read_text(encoding="utf-8"))
    return {"name": name, "seed": seed, "output_dir": str(args.work), "task": base["task"], "data": data,
            "student": student, "trainer": {"threads": args.threads, "device": "cpu", "progress_bar": False,
                                            "log_every": 50},
            "stages": [st], "evaluate": {"split": "test", "models": ["student"], "sets": sets or {},
                                         "before_training": before}}


def pretrain_spec(args: argparse.Namespace, size: str, seed: int) -> dict[str, Any]:
    data = tiny_corpus(args, ENGLISH)
    if size == "small":
        data["subset"] = {"size": args.small_pretrain_size}
    steps = args.pretrain_steps if size == "small" else args.large_pretrain_steps
    return spec(args, f"pre_{size}_seed{seed}", seed, data, model(args, size),
                stage(args, steps, args.lr, steps // 4, args.eval_batches))


def language_spec(args: argparse.Namespace, lang: str, size: str, mode: str, seed: int, pre: Path | None
                  ) -> dict[str, Any]:
    n = args.language_sizes[LANGUAGES.index(lang)]
    data = tiny_corpus(args, {"name": "read_speech", "language": lang, "frontend": "nemo_ctc", "train_size": n},
                       train=n if args.tiny else None)
    student = model(args, size)
    if mode.startswith("finetune"):
        assert pre is not None
        student["init_from"] = {"run": str(pre)}
    lr = args.lr / 10 if mode in LOW_LR_MODES else args.lr
    return spec(args, f"{lang}_{size}_{mode}_seed{seed}", seed, data, student,
                stage(args, args.language_steps, lr, args.language_steps // 5, args.eval_batches))


def accent_spec(args: argparse.Namespace, mode: str, seed: int, pre: Path | None) -> dict[str, Any]:
    target = tiny_corpus(args, ACCENT)
    source = tiny_corpus(args, ENGLISH)
    sets = {"source": {"data": source, "split": "test"}, "target": {"split": "test"}}
    data = target
    if mode == "finetune_mix":
        data = {"name": "mix", "eval_datasets": [0],
                "datasets": [dict(target, ratio=1.0), dict(source, ratio=1.0)]}
    student = model(args, args.accent_model)
    if mode != "scratch":
        assert pre is not None
        student["init_from"] = {"run": str(pre)}
    lr = args.lr if mode == "scratch" else args.lr / 10
    return spec(args, f"accent_{mode}_seed{seed}", seed, data, student,
                stage(args, args.accent_steps, lr, args.accent_steps // 5, args.eval_batches), sets,
                before=mode == "finetune")


def domain_spec(args: argparse.Namespace, mode: str, seed: int, pre: Path | None) -> dict[str, Any]:
    """``scratch`` (LR), ``finetune`` (LR / 10, the paper's recipe), and the LR search's other halves:
    ``finetune_lr`` (fine-tuned at the scratch LR) and ``scratch_lr10`` (from scratch at LR / 10), which tell the
    pre-trained start apart from the LR."""
    student = model(args, args.domain_model)
    if mode.startswith("finetune"):
        assert pre is not None
        student["init_from"] = {"run": str(pre)}
    lr = args.lr / 10 if mode in LOW_LR_MODES else args.lr
    st = stage(args, args.domain_steps, lr, args.domain_eval_every, args.eval_batches)
    st["handoff"] = "last"
    return spec(args, f"domain_{mode}_seed{seed}", seed, tiny_corpus(args, DOMAIN), student, st)


DOMAIN_MODES = {"scratch": "from scratch", "finetune": "pre-trained, fine-tuned (LR / 10)",
                "finetune_lr": "pre-trained, fine-tuned at the scratch LR (the same LR search)",
                "scratch_lr10": "from scratch at LR / 10 (the same LR search)"}
# (a): fine-tuning at LR / 10 (the paper's recipe) and at the scratch LR; Table 6 reports the best run of an LR
# sweep, chosen here per seed by the final validation WER
FINETUNE_MODES = ("finetune", "finetune_lr")
# ... and from scratch the same two LRs (the scratch LR and LR / 10), so every row gets the same search
SCRATCH_MODES = ("scratch", "scratch_lr10")
LOW_LR_MODES = ("finetune", "scratch_lr10")  # the modes trained at LR / 10


def language_modes(args: argparse.Namespace, size: str) -> tuple[str, ...]:
    """(a)'s runs of one model size: from scratch and fine-tuned, each at the LRs of the search (LR and LR / 10;
    one LR each, the scratch LR and LR / 10, with ``--no-language-lr-ablation``)."""
    scratch = SCRATCH_MODES if args.language_lr_ablation else ("scratch",)
    if size == "large":
        return (scratch if args.large_scratch else ()) + tuple(args.large_finetune)
    return scratch + (FINETUNE_MODES if args.language_lr_ablation else ("finetune",))


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------


def run_one(sp: dict[str, Any], args: argparse.Namespace) -> Path:
    """Run (or reuse) one spec in a ``compressor run`` subprocess; its run directory (see ``reuse``)."""
    sp = hashed(sp)
    found = finished(args.work, sp["name"])
    if found is not None and not args.rerun:
        print(f"  reuse {found}", flush=True)
        return found
    if args.report_only:
        raise LookupError(sp["name"])
    return run_in_subprocess(sp, args.work, args.threads)


def collect(run_dir: Path) -> dict[str, Any]:
    """Test WER, named-set WERs (before/after), validation WER and training loss per step of one run."""
    results = json.loads((run_dir / "final" / "COMPLETE").read_text(encoding="utf-8"))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    curve = [(int(r["step"]), float(r["valid/wer"])) for r in records if r.get("type") == "eval"]
    loss = [(int(r["step"]), float(r["loss/task"])) for r in records if r.get("type") is None and "loss/task" in r]
    sets = {when: {k: v["wer"] for k, v in by_model["student"].items()}
            for when, by_model in (results.get("sets") or {}).items()}
    return {"test_wer": float(results["final"]["student"]["test/wer"]),
            "test_cer": float(results["final"]["student"]["test/cer"]), "sets": sets, "curve": curve,
            "train_loss": loss, "parameters": int(results["parameters"]["student"]),
            "seconds": sum(float(s["seconds"]) for s in results["stages"]), "run_dir": str(run_dir)}


def plan(args: argparse.Namespace) -> float:
    def cost(size: str, steps: int) -> float:
        preset = args.small if size == "small" else args.large
        per = SECONDS_PER_STEP.get(preset, 1.0) * args.batch_size / 16
        return steps * per + FIXED_SECONDS_PER_RUN

    n_pre = len(set(pretraining_plan(args).values()))
    seeds = len(args.seeds)
    items = [("pre-training small + large", n_pre * (cost("small", args.pretrain_steps)
                                                     + cost("large", args.large_pretrain_steps)))]
    if "a" in args.experiments:
        small_runs, large_runs = len(language_modes(args, "small")), len(language_modes(args, "large"))
        items.append((f"(a) 3 languages: small x{small_runs}, large x{large_runs}", seeds * 3 * (
            small_runs * cost("small", args.language_steps) + large_runs * cost("large", args.language_steps))))
    if "b" in args.experiments:
        items.append(("(b) accent: scratch, fine-tuned, fine-tuned + source",
                      seeds * 3 * cost(args.accent_model, args.accent_steps)))
    if "c" in args.experiments:
        evals = args.domain_steps // max(1, args.domain_eval_every)
        items.append(("(c) domain: scratch, fine-tuned (each also at the other LR)", seeds * (
            4 if args.domain_lr_ablation else 2) * (
            cost(args.domain_model, args.domain_steps) + evals * 1.0)))
    total = sum(t for _, t in items)
    print(f"Plan (seeds {args.seeds}, {args.small}/{args.large} at size {args.size}"
          f"{'' if args.width is None else f' width {args.width}'}, batch {args.batch_size}):")
    for what, t in items:
        print(f"  {what:52s} {t / 60:6.1f} min of one core")
    print(f"  total about {total / 60:.0f} min of one core, ~{total / 60 / max(1, args.jobs):.0f} min wall with "
          f"--jobs {args.jobs} (from s/step measured with two runs on an otherwise idle 2-core VM: "
          f"{SECONDS_PER_STEP}; slower under other load)", flush=True)
    return total


# --------------------------------------------------------------------------------------------------
# Tables, claims, plots
# --------------------------------------------------------------------------------------------------


def ms(values: list[float]) -> tuple[float, float]:
    """Mean and std (0 for one value) for the plots' bars."""
    sp = stats.spread(values)
    return sp.mean, (sp.std or 0.0)


def fmt(values: list[float] | dict[int, float]) -> str:
    """WER % of the runs, the shared way: ``m ± s (n = k)``, or ``m (n = 1)``."""
    return stats.fmt(values, scale=100) if values else "-"


def steps_to(curve: list[tuple[int, float]], reference: float, fraction: float = 0.9) -> int | None:
    """First evaluated step whose accuracy (1 - WER) reaches ``fraction`` of ``reference``."""
    for step, wer in curve:
        if 1.0 - wer >= fraction * reference:
            return step
    return None


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.claims: list[stats.Claim] = []

    def claim(self, source: str, text: str, diffs: dict[int, float], sides: str, note: str = "",
              scale: float = 100.0, unit: str = " pts") -> None:
        """A claim on per-seed differences (positive = as the claim says; WER fractions shown in points)."""
        self.claims.append(stats.Claim(source, text, stats.interval(diffs), sides, note, scale, unit))


def by_seed(runs: list[dict[str, Any]], key: str = "test_wer") -> dict[int, float]:
    return {int(r["seed"]): float(r[key]) for r in runs}


def per_seed(f: Any, *rows: dict[int, float]) -> dict[int, float]:
    """``f`` of the rows' values, seed by seed, over the seeds every row has."""
    seeds = set.intersection(*(set(r) for r in rows)) if rows else set()
    return {k: f(*(r[k] for r in rows)) for k in sorted(seeds)}


def best_of(res: dict[str, Any], lang: str, size: str, modes: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per seed, the run (of the LRs tried in ``modes``) with the lowest final validation WER, as Table 6 reports
    the best run of an LR sweep; each with its ``mode``."""
    chosen: dict[int, dict[str, Any]] = {}
    for mode in modes:
        for r in res["a"].get(f"{lang}/{size}/{mode}", []):
            if not r["curve"]:
                continue
            held = chosen.get(r["seed"])
            if held is None or r["curve"][-1][1] < held["curve"][-1][1]:
                chosen[r["seed"]] = {**r, "mode": mode}
    return [chosen[k] for k in sorted(chosen)]


def best_finetune(res: dict[str, Any], lang: str, size: str) -> list[dict[str, Any]]:
    """Per seed, the fine-tuning run of the LRs tried with the lowest final validation WER."""
    return best_of(res, lang, size, FINETUNE_MODES)


def best_scratch(res: dict[str, Any], lang: str, size: str) -> list[dict[str, Any]]:
    """Per seed, the from-scratch run of the LRs tried with the lowest final validation WER: the same search."""
    return best_of(res, lang, size, SCRATCH_MODES)


LANGUAGE_ROWS = {"scratch": "from scratch, scratch LR", "scratch_lr10": "from scratch, LR / 10",
                 "finetune": "fine-tuned, LR / 10 (the paper's recipe)", "finetune_lr": "fine-tuned, scratch LR"}


def model_label(args: argparse.Namespace, size: str, parameters: int | None = None) -> str:
    """The model as what it is: its B×R name with the widths it was built at (and its parameter count)."""
    from compressor.families.ctc.quartznet import SIZES as QN_SIZES

    preset = args.small if size == "small" else args.large
    ch, k = QN_SIZES[args.size]
    width = args.width if args.width is not None else 1 / ch
    if width == 1 and k == 1:
        name = f"{preset}"
    else:
        name = f"{preset} at {width:g}x channels, 1/{k} kernels"
    return name + (f" ({parameters / 1e6:.2f}M)" if parameters else "")


def language_section(rep: Report, res: dict[str, Any], args: argparse.Namespace,
                     labels: dict[str, str] | None = None) -> None:
    labels = labels or {sz: model_label(args, sz) for sz in SIZES}
    english = tiny_corpus(args, ENGLISH)["train_size"]
    rep.lines += ["## (a) Cross-language transfer (Table 6)", "",
                  f"English pre-training: {labels['small']} on {args.small_pretrain_size} utterances (\"WSJ\"), "
                  f"{args.pretrain_steps} steps; {labels['large']} on all {english} (\"5D\"), "
                  f"{args.large_pretrain_steps} steps. Targets: "
                  + ", ".join(f"{LANG_NAMES[lg]} {n} training utterances"
                              for lg, n in zip(LANGUAGES, args.language_sizes))
                  + f"; {args.language_steps} steps for every run; new decoder for the target alphabet; test WER % "
                  "(greedy). Table 6 reports the best run of an LR sweep: \"best\" takes, per seed, the LR with the "
                  "lower final validation WER, from scratch and fine-tuned alike.", "",
                  "| Language | Model | Run | LR | WER % | per seed | vs best scratch |",
                  "|---|---|---|---:|---:|---|---:|"]
    best: dict[tuple[str, str], tuple[dict[int, float], dict[int, float]]] = {}
    recipe: dict[tuple[str, str], tuple[dict[int, float], dict[int, float]]] = {}
    chosen: list[str] = []
    for lang in LANGUAGES:
        for size in SIZES:
            scratch = by_seed(best_scratch(res, lang, size))
            tuned = best_finetune(res, lang, size)
            rows = [(LANGUAGE_ROWS[m], args.lr / 10 if m in LOW_LR_MODES else args.lr,
                     by_seed(res["a"].get(f"{lang}/{size}/{m}", []))) for m in LANGUAGE_ROWS]
            for label, picked in (("from scratch", best_scratch(res, lang, size)), ("fine-tuned", tuned)):
                if picked:
                    picks = ", ".join("LR/10" if r["mode"] in LOW_LR_MODES else "LR" for r in picked)
                    rows.append((f"**best {label}** ({picks})", None, by_seed(picked)))
            chosen += [r["mode"] for r in tuned]
            first = True
            for label, lr, vals in rows:
                if not vals:
                    continue
                gain = (f"{100 * (stats.spread(scratch).mean - stats.spread(vals).mean):+.1f} pts"
                        if scratch and "fine-tuned" in label else "")
                rep.lines.append(f"| {LANG_NAMES[lang] if first else ''} | {labels[size] if first else ''} | "
                                 f"{label} | {'' if lr is None else f'{lr:g}'} | {fmt(vals)} | "
                                 f"{', '.join(f'{100 * w:.1f}' for w in vals.values())} | {gain} |")
                first = False
            if scratch and tuned:
                best[(lang, size)] = (scratch, by_seed(tuned))
            recipe_runs = by_seed(res["a"].get(f"{lang}/{size}/finetune", []))
            plain = by_seed(res["a"].get(f"{lang}/{size}/scratch", []))
            if plain and recipe_runs:
                recipe[(lang, size)] = (plain, recipe_runs)
    rep.lines.append("")

    def mean_gain(pairs: dict[tuple[str, str], tuple[dict[int, float], dict[int, float]]]) -> dict[int, float]:
        gains = [per_seed(lambda a, b: a - b, sc, ft) for sc, ft in pairs.values()]
        return per_seed(lambda *g: statistics.fmean(g), *gains) if gains else {}

    def sides(pairs: dict[tuple[str, str], tuple[dict[int, float], dict[int, float]]]) -> str:
        return "; ".join(f"{lg} {labels[sz].split(' ')[0]}: {fmt(ft)} vs {fmt(sc)}"
                         for (lg, sz), (sc, ft) in pairs.items())

    if best:
        rep.claim("Table 6", "fine-tuning (best LR) beats training from scratch (best LR), every language and size "
                  f"with both (mean gain over the {len(best)} language x size pairs)", mean_gain(best), sides(best))
    if recipe:
        rep.claim("Table 6", "fine-tuning at LR / 10 (the recipe) beats training from scratch at LR (mean gain over "
                  f"the {len(recipe)} pairs)", mean_gain(recipe), sides(recipe))
    lr_pairs = [(by_seed(res["a"].get(f"{lg}/{sz}/finetune_lr", [])), by_seed(res["a"].get(f"{lg}/{sz}/finetune", [])))
                for lg in LANGUAGES for sz in SIZES]
    lr_pairs = [(hi, lo) for hi, lo in lr_pairs if hi and lo]
    if lr_pairs:
        valid = [({r["seed"]: r["curve"][-1][1] for r in res["a"].get(f"{lg}/{sz}/finetune_lr", []) if r["curve"]},
                  {r["seed"]: r["curve"][-1][1] for r in res["a"].get(f"{lg}/{sz}/finetune", []) if r["curve"]})
                 for lg in LANGUAGES for sz in SIZES]
        valid = [(hi, lo) for hi, lo in valid if hi and lo]
        rep.claim("Sec. 5.2", "the best fine-tuning LR is about 10x smaller than the scratch LR (here: LR / 10 beats "
                  "the scratch LR on validation WER, mean over language x size)",
                  per_seed(lambda *d: statistics.fmean(d), *(per_seed(lambda a, b: a - b, hi, lo) for hi, lo in valid)),
                  f"LR / 10 chosen in {chosen.count('finetune')} of {len(chosen)} language x size x seed cells")
    if best and len({lg for lg, _ in best}) == 3:
        by_lang = {lg: mean_gain({k: v for k, v in best.items() if k[0] == lg}) for lg in LANGUAGES}
        rep.claim("Sec. 5.3", "the largest improvement from fine-tuning is for Russian (the smallest set; margin to "
                  "the larger of the German and Spanish gains)",
                  per_seed(lambda ru, de, es: ru - max(de, es), by_lang["ru"], by_lang["de"], by_lang["es"]),
                  "mean gain of the best fine-tuning: " + ", ".join(f"{lg} {fmt(g)}" for lg, g in by_lang.items()))
    sizes_pairs = {lg: (by_seed(best_finetune(res, lg, "small")), by_seed(best_finetune(res, lg, "large")))
                   for lg in LANGUAGES}
    sizes_pairs = {lg: p for lg, p in sizes_pairs.items() if p[0] and p[1]}
    if sizes_pairs:
        rep.claim("Table 6, Sec. 5.3", f"fine-tuning the larger model pre-trained on more data ({args.large}) beats "
                  f"fine-tuning the small one ({args.small}) (mean over languages)", per_seed(
                      lambda *d: statistics.fmean(d), *(per_seed(lambda a, b: a - b, sm, lg)
                                                        for sm, lg in sizes_pairs.values())),
                  "; ".join(f"{lg}: {fmt(lg_)} vs {fmt(sm)}" for lg, (sm, lg_) in sizes_pairs.items()))
    scratch_ru, tuned_ru = best_scratch(res, "ru", "small"), best_finetune(res, "ru", "small")
    if scratch_ru and tuned_ru:
        def loss_at(runs: list[dict[str, Any]], last: bool) -> float:
            return statistics.mean(statistics.mean(v for _, v in (r["train_loss"][-20:] if last
                                                                  else r["train_loss"][:20])) for r in runs)

        first, ls, lf = loss_at(scratch_ru, False), loss_at(scratch_ru, True), loss_at(tuned_ru, True)
        fits = ls < 0.02 * first or ls < 2 * lf
        rep.claim("Sec. 5.3, Fig. 2", "from scratch, Russian fits its training data but generalises worse (test "
                  "WER higher than fine-tuned)", per_seed(lambda a, b: a - b, by_seed(scratch_ru), by_seed(tuned_ru)),
                  f"scratch {fmt(by_seed(scratch_ru))} vs fine-tuned {fmt(by_seed(tuned_ru))}",
                  f"fits: {'yes' if fits else 'no'} (training loss, mean of the first / last 20 steps: scratch "
                  f"{first:.3g} -> {ls:.2g}, fine-tuned {lf:.2g})")


def accent_section(rep: Report, res: dict[str, Any], args: argparse.Namespace,
                   labels: dict[str, str] | None = None) -> None:
    runs = res["b"]

    def sets(mode: str, when: str) -> list[tuple[int, dict[str, float]]]:
        return [(int(r["seed"]), r["sets"][when]) for r in runs.get(mode, [])]

    rows = [("pre-trained", "en", "-", sets("finetune", "start")),
            ("scratch", "accent", "-", sets("scratch", "final")),
            ("fine-tuned", "en", "accent", sets("finetune", "final")),
            ("fine-tuned + source", "en", "accent + en (1:1)", sets("finetune_mix", "final"))]
    name = (labels or {}).get(args.accent_model) or model_label(args, args.accent_model)
    rep.lines += ["## (b) Accent transfer and forgetting (Tables 3–5)", "",
                  f"QuartzNet {name}; source = English read speech (the pre-training data), target = the "
                  f"accented set (6 espeak English accents); {args.accent_steps} steps for every trained row "
                  f"(from scratch at LR {args.lr:g}, fine-tuned at LR / 10); test WER %.", "",
                  "| Model | Train dataset | Fine-tune dataset | source WER % | target WER % |",
                  "|---|---|---|---:|---:|"]
    w: dict[str, dict[str, dict[int, float]]] = {}
    for label, train, tune, got in rows:
        src = {sd: v["source"] for sd, v in got}
        tgt = {sd: v["target"] for sd, v in got}
        if src:
            w[label] = {"source": src, "target": tgt}
        rep.lines.append(f"| {label} | {train} | {tune} | {fmt(src)} | {fmt(tgt)} |")
    rep.lines.append("")
    if len(w) < 4:
        return

    def claim(source: str, text: str, lower: str, higher: str, where: str, margin: float = 0.0) -> None:
        """``lower`` has the lower WER on ``where`` than ``higher`` (by more than ``-margin``)."""
        rep.claim(source, text, per_seed(lambda a, b: b - a + margin, w[lower][where], w[higher][where]),
                  f"{lower} {fmt(w[lower][where])} vs {higher} {fmt(w[higher][where])} ({where})")

    claim("Tables 3, 5", "fine-tuning on the target beats training on it from scratch (target WER)",
          "fine-tuned", "scratch", "target")
    claim("Tables 3–5", "fine-tuning improves the pre-trained model on the target", "fine-tuned", "pre-trained",
          "target")
    claim("Tables 3–5", "fine-tuning on the target alone forgets the source (source WER rises above the "
          "pre-trained model's)", "pre-trained", "fine-tuned", "source")
    claim("Tables 3–5", "fine-tuning on target + source forgets less (source WER below target-only fine-tuning)",
          "fine-tuned + source", "fine-tuned", "source")
    claim("Tables 3–5", "… at a small cost on the target (within 2 WER points of target-only fine-tuning: "
          "2 points minus the cost)", "fine-tuned + source", "fine-tuned", "target", margin=0.02)
    claim("Tables 3, 5", "a model trained on the target alone is much worse on the source than the pre-trained "
          "model", "pre-trained", "scratch", "source")


def domain_section(rep: Report, res: dict[str, Any], args: argparse.Namespace,
                   labels: dict[str, str] | None = None) -> dict[str, Any]:
    runs = res["c"]
    preset = (labels or {}).get(args.domain_model) or model_label(args, args.domain_model)
    out: dict[str, Any] = {}
    modes = [m for m in DOMAIN_MODES if runs.get(m)]
    if "scratch" not in modes or "finetune" not in modes:
        return out
    seeds = min(len(runs[m]) for m in modes)
    late = args.domain_steps + args.domain_eval_every  # "never within the budget": the earliest it could be
    steps: dict[str, list[int | None]] = {m: [] for m in modes}
    for i in range(seeds):
        # the best accuracy measured in any run of this seed (floored: a run that decodes no word has no scale)
        ref = max(0.01, max(1.0 - w for m in modes for _, w in runs[m][i]["curve"]))
        out.setdefault("reference_accuracy", []).append(ref)
        for m in modes:
            steps[m].append(steps_to(runs[m][i]["curve"], ref))

    def ratio(a: str, b: str) -> tuple[list[float], str]:
        values = [(x or late) / (y or late) for x, y in zip(steps[a], steps[b])]
        bound = any(x is None for x in steps[a] + steps[b])
        return values, stats.fmt(values) + (
            " (a run that never reached 90% counted at the end of its budget: a bound)" if bound else "")

    out["steps_to_90"] = steps
    out["ratios"], text = ratio("scratch", "finetune")
    rep.lines += ["## (c) Domain adaptation: convergence (Fig. 3)", "",
                  f"QuartzNet {preset} on the finance-domain set ({tiny_corpus(args, DOMAIN)['train_size']} training "
                  f"utterances), {args.domain_steps} steps, validation accuracy (1 − WER on {args.eval_batches} "
                  f"batches of the valid split) every {args.domain_eval_every} steps, normalised to the best "
                  "accuracy measured in any run of the same seed (the paper normalises to the best value, which "
                  "its pre-trained run reached).", "",
                  "| Model | LR | steps to 90% (per seed) | final relative accuracy | test WER % |",
                  "|---|---:|---|---:|---:|"]
    for m in modes:
        rel = [(1.0 - r["curve"][-1][1]) / ref for r, ref in zip(runs[m], out["reference_accuracy"])]
        lr = args.lr / 10 if m in LOW_LR_MODES else args.lr
        rep.lines.append(f"| {DOMAIN_MODES[m]} | {lr:g} | "
                         f"{', '.join('never' if x is None else str(x) for x in steps[m])} | "
                         f"{statistics.mean(rel):.3f} | {fmt([r['test_wer'] for r in runs[m]])} |")
    rep.lines += ["", f"Ratio of steps to 90% (scratch / pre-trained): **{text}** (paper: about 18x)."]
    if "finetune_lr" in modes:
        out["ratios_finetune_lr"], text_lr = ratio("scratch", "finetune_lr")
        rep.lines.append(f"Ablation, scratch / pre-trained fine-tuned at the scratch LR: **{text_lr}**.")
    rep.lines.append("")
    seed_ids = [int(r["seed"]) for r in runs["scratch"][:seeds]]
    rep.claim("Fig. 3", "the pre-trained model reaches 90% of the final accuracy faster than training from "
              "scratch (paper: ~18x; ratio of steps minus 1)", {sd: r - 1 for sd, r in zip(seed_ids, out["ratios"])},
              f"ratio {text}", scale=1.0, unit="x")
    final = {m: {int(r["seed"]): 1.0 - r["curve"][-1][1] for r in runs[m]} for m in modes}
    rep.claim("Fig. 3", "the pre-trained model ends with a better accuracy than training from scratch",
              per_seed(lambda a, b: a - b, final["finetune"], final["scratch"]),
              f"valid accuracy %: fine-tuned {fmt(final['finetune'])} vs scratch {fmt(final['scratch'])}"
              + (f" (fine-tuned at the scratch LR: {fmt(final['finetune_lr'])})" if "finetune_lr" in final else ""))
    return out


def write_plots(out: Path, res: dict[str, Any], args: argparse.Namespace, domain: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    if res["a"]:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        ax = axes[0]
        bars = [(f"{args.small} scratch", "small", "scratch"), (f"{args.small} best fine-tuned", "small", "best"),
                (f"{args.large} scratch", "large", "scratch"), (f"{args.large} best fine-tuned", "large", "best")]
        width = 0.2
        for j, (label, size, mode) in enumerate(bars):
            means, stds = [], []
            for lang in LANGUAGES:
                runs = best_finetune(res, lang, size) if mode == "best" else res["a"].get(f"{lang}/{size}/{mode}", [])
                vals = [r["test_wer"] for r in runs]
                m, s = ms(vals) if vals else (float("nan"), 0.0)
                means.append(100 * m)
                stds.append(100 * s)
            ax.bar([i + (j - 1.5) * width for i in range(len(LANGUAGES))], means, width, yerr=stds, capsize=3,
                   label=label, hatch="" if mode == "best" else "//", alpha=0.9)
        ax.set_xticks(range(len(LANGUAGES)), [LANG_NAMES[lg] for lg in LANGUAGES])
        ax.set_ylabel("test WER % (mean ± std)")
        ax.set_title("Cross-language: scratch vs fine-tuned (cf. Table 6)")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax = axes[1]
        for size in SIZES:
            for mode, style in (("scratch", "--"), ("finetune", "-"), ("finetune_lr", ":")):
                runs = res["a"].get(f"ru/{size}/{mode}", [])
                if runs:
                    xs = [x for x, _ in runs[0]["train_loss"]]
                    ys = [statistics.mean(r["train_loss"][i][1] for r in runs) for i in range(len(xs))]
                    k = max(1, len(xs) // 50)
                    smooth = [statistics.mean(ys[max(0, i - k):i + 1]) for i in range(len(ys))]
                    ax.plot(xs, smooth, style, label=f"{args.small if size == 'small' else args.large} {mode}")
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training CTC loss (mean over seeds)")
        ax.set_title("Russian: training loss (cf. Fig. 2)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "quartznet_transfer_language.png", dpi=110)
        plt.close(fig)
        files.append("quartznet_transfer_language.png")
    if res["b"].get("finetune"):
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        rows = [("pre-trained", "finetune", "start"), ("scratch (target)", "scratch", "final"),
                ("fine-tuned (target)", "finetune", "final"), ("fine-tuned (target + source)", "finetune_mix",
                                                               "final")]
        for j, where in enumerate(("source", "target")):
            means, stds = [], []
            for _, mode, when in rows:
                vals = [r["sets"][when][where] for r in res["b"].get(mode, [])]
                m, s = ms(vals) if vals else (float("nan"), 0.0)
                means.append(100 * m)
                stds.append(100 * s)
            ax.bar([i + (j - 0.5) * 0.36 for i in range(len(rows))], means, 0.36, yerr=stds, capsize=3,
                   label=f"{where} test set")
        ax.set_xticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
        ax.set_ylabel("test WER % (mean ± std)")
        ax.set_title("Accent transfer: source and target WER (cf. Tables 3-5)")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "quartznet_transfer_accent.png", dpi=110)
        plt.close(fig)
        files.append("quartznet_transfer_accent.png")
    if domain:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for mode, label in DOMAIN_MODES.items():
            runs = res["c"].get(mode)
            if not runs:
                continue
            xs = [x for x, _ in runs[0]["curve"]]
            rel = [[(1.0 - r["curve"][i][1]) / ref for i in range(len(xs))]
                   for r, ref in zip(runs, domain["reference_accuracy"])]
            mean = [statistics.mean(v[i] for v in rel) for i in range(len(xs))]
            lo = [min(v[i] for v in rel) for i in range(len(xs))]
            hi = [max(v[i] for v in rel) for i in range(len(xs))]
            (line,) = ax.plot(xs, mean, label=f"{label} (mean of {len(runs)} seeds, band = min..max)")
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
        ax.axhline(0.9, ls="--", color="gray", label="90% of the final accuracy")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("relative validation accuracy")
        ax.set_ylim(0, 1.05)
        ax.set_title("Finance domain: convergence (cf. Fig. 3)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "quartznet_transfer_domain.png", dpi=110)
        plt.close(fig)
        files.append("quartznet_transfer_domain.png")
    return files


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO,
                              timeout=5).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


#: What to know about the result files measured before the code changed (shown where a JSON has no caveats).
OLD_CAVEATS = (
    "Pre-training ran once (seed 0) and served all three seeds, so the spread leaves out pre-training variance and "
    "the transfer effects rest on one pre-trained model per size; the benchmark now pre-trains per seed "
    "(`--shared-pretraining` for the old plan). Not re-run.",
    "From scratch, only the scratch LR was tried while fine-tuning tried two LRs (LR / 10 and LR): the \"best from "
    "scratch\" rows had no search. The benchmark now tries both LRs for every row of (a) and (c). Not re-run.",
    "The models are named by their B×R shape but built at 1/8 of Table 1's channels and about 1/3 of its kernels "
    "(the 15x5 has 0.36M parameters, not 18.9M); the tables now say so.",
)


def namespace(saved: dict[str, Any]) -> argparse.Namespace:
    """The arguments a result JSON recorded, as a namespace the report sections read (defaults filled in for
    arguments added since)."""
    args = parse_args(["--work", str(saved.get("work", "/tmp/unused"))])
    for k, v in saved.items():
        setattr(args, k, Path(v) if k in ("out", "work") else v)
    if "shared_pretraining" not in saved:
        args.shared_pretraining = not saved.get("pretrain_per_seed", False)
    return args


def results_page(payload: dict[str, Any]) -> tuple[str, dict[str, Any], list[stats.Claim]]:
    """The page of one result JSON: provenance, tables, the claims under the shared rule (and the domain
    section's numbers, the claims)."""
    args, res, pre = namespace(payload["args"]), payload["experiments"], payload["pretraining"]
    labels = {sz: model_label(args, sz, (pre.get(sz) or {}).get("parameters")) for sz in SIZES}
    rep = Report()
    plan_text = ("one pre-training per seed" if not args.shared_pretraining
                 else "one pre-training (seed 0) shared by all seeds")
    rep.lines += ["# Seed 003 (Huang et al.): QuartzNet transfer learning on the synthetic corpora", ""]
    rep.lines += stats.measured_header(
        "Cross-language, accent and domain transfer", str(payload["date"]), str(payload["commit"]),
        f"{payload['machine']}; wall time {payload['wall_seconds'] / 60:.0f} min", str(payload["command"]),
        payload.get("caveats", OLD_CAVEATS))
    rep.lines += [f"Models: small = {labels['small']}, large = {labels['large']} (`size: {args.size}`); batch "
                  f"{args.batch_size}; NovoGrad, LR {args.lr:g} and LR / 10; seeds {args.seeds}; {plan_text}. "
                  "English pre-training test WER %: " + ", ".join(
                      f"{k} {fmt(v['test_wer'])}" for k, v in pre.items() if v) + ".", ""]
    if "a" in args.experiments:
        language_section(rep, res, args, labels)
    if "b" in args.experiments:
        accent_section(rep, res, args, labels)
    domain = domain_section(rep, res, args, labels) if "c" in args.experiments else {}
    earlier = {c["claim"]: c["verdict"] for c in payload.get("claims", []) if "measured" in c}
    stats.note_earlier(rep.claims, earlier, "earlier rule: means, \"within noise\" inside one std")
    rep.lines += ["## The paper's claims", ""] + stats.claims_table(rep.claims, scale=100, unit=" pts") + [""]
    return "\n".join(rep.lines), domain, rep.claims


def render(out: Path) -> Path:
    """Write RESULTS.md beside this script from ``out``'s quartznet_transfer.json (no training)."""
    payload = json.loads((out / "quartznet_transfer.json").read_text(encoding="utf-8"))
    page = HERE / "RESULTS.md"
    page.write_text(results_page(payload)[0], encoding="utf-8")
    return page


def write_results(args: argparse.Namespace, res: dict[str, Any], pre: dict[str, Any], wall: float,
                  command: str) -> str:
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    machine = (f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, shared 2-core VM), "
               f"{args.threads} torch thread(s) per run, {args.jobs} runs at a time, nice 10, torch "
               f"{torch.__version__}")
    payload: dict[str, Any] = {
        "command": command, "commit": commit(), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine, "wall_seconds": wall, "caveats": [],
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "pretraining": pre, "experiments": res}
    text, domain, claims = results_page(payload)
    files = write_plots(args.out, res, args, domain)
    text += "\nPlots (in `results/`): " + ", ".join(f"`{f}`" for f in files) + "\n"
    payload.update(domain=domain, claims=[c.as_dict(100, 1, " pts") for c in claims])
    (args.out / "quartznet_transfer.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    (HERE / "RESULTS.md" if args.out == HERE / "results" else args.out / "RESULTS.md").write_text(text,
                                                                                                   encoding="utf-8")
    return text


# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--experiments", nargs="+", default=["a", "b", "c"], choices=("a", "b", "c"))
    p.add_argument("--small", default="5x3", help="B x R of the small model")
    p.add_argument("--large", default="15x5", help="B x R of the large model")
    p.add_argument("--size", choices=("paper", "cpu", "tiny"), default="cpu")
    p.add_argument("--width", type=float, default=0.125, help="channel multiplier of Table 1 (cpu size: 0.25)")
    p.add_argument("--small-pretrain-size", type=int, default=500, help="English utterances for the small model")
    p.add_argument("--pretrain-steps", type=int, default=800, help="pre-training steps of the small model")
    p.add_argument("--large-pretrain-steps", type=int, default=3000,
                   help="pre-training steps of the large model (the paper's large model saw more data)")
    p.add_argument("--no-large-scratch", dest="large_scratch", action="store_false",
                   help="(a): skip Table 6's large-model scratch rows")
    p.add_argument("--shared-pretraining", action="store_true",
                   help="one pre-training (seed 0) for every seed, as the paper's one pre-trained model; by default "
                        "each seed pre-trains its own, so the spread includes pre-training's variance")
    p.add_argument("--language-sizes", type=int, nargs=3, default=[500, 400, 100], metavar=("DE", "ES", "RU"))
    p.add_argument("--language-steps", type=int, default=400)
    p.add_argument("--no-language-lr-ablation", dest="language_lr_ablation", action="store_false",
                   help="(a): do not also fine-tune the small model at the scratch LR")
    p.add_argument("--large-finetune", nargs="+", choices=FINETUNE_MODES, default=list(FINETUNE_MODES),
                   help="(a): the large model's fine-tuning runs: at LR / 10 (finetune), at the scratch LR "
                        "(finetune_lr) or both")
    p.add_argument("--accent-model", choices=SIZES, default="small")
    p.add_argument("--accent-steps", type=int, default=200)
    p.add_argument("--domain-model", choices=SIZES, default="small")
    p.add_argument("--domain-steps", type=int, default=250)
    p.add_argument("--domain-eval-every", type=int, default=25)
    p.add_argument("--no-domain-lr-ablation", dest="domain_lr_ablation", action="store_false",
                   help="skip (c)'s LR search: fine-tuned only at LR / 10, from scratch only at the scratch LR")
    p.add_argument("--lr", type=float, default=0.01, help="from scratch; fine-tuning uses lr / 10")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eval-batches", type=int, default=8, help="validation batches per evaluation")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="runs at the same time")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "quartznet_transfer")
    p.add_argument("--rerun", action="store_true", help="do not reuse finished runs")
    p.add_argument("--plan", action="store_true", help="print the plan and the expected time, then exit")
    p.add_argument("--report-only", action="store_true", help="tabulate finished runs only; start none")
    p.add_argument("--render", action="store_true", help="write RESULTS.md from --out's quartznet_transfer.json, "
                                                          "run nothing")
    p.add_argument("--tiny", action="store_true", help="smoke test: tiny corpora and models, a few steps")
    args = p.parse_args(argv)
    if args.tiny:
        args.size, args.width, args.small, args.large = "tiny", None, "5x1", "10x1"
        args.pretrain_steps, args.language_steps, args.accent_steps = 8, 6, 6
        args.large_pretrain_steps, args.large_scratch, args.large_finetune = 8, True, list(FINETUNE_MODES)
        args.domain_steps, args.domain_eval_every, args.eval_batches = 6, 2, 1
        args.small_pretrain_size, args.language_sizes, args.seeds = 24, [32, 32, 16], args.seeds[:2]
        if args.work == REPO / "runs" / "quartznet_transfer":
            args.work = REPO / "runs" / "quartznet_transfer_tiny"
        if args.out == HERE / "results":
            args.out = args.work / "results"
    args.work = args.work.resolve()
    args.pretrain_per_seed = not args.shared_pretraining
    return args


def pretraining_plan(args: argparse.Namespace) -> dict[int, int]:
    """Seed -> the seed of the pre-training its runs start from: its own, or the first seed's for all with
    ``--shared-pretraining``."""
    return {seed: args.seeds[0] if args.shared_pretraining else seed for seed in args.seeds}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        print(render(args.out).read_text(encoding="utf-8"))
        return 0
    command = ("python benchmarks/seed003_quartznet/quartznet_transfer.py "
               + " ".join(argv if argv is not None else sys.argv[1:]))
    plan(args)
    if args.plan:
        return 0
    t0 = time.time()
    pre_of = pretraining_plan(args)
    pre_seeds = sorted(set(pre_of.values()))
    res: dict[str, Any] = {"a": {}, "b": {}, "c": {}}
    pre_dirs: dict[tuple[str, int], Path] = {}

    def submit(pool: ThreadPoolExecutor, sp: dict[str, Any]) -> Future:
        return pool.submit(run_one, sp, args)

    def result(fut: Future) -> Path | None:
        try:
            return fut.result()
        except LookupError:  # --report-only: not finished
            return None

    needed = {"small", "large"} if "a" in args.experiments else set()
    needed |= {args.accent_model} if "b" in args.experiments else set()
    needed |= {args.domain_model} if "c" in args.experiments else set()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        # the longest run first; every other run waits for the pre-training it starts from
        pre_futs = {(size, s): submit(pool, pretrain_spec(args, size, s))
                    for size in ("large", "small") if size in needed for s in pre_seeds}

        def after(size: str, seed: int, build: Any) -> Any:
            def job() -> Path:
                found = result(pre_futs[(size, pre_of[seed])])
                if found is None:
                    raise LookupError(f"pre-training {size}")
                return run_one(build(found), args)
            return job

        todo: list[tuple[tuple[str, str, int], str, Any]] = []
        for seed in args.seeds:
            if "c" in args.experiments:
                for mode in tuple(DOMAIN_MODES) if args.domain_lr_ablation else ("scratch", "finetune"):
                    todo.append((("c", mode, seed), args.domain_model, after(
                        args.domain_model, seed, lambda pre, m=mode, sd=seed: domain_spec(args, m, sd, pre))))
            if "b" in args.experiments:
                for mode in ("scratch", "finetune", "finetune_mix"):
                    todo.append((("b", mode, seed), args.accent_model, after(
                        args.accent_model, seed, lambda pre, m=mode, sd=seed: accent_spec(args, m, sd, pre))))
            if "a" in args.experiments:
                for lang in LANGUAGES:
                    for size in SIZES:
                        for mode in language_modes(args, size):
                            todo.append((("a", f"{lang}/{size}/{mode}", seed), size, after(
                                size, seed, lambda pre, lg=lang, sz=size, m=mode, sd=seed:
                                language_spec(args, lg, sz, m, sd, pre))))
        todo.sort(key=lambda item: item[1] == "large")  # runs of the small model while the large pre-trains
        jobs = {key: pool.submit(job) for key, _, job in todo}
        for key, fut in pre_futs.items():
            found = result(fut)
            if found is not None:
                pre_dirs[key] = found
        for (exp, key, seed), fut in jobs.items():
            found = result(fut)
            if found is not None:
                res[exp].setdefault(key, []).append({"seed": seed, **collect(found)})
    pre: dict[str, Any] = {}
    for size in ("small", "large"):
        dirs = [d for (sz, _), d in sorted(pre_dirs.items()) if sz == size]
        runs = [collect(d) for d in dirs]
        pre[size] = ({"test_wer": [r["test_wer"] for r in runs], "parameters": runs[0]["parameters"],
                      "preset": args.small if size == "small" else args.large,
                      "run_dirs": [r["run_dir"] for r in runs], "seconds": [r["seconds"] for r in runs]}
                     if runs else {})
    wall = time.time() - t0
    # wall time from the runs themselves: first start to last end (finished runs are reused across invocations)
    dirs = [Path(r["run_dir"]) for exp in res.values() for runs in exp.values() for r in runs]
    dirs += [Path(d) for v in pre.values() if v for d in v["run_dirs"]]
    if dirs:
        starts = [dt.datetime.strptime(d.name[:15], "%Y%m%d-%H%M%S").timestamp() for d in dirs]
        wall = max((d / "final" / "COMPLETE").stat().st_mtime for d in dirs) - min(starts)
    text = write_results(args, res, pre, wall, command)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
