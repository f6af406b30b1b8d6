"""A tiny tone "speech" corpus with real waveforms, and quickly trained CTC / RNN-T / classifier models.

Each token is a tone of its own pitch (120 ms), an utterance 2-4 tokens with short gaps, so a tiny model
learns to transcribe it in a few seconds and sherpa-onnx can decode the WAVs. Imported by the export, external
teacher and pseudo-label tests.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from compressor.data.base import DataModule, ListDataset

LETTERS = ["a", "b", "c", "d", "e"]
TOKENS = LETTERS + ["<blk>"]
FREQS = [300.0, 550.0, 900.0, 1400.0, 2200.0]


def _features(wave: torch.Tensor, frontend: str) -> torch.Tensor:
    """The data layer's features: the sherpa-onnx parity tests thereby check its front ends end to end."""
    from compressor.data.features import fbank

    return fbank(wave, 16000, frontend=frontend)  # type: ignore[arg-type]


def synth(ids: list[int], g: torch.Generator) -> torch.Tensor:
    parts = [torch.zeros(int(0.05 * 16000))]
    for i in ids:
        n = int(0.12 * 16000)
        t = torch.arange(n) / 16000.0
        env = torch.sin(math.pi * torch.arange(n) / n)
        f = FREQS[i] * (1 + 0.03 * float(torch.randn(1, generator=g)))
        parts.append(0.3 * env * torch.sin(2 * math.pi * f * t))
        parts.append(torch.zeros(int(0.04 * 16000)))
    parts.append(torch.zeros(int(0.05 * 16000)))
    wave = torch.cat(parts)
    return (wave + 0.003 * torch.randn(wave.shape, generator=g)).float()



class ToneData(DataModule):
    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        lens = torch.tensor([it["features"].shape[0] for it in items])
        feats = torch.zeros(len(items), int(lens.max()), 80)
        ulens = torch.tensor([len(it["tokens"]) for it in items])
        toks = torch.zeros(len(items), int(ulens.max()), dtype=torch.long)
        for i, it in enumerate(items):
            feats[i, : lens[i]] = it["features"]
            toks[i, : ulens[i]] = it["tokens"]
        return {"features": feats, "feature_lengths": lens, "tokens": toks, "token_lengths": ulens,
                "text": [it["text"] for it in items], "label": torch.tensor([it["label"] for it in items])}


def write_tone_corpus(root: Path, sizes: tuple[int, int, int] = (16, 4, 4), seed: int = 1) -> Path:
    """The tone corpus as WAV files and NeMo manifests (``train/valid/test.jsonl``) under ``root``."""
    import json

    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for split, n in zip(("train", "valid", "test"), sizes):
        lines = []
        for i in range(n):
            k = int(torch.randint(2, 4, (1,), generator=g))
            ids = torch.randint(0, len(LETTERS), (k,), generator=g).tolist()
            wave = synth(ids, g)
            sf.write(root / f"{split}_{i}.wav", wave.numpy(), 16000)
            lines.append(json.dumps({"audio_filepath": f"{split}_{i}.wav", "duration": wave.numel() / 16000,
                                     "text": "".join(LETTERS[j] for j in ids)}))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def tone_data(frontend: str = "nemo", sizes: tuple[int, int, int] = (64, 16, 16), seed: int = 0,
              normalize: str = "none") -> ToneData:
    g = torch.Generator().manual_seed(seed)
    splits = {}
    for name, n in zip(("train", "valid", "test"), sizes):
        items = []
        for _ in range(n):
            k = int(torch.randint(2, 5, (1,), generator=g))
            ids = torch.randint(0, len(LETTERS), (k,), generator=g).tolist()
            wave = synth(ids, g)
            feats = _features(wave, frontend)
            if normalize == "per_feature":
                from compressor.data.features import per_feature_normalize

                feats = per_feature_normalize(feats)
            items.append({"features": feats, "waveform": wave,
                          "tokens": torch.tensor(ids), "text": "".join(LETTERS[i] for i in ids),
                          "label": ids[0]})
        splits[name] = ListDataset(items)
    allf = torch.cat([it["features"] for it in splits["train"].items])
    info = {"feature_dim": 80, "sample_rate": 16000, "tokens": TOKENS, "vocab_size": len(TOKENS),
            "blank_id": len(TOKENS) - 1, "feature_mean": allf.mean(0).tolist(),
            "feature_std": allf.std(0).clamp_min(1e-3).tolist(), "frontend": frontend,
            "num_classes": len(LETTERS), "labels": LETTERS,
            "normalize_type": "" if normalize == "none" else normalize}
    return ToneData(splits, info)


def train(model: torch.nn.Module, task: Any, data: DataModule, steps: int, lr: float = 3e-3,
          batch_size: int = 8) -> torch.nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    step = 0
    while step < steps:
        for batch in data.loader("train", batch_size, shuffle=True, seed=0, epoch=step):
            loss = task.loss(task.forward(model, batch), batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step >= steps:
                break
    return model.eval()


def trained_ctc(data: DataModule | None = None, steps: int = 150) -> tuple[torch.nn.Module, Any, DataModule]:
    from compressor.families.ctc.quartznet import QuartzNetArgs, build_quartznet
    from compressor.families.ctc.task import CTCTask

    data = data or tone_data("nemo_ctc")
    torch.manual_seed(0)
    model = build_quartznet(QuartzNetArgs(preset="5x1", size="tiny", width=0.25), data.info)
    task = CTCTask(CTCTask.Args(), data.info)
    return train(model, task, data, steps, lr=1e-2), task, data


def trained_rnnt(data: DataModule | None = None, steps: int = 150) -> tuple[torch.nn.Module, Any, DataModule]:
    from compressor.families.rnnt.model import RNNTArgs, build_rnnt
    from compressor.families.rnnt.task import RNNTTask

    data = data or tone_data("nemo")
    torch.manual_seed(0)
    model = build_rnnt(RNNTArgs(size="tiny", encoder_layers=1, pred_layers=1, stack=3), data.info)
    task = RNNTTask(RNNTTask.Args(), data.info)
    return train(model, task, data, steps, lr=1e-2), task, data


def run_isolated(argv: list[str], modules: tuple, cwd: Path) -> subprocess.CompletedProcess:
    """``python -S ARGV`` with only the directories of ``modules`` on the path: no site module, so no .pth
    files and no editable-install finder for this project (an example must run without it)."""
    dirs = sorted({str(Path(m.__file__).resolve().parent.parent) for m in modules})
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
           "PYTHONPATH": os.pathsep.join(dirs)}
    return subprocess.run([sys.executable, "-S", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
