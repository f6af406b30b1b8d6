"""fairseq vq-wav2vec (k-means) + RoBERTa checkpoints: safe loading, kind checks, bad input; and a round trip on
tiny models built from fairseq's own configuration and saved in fairseq's format (needs the extra)."""

from __future__ import annotations

import argparse
import builtins
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from compressor.core.errors import SpecError, UserError
from compressor.external import fairseq_units as fu

HAS_FAIRSEQ = importlib.util.find_spec("fairseq") is not None
needs_fairseq = pytest.mark.skipif(not HAS_FAIRSEQ, reason="the optional extra 'fairseq' (fairseq-fixed) is not "
                                   "installed: READTHEDOCS=1 pip install --no-build-isolation 'compressor[fairseq]'")


class Payload:
    """Any class: a checkpoint that pickles one holds code a weights-only load must not run."""

    def __reduce__(self) -> tuple[Any, tuple]:
        return (print, ("this would run on load",))


def save(path: Path, obj: Any) -> Path:
    torch.save(obj, path)
    return path


def test_pickled_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = save(tmp_path / "evil.pt", {"args": None, "model": {}, "extra": Payload()})
    with pytest.raises(UserError, match="pickled code or objects"):
        fu.safe_load(path)
    assert "would run" not in capsys.readouterr().out


def test_wrong_kind_and_not_a_checkpoint(tmp_path: Path) -> None:
    w2v2 = save(tmp_path / "w2v2.pt", {"args": None, "cfg": {"model": {"_name": "wav2vec2"}}, "model": {}})
    with pytest.raises(UserError, match="expected a vq-wav2vec checkpoint .* found a wav2vec2 checkpoint"):
        fu.load_vq_wav2vec(w2v2)
    legacy = save(tmp_path / "gumbel.pt", {"args": argparse.Namespace(arch="wav2vec", vq_type="gumbel"),
                                            "model": {}})
    with pytest.raises(UserError, match="found a vq_wav2vec_gumbel checkpoint"):
        fu.load_vq_wav2vec(legacy)
    with pytest.raises(UserError, match="expected a RoBERTa"):
        fu.load_roberta(legacy)
    weights = save(tmp_path / "plain.pt", {"w": torch.zeros(2)})
    with pytest.raises(UserError, match="not a fairseq checkpoint"):
        fu.safe_load(weights)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable torch checkpoint"):
        fu.safe_load(tmp_path / "junk.pt")


def test_missing_extra_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def no_fairseq(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "fairseq" or name.startswith("fairseq."):
            raise ImportError(f"No module named '{name}'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fairseq)
    ckpt = save(tmp_path / "vq.pt", {"args": argparse.Namespace(arch="wav2vec", vq_type="kmeans"), "model": {}})
    with pytest.raises(UserError, match=r"optional extra 'fairseq'.*READTHEDOCS=1 pip install "
                                         r"--no-build-isolation \"compressor\[fairseq\]\"") as e:
        fu.load_vq_wav2vec(ckpt)
    assert "\n" not in str(e.value)


class Symbols:
    def __init__(self, symbols: list[str]) -> None:
        self.symbols = symbols

    def unk(self) -> int:
        return 3


def test_dictionary_must_fit_the_codebook(tmp_path: Path) -> None:
    ok = Symbols(["<s>", "<pad>", "</s>", "<unk>", "0-1", "2-0", "1-1"])
    table = fu.unit_token_ids(ok, num_vars=3, groups=2, path=tmp_path / "dict.txt")
    assert table.tolist() == [3, 4, 3, 3, 6, 3, 5, 3, 3]
    with pytest.raises(UserError, match="names code 7, but the quantiser's codebook has 3 codes"):
        fu.unit_token_ids(Symbols(["<s>", "0-7"]), num_vars=3, groups=2, path=tmp_path / "dict.txt")
    with pytest.raises(UserError, match="not a unit of 2 group"):
        fu.unit_token_ids(Symbols(["<s>", "hello"]), num_vars=3, groups=2, path=tmp_path / "dict.txt")


def tiny_fairseq(tmp_path: Path) -> tuple[Any, Any, Any]:
    """Tiny vq-wav2vec + RoBERTa saved in fairseq's formats under ``tmp_path`` (vq.pt, bert.pt, dict.txt)."""
    from fairseq.data import Dictionary
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.models.roberta import RobertaModel
    from fairseq.models.roberta.model import base_architecture
    from fairseq.models.wav2vec.wav2vec import Wav2VecConfig, Wav2VecModel
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    # vq-wav2vec: fairseq's own config, shrunk; saved as fairseq's trainer saves it (cfg as a plain container)
    cfg = OmegaConf.merge(OmegaConf.structured(Wav2VecConfig), {
        "conv_feature_layers": "[(16, 10, 5), (16, 8, 4), (16, 4, 2), (16, 4, 2), (16, 4, 2)]",  # x160: 10 ms
        "conv_aggregator_layers": "[(16, 3, 1)]", "vq_type": "kmeans", "vq_vars": 4, "vq_groups": 2,
        "prediction_steps": 2, "offset": "auto", "infonce": True})  # infonce: the criterion's, in a full config
    vq = Wav2VecModel.build_model(cfg, task=None)
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    container["_name"] = "wav2vec"
    save(tmp_path / "vq.pt", {"args": None, "cfg": {"model": container}, "model": vq.state_dict()})
    # RoBERTa over the unit tokens "a-b": a legacy-format checkpoint (argparse args), dict.txt beside it
    d = Dictionary()
    for a in range(4):
        for b in range(4):
            d.add_symbol(f"{a}-{b}")
    d.save(str(tmp_path / "dict.txt"))
    d.add_symbol("<mask>")
    args = argparse.Namespace(arch="roberta_base", encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32,
                              encoder_attention_heads=2, max_positions=512, tokens_per_sample=512)
    base_architecture(args)
    convert_namespace_to_omegaconf(args)  # fairseq itself accepts these args

    class Task:
        source_dictionary = d

    bert = RobertaModel.build_model(args, Task())
    save(tmp_path / "bert.pt", {"args": args, "model": bert.state_dict()})
    return vq, d, bert


@needs_fairseq
def test_tiny_fairseq_checkpoints_round_trip(tmp_path: Path) -> None:
    vq, d, bert = tiny_fairseq(tmp_path)
    model = fu.FairseqVQBert(tmp_path / "vq.pt", tmp_path / "bert.pt")
    audio = torch.randn(2, 8000)
    out = model({"audio": audio})
    assert out["cls"].shape == (2, 16) and out["states"].shape[0] == 2 and out["states"].shape[2] == 16
    codes = model.codes(audio)
    assert 40 <= codes.shape[1] <= 50  # one unit per 10 ms of 0.5 s
    z = vq.feature_extractor(audio)
    _, idx = vq.vector_quantizer.forward_idx(z)
    assert torch.equal(codes, model.unit_ids[idx[..., 0] * 4 + idx[..., 1]])
    with torch.no_grad():
        ids = torch.cat([torch.full((2, 1), d.bos()), codes, torch.full((2, 1), d.eos())], 1)
        ref, _ = bert.eval()(ids, features_only=True)
    assert torch.allclose(out["states"], ref[:, 1:-1], atol=1e-5)
    (tmp_path / "dict.txt").write_text("".join(f"{a}-{b} 1\n" for a in range(5) for b in range(5)))
    with pytest.raises(UserError, match="tokens .* but the BERT .* embeds"):
        fu.FairseqVQBert(tmp_path / "vq.pt", tmp_path / "bert.pt")


@needs_fairseq
def test_a_spec_names_the_fairseq_teacher_and_the_data_loads_waveforms(tmp_path: Path) -> None:
    import yaml
    from support import SPECS, write_spec

    from compressor.plugins import get_plugins
    from compressor.run.components import build_data, build_models
    from compressor.spec import load_spec

    tiny_fairseq(tmp_path)
    spec = yaml.safe_load((SPECS / "tiny_ctc.yaml").read_text())
    spec["output_dir"] = str(tmp_path / "runs")
    spec["data"].update(train_size=8, valid_size=4, test_size=4, num_speakers=4)
    spec["teacher"] = {"name": "fairseq_vq_bert", "vq_wav2vec": str(tmp_path / "vq.pt"),
                       "roberta": str(tmp_path / "bert.pt")}
    spec["stages"][0]["frozen"] = ["teacher"]
    loaded = load_spec(write_spec(tmp_path / "s.yaml", spec))
    plugins = get_plugins()
    data = build_data(loaded, plugins)
    teacher = build_models(loaded, plugins, data)["teacher"]
    batch = data.collate([data.dataset("train")[i] for i in range(3)])
    out = teacher(batch)
    steps = out["states"].shape[1]
    assert out["cls"].shape == (3, 16) and out["states"].shape[0] == 3
    assert abs(steps - int(batch["audio"].shape[1]) // 160) <= 3  # one unit per 10 ms
    lengths = teacher.sequence_lengths(batch, steps)
    assert int(lengths.max()) == steps  # the longest utterance fills the batch
    for i in range(3):  # each utterance alone gives as many units as its valid length says
        alone = teacher.codes(batch["audio"][i:i + 1, : int(batch["audio_lengths"][i])])
        assert alone.shape[1] == int(lengths[i])
    spec["teacher"]["roberta"] = str(tmp_path / "missing.pt")
    with pytest.raises(SpecError, match="no such file"):
        load_spec(write_spec(tmp_path / "s.yaml", spec))
