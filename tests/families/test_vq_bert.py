"""vq_bert / vq_bert_ds2 units, k-means fitting, masked-unit prediction, DeepSpeech2 shapes, epoch_decay LR."""

from __future__ import annotations

import pytest
import torch

from compressor.core.errors import UserError
from compressor.families.slu.vq_bert_ds2 import VQBertDS2Args, build_vq_bert_ds2
from compressor.families.units.task import MaskedUnits
from compressor.run.lr import EpochDecayArgs, EpochDecayLR
from plugins.kmeans_units import kmeans, nearest

INFO = {"feature_dim": 8, "num_classes": 5, "vocab_size": 7}


def model(**kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_vq_bert_ds2(VQBertDS2Args(size="tiny", codes=6, **kw), INFO)


def test_kmeans_is_deterministic_and_separates_clusters() -> None:
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centres])
    a, da = kmeans(x, 3, 10, torch.Generator().manual_seed(0))
    b, db = kmeans(x, 3, 10, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and da == db < 0.05
    assert nearest(centres, a)[1].max() < 0.01  # every true centre found


def test_units_padding_and_unfitted_quantiser() -> None:
    m = model()
    batch = {"features": torch.randn(2, 30, 8), "feature_lengths": torch.tensor([30, 17])}
    with pytest.raises(UserError, match="never fitted"):
        m(batch)
    q = m.encoder.quantizer
    q.load_fit(torch.zeros(8), torch.ones(8), torch.randn(6, 8))
    m.tokenize_batch(batch)
    assert batch["units"].shape == (2, 30) and (batch["units"][1, 17:] == m.pad_token_id).all()
    assert batch["units"][:, :17].max() < 6
    m.eval()
    with torch.no_grad():
        full = m({k: v for k, v in batch.items() if k.startswith("feature")})
        alone = m({"features": batch["features"][1:, :17], "feature_lengths": torch.tensor([17])})
    assert torch.allclose(full["logits"][1], alone["logits"][0], atol=1e-5)
    assert torch.allclose(full["cls"][1], alone["cls"][0], atol=1e-5)
    assert full["log_probs"].shape == (2, 15, 7) and full["logit_lengths"].tolist() == [15, 9]
    with pytest.raises(UserError, match="does not fit"):
        q.load_fit(torch.zeros(8), torch.ones(8), torch.randn(7, 8))


def test_masked_units_task_masks_and_scores() -> None:
    m = model()
    m.encoder.quantizer.load_fit(torch.zeros(8), torch.ones(8), torch.randn(6, 8))
    task = MaskedUnits(MaskedUnits.Args(prob=0.3, span=3))
    batch = {"features": torch.randn(3, 40, 8), "feature_lengths": torch.tensor([40, 31, 12])}
    torch.manual_seed(3)
    out = task.forward(m, batch)
    n = out["mlm_targets"].numel()
    assert n > 0 and out["mlm_logits"].shape == (n, 6) and "units" not in batch  # the loader's batch untouched
    loss = task.loss(out, batch)
    loss.backward()
    assert m.encoder.mlm_head[0].weight.grad is not None and m.am.ctc_head.weight.grad is None
    m.eval()
    first = task.evaluate(m, [batch], torch.device("cpu"))
    assert first == task.evaluate(m, [batch], torch.device("cpu"))  # fixed evaluation masks
    assert 0 <= first["unit_accuracy"] <= 1 and first["masked_units"] > 0


def test_epoch_decay_divides_by_gamma_each_epoch() -> None:
    f = EpochDecayLR(EpochDecayArgs(gamma=1.1), 1e-3, 10, epoch_steps=[4, 3, 3])
    assert [round(f(s), 6) for s in range(10)] == [1.0] * 4 + [round(1 / 1.1, 6)] * 3 + [round(1 / 1.21, 6)] * 3
    floor = EpochDecayLR(EpochDecayArgs(gamma=10.0, min_lr=5e-4), 1e-3, 6, epoch_steps=[2, 2, 2])
    assert floor(5) == 0.5
