"""fbank features as sherpa-onnx computes them, tokenizers' tokens.txt, feature cache."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torchaudio

from compressor.core.errors import UserError
from compressor.data.audio import load_audio
from compressor.data.extract import extract_features
from compressor.data.features import fbank, feature_stats, num_frames
from compressor.data.tokenizers import CharTokenizer, SentencePieceTokenizer, read_tokens
from compressor.data.utterance import Utterance

torch.set_num_threads(1)


def _speechlike(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    x = 0.2 * torch.sin(2 * math.pi * 220 * t) * (1 + torch.sin(2 * math.pi * 3 * t))
    return (x + 0.02 * torch.randn(n, generator=g)).clamp(-1, 1)


def test_sherpa_defaults_are_the_ones_implemented() -> None:
    sherpa_onnx = pytest.importorskip("sherpa_onnx")
    c = sherpa_onnx.FeatureExtractorConfig()
    # the kaldi front end reproduces these: samples in [-1, 1], no dither, reflected edges, 20..Nyquist-400 Hz
    assert (c.sampling_rate, c.feature_dim, c.dither, c.snip_edges) == (16000, 80, 0, False)
    assert (c.low_freq, c.high_freq, c.normalize_samples) == (20, -400, True)


@pytest.mark.parametrize("n", [400, 401, 16000, 23457])
def test_kaldi_frontend_matches_torchaudio_kaldi_fbank(n: int) -> None:
    x = _speechlike(n, n)
    ours = fbank(x, 16000, frontend="kaldi")
    ref = torchaudio.compliance.kaldi.fbank(
        x[None],
        num_mel_bins=80,
        sample_frequency=16000,
        dither=0.0,
        snip_edges=False,
        low_freq=20,
        high_freq=-400,
        energy_floor=0.0,
        window_type="povey",
        preemphasis_coefficient=0.97,
        remove_dc_offset=True,
        use_energy=False,
    )
    assert ours.shape == ref.shape == (num_frames(n), 80)
    assert (ours - ref).abs().max() < 2e-3


@pytest.mark.parametrize(
    "frontend,other", [("nemo", "nemo_transducer"), ("nemo_ctc", "nemo_ctc"), ("kaldi", "kaldi")]
)
def test_frontends_agree_with_exporter_reimplementation(frontend: str, other: str) -> None:
    mod = pytest.importorskip("compressor.export.frontend")
    x = _speechlike(20000, 1)
    assert (fbank(x, 16000, frontend) - mod.sherpa_fbank(x, 16000, other)).abs().max() < 2e-3


def test_frontends_differ_and_nemo_is_default() -> None:
    x = _speechlike(16000)
    assert torch.equal(fbank(x), fbank(x, 16000, "nemo"))
    assert (fbank(x, 16000, "nemo") - fbank(x, 16000, "kaldi")).abs().max() > 0.1
    with pytest.raises(ValueError, match="unknown frontend"):
        fbank(x, 16000, "mfcc")  # type: ignore[arg-type]


def test_other_sample_rates_are_resampled() -> None:
    x16 = _speechlike(16000)
    x8 = torchaudio.functional.resample(x16, 16000, 8000)
    f = fbank(x8, 8000)
    assert f.shape == (100, 80) and torch.isfinite(f).all()


def test_feature_stats() -> None:
    feats = [torch.randn(50, 80) * 2 + 3, torch.randn(70, 80) * 2 + 3]
    mean, std = feature_stats(feats)
    assert len(mean) == 80 and abs(sum(mean) / 80 - 3) < 0.2 and abs(sum(std) / 80 - 2) < 0.2


def test_feature_cache(tmp_path: Path) -> None:
    import soundfile as sf

    path = tmp_path / "a.wav"
    sf.write(str(path), _speechlike(8000).numpy(), 16000)
    utts = [
        Utterance(id="a", audio=path, text="a"),
        Utterance(id="b", audio=tmp_path / "none.wav", text="b"),
        Utterance(id="c", audio=path, text="c"),
    ]
    f1, e1 = extract_features(utts, "nemo", tmp_path)
    assert len(list((tmp_path / "features").glob("*.f32"))) == 1
    assert e1[0] is None and e1[1][0] == "missing" and f1.lengths == [50, 0, 50]
    assert torch.equal(f1[0], fbank(load_audio(path)))  # what was streamed to disk is what fbank gives
    f2, e2 = extract_features(utts, "nemo", tmp_path)  # read back from the memory-mapped cache
    assert torch.equal(f1[2], f2[2]) and e2 == e1
    view = f2.select([2, 0])
    assert view.lengths == [50, 50] and torch.equal(view[1], f1[0])
    import pickle

    assert torch.equal(pickle.loads(pickle.dumps(view))[0], f1[2])  # DataLoader workers reopen the map
    f3, _ = extract_features(utts, "nemo", None)  # no cache dir: in memory
    assert torch.equal(f3[0], f1[0])
    extract_features(utts, "kaldi", tmp_path)  # another front end, another cache entry
    assert len(list((tmp_path / "features").glob("*.f32"))) == 2
    (tmp_path / "features" / next(p.name for p in (tmp_path / "features").glob("*.json"))).write_text("{")
    extract_features(utts, "nemo", tmp_path)  # a damaged index is rebuilt, not trusted


def test_char_tokenizer_tokens_txt(tmp_path: Path) -> None:
    tok = CharTokenizer("de")
    ids = tok.encode("grüße an alle")
    assert tok.decode(ids) == "grüße an alle" and tok.blank_id == tok.vocab_size - 1 not in ids
    tokens = read_tokens(tok.write_tokens(tmp_path / "tokens.txt"))
    assert tokens == tok.tokens and tokens[-1] == "<blk>"
    with pytest.raises(ValueError, match="alphabet"):
        tok.encode("hello 42")


def test_sentencepiece_tokenizer(tmp_path: Path) -> None:
    texts = [
        "turn on the lights",
        "turn off the music",
        "bring me the shoes",
        "lights on in the kitchen",
    ] * 20
    with pytest.raises(UserError, match="vocab_size=300"):
        SentencePieceTokenizer.train(texts, vocab_size=300)
    tok = SentencePieceTokenizer.train(texts, vocab_size=20)
    assert tok.vocab_size == 20 and tok.tokens[-1] == "<blk>" and tok.tokens[0] == "<unk>"
    assert all(0 <= i < tok.blank_id for i in tok.encode(texts[0]))
    assert tok.decode(tok.encode("bring me the lights")) == "bring me the lights"
    again = SentencePieceTokenizer.load(tok.save(tmp_path / "bpe.model"))
    assert again.tokens == tok.tokens
    lines = tok.write_tokens(tmp_path / "tokens.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 20 and lines[-1] == "<blk> 19" and all(len(ln.split()) == 2 for ln in lines)
