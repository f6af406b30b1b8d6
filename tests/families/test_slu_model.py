"""The SLU student: outputs for both tasks, frame counts, and no dependence on the padding of its batch."""

from __future__ import annotations

import torch

from compressor.families.slu.student import SLUStudentArgs, build_slu_student


def test_outputs_lengths_and_padding_invariance() -> None:
    torch.manual_seed(0)
    model = build_slu_student(SLUStudentArgs(size="tiny", vocab_size=29, num_classes=31, feature_dim=8)).eval()
    x, lengths = torch.randn(3, 41, 8), torch.tensor([41, 25, 30])
    with torch.no_grad():
        out = model({"features": x, "feature_lengths": lengths})
        assert out["logits"].shape == (3, 31) and out["log_probs"].shape == (3, 21, 29)
        assert out["logit_lengths"].tolist() == [21, 13, 15]  # floor((L - 1) / 2) + 1
        assert torch.allclose(out["log_probs"].exp().sum(-1), torch.ones(3, 21))
        batch = {"features": x, "feature_lengths": lengths}
        assert model.sequence_lengths(batch, 21).tolist() == [21, 13, 15]
        assert model.sequence_lengths(batch, 41).tolist() == [41, 25, 30]
        for i, n in enumerate(lengths.tolist()):
            alone = model({"features": x[i:i + 1, :n], "feature_lengths": lengths[i:i + 1]})
            noisy = x[i:i + 1].clone()
            noisy[:, n:] = 1e3  # garbage in the padding must not matter
            padded = model({"features": noisy, "feature_lengths": lengths[i:i + 1]})
            assert torch.allclose(alone["logits"][0], out["logits"][i], atol=1e-6)
            assert torch.equal(padded["logits"], alone["logits"])
    assert model.output_dims["hidden"] == 32 and model.acoustic.out_dim == 32  # bidirectional 16 + 16


def test_intents_follow_the_data_fsc_layout(tmp_path, tiny_bert) -> None:
    """FSC's CSV layout through the fsc reader: the student and the text teacher take its intents."""
    from compressor.data.datasets import FscArgs, build_fsc
    from compressor.external.hf_text import HFTextClassifierArgs, build_hf_text_classifier
    from tests.data.test_data_formats import tone, write

    root = tmp_path / "fsc"
    lines = {"train": [("Turn on the lights", "activate", "lights", "none"),
                       ("Bring me my shoes", "bring", "shoes", "none"),
                       ("Heat up the kitchen", "increase", "heat", "kitchen")],
             "valid": [("Lights off", "deactivate", "lights", "none")]}
    for split, rows in lines.items():
        out = [",path,speakerId,transcription,action,object,location"]
        for i, (text, a, o, loc) in enumerate(rows):
            rel = f"wavs/{split}{i}.wav"
            write(root / rel, tone(0.6, freq=200 + 100 * i))
            out.append(f"{i},{rel},spk{i},{text},{a},{o},{loc}")
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "data" / f"{split}.csv").write_text("\n".join(out) + "\n")
    dm = build_fsc(FscArgs(train=str(root / "data/train.csv"), valid=str(root / "data/valid.csv")),
                   cache_dir=tmp_path / "cache")
    batch = dm.collate([dm.dataset("train")[i] for i in range(3)])
    student = build_slu_student(SLUStudentArgs(size="tiny"), dm.info).eval()
    teacher = build_hf_text_classifier(HFTextClassifierArgs(path=str(tiny_bert)), dm.info).eval()
    with torch.no_grad():
        assert student(batch)["logits"].shape == (3, 4) == teacher(batch)["logits"].shape  # 4 intents
        assert student(batch)["log_probs"].shape[-1] == dm.info["vocab_size"]
