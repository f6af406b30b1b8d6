"""The SLU student: outputs for both tasks, frame counts, and no dependence on the padding of its batch."""

from __future__ import annotations

import torch

from compressor.models.slu import SLUStudentArgs, build_slu_student


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
