"""Tiny teachers in the formats users hold, made locally with random weights (no hub): transformers
directories written by ``save_pretrained`` and a ``.nemo`` tar in NeMo's layout."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import torch
import yaml

LETTERS = "abcdefghijklmnopqrstuvwxyz'"


def ctc_vocab(upper: bool = True) -> dict[str, int]:
    """A wav2vec 2.0-style character vocabulary: <pad> (the CTC blank) first, '|' between words."""
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    for ch in LETTERS:
        vocab[ch.upper() if upper else ch] = len(vocab)
    return vocab


def save_tiny_ctc(out: Path, arch: str = "Wav2Vec2ForCTC", sampling_rate: int = 16000) -> Path:
    """A tiny random wav2vec 2.0 / HuBERT / WavLM CTC model with its processor (feature extractor + vocab.json)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    vocab = ctc_vocab()
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tok = transformers.Wav2Vec2CTCTokenizer(str(out / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                            word_delimiter_token="|")
    fe = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=sampling_rate, padding_value=0.0,
                                               do_normalize=True, return_attention_mask=False)
    transformers.Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(str(out))
    config_cls = {"Wav2Vec2ForCTC": transformers.Wav2Vec2Config, "HubertForCTC": transformers.HubertConfig,
                  "WavLMForCTC": transformers.WavLMConfig}[arch]
    config = config_cls(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        conv_dim=(32, 32, 32), conv_stride=(5, 8, 8), conv_kernel=(10, 8, 8),
                        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=len(vocab),
                        pad_token_id=0, feat_extract_norm="layer", do_stable_layer_norm=True,
                        num_feat_extract_layers=3)
    torch.manual_seed(0)
    getattr(transformers, arch)(config).save_pretrained(str(out))
    return out


def save_tiny_whisper(out: Path) -> Path:
    """A tiny random Whisper with its feature extractor and a byte-level tokenizer (from the real vocabulary
    format: vocab.json + merges.txt written here)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    fe = transformers.WhisperFeatureExtractor(feature_size=80)
    fe.save_pretrained(str(out))
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_chars = bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(sorted(set(byte_chars.values())))}
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    for s in specials:
        vocab[s] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tok = transformers.WhisperTokenizer(str(out / "vocab.json"), str(out / "merges.txt"))
    tok.save_pretrained(str(out))
    config = transformers.WhisperConfig(
        vocab_size=len(vocab), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
        max_source_positions=1500, max_target_positions=64, pad_token_id=vocab["<|endoftext|>"],
        bos_token_id=vocab["<|endoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        decoder_start_token_id=vocab["<|startoftranscript|>"], suppress_tokens=[], begin_suppress_tokens=[])
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(config)
    model.generation_config.decoder_start_token_id = vocab["<|startoftranscript|>"]
    model.generation_config.forced_decoder_ids = None
    model.save_pretrained(str(out))
    return out


#: a QuartzNet-shaped NeMo encoder, tiny: C1 (stride 2), one residual block of 2 units, C2 (dilated), C3
NEMO_BLOCKS = [
    {"filters": 16, "repeat": 1, "kernel": [11], "stride": [2], "dilation": [1], "dropout": 0.0,
     "residual": False, "separable": True},
    {"filters": 16, "repeat": 2, "kernel": [7], "stride": [1], "dilation": [1], "dropout": 0.0,
     "residual": True, "separable": True},
    {"filters": 24, "repeat": 1, "kernel": [9], "stride": [1], "dilation": [2], "dropout": 0.0,
     "residual": False, "separable": True},
    {"filters": 32, "repeat": 1, "kernel": [1], "stride": [1], "dilation": [1], "dropout": 0.0,
     "residual": False, "separable": False},
]


def nemo_config(feat_in: int = 80, encoder: str = "nemo.collections.asr.modules.ConvASREncoder") -> dict[str, Any]:
    """``model_config.yaml`` of an ``EncDecCTCModel`` as NeMo writes it (the keys this reader uses)."""
    labels = [" ", *LETTERS]
    return {
        "sample_rate": 16000, "labels": labels,
        "preprocessor": {"_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
                         "normalize": "per_feature", "features": feat_in, "window_size": 0.025,
                         "window_stride": 0.01},
        "encoder": {"_target_": encoder, "feat_in": feat_in, "activation": "relu", "conv_mask": True,
                    "jasper": NEMO_BLOCKS},
        "decoder": {"_target_": "nemo.collections.asr.modules.ConvASRDecoder", "feat_in": 32,
                    "num_classes": len(labels), "vocabulary": labels},
    }


def nemo_state(config: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict under NeMo's names (JasperBlock: mconv = [dw, pw, bn, act, drop, ...], res, decoder)."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {"preprocessor.featurizer.window": torch.hann_window(400),
                                      "preprocessor.featurizer.fb": torch.rand(1, 80, 257, generator=g)}

    def bn(prefix: str, c: int) -> None:
        state[f"{prefix}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        state[f"{prefix}.bias"] = 0.1 * torch.randn(c, generator=g)
        state[f"{prefix}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        state[f"{prefix}.running_var"] = 1 + torch.rand(c, generator=g)
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(100)

    cin = config["encoder"]["feat_in"]
    for b, blk in enumerate(config["encoder"]["jasper"]):
        c, k = blk["filters"], blk["kernel"][0]
        base = f"encoder.encoder.{b}"
        step = 5 if blk["separable"] else 4
        for j in range(blk["repeat"]):
            i = j * step
            ci = cin if j == 0 else c
            if blk["separable"]:
                state[f"{base}.mconv.{i}.conv.weight"] = 0.3 * torch.randn(ci, 1, k, generator=g)
                state[f"{base}.mconv.{i + 1}.conv.weight"] = torch.randn(c, ci, 1, generator=g) / ci ** 0.5
                bn(f"{base}.mconv.{i + 2}", c)
            else:
                state[f"{base}.mconv.{i}.conv.weight"] = torch.randn(c, ci, k, generator=g) / ci ** 0.5
                bn(f"{base}.mconv.{i + 1}", c)
        if blk["residual"]:
            state[f"{base}.res.0.0.conv.weight"] = torch.randn(c, cin, 1, generator=g) / cin ** 0.5
            bn(f"{base}.res.0.1", c)
        cin = c
    n = config["decoder"]["num_classes"] + 1
    state["decoder.decoder_layers.0.weight"] = torch.randn(n, cin, 1, generator=g) / cin ** 0.5
    state["decoder.decoder_layers.0.bias"] = torch.zeros(n)
    return state


def write_nemo(out: Path, config: dict[str, Any] | None = None, state: Any = None,
               extra: dict[str, bytes] | None = None) -> Path:
    """A ``.nemo`` tar in NeMo's layout: ``./model_config.yaml`` and ``./model_weights.ckpt`` (torch.save)."""
    config = config or nemo_config()
    state = nemo_state(config) if state is None else state
    buf = io.BytesIO()
    torch.save(state, buf)
    members = {"./model_config.yaml": yaml.safe_dump(config).encode(), "./model_weights.ckpt": buf.getvalue(),
               **(extra or {})}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out
