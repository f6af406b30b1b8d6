"""bf16 on a CPU: ``trainer.precision: bf16`` autocasts where the CPU computes bf16 natively (AVX512-BF16/AMX), and
falls back to fp32 elsewhere; the RNN-T loss of a bf16 lattice is computed in fp32."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support import write_spec
from support.tones import write_tone_corpus

from compressor.families.rnnt.task import rnnt_lattice_loss
from compressor.run.components import cpu_bf16_supported, pick_precision

CPU = torch.device("cpu")


def test_cpu_precision_choice() -> None:
    assert pick_precision("auto", CPU) == "fp32"
    assert pick_precision("fp32", CPU) == "fp32"
    assert pick_precision("bf16", CPU) == ("bf16" if cpu_bf16_supported() else "fp32")


def test_bf16_lattice_loss_is_computed_in_fp32() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 4, 5, generator=g)
    batch = {"tokens": torch.tensor([[0, 1, 2], [1, 2, 0]]), "token_lengths": torch.tensor([3, 2])}
    out = {"logits": logits, "logit_lengths": torch.tensor([6, 5])}
    full = rnnt_lattice_loss(out, batch, blank_id=4)
    half = rnnt_lattice_loss(dict(out, logits=logits.bfloat16()), batch, blank_id=4)
    assert half.dtype == torch.float32
    assert float(half) == pytest.approx(float(full), rel=0.02)


@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bf16 (AVX512-BF16 / AMX)")
def test_a_bf16_run_on_the_cpu_trains_and_records_its_precision(tmp_path: Path) -> None:
    from compressor.run.engine import run_spec

    corpus = write_tone_corpus(tmp_path / "tones")
    spec = {"name": "bf16", "seed": 0, "output_dir": str(tmp_path / "runs"), "task": {"name": "rnnt"},
            "data": {"name": "nemo_manifest", "train": str(corpus / "train.jsonl"),
                     "valid": str(corpus / "valid.jsonl"), "test": str(corpus / "test.jsonl")},
            "student": {"name": "rnnt_lstm", "size": "tiny", "encoder_layers": 1, "pred_layers": 1},
            "trainer": {"progress_bar": False, "threads": 1, "precision": "bf16"},
            "stages": [{"name": "s", "train": ["student"], "steps": 6, "batch_size": 8,
                        "optimizer": {"name": "adamw", "lr": 0.003}}],
            "evaluate": {"split": "test", "models": ["student"]}}
    run_dir = run_spec(write_spec(tmp_path / "bf16.yaml", spec))
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["device"]["precision"] == "bf16"
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss/total"] for r in rows if "loss/total" in r]
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses)
    weights = torch.load(run_dir / "final" / "student.pt", weights_only=True)
    state = weights.get("state_dict", weights) if isinstance(weights, dict) else weights
    assert all(t.dtype == torch.float32 for t in state.values() if torch.is_tensor(t))  # master weights stay fp32
