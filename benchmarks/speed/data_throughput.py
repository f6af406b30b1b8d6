"""Data-layer throughput: synthesis, feature extraction and the loader, against what an RNN-T student's
training step consumes.

    python benchmarks/speed/data_throughput.py [--utterances 300] [--batch-size 32] [--threads 2]

Prints utterances per second for

* synthesis: espeak-ng alone (2 processes) and the full corpus build (synthesis, resampling, FLAC,
  manifest),
* feature extraction: FLAC read + 80-dim fbank, one process, one thread,
* the loader: batches of cached features (``num_workers=0``) and, with on-the-fly augmentation (noise, speed,
  reverb: read + augment + fbank per utterance), with 0 and 1 workers,
* the training step: forward + backward of the ``rnnt_lstm`` ``exp1_student`` (``size: cpu``) on the same
  batches (``--threads`` torch threads),

and the ratio loader / training step (target >= 5 on 2 cores: the loader is never the bottleneck). Results
also go to ``benchmarks/speed/results/data_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--utterances", type=int, default=300, help="training utterances synthesised")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="torch threads for the training step")
    p.add_argument("--steps", type=int, default=6, help="timed training steps")
    p.add_argument("--out", default="benchmarks/speed/results/data_throughput.json")
    args = p.parse_args(argv)

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

    step = results["train_step_utt_per_s"]
    results["ratio_loader_cached"] = results["loader_cached_utt_per_s"] / step
    results["ratio_loader_augmented_0_workers"] = results["loader_augmented_utt_per_s_0_workers"] / step
    results["ratio_loader_augmented_1_worker"] = results["loader_augmented_utt_per_s_1_worker"] / step

    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:.1f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    ok = results["ratio_loader_cached"] >= 5 and results["ratio_loader_augmented_1_worker"] >= 5
    print(f"loader never the bottleneck (ratio >= 5): {'yes' if ok else 'NO'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
