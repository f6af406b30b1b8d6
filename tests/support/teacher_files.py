"""Tiny teachers in the formats users hold, made locally with random weights (no hub): transformers
directories written by ``save_pretrained`` and a ``.nemo`` tar in NeMo's layout."""

from __future__ import annotations

import io
import json
import os
import tarfile
import warnings
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


# -- Whisper in sherpa-onnx's ONNX layout ------------------------------------------------------------------------
def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.view(b, t, n, d // n).transpose(1, 2)


def _attend(att: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Multi-head attention of a transformers ``WhisperAttention`` on projected keys and values."""
    n = att.num_heads
    qh, kh, vh = _heads(att.q_proj(q) * att.scaling, n), _heads(k, n), _heads(v, n)
    w = qh @ kh.transpose(-1, -2)
    if mask is not None:
        w = w + mask
    out = (w.softmax(-1) @ vh).transpose(1, 2).reshape(q.shape[0], q.shape[1], -1)
    return att.out_proj(out)


class SherpaWhisperEncoder(torch.nn.Module):
    """sherpa-onnx's ``AudioEncoderTensorCache`` over a transformers Whisper: ``mel`` (N, 80, T) ->
    ``n_layer_cross_k``, ``n_layer_cross_v`` (n_text_layer, N, T/2, d); T may be shorter than 3000."""

    def __init__(self, hf: Any) -> None:
        super().__init__()
        self.enc, self.dec = hf.model.encoder, hf.model.decoder

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch.nn.functional as F

        e = self.enc
        x = F.gelu(e.conv2(F.gelu(e.conv1(mel)))).permute(0, 2, 1)
        x = x + e.embed_positions.weight[: x.shape[1]]
        for layer in e.layers:
            h = layer.self_attn_layer_norm(x)
            x = x + _attend(layer.self_attn, h, layer.self_attn.k_proj(h), layer.self_attn.v_proj(h), None)
            x = x + layer.fc2(F.gelu(layer.fc1(layer.final_layer_norm(x))))
        x = e.layer_norm(x)
        return (torch.stack([lay.encoder_attn.k_proj(x) for lay in self.dec.layers]),
                torch.stack([lay.encoder_attn.v_proj(x) for lay in self.dec.layers]))


class SherpaWhisperDecoder(torch.nn.Module):
    """sherpa-onnx's ``TextDecoderTensorCache`` over a transformers Whisper: tokens at ``offset`` with the
    self-attention caches (n_text_layer, N, n_text_ctx, d) -> logits and the updated caches."""

    def __init__(self, hf: Any) -> None:
        super().__init__()
        self.dec = hf.model.decoder

    def forward(self, tokens: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cross_k: torch.Tensor,
                cross_v: torch.Tensor, offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch.nn.functional as F

        d = self.dec
        n = tokens.shape[1]
        start = offset[0]
        end = start + n
        x = d.embed_tokens(tokens) + d.embed_positions.weight[start:end]
        q_pos = start + torch.arange(n)
        mask = torch.where(torch.arange(end)[None, :] > q_pos[:, None], float("-inf"), 0.0)
        new_k, new_v = [], []
        for i, layer in enumerate(d.layers):
            h = layer.self_attn_layer_norm(x)
            k = torch.cat([k_cache[i, :, :start], layer.self_attn.k_proj(h), k_cache[i, :, end:]], 1)
            v = torch.cat([v_cache[i, :, :start], layer.self_attn.v_proj(h), v_cache[i, :, end:]], 1)
            new_k.append(k)
            new_v.append(v)
            x = x + _attend(layer.self_attn, h, k[:, :end], v[:, :end], mask)
            x = x + _attend(layer.encoder_attn, layer.encoder_attn_layer_norm(x), cross_k[i], cross_v[i], None)
            x = x + layer.fc2(F.gelu(layer.fc1(layer.final_layer_norm(x))))
        x = d.layer_norm(x)
        return x @ d.embed_tokens.weight.t(), torch.stack(new_k), torch.stack(new_v)


def save_sherpa_whisper(out: Path, name: str = "tiny", words: int = 400) -> Path:
    """A tiny random Whisper with the real base tokenizer, exported to sherpa-onnx's Whisper layout
    (``<name>-encoder.onnx``, ``<name>-decoder.onnx``, ``<name>-tokens.txt``, the metadata of sherpa-onnx's
    ``scripts/whisper/export-onnx.py``). Only ``words`` space-prefixed lower-case word tokens and ``eot`` keep
    their (tied) embedding rows, so the random model writes English-looking words."""
    import base64

    from transformers import WhisperConfig, WhisperForConditionalGeneration
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    from compressor.external.whisper_ct2 import wheel_files

    out.mkdir(parents=True, exist_ok=True)
    tok = json.loads(wheel_files()["tokenizer.json"].read_text(encoding="utf-8"))
    special = {a["content"]: a["id"] for a in tok["added_tokens"]}
    unbyte = {c: b for b, c in bytes_to_unicode().items()}
    vocab = {s: i for s, i in tok["model"]["vocab"].items() if i < special["<|endoftext|>"]}
    with open(out / f"{name}-tokens.txt", "w", encoding="utf-8") as f:
        for s, i in sorted(vocab.items(), key=lambda kv: kv[1]):
            if s:  # tiktoken's ranks have no empty token
                f.write(f"{base64.b64encode(bytes(unbyte[c] for c in s)).decode()} {i}\n")
    config = WhisperConfig(vocab_size=51865, d_model=32, encoder_layers=1, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, num_mel_bins=80, max_target_positions=448, init_std=0.5)
    torch.manual_seed(0)
    hf = WhisperForConditionalGeneration(config).eval()
    keep = [i for s, i in sorted(vocab.items(), key=lambda kv: kv[1])
            if s.startswith("Ġ") and len(s) > 3 and s[1:].isascii() and s[1:].isalpha() and s[1:].islower()][:words]
    keep.append(special["<|endoftext|>"])
    with torch.no_grad():
        emb = hf.model.decoder.embed_tokens.weight
        mask = torch.zeros(emb.shape[0], 1)
        mask[keep] = 1.0
        emb.mul_(mask)
    sot, translate = special["<|startoftranscript|>"], special["<|translate|>"]
    langs = [(s[2:-2], i) for s, i in special.items() if sot < i < translate]
    meta = {"model_type": f"whisper-{name}", "version": "1", "maintainer": "k2-fsa", "n_mels": 80,
            "n_audio_ctx": 1500, "n_audio_state": 32, "n_audio_head": 2, "n_audio_layer": 1, "n_vocab": 51865,
            "n_text_ctx": 448, "n_text_state": 32, "n_text_head": 2, "n_text_layer": 2,
            "sot_sequence": ",".join(map(str, (special["<|startoftranscript|>"], special["<|en|>"],
                                              special["<|transcribe|>"]))),
            "all_language_tokens": ",".join(str(i) for _, i in langs),
            "all_language_codes": ",".join(c for c, _ in langs),
            "sot": special["<|startoftranscript|>"], "sot_index": 0, "eot": special["<|endoftext|>"],
            "blank_id": vocab["Ġ"], "is_multilingual": 1, "no_speech": special["<|nocaptions|>"],
            "non_speech_tokens": "", "transcribe": special["<|transcribe|>"], "translate": special["<|translate|>"],
            "sot_prev": special["<|startofprev|>"], "sot_lm": special["<|startoflm|>"],
            "no_timestamps": special["<|notimestamps|>"]}
    with warnings.catch_warnings():  # the TorchScript exporter (as sherpa-onnx's script uses) warns about itself
        warnings.simplefilter("ignore")
        _export_sherpa_whisper(hf, out, name, meta)
    return out


def _export_sherpa_whisper(hf: Any, out: Path, name: str, meta: dict[str, Any]) -> None:
    import onnx

    encoder, decoder = SherpaWhisperEncoder(hf), SherpaWhisperDecoder(hf)
    mel = torch.randn(1, 80, 3000)
    with torch.no_grad():
        cross_k, cross_v = encoder(mel)
    torch.onnx.export(encoder, (mel,), str(out / f"{name}-encoder.onnx"), input_names=["mel"],
                      output_names=["n_layer_cross_k", "n_layer_cross_v"], opset_version=17, dynamo=False,
                      dynamic_axes={"mel": {0: "n_audio", 2: "T"}, "n_layer_cross_k": {1: "n_audio", 2: "T"},
                                    "n_layer_cross_v": {1: "n_audio", 2: "T"}})
    model = onnx.load(str(out / f"{name}-encoder.onnx"))
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, str(value)
    onnx.save(model, str(out / f"{name}-encoder.onnx"))
    cache = torch.zeros(2, 1, 448, 32)
    torch.onnx.export(decoder, (torch.tensor([[1, 2, 3]]), cache, cache, cross_k, cross_v,
                                torch.tensor([0])),
                      str(out / f"{name}-decoder.onnx"), opset_version=17, dynamo=False,
                      input_names=["tokens", "in_n_layer_self_k_cache", "in_n_layer_self_v_cache", "n_layer_cross_k",
                                   "n_layer_cross_v", "offset"],
                      output_names=["logits", "out_n_layer_self_k_cache", "out_n_layer_self_v_cache"],
                      dynamic_axes={"tokens": {0: "n_audio", 1: "n_tokens"},
                                    "in_n_layer_self_k_cache": {1: "n_audio"},
                                    "in_n_layer_self_v_cache": {1: "n_audio"},
                                    "n_layer_cross_k": {1: "n_audio", 2: "T"},
                                    "n_layer_cross_v": {1: "n_audio", 2: "T"}})
