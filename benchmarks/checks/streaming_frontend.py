"""Streaming vs offline WER of exported RNN-T students, per training front end, on the whole test split.

For each finished run (e.g. ``specs/rnnt_lcmr.yaml``, trained on the offline recognizer's front end, and
``specs/rnnt_lcmr_streaming.yaml``, trained on the online one) the student is exported to a temporary
directory with every test utterance decoded, and the script prints, side by side:

* offline: sherpa-onnx ``OfflineRecognizer`` (front end ``nemo_transducer``) and PyTorch greedy on the
  run's own features;
* streaming: sherpa-onnx ``OnlineRecognizer`` (front end ``nemo_online``) at several chunk sizes;
* whether each recognizer computes the front end the model was trained on.

    python benchmarks/checks/streaming_frontend.py RUN_DIR [RUN_DIR ...] [--chunks 9 24 48]

Set ``COMPRESSOR_CACHE`` as for the runs (the corpus is read from it).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/: stats
import stats  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))


def measure(run_dir: Path, chunks: list[int]) -> dict:
    from compressor.export.base import ExportJob
    from compressor.export.exporter import OnnxExportArgs, OnnxExporter
    from compressor.families.rnnt.export import RNNTExport
    from compressor.run.finished import load_run

    run = load_run(run_dir)
    n_test = len(run.data.dataset("test"))
    args = OnnxExportArgs(decode_utterances=n_test, int8=False, bench_utterances=4, chunk_frames=chunks[0])
    model = copy.deepcopy(run.models["student"]).cpu().eval()
    spec = run.loaded.spec
    row: dict = {"run": str(run_dir), "spec": spec.name, "seed": spec.seed,
                 "training_frontend": run.data.info.get("frontend"), "test_utterances": n_test}
    final = json.loads((run_dir / "final" / "COMPLETE").read_text())["final"]
    row["final_eval_test_wer"] = final.get("student", {}).get("test/wer")
    with tempfile.TemporaryDirectory() as tmp:
        job = ExportJob(model, "student", spec.all_models()["student"].model_dump(exclude_none=True), run.task,
                        run.data, Path(tmp), run_dir, None, args)
        rep = OnnxExporter(args).export(job).report
        t = rep["transcripts"]
        row.update(offline_sherpa_wer=t["wer_sherpa"], offline_pytorch_wer_runtime_features=t["wer_pytorch"],
                   offline_frontend_matches=t["frontend_matches_training"], offline_exact_match=t["exact_match"],
                   offline_utterances=t["utterances"])
        streaming = {}
        unit = RNNTExport(model, job, args)
        for c in chunks:
            unit.args = args.model_copy(update={"chunk_frames": c})
            st = rep["streaming"] if c == chunks[0] else unit._streaming({"kept": False})
            streaming[str(st["chunk_frames"])] = {
                "chunk_seconds": st["chunk_seconds"], "wer": st["wer_online_sherpa"],
                "exact_match_vs_pytorch_streaming": st["exact_match_vs_pytorch_streaming"],
                "match_vs_offline": st["match_vs_offline"], "utterances": st["utterances"]}
            row["offline_pytorch_wer_training_features"] = st["wer_offline_pytorch"]
            row["streaming_frontend_matches"] = st["frontend_matches_training"]
        row["streaming"] = streaming
    return row


#: What to know about the result file measured before the data changed (shown where its JSON has no caveats).
STALE = ["Measured on 2026-11-30, before the held-out-voice split existed: the test split then shared its "
         "speakers with training (today's `test` holds out voices; `test_seen` is the old kind of set), so these "
         "WERs compare with today's `test_seen`, not `test`. Not re-run (about 15 CPU-minutes per seed)."]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="*")
    parser.add_argument("--chunks", type=int, nargs="+", default=[24, 9, 48])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--report-only", action="store_true", help="tabulate OUT/streaming_frontend.json again")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        saved = json.loads((args.out / "streaming_frontend.json").read_text(encoding="utf-8"))
        rows, commit, when, cmd = saved["rows"], saved["commit"], saved["date"], saved["command"]
        caveats = saved.get("caveats", STALE)
    else:
        rows = [measure(r, args.chunks) for r in args.runs]
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        cmd = "python benchmarks/checks/streaming_frontend.py " + " ".join(str(r) for r in args.runs) + \
            " --chunks " + " ".join(map(str, args.chunks))
        caveats = []
        (args.out / "streaming_frontend.json").write_text(json.dumps(
            {"date": when, "commit": commit, "machine": f"{platform.machine()}, shared 2-core VM",
             "command": cmd, "rows": rows, "caveats": caveats}, indent=2), encoding="utf-8")
    lines = ["# Streaming vs offline WER of the exported student, by training front end", ""]
    lines += stats.measured_header("WER on the whole test split", when, commit,
                                   f"{platform.machine()}, shared 2-core VM, 1 thread", cmd, caveats)
    lines += [
             "All utterances of each run's test split; sherpa-onnx computes the features from the waveform "
             "(offline recognizer: `nemo_transducer`, Povey window 0-7600 Hz; online recognizer: `nemo_online`, "
             "Hann window 0-8000 Hz). Chunk = feature frames per streaming step (10 ms each), decoded once a "
             "chunk and one more frame are ready; max(0.3 s, chunk + 2 frames) of silence flushes the last chunk.", "",
             "| spec (seed) | trained on | test utts | offline sherpa WER | offline PyTorch WER (training "
             "features) | " + " | ".join(f"streaming WER, chunk {c}" for c in rows[0]["streaming"]) +
             " | streaming / offline (same model) |",
             "|---|---|---:|---:|---:|" + "---:|" * len(rows[0]["streaming"]) + "---:|"]
    for r in rows:
        first = next(iter(r["streaming"].values()))
        off = r["offline_sherpa_wer"] if r["offline_frontend_matches"] else r["offline_pytorch_wer_training_features"]
        mark = {True: "", False: " (mismatch)", None: ""}
        lines.append(
            f"| {r['spec']} ({r['seed']}) | {r['training_frontend']} | {r['test_utterances']} | "
            f"{r['offline_sherpa_wer']:.2%}{mark[r['offline_frontend_matches']]} | "
            f"{r['offline_pytorch_wer_training_features']:.2%} | "
            + " | ".join(f"{s['wer']:.2%}{mark[r['streaming_frontend_matches']]}" for s in r["streaming"].values())
            + f" | {first['wer'] / max(off, 1e-9):.3f} |")
    lines += ["", "streaming / offline: the first chunk size's streaming WER over the same model's offline WER on "
              "its matched path (sherpa offline where that recognizer computes the training front end, else "
              "PyTorch on the training features).", "", "Over seeds (mean ± sample std):", "",
              "| spec | seeds | offline sherpa WER | offline PyTorch WER | streaming WER (first chunk size) | "
              "streaming / offline |", "|---|---:|---:|---:|---:|---:|"]
    for spec in dict.fromkeys(r["spec"] for r in rows):
        group = [r for r in rows if r["spec"] == spec]

        def ms(values: list[float], pct: bool = True) -> str:
            return stats.fmt(values, scale=100, digits=2, unit=" %") if pct else stats.fmt(values, digits=3)

        def matched_offline(r: dict) -> float:
            return r["offline_sherpa_wer"] if r["offline_frontend_matches"] else \
                r["offline_pytorch_wer_training_features"]

        stream = [next(iter(r["streaming"].values()))["wer"] for r in group]
        lines.append(f"| {spec} | {len(group)} | {ms([r['offline_sherpa_wer'] for r in group])} | "
                     f"{ms([r['offline_pytorch_wer_training_features'] for r in group])} | {ms(stream)} | "
                     f"{ms([s / matched_offline(r) for s, r in zip(stream, group)], pct=False)} |")
    lines.append("")
    (args.out / "streaming_frontend.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
