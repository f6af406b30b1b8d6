"""Data-layer throughput: synthesis, feature extraction and the loader, against what an RNN-T student's
training step consumes.

    python benchmarks/speed/data_throughput.py [--utterances 300] [--batch-size 32] [--threads 2]
    python benchmarks/speed/data_throughput.py --quick   # the before/after section alone (under a minute)

Prints utterances per second for

* synthesis: espeak-ng alone (2 processes) and the full corpus build (synthesis, resampling, FLAC,
  manifest),
* feature extraction: FLAC read + 80-dim fbank, one process, one thread,
* the loader: batches of cached features (``num_workers=0``) and, with on-the-fly augmentation (noise, speed,
  reverb: read + augment + fbank per utterance), with 0 and 1 workers,
* the training step: forward + backward of the ``rnnt_lstm`` ``exp1_student`` (``size: cpu``) on the same
  batches (``--threads`` torch threads),

and the ratio loader / training step (target >= 5 on 2 cores: the loader is never the bottleneck). Then, side
by side (``before_after``; ``--quick`` runs it alone and keeps the file's other keys): one cached-feature
training split batched by ``sampler: length_buckets`` (before) and ``sampler: lhotse`` (after), the same
``--batch-size`` and ``--max-frames``, ``num_workers=0``: utterances/s, batches/s, their ratio and the padding
fraction (padded frames / real frames); and the same utterances read as the ``read_speech`` dataset (NeMo
manifests) and as the ``lhotse`` dataset (the corpus's ``cuts_<split>.jsonl.gz``): the time to build the data
module (manifest read + feature-store lookups, features already cached) and the loader rate. ``--repeats``
alternating measurements of each side (``--epochs`` epochs each), so machine load hits both alike; medians
reported. Results also go to ``benchmarks/speed/results/data_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def _loader_rate(dm: Any, batch_size: int, workers: int, epochs: int = 1) -> tuple[float, int]:
    n, t0 = 0, time.perf_counter()
    for epoch in range(epochs):
        for batch in dm.loader("train", batch_size, shuffle=True, seed=0, epoch=epoch, num_workers=workers):
            n += batch["features"].shape[0]
    return _rate(n, time.perf_counter() - t0), n


# -- before / after: the hand-written sampler and dataset path against lhotse's, side by side -----------------


def _epochs(dm: Any, batch_size: int, epochs: list[int]) -> dict[str, float]:
    """One pass over ``epochs`` of the training split (``num_workers=0``, batches computed inside the timing):
    utterances/s, batches/s, and padded frames / real frames over all batches."""
    utts = batches = real = padded = 0
    t0 = time.perf_counter()
    for epoch in epochs:
        for batch in dm.loader("train", batch_size, shuffle=True, seed=0, epoch=epoch, num_workers=0):
            lengths = batch["feature_lengths"]
            utts, batches = utts + len(lengths), batches + 1
            real += int(lengths.sum())
            padded += int(lengths.max()) * len(lengths) - int(lengths.sum())
    elapsed = time.perf_counter() - t0
    return {"utt_per_s": _rate(utts, elapsed), "batches_per_s": _rate(batches, elapsed),
            "padding_fraction": padded / real if real else 0.0, "utterances_per_epoch": utts / len(epochs),
            "batches_per_epoch": batches / len(epochs)}


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def before_after(root: Path, cache: Path, sizes: dict[str, int], batch_size: int, max_frames: int | None,
                 repeats: int, epochs: int) -> dict[str, Any]:
    """``sampler: length_buckets`` against ``sampler: lhotse`` on one cached-feature training split, and the
    ``read_speech`` (NeMo manifest) dataset path against the ``lhotse`` one (the corpus's ``cuts_<split>.jsonl.gz``)
    for the same utterances: ``repeats`` alternating measurements of each side, medians reported."""
    from compressor.corpora.datasets import ReadSpeechArgs, build_read_speech
    from compressor.data.datasets import LhotseArgs, build_lhotse

    batching = {"max_frames": max_frames}
    cuts = {s: str(root / f"cuts_{s}.jsonl.gz") for s in ("train", "valid", "test")}

    def nemo_path() -> Any:
        return build_read_speech(ReadSpeechArgs(**sizes, sampler="lhotse", **batching), cache_dir=cache)

    def lhotse_path() -> Any:
        return build_lhotse(LhotseArgs(cuts=cuts, **batching), cache_dir=cache)

    modules = {"length_buckets": build_read_speech(ReadSpeechArgs(**sizes, sampler="length_buckets", **batching),
                                                   cache_dir=cache),
               "lhotse": build_read_speech(ReadSpeechArgs(**sizes, sampler="lhotse", **batching), cache_dir=cache)}
    builders = {"read_speech": nemo_path, "lhotse": lhotse_path}
    datasets = {name: build() for name, build in builders.items()}  # the first builds fill the feature cache
    samplers: dict[str, list[dict[str, float]]] = {k: [] for k in modules}
    paths: dict[str, list[dict[str, float]]] = {k: [] for k in builders}
    for r in range(repeats):
        # alternate which side goes first, so a load spike or a warm cache favours neither
        for name in (list(modules) if r % 2 == 0 else list(modules)[::-1]):
            samplers[name].append(_epochs(modules[name], batch_size, list(range(r * epochs, (r + 1) * epochs))))
        for name in (list(builders) if r % 2 == 0 else list(builders)[::-1]):
            t0 = time.perf_counter()
            datasets[name] = builders[name]()
            build_s = time.perf_counter() - t0
            paths[name].append({"build_s": build_s, **_epochs(datasets[name], batch_size,
                                                              list(range(r * epochs, (r + 1) * epochs)))})
    before, after = _median(samplers["length_buckets"]), _median(samplers["lhotse"])
    nemo, lhotse = _median(paths["read_speech"]), _median(paths["lhotse"])
    n_train = len(datasets["lhotse"].dataset("train"))
    assert n_train == len(modules["lhotse"].dataset("train")), "the two dataset paths read different utterances"
    return {
        "batch_size": batch_size, "max_frames": max_frames, "num_workers": 0, "repeats": repeats,
        "epochs_per_repeat": epochs, "train_utterances": n_train, "statistic": "median of the repeats",
        "sampler": {"before": {"sampler": "length_buckets", **before}, "after": {"sampler": "lhotse", **after},
                    "ratio_after_before_utt_per_s": after["utt_per_s"] / before["utt_per_s"],
                    "ratio_after_before_batches_per_s": after["batches_per_s"] / before["batches_per_s"]},
        "dataset": {"before": {"dataset": "read_speech (NeMo manifest)", **nemo},
                    "after": {"dataset": "lhotse (cuts_<split>.jsonl.gz)", **lhotse},
                    "sampler": "lhotse",
                    "ratio_after_before_build_s": lhotse["build_s"] / nemo["build_s"],
                    "ratio_after_before_utt_per_s": lhotse["utt_per_s"] / nemo["utt_per_s"]},
    }


def table(ba: dict[str, Any]) -> str:
    """The before/after section as a small text table."""
    s, d = ba["sampler"], ba["dataset"]
    rows = [("", "utt/s", "batches/s", "padding", "utt/epoch", "batches/epoch", "build s"),
            ("sampler: length_buckets (before)", s["before"]["utt_per_s"], s["before"]["batches_per_s"],
             s["before"]["padding_fraction"], s["before"]["utterances_per_epoch"],
             s["before"]["batches_per_epoch"], None),
            ("sampler: lhotse (after)", s["after"]["utt_per_s"], s["after"]["batches_per_s"],
             s["after"]["padding_fraction"], s["after"]["utterances_per_epoch"],
             s["after"]["batches_per_epoch"], None),
            ("  after / before", s["ratio_after_before_utt_per_s"], s["ratio_after_before_batches_per_s"],
             None, None, None, None),
            ("dataset: read_speech manifest (before)", d["before"]["utt_per_s"], d["before"]["batches_per_s"],
             d["before"]["padding_fraction"], d["before"]["utterances_per_epoch"],
             d["before"]["batches_per_epoch"], d["before"]["build_s"]),
            ("dataset: lhotse cuts (after)", d["after"]["utt_per_s"], d["after"]["batches_per_s"],
             d["after"]["padding_fraction"], d["after"]["utterances_per_epoch"],
             d["after"]["batches_per_epoch"], d["after"]["build_s"]),
            ("  after / before", d["ratio_after_before_utt_per_s"], None, None, None, None,
             d["ratio_after_before_build_s"])]

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, str):
            return v
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.0f}"

    width = max(len(r[0]) for r in rows)
    lines = [f"{r[0]:<{width}}" + "".join(f"{cell(v):>14}" for v in r[1:]) for r in rows]
    head = (f"before/after ({ba['train_utterances']} training utterances, batch_size {ba['batch_size']}, max_frames "
            f"{ba['max_frames']}, num_workers 0; median of {ba['repeats']} alternating repeats of "
            f"{ba['epochs_per_repeat']} epochs; padding = padded frames / real frames; dataset rows use "
            f"sampler: lhotse)")
    return "\n".join([head, *lines])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--utterances", type=int, default=300, help="training utterances synthesised")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="torch threads for the training step")
    p.add_argument("--steps", type=int, default=6, help="timed training steps")
    p.add_argument("--max-frames", type=int, default=4000,
                   help="max_frames of the before/after batches (0: no cap)")
    p.add_argument("--repeats", type=int, default=5, help="alternating before/after repeats (median reported)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs per before/after repeat")
    p.add_argument("--quick", action="store_true",
                   help="only the before/after section (the corpus built untimed); the other keys of --out kept")
    p.add_argument("--out", default="benchmarks/speed/results/data_throughput.json")
    args = p.parse_args(argv)
    if args.quick:
        return quick(args)

    from compressor.corpora.build import build_corpus, synthesize_items
    from compressor.corpora.corpus import CorpusSettings, plan
    from compressor.corpora.datasets import ReadSpeechArgs, build_read_speech
    from compressor.data.extract import extract_features
    from compressor.data.formats import read_nemo_manifest

    torch.set_num_threads(1)
    results: dict[str, Any] = {"cpu_count": os.cpu_count(), "utterances": args.utterances,
                               "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        sizes = {"train_size": args.utterances, "valid_size": 20, "test_size": 20}

        # -- synthesis ------------------------------------------------------------------------
        settings = CorpusSettings(kind="read_speech", **sizes)
        items = plan(settings)["train"]
        synthesize_items(items[:2], workers=2)  # start the fork server (a one-off ~seconds) before timing
        t0 = time.perf_counter()
        audio = synthesize_items(items, workers=2)
        results["synthesis_espeak_utt_per_s"] = _rate(len(audio), time.perf_counter() - t0)
        results["mean_utterance_s"] = sum(len(a) for a in audio) / len(audio) / 22050
        t0 = time.perf_counter()
        root = build_corpus(settings, cache, workers=2)
        n_all = args.utterances + 40
        results["corpus_build_utt_per_s"] = _rate(n_all, time.perf_counter() - t0)

        # -- feature extraction ----------------------------------------------------------------
        utts, _ = read_nemo_manifest(root / "train.jsonl", "train")
        t0 = time.perf_counter()
        extract_features(utts, "nemo", None)
        results["features_utt_per_s"] = _rate(len(utts), time.perf_counter() - t0)

        # -- loader ----------------------------------------------------------------------------
        dm = build_read_speech(ReadSpeechArgs(**sizes), cache_dir=cache)
        results["loader_cached_utt_per_s"], _ = _loader_rate(dm, args.batch_size, 0, epochs=3)
        augment = {"noise_snr": [5, 20], "speeds": [0.9, 1.0, 1.1], "reverb": 0.5}
        aug = build_read_speech(ReadSpeechArgs(**sizes, augment=augment), cache_dir=cache)
        results["loader_augmented_utt_per_s_0_workers"], _ = _loader_rate(aug, args.batch_size, 0)
        results["loader_augmented_utt_per_s_1_worker"], _ = _loader_rate(aug, args.batch_size, 1)

        # -- training step of the RNN-T student -------------------------------------------------
        from compressor.families.rnnt.model import RNNTArgs, build_rnnt, count_parameters
        from compressor.families.rnnt.task import RNNTTask

        torch.set_num_threads(args.threads)
        model = build_rnnt(RNNTArgs(preset="exp1_student", size="cpu"), dm.info)
        task = RNNTTask(RNNTTask.Args(), dm.info)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        batches = list(dm.loader("train", args.batch_size, shuffle=True, seed=0, epoch=0))
        batches = (batches * (1 + args.steps // max(1, len(batches))))[: args.steps + 1]
        n, elapsed = 0, 0.0
        for i, batch in enumerate(batches):
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = task.loss(model(batch), batch)
            loss.backward()
            opt.step()
            if i > 0:  # the first step warms up
                elapsed += time.perf_counter() - t0
                n += batch["features"].shape[0]
        results["train_step_utt_per_s"] = _rate(n, elapsed)
        results["student_parameters"] = count_parameters(model)
        results["train_threads"] = args.threads

        torch.set_num_threads(1)
        results["before_after"] = before_after(root, cache, sizes, args.batch_size, args.max_frames or None,
                                               args.repeats, args.epochs)

    step = results["train_step_utt_per_s"]
    results["ratio_loader_cached"] = results["loader_cached_utt_per_s"] / step
    results["ratio_loader_augmented_0_workers"] = results["loader_augmented_utt_per_s_0_workers"] / step
    results["ratio_loader_augmented_1_worker"] = results["loader_augmented_utt_per_s_1_worker"] / step

    width = max(len(k) for k in results)
    for key, value in results.items():
        if key == "before_after":
            continue
        print(f"{key:<{width}}  {value:.1f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    ok = results["ratio_loader_cached"] >= 5 and results["ratio_loader_augmented_1_worker"] >= 5
    print(f"loader never the bottleneck (ratio >= 5): {'yes' if ok else 'NO'}")
    print(table(results["before_after"]))
    write(Path(args.out), results)
    return 0


def quick(args: argparse.Namespace) -> int:
    """``--quick``: the before/after section alone, merged into ``--out`` (its other keys kept)."""
    from compressor.corpora.build import build_corpus
    from compressor.corpora.corpus import CorpusSettings

    torch.set_num_threads(1)
    sizes = {"train_size": args.utterances, "valid_size": 20, "test_size": 20}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        root = build_corpus(CorpusSettings(kind="read_speech", **sizes), cache, workers=2)
        ba = before_after(root, cache, sizes, args.batch_size, args.max_frames or None, args.repeats, args.epochs)
    print(table(ba))
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["before_after"] = ba
    write(out, results)
    return 0


def write(out: Path, results: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
