"""Front ends side by side on real speech: sherpa-onnx's own features, kaldi-native-fbank, the torch copy.

For each recording: the features sherpa-onnx's online NeMo-transducer recognizer computed (read back with
``OnlineStream.get_frames``), the export's front end (``compressor.export.frontend.sherpa_fbank``:
kaldi-native-fbank with sherpa-onnx's settings) and the data layer's torch front end
(``compressor.data.features.fbank``, what models are trained on), as max and mean |difference|; the same
for the offline recognizer's front end (kaldi-native-fbank vs torch: the offline recognizer hands out no
features), the gap between the offline and online front ends (what a model trained on one sees on the other)
and the time per utterance of both implementations.

    python benchmarks/checks/frontend_parity.py [--wav-dir /usr/share/pocketsphinx/test/data]

Recorded speech: Debian's ``pocketsphinx-testdata`` (``apt-get install pocketsphinx-testdata``) when present;
plus sentences spoken by espeak-ng.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))

from compressor.data.features import fbank  # noqa: E402
from compressor.export.frontend import sherpa_fbank  # noqa: E402
from compressor.families.rnnt.probe import sherpa_online_probe  # noqa: E402


def speech(wav_dir: Path | None) -> list[tuple[str, np.ndarray]]:
    from compressor.corpora.synth import Voice, synthesize
    from compressor.data.audio import resample

    out = []
    if wav_dir is not None and wav_dir.is_dir():
        for path in sorted(wav_dir.rglob("*.wav")):
            wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
            wave = wave.mean(axis=1)
            if rate != 16000:
                wave = resample(torch.from_numpy(wave), rate, 16000).numpy()
            out.append((f"recorded/{path.name}", np.ascontiguousarray(wave, dtype=np.float32)))
    for text, voice in (("turn the kitchen lights off please", Voice("en-us", "m3")),
                        ("seven green boxes arrived on monday morning", Voice("en-gb-x-rp", "f2", rate=150)),
                        ("the quick brown fox jumps over the lazy dog", Voice("en-us", "f3", rate=200))):
        pcm, rate = synthesize(text, voice)
        wave = resample(torch.from_numpy(pcm.astype(np.float32) / 32768.0), rate, 16000).numpy()
        out.append((f"espeak/{voice.espeak_name}", wave.astype(np.float32)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wav-dir", type=Path, default=Path("/usr/share/pocketsphinx/test/data"))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    utts = speech(args.wav_dir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rec = sherpa_online_probe(Path(tmp))
        for name, wave in utts:
            knf_on = sherpa_fbank(wave, 16000, "nemo_online").numpy()
            n = knf_on.shape[0]
            stream = rec.create_stream()
            stream.accept_waveform(16000, wave)
            stream.input_finished()
            sherpa_on = np.asarray(stream.get_frames(0, n), dtype=np.float32).reshape(n, 80)
            x = torch.from_numpy(wave)
            torch_on = fbank(x, 16000, "nemo_online").numpy()
            knf_off = sherpa_fbank(wave, 16000, "nemo_transducer").numpy()
            torch_off = fbank(x, 16000, "nemo").numpy()
            t0 = time.perf_counter()
            for _ in range(3):
                sherpa_fbank(wave, 16000, "nemo_online")
            t_knf = (time.perf_counter() - t0) / 3
            t0 = time.perf_counter()
            for _ in range(3):
                fbank(x, 16000, "nemo_online")
            t_torch = (time.perf_counter() - t0) / 3
            rows.append({
                "utterance": name, "seconds": len(wave) / 16000, "frames": n,
                "online_knf_vs_sherpa_max": float(np.abs(knf_on - sherpa_on).max()),
                "online_torch_vs_sherpa_max": float(np.abs(torch_on - sherpa_on).max()),
                "online_torch_vs_sherpa_mean": float(np.abs(torch_on - sherpa_on).mean()),
                "offline_torch_vs_knf_max": float(np.abs(torch_off - knf_off).max()),
                "offline_vs_online_mean": float(np.abs(knf_off - knf_on).mean()),
                "offline_vs_online_max": float(np.abs(knf_off - knf_on).max()),
                "ms_knf": 1000 * t_knf, "ms_torch": 1000 * t_torch})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python benchmarks/checks/frontend_parity.py" + (f" --wav-dir {args.wav_dir}" if args.wav_dir else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "frontend_parity.json").write_text(json.dumps(
        {"date": when, "commit": commit, "machine": f"{platform.machine()} {platform.system()}, shared 2-core VM",
         "command": cmd, "rows": rows}, indent=2), encoding="utf-8")

    def agg(key: str, fn=max) -> float:
        return float(fn([r[key] for r in rows]))

    rec_rows = [r for r in rows if r["utterance"].startswith("recorded/")]
    lines = [f"<!-- {cmd}; {when}; commit {commit}; {platform.machine()}, shared 2-core VM, 1 thread -->",
             "# Front ends on real speech: sherpa-onnx's own features vs kaldi-native-fbank vs the torch copy", "",
             f"{len(rec_rows)} recordings (Debian pocketsphinx-testdata, {sum(r['seconds'] for r in rec_rows):.1f} s) "
             f"and {len(rows) - len(rec_rows)} espeak-ng sentences. Log-mel values are natural-log energies "
             "(speech frames about -5..+10).", "",
             "| comparison | max abs diff | mean abs diff |", "|---|---:|---:|",
             f"| online: export (kaldi-native-fbank) vs sherpa-onnx OnlineRecognizer's own | "
             f"{agg('online_knf_vs_sherpa_max'):.2e} | - |",
             f"| online: data layer (torch) vs sherpa-onnx OnlineRecognizer's own | "
             f"{agg('online_torch_vs_sherpa_max'):.2e} | {agg('online_torch_vs_sherpa_mean', np.mean):.2e} |",
             f"| offline (`nemo_transducer`): data layer (torch) vs kaldi-native-fbank | "
             f"{agg('offline_torch_vs_knf_max'):.2e} | - |",
             f"| offline front end vs online front end (the mismatch) | {agg('offline_vs_online_max'):.2f} | "
             f"{agg('offline_vs_online_mean', np.mean):.2f} (per utterance "
             f"{agg('offline_vs_online_mean', min):.2f}-{agg('offline_vs_online_mean'):.2f}) |", "",
             f"Time per utterance (mean {np.mean([r['seconds'] for r in rows]):.1f} s of audio), same run: "
             f"kaldi-native-fbank {np.mean([r['ms_knf'] for r in rows]):.1f} ms, torch "
             f"{np.mean([r['ms_torch'] for r in rows]):.1f} ms (ratio torch/knf "
             f"{np.mean([r['ms_torch'] for r in rows]) / np.mean([r['ms_knf'] for r in rows]):.2f}).", "",
             "| utterance | s | online knf vs sherpa | online torch vs sherpa | offline vs online (mean) |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['utterance']} | {r['seconds']:.1f} | {r['online_knf_vs_sherpa_max']:.1e} | "
                     f"{r['online_torch_vs_sherpa_max']:.1e} | {r['offline_vs_online_mean']:.2f} |")
    (args.out / "frontend_parity.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
