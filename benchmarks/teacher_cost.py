"""Cost of external teachers on this machine: seconds per utterance of each kind at its real size (random
weights in the real architectures: wav2vec 2.0 / HuBERT / WavLM base, Whisper base's encoder, QuartzNet 15x5
from a .nemo), and what the teacher-output cache saves (epoch 1 vs epoch 2 of a distillation run).

    python benchmarks/teacher_cost.py OUT_DIR [--threads 1]

Appends to OUT_DIR/teacher_cost.jsonl and prints one JSON line per kind. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def base_ctc(out: Path, arch: str) -> Path:
    import transformers

    from tests.support.teacher_files import ctc_vocab, save_tiny_ctc

    save_tiny_ctc(out, arch)  # processor + vocab; then replace the model by a base-sized one
    cls = {"Wav2Vec2ForCTC": transformers.Wav2Vec2Config, "HubertForCTC": transformers.HubertConfig,
           "WavLMForCTC": transformers.WavLMConfig}[arch]
    config = cls(vocab_size=len(ctc_vocab()), pad_token_id=0)  # the defaults are the base models (12 x 768)
    getattr(transformers, arch)(config).save_pretrained(str(out))
    return out


def base_whisper(out: Path) -> Path:
    import transformers

    from tests.support.teacher_files import save_tiny_whisper

    save_tiny_whisper(out)
    vocab = json.loads((out / "vocab.json").read_text())
    config = transformers.WhisperConfig(vocab_size=max(len(vocab), 51865), d_model=512, encoder_layers=6,
                                        decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
                                        encoder_ffn_dim=2048, decoder_ffn_dim=2048, num_mel_bins=80)
    transformers.WhisperForConditionalGeneration(config).save_pretrained(str(out))
    return out


def quartznet_nemo(out: Path) -> Path:
    from compressor.families.ctc.quartznet import table
    from tests.support.teacher_files import nemo_config, nemo_state, write_nemo

    config = nemo_config()
    blocks = []
    for row in table("15x5", "paper"):
        for _ in range(row.times):
            blocks.append({"filters": row.channels, "repeat": row.repeat, "kernel": [row.kernel],
                           "stride": [row.stride], "dilation": [row.dilation], "dropout": 0.0,
                           "residual": row.residual, "separable": row.separable})
    config["encoder"]["jasper"] = blocks
    config["decoder"]["feat_in"] = blocks[-1]["filters"]
    return write_nemo(out, config, nemo_state(config))


def spec(tmp: Path, teacher: dict, from_teacher: bool, train: int = 16) -> dict:
    s = yaml.safe_load((REPO / "tests" / "specs" / "tiny_ctc.yaml").read_text())
    s.update(name="teacher_cost", output_dir=str(tmp / "runs"), teacher=teacher)
    s["data"].update(train_size=train, valid_size=4, test_size=4, num_speakers=4)
    if from_teacher:
        s["data"]["tokenizer"] = {"from_teacher": "teacher"}
    st = s["stages"][0]
    st.pop("steps")
    st.pop("lr_schedule")
    plugin = {"name": "logit_kd", "teacher": "teacher", "cache": True, "align": "interpolate"}
    if not from_teacher:  # Whisper: its encoder states teach the student's encoder
        plugin = {"name": "representation_kd", "teacher": "teacher", "cache": True,
                  "pairs": [{"name": "enc", "teacher": {"output": "states"}, "align": "interpolate", "loss": "mse",
                             "student": {"module": "encoder", "index": 0, "layout": "bct", "lengths": "none"}}]}
    st.update(name="distil", frozen=["teacher"], epochs=3, batch_size=8, eval={"every": "never"}, plugins=[plugin])
    s["evaluate"] = {"split": "test", "models": ["student"]}
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=None, help="measure these kinds (substrings) only")
    a = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(a.threads)
    from compressor.plugins import get_plugins
    from compressor.run.components import build_data, build_models
    from compressor.run.engine import run_spec
    from compressor.spec import load_spec
    from tests.support import write_spec

    a.out.mkdir(parents=True, exist_ok=True)
    def hf(path: Path) -> dict:
        return {"name": "hf_speech", "path": str(path)}

    makers = {
        "wav2vec2-base (Wav2Vec2ForCTC)": (lambda: hf(base_ctc(a.out / "w2v2", "Wav2Vec2ForCTC")), True),
        "hubert-base (HubertForCTC)": (lambda: hf(base_ctc(a.out / "hubert", "HubertForCTC")), True),
        "wavlm-base (WavLMForCTC)": (lambda: hf(base_ctc(a.out / "wavlm", "WavLMForCTC")), True),
        "whisper-base encoder (hf)": (lambda: hf(base_whisper(a.out / "whisper")), False),
        "quartznet 15x5 (.nemo)": (lambda: {"name": "nemo_ctc", "path": str(quartznet_nemo(a.out / "qn.nemo"))},
                                   True),
    }
    rows = []
    for kind, (make, from_teacher) in makers.items():
        if a.only and not any(o in kind for o in a.only):
            continue
        teacher = make()
        s = spec(a.out / "t", teacher, from_teacher)
        loaded = load_spec(write_spec(a.out / "s.yaml", s))
        plugins = get_plugins()
        data = build_data(loaded, plugins)
        model = build_models(loaded, plugins, data)["teacher"].eval()
        params = sum(p.numel() for p in model.parameters())
        ds = data.dataset("train")
        times, seconds = [], 0.0
        with torch.no_grad():
            model(data.collate([ds[0]]))  # warm-up
            for i in range(8):
                batch = data.collate([ds[i]])
                seconds += float(batch["feature_lengths"][0]) / 100
                t0 = time.perf_counter()
                model(batch)
                times.append(time.perf_counter() - t0)
        row = {"kind": kind, "parameters": params, "s_per_utt": sum(times) / len(times),
               "audio_s_per_utt": seconds / 8}
        run = run_spec(write_spec(a.out / "s.yaml", s))  # a distillation run: epoch times with the cache
        by_epoch: dict[int, float] = {}
        for line in (run / "metrics.jsonl").read_text().splitlines():
            r = json.loads(line)
            if "time" in r and "epoch" in r:
                by_epoch[r["epoch"]] = r["time"]
        row["run_time_at_epoch_end_s"] = by_epoch
        rows.append(row)
        print(json.dumps(row), flush=True)
    with open(a.out / "teacher_cost.jsonl", "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
