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
  default 15x5) on all 2,000 (the paper's 5D model), ``--pretrain-steps`` each. With ``--pretrain-per-seed``
  each seed pre-trains its own; by default one pre-training (seed 0) serves every seed, as the paper's one
  pre-trained model does, and seeds vary the fine-tuning / scratch runs (initialisation, data order).
* (a) cross-language (Table 6): German, Spanish and Russian read speech (``--language-sizes`` training
  utterances; Russian smallest, as in the paper), each model size trained from scratch and fine-tuned from its
  English model with a new decoder, ``--language-steps`` steps; test WER. The paper reports the best run of an
  LR sweep, so the small model is also fine-tuned at the scratch LR and the better of the two fine-tuning LRs
  (by final validation WER, per seed) is compared with scratch; ``--large-finetune`` picks the large model's.
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
    if mode != "scratch":
        assert pre is not None
        student["init_from"] = {"run": str(pre)}
    lr = args.lr / 10 if mode == "finetune" else args.lr
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
    """``scratch`` (LR), ``finetune`` (LR / 10, the paper's recipe) or ``finetune_lr`` (fine-tuned at the
    scratch LR: an ablation telling the pre-trained start apart from the smaller LR)."""
    student = model(args, args.domain_model)
    if mode != "scratch":
        assert pre is not None
        student["init_from"] = {"run": str(pre)}
    lr = args.lr / 10 if mode == "finetune" else args.lr
    st = stage(args, args.domain_steps, lr, args.domain_eval_every, args.eval_batches)
    st["handoff"] = "last"
    return spec(args, f"domain_{mode}_seed{seed}", seed, tiny_corpus(args, DOMAIN), student, st)


DOMAIN_MODES = {"scratch": "from scratch", "finetune": "pre-trained, fine-tuned (LR / 10)",
                "finetune_lr": "pre-trained, fine-tuned at the scratch LR (ablation)"}
# (a): fine-tuning at LR / 10 (the paper's recipe) and at the scratch LR; Table 6 reports the best run of an LR
# sweep, chosen here per seed by the final validation WER
FINETUNE_MODES = ("finetune", "finetune_lr")


def language_modes(args: argparse.Namespace, size: str) -> tuple[str, ...]:
    if size == "large":
        return (("scratch",) if args.large_scratch else ()) + tuple(args.large_finetune)
    return ("scratch", "finetune") + (("finetune_lr",) if args.language_lr_ablation else ())


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

    n_pre = len(args.seeds) if args.pretrain_per_seed else 1
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
        items.append(("(c) domain: scratch, fine-tuned (+ at the scratch LR)", seeds * (
            3 if args.domain_lr_ablation else 2) * (
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
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    m, s = ms(values)
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def verdict(holds: bool | None, noise: bool = False) -> str:
    if holds is None:
        return "not measured"
    if not holds:
        return "does not hold"
    return "holds (within noise)" if noise else "holds"


def steps_to(curve: list[tuple[int, float]], reference: float, fraction: float = 0.9) -> int | None:
    """First evaluated step whose accuracy (1 - WER) reaches ``fraction`` of ``reference``."""
    for step, wer in curve:
        if 1.0 - wer >= fraction * reference:
            return step
    return None


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.claims: list[dict[str, Any]] = []

    def claim(self, source: str, text: str, holds: bool | None, measured: str, noise: bool = False) -> None:
        self.claims.append({"source": source, "claim": text, "measured": measured,
                            "verdict": verdict(holds, noise)})


def best_finetune(res: dict[str, Any], lang: str, size: str) -> list[dict[str, Any]]:
    """Per seed, the fine-tuning run (of the LRs tried) with the lowest final validation WER, as Table 6 reports
    the best run of an LR sweep; each with its ``mode``."""
    by_seed: dict[int, dict[str, Any]] = {}
    for mode in FINETUNE_MODES:
        for r in res["a"].get(f"{lang}/{size}/{mode}", []):
            if not r["curve"]:
                continue
            held = by_seed.get(r["seed"])
            if held is None or r["curve"][-1][1] < held["curve"][-1][1]:
                by_seed[r["seed"]] = {**r, "mode": mode}
    return [by_seed[k] for k in sorted(by_seed)]


LANGUAGE_ROWS = {"scratch": "from scratch", "finetune": "fine-tuned, LR / 10 (the paper's recipe)",
                 "finetune_lr": "fine-tuned, scratch LR"}


def language_section(rep: Report, res: dict[str, Any], args: argparse.Namespace) -> None:
    english = tiny_corpus(args, ENGLISH)["train_size"]
    rep.lines += ["## (a) Cross-language transfer (Table 6)", "",
                  f"English pre-training: {args.small} on {args.small_pretrain_size} utterances (\"WSJ\"), "
                  f"{args.pretrain_steps} steps; {args.large} on all {english} (\"5D\"), "
                  f"{args.large_pretrain_steps} steps. Targets: "
                  + ", ".join(f"{LANG_NAMES[lg]} {n} training utterances"
                              for lg, n in zip(LANGUAGES, args.language_sizes))
                  + f"; {args.language_steps} steps for every run; new decoder for the target alphabet; test WER % "
                  f"(greedy), mean ± std over seeds {args.seeds}. Table 6 reports the best run of an LR sweep: "
                  "\"best fine-tuned\" takes, per seed, the fine-tuning LR with the lower final validation WER.", "",
                  "| Language | Model | Run | LR | WER % | per seed | vs scratch |",
                  "|---|---|---|---:|---:|---|---:|"]
    gains: dict[tuple[str, str], tuple[tuple[float, float], tuple[float, float]]] = {}
    recipe: dict[tuple[str, str], tuple[tuple[float, float], tuple[float, float]]] = {}
    chosen: list[str] = []
    for lang in LANGUAGES:
        for size in SIZES:
            preset = args.small if size == "small" else args.large
            scratch = [r["test_wer"] for r in res["a"].get(f"{lang}/{size}/scratch", [])]
            best = best_finetune(res, lang, size)
            rows = [(LANGUAGE_ROWS[m], args.lr / 10 if m == "finetune" else args.lr,
                     [r["test_wer"] for r in res["a"].get(f"{lang}/{size}/{m}", [])]) for m in LANGUAGE_ROWS]
            if best:
                picks = ", ".join("LR/10" if r["mode"] == "finetune" else "LR" for r in best)
                rows.append((f"**best fine-tuned** ({picks})", None, [r["test_wer"] for r in best]))
                chosen += [r["mode"] for r in best]
            first = True
            for label, lr, vals in rows:
                if not vals:
                    continue
                gain = (f"{100 * (ms(scratch)[0] - ms(vals)[0]):+.1f} pts"
                        if scratch and label != LANGUAGE_ROWS["scratch"] else "")
                rep.lines.append(f"| {LANG_NAMES[lang] if first else ''} | {preset if first else ''} | {label} | "
                                 f"{'' if lr is None else f'{lr:g}'} | {fmt(vals)} | "
                                 f"{', '.join(f'{100 * w:.1f}' for w in vals)} | {gain} |")
                first = False
            if scratch and best:
                gains[(lang, size)] = (ms(scratch), ms([r["test_wer"] for r in best]))
            recipe_runs = [r["test_wer"] for r in res["a"].get(f"{lang}/{size}/finetune", [])]
            if scratch and recipe_runs:
                recipe[(lang, size)] = (ms(scratch), ms(recipe_runs))
    rep.lines.append("")

    def beats(pairs: dict[tuple[str, str], Any], text: str) -> None:
        better = [k for k, (s, f) in pairs.items() if f[0] < s[0]]
        noisy = [k for k, (s, f) in pairs.items() if f[0] < s[0] and s[0] - f[0] < max(s[1], f[1])]
        rep.claim("Table 6", text, len(better) == len(pairs),
                  f"{len(better)} of {len(pairs)} language x size pairs: " + ", ".join(
                      f"{lg} {args.small if sz == 'small' else args.large} {100 * f[0]:.1f} vs {100 * s[0]:.1f}"
                      for (lg, sz), (s, f) in pairs.items()) + (f" ({len(noisy)} within one std)" if noisy else ""),
                  noise=bool(noisy))

    if gains:
        beats(gains, "fine-tuning (best LR) beats training from scratch, every language and size with both")
    if recipe:
        beats(recipe, "fine-tuning at LR / 10 (the recipe) beats training from scratch at LR")
    if chosen and "finetune_lr" in {m for lg in LANGUAGES for sz in SIZES for m in language_modes(args, sz)}:
        tenth = chosen.count("finetune")
        rep.claim("Sec. 5.2", "the best fine-tuning LR is about 10x smaller than the scratch LR (here: LR / 10 "
                  "beats the scratch LR on validation WER)", tenth > len(chosen) / 2,
                  f"LR / 10 chosen in {tenth} of {len(chosen)} language x size x seed cells")
    if gains:
        by_lang = {lg: statistics.mean(s[0] - f[0] for (lang, _), (s, f) in gains.items() if lang == lg)
                   for lg in LANGUAGES if any(lang == lg for lang, _ in gains)}
        if len(by_lang) == 3:
            top = max(by_lang, key=by_lang.__getitem__)
            rep.claim("Sec. 5.3", "the largest improvement from fine-tuning is for Russian (the smallest set)",
                      top == "ru" and by_lang["ru"] > 0, "mean WER gain of the best fine-tuning (pts): " + ", ".join(
                          f"{lg} {100 * g:.1f}" for lg, g in by_lang.items()))
    pairs = []
    for lg in LANGUAGES:
        small, large = best_finetune(res, lg, "small"), best_finetune(res, lg, "large")
        if small and large:
            pairs.append((lg, ms([r["test_wer"] for r in small]), ms([r["test_wer"] for r in large])))
    if pairs:
        wins = [lg for lg, small, large in pairs if large[0] < small[0]]
        rep.claim("Table 6, Sec. 5.3", f"fine-tuning the larger model pre-trained on more data ({args.large}) "
                  f"beats fine-tuning the small one ({args.small})", len(wins) == len(pairs),
                  f"{len(wins)} of {len(pairs)} languages: " + ", ".join(
                      f"{lg} {100 * large[0]:.1f} vs {100 * small[0]:.1f}" for lg, small, large in pairs))
    scratch_ru, tuned_ru = res["a"].get("ru/small/scratch", []), best_finetune(res, "ru", "small")
    if scratch_ru and tuned_ru:
        def loss_at(runs: list[dict[str, Any]], last: bool) -> float:
            return statistics.mean(statistics.mean(v for _, v in (r["train_loss"][-20:] if last
                                                                  else r["train_loss"][:20])) for r in runs)

        first, ls, lf = loss_at(scratch_ru, False), loss_at(scratch_ru, True), loss_at(tuned_ru, True)
        ws, wf = ms([r["test_wer"] for r in scratch_ru])[0], ms([r["test_wer"] for r in tuned_ru])[0]
        rep.claim("Sec. 5.3, Fig. 2", "from scratch, Russian fits its training data (final training loss under 2% "
                  "of its first, or within 2x of the fine-tuned model's) but generalises worse (test WER higher)",
                  (ls < 0.02 * first or ls < 2 * lf) and ws > wf,
                  f"{args.small}: training loss (mean of the first / last 20 steps) scratch {first:.3g} -> {ls:.2g}, "
                  f"best fine-tuned {lf:.2g}; test WER {100 * ws:.1f} vs {100 * wf:.1f}")


def accent_section(rep: Report, res: dict[str, Any], args: argparse.Namespace) -> None:
    runs = res["b"]
    rows = [("pre-trained", "en", "-", [r["sets"]["start"] for r in runs.get("finetune", [])]),
            ("scratch", "accent", "-", [r["sets"]["final"] for r in runs.get("scratch", [])]),
            ("fine-tuned", "en", "accent", [r["sets"]["final"] for r in runs.get("finetune", [])]),
            ("fine-tuned + source", "en", "accent + en (1:1)",
             [r["sets"]["final"] for r in runs.get("finetune_mix", [])])]
    preset = args.large if args.accent_model == "large" else args.small
    rep.lines += ["## (b) Accent transfer and forgetting (Tables 3–5)", "",
                  f"QuartzNet {preset}; source = English read speech (the pre-training data), target = the "
                  f"accented set (6 espeak English accents); {args.accent_steps} steps for every trained row; "
                  "test WER %, mean ± std over seeds.", "",
                  "| Model | Train dataset | Fine-tune dataset | source WER % | target WER % |",
                  "|---|---|---|---:|---:|"]
    w: dict[str, dict[str, tuple[float, float]]] = {}
    for label, train, tune, sets in rows:
        src = [s["source"] for s in sets]
        tgt = [s["target"] for s in sets]
        if src:
            w[label] = {"source": ms(src), "target": ms(tgt)}
        rep.lines.append(f"| {label} | {train} | {tune} | {fmt(src)} | {fmt(tgt)} |")
    rep.lines.append("")
    if len(w) < 4:
        return

    def noise(a: str, b: str, where: str) -> bool:
        return abs(w[a][where][0] - w[b][where][0]) < max(w[a][where][1], w[b][where][1])

    def pts(a: str, where: str) -> str:
        return f"{100 * w[a][where][0]:.1f}"

    rep.claim("Tables 3, 5", "fine-tuning on the target beats training on it from scratch (target WER)",
              w["fine-tuned"]["target"][0] < w["scratch"]["target"][0],
              f"{pts('fine-tuned', 'target')} vs {pts('scratch', 'target')}", noise("fine-tuned", "scratch", "target"))
    rep.claim("Tables 3–5", "fine-tuning improves the pre-trained model on the target",
              w["fine-tuned"]["target"][0] < w["pre-trained"]["target"][0],
              f"{pts('fine-tuned', 'target')} vs {pts('pre-trained', 'target')}",
              noise("fine-tuned", "pre-trained", "target"))
    rep.claim("Tables 3–5", "fine-tuning on the target alone forgets the source (source WER rises above the "
              "pre-trained model's)", w["fine-tuned"]["source"][0] > w["pre-trained"]["source"][0],
              f"{pts('fine-tuned', 'source')} vs {pts('pre-trained', 'source')}",
              noise("fine-tuned", "pre-trained", "source"))
    rep.claim("Tables 3–5", "fine-tuning on target + source forgets less (source WER below target-only "
              "fine-tuning)", w["fine-tuned + source"]["source"][0] < w["fine-tuned"]["source"][0],
              f"{pts('fine-tuned + source', 'source')} vs {pts('fine-tuned', 'source')}",
              noise("fine-tuned + source", "fine-tuned", "source"))
    gap = w["fine-tuned + source"]["target"][0] - w["fine-tuned"]["target"][0]
    rep.claim("Tables 3–5", "… at a small cost on the target (within 2 WER points of target-only fine-tuning)",
              gap <= 0.02, f"{pts('fine-tuned + source', 'target')} vs {pts('fine-tuned', 'target')} "
              f"({100 * gap:+.1f} pts)")
    rep.claim("Tables 3, 5", "a model trained on the target alone is much worse on the source than the "
              "pre-trained model", w["scratch"]["source"][0] > w["pre-trained"]["source"][0],
              f"{pts('scratch', 'source')} vs {pts('pre-trained', 'source')}",
              noise("scratch", "pre-trained", "source"))


def domain_section(rep: Report, res: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    runs = res["c"]
    preset = args.large if args.domain_model == "large" else args.small
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
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return values, f"{statistics.mean(values):.1f} ± {sd:.1f}" + (
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
        lr = args.lr / 10 if m == "finetune" else args.lr
        rep.lines.append(f"| {DOMAIN_MODES[m]} | {lr:g} | "
                         f"{', '.join('never' if x is None else str(x) for x in steps[m])} | "
                         f"{statistics.mean(rel):.3f} | {fmt([r['test_wer'] for r in runs[m]])} |")
    rep.lines += ["", f"Ratio of steps to 90% (scratch / pre-trained): **{text}** (paper: about 18x)."]
    if "finetune_lr" in modes:
        out["ratios_finetune_lr"], text_lr = ratio("scratch", "finetune_lr")
        rep.lines.append(f"Ablation, scratch / pre-trained fine-tuned at the scratch LR: **{text_lr}**.")
    rep.lines.append("")
    rep.claim("Fig. 3", "the pre-trained model reaches 90% of the final accuracy faster than training from "
              "scratch (paper: ~18x)", all(r > 1 for r in out["ratios"]), f"ratio {text}",
              noise=statistics.mean(out["ratios"]) - 1 < (statistics.stdev(out["ratios"])
                                                          if len(out["ratios"]) > 1 else 0.0))
    final = {m: [1.0 - r["curve"][-1][1] for r in runs[m]] for m in modes}
    rep.claim("Fig. 3", "the pre-trained model ends with a better accuracy than training from scratch",
              statistics.mean(final["finetune"]) > statistics.mean(final["scratch"]),
              f"valid accuracy {100 * statistics.mean(final['finetune']):.1f}% vs "
              f"{100 * statistics.mean(final['scratch']):.1f}%"
              + (f" (fine-tuned at the scratch LR: {100 * statistics.mean(final['finetune_lr']):.1f}%)"
                 if "finetune_lr" in final else ""))
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


def write_results(args: argparse.Namespace, res: dict[str, Any], pre: dict[str, Any], wall: float,
                  command: str) -> str:
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    rep = Report()
    machine = (f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, shared 2-core VM), "
               f"{args.threads} torch thread(s) per run, {args.jobs} runs at a time, nice 10")
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rep.lines += ["# QuartzNet transfer learning (seed 003) on the synthetic corpora", "",
                  f"- Command: `{command}`", f"- Commit: {commit()}; date: {date}; torch {torch.__version__}",
                  f"- Machine: {machine}; wall time {wall / 60:.0f} min",
                  f"- Sizes: small = QuartzNet {args.small}, large = {args.large}, at `size: {args.size}`"
                  + (f", width {args.width}" if args.width is not None else "")
                  + " ("
                  + ", ".join(f"{k} {v['parameters'] / 1e6:.3f}M parameters" for k, v in pre.items() if v)
                  + f"); batch {args.batch_size}; LR {args.lr} from scratch, {args.lr / 10} fine-tuning "
                  f"(also {args.lr} where a row says so); "
                  f"seeds {args.seeds}"
                  + ("; one pre-training per seed" if args.pretrain_per_seed
                     else "; one pre-training (seed 0) shared by all seeds"),
                  "- English pre-training test WER: " + ", ".join(
                      f"{k} {fmt(v['test_wer'])}" for k, v in pre.items() if v), ""]
    if "a" in args.experiments:
        language_section(rep, res, args)
    if "b" in args.experiments:
        accent_section(rep, res, args)
    domain = domain_section(rep, res, args) if "c" in args.experiments else {}
    rep.lines += ["## The paper's claims, checked", "",
                  "| # | source | claim | measured | verdict |", "|---:|---|---|---|---|"]
    for i, c in enumerate(rep.claims, 1):
        rep.lines.append(f"| {i} | {c['source']} | {c['claim']} | {c['measured']} | **{c['verdict']}** |")
    rep.lines += ["", "\"within noise\": the difference of the means is smaller than the larger of the two standard "
                  "deviations, so these seeds do not separate the two.", ""]
    files = write_plots(args.out, res, args, domain)
    rep.lines += ["Plots: " + ", ".join(f"`{f}`" for f in files), ""]
    text = "\n".join(rep.lines)
    (args.out / "quartznet_transfer.md").write_text(text, encoding="utf-8")
    payload = {"command": command, "commit": commit(), "date": date, "machine": machine, "wall_seconds": wall,
               "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "pretraining": pre, "experiments": res, "domain": domain, "claims": rep.claims}
    (args.out / "quartznet_transfer.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
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
    p.add_argument("--pretrain-per-seed", action="store_true", help="pre-train once per seed (default: once)")
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
                   help="skip (c)'s extra row: fine-tuned at the scratch LR")
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
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = ("python benchmarks/seed003_quartznet/quartznet_transfer.py "
               + " ".join(argv if argv is not None else sys.argv[1:]))
    plan(args)
    if args.plan:
        return 0
    t0 = time.time()
    pre_seeds = args.seeds if args.pretrain_per_seed else args.seeds[:1]
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
                found = result(pre_futs[(size, seed if args.pretrain_per_seed else pre_seeds[0])])
                if found is None:
                    raise LookupError(f"pre-training {size}")
                return run_one(build(found), args)
            return job

        todo: list[tuple[tuple[str, str, int], str, Any]] = []
        for seed in args.seeds:
            if "c" in args.experiments:
                for mode in ("scratch", "finetune", "finetune_lr") if args.domain_lr_ablation else ("scratch",
                                                                                                   "finetune"):
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
