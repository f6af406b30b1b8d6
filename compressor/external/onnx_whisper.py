"""Whisper in sherpa-onnx's ONNX layout as a frozen teacher (``onnx_whisper``), run by onnxruntime.

The layout is the one sherpa-onnx's ``scripts/whisper/export-onnx.py`` writes and
``sherpa_onnx.OfflineRecognizer.from_whisper`` reads:

* ``<name>-encoder.onnx``: ``mel`` (N, n_mels, T) float -> ``n_layer_cross_k``, ``n_layer_cross_v``
  (n_text_layer, N, T/2, n_text_state); its metadata holds the decoding constants (``n_mels``, ``n_text_layer``,
  ``n_text_ctx``, ``n_text_state``, ``n_vocab``, ``sot``, ``eot``, ``no_timestamps``, ``sot_sequence``,
  ``is_multilingual``, ``all_language_tokens``, ``all_language_codes``, ``translate``, ...).
* ``<name>-decoder.onnx``: ``tokens`` (N, n) int64, ``in_n_layer_self_k_cache``, ``in_n_layer_self_v_cache``
  (n_text_layer, N, n_text_ctx, n_text_state), ``n_layer_cross_k``, ``n_layer_cross_v``, ``offset`` (1,) int64
  -> ``logits`` (N, n, n_vocab), ``out_n_layer_self_k_cache``, ``out_n_layer_self_v_cache``.
* ``<name>-tokens.txt``: ``base64(token bytes) id`` per line (the tiktoken ranks; special tokens are absent).

Decoding follows sherpa-onnx's ``OfflineRecognizerWhisperImpl`` and ``OfflineWhisperGreedySearchDecoder`` step by
step, so a transcript is the one sherpa-onnx gives: kaldi-native-fbank's Whisper log-mel (``OnlineWhisperFbank``),
``log10``, floored at its maximum minus 8, ``(x + 4) / 4``; at most 2950 frames, then zero frames up to
``min(T + tail_paddings, 3000)``; the prompt ``sot_sequence`` (language and task set) + ``no_timestamps``; greedy
argmax until ``eot``, at most ``min(6 tokens per second, n_text_ctx / 2)`` tokens. Each transcript's confidence is
the mean log-probability of its tokens (the final ``eot`` included when emitted), as ``whisper_ct2`` gives it.

Spec::

    teacher: {name: onnx_whisper, model_dir: path/to/sherpa-onnx-whisper-base}    # finds base-encoder.onnx ...
    teacher: {name: onnx_whisper, model_dir: ..., encoder: base-encoder.int8.onnx, decoder: base-decoder.int8.onnx}
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from compressor.core.errors import UserError
from compressor.core.registry import Args
from compressor.teaching.transcripts import Transcript

FAMILY = "onnx_whisper"
MAX_FRAMES = 3000  # 30 s of 10 ms frames: what Whisper's encoder was trained on
#: encoder metadata sherpa-onnx reads for every Whisper (the multilingual ones add the language lists)
REQUIRED_META = ("n_mels", "n_text_layer", "n_text_ctx", "n_text_state", "n_vocab", "sot", "eot", "blank_id",
                 "translate", "transcribe", "is_multilingual", "no_timestamps", "no_speech", "sot_sequence")
ENCODER_INPUTS = ["mel"]
ENCODER_OUTPUTS = ["n_layer_cross_k", "n_layer_cross_v"]
DECODER_INPUTS = ["tokens", "in_n_layer_self_k_cache", "in_n_layer_self_v_cache", "n_layer_cross_k",
                  "n_layer_cross_v", "offset"]
DECODER_OUTPUTS = ["logits", "out_n_layer_self_k_cache", "out_n_layer_self_v_cache"]


class OnnxWhisperArgs(Args):
    """Arguments of ``onnx_whisper``: the folder and, optionally, its file names."""

    model_dir: str = Field(description="folder with <name>-encoder.onnx, <name>-decoder.onnx and <name>-tokens.txt "
                                       "(sherpa-onnx's Whisper layout)")
    encoder: str | None = Field(default=None, description="encoder file in model_dir (default: the one "
                                                          "*-encoder.onnx)")
    decoder: str | None = Field(default=None, description="decoder file (default: the encoder's name with "
                                                          "-decoder)")
    tokens: str | None = Field(default=None, description="tokens file (default: <name>-tokens.txt)")
    language: str | None = Field(default=None, min_length=2, max_length=5,
                                 description="multilingual models: language code (default: the data's, else en)")
    task: Literal["transcribe", "translate"] = "transcribe"
    tail_paddings: int = Field(default=1000, ge=1, description="zero frames after the audio (sherpa-onnx's "
                                                               "whisper tail_paddings; its default)")
    threads: int = Field(default=1, ge=1, description="onnxruntime intra-op threads")


def _files(args: OnnxWhisperArgs) -> tuple[Path, Path, Path]:
    folder = Path(args.model_dir).expanduser()
    if not folder.is_dir():
        raise UserError(f"{FAMILY} teacher: model_dir {folder}: no such folder")
    if args.encoder is not None:
        encoder = folder / args.encoder
    else:
        found = sorted(p for p in folder.glob("*-encoder.onnx"))
        if len(found) != 1:
            what = "no *-encoder.onnx" if not found else f"several encoders ({', '.join(p.name for p in found)})"
            raise UserError(f"{FAMILY} teacher: {folder} has {what}: name it with encoder:")
        encoder = found[0]
    stem = encoder.name.split("-encoder")[0]
    decoder = folder / (args.decoder or encoder.name.replace("-encoder", "-decoder"))
    tokens = folder / (args.tokens or f"{stem}-tokens.txt")
    for path in (encoder, decoder, tokens):
        if not path.is_file():
            raise UserError(f"{FAMILY} teacher: {path} not found")
    return encoder, decoder, tokens


def read_whisper_tokens(path: Path) -> dict[int, bytes]:
    """``<name>-tokens.txt`` (``base64 id`` per line) -> id -> the token's bytes."""
    out: dict[int, bytes] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        token, _, idx = line.strip().rpartition(" ")
        try:
            out[int(idx)] = base64.b64decode(token, validate=True)
        except (ValueError, binascii.Error):
            raise UserError(f"{FAMILY} teacher: {path}:{n}: expected 'base64-token id', got {line[:60]!r}") from None
    if not out:
        raise UserError(f"{FAMILY} teacher: {path}: no tokens")
    return out


def _check_names(session: Any, path: Path, inputs: list[str], outputs: list[str]) -> None:
    got_in = [i.name for i in session.get_inputs()]
    got_out = [o.name for o in session.get_outputs()][: len(outputs)]
    if got_in != inputs or got_out != outputs:
        raise UserError(f"{FAMILY} teacher: {path} inputs ({', '.join(got_in)}) -> outputs "
                        f"({', '.join(got_out)}) do not match sherpa-onnx's Whisper layout "
                        f"({', '.join(inputs)} -> {', '.join(outputs)})")


def whisper_features(wave: np.ndarray, n_mels: int = 80) -> tuple[np.ndarray, int]:
    """sherpa-onnx's Whisper features of a 16 kHz waveform: (n_mels, T) normalised log-mel, T <= 2950 real frames
    (kaldi-native-fbank's ``OnlineWhisperFbank``, then ``NormalizeWhisperFeatures``); returns them and T."""
    import kaldi_native_fbank as knf

    opts = knf.WhisperFeatureOptions()
    opts.dim = n_mels
    fbank = knf.OnlineWhisperFbank(opts)
    fbank.accept_waveform(16000, np.ascontiguousarray(wave, dtype=np.float32).reshape(-1).tolist())
    fbank.input_finished()
    t = min(fbank.num_frames_ready, MAX_FRAMES - 50)
    if t == 0:
        return np.zeros((n_mels, 0), np.float32), 0
    feats = np.stack([np.asarray(fbank.get_frame(i), np.float32) for i in range(t)])
    log_spec = np.log10(np.maximum(feats, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).T.astype(np.float32), t


class OnnxWhisperTeacher(nn.Module):
    """A Whisper in sherpa-onnx's layout run by onnxruntime: ``transcribe(waves)`` -> transcripts with confidence."""

    family = FAMILY
    sample_rate = 16000

    def __init__(self, args: OnnxWhisperArgs, info: dict[str, Any]) -> None:
        super().__init__()
        from compressor.external.onnx_sherpa import _fingerprint, _session

        rate = info.get("sample_rate")
        if rate is not None and int(rate) != self.sample_rate:
            raise UserError(f"teacher {FAMILY} reads 16 kHz audio, the data is {rate} Hz")
        encoder, decoder, tokens = _files(args)
        self.files = [encoder, decoder, tokens]
        self.id2bytes = read_whisper_tokens(tokens)
        self.encoder = _session(encoder, args.threads, FAMILY)
        self.decoder = _session(decoder, args.threads, FAMILY)
        _check_names(self.encoder, encoder, ENCODER_INPUTS, ENCODER_OUTPUTS)
        _check_names(self.decoder, decoder, DECODER_INPUTS, DECODER_OUTPUTS)
        meta = self.encoder.get_modelmeta().custom_metadata_map
        missing = [k for k in REQUIRED_META if k not in meta]
        try:
            if missing:
                raise KeyError
            self.meta = {k: int(meta[k]) for k in REQUIRED_META if k != "sot_sequence"}
            self.sot_sequence = [int(x) for x in meta["sot_sequence"].split(",")]
        except (KeyError, ValueError):
            raise UserError(f"{FAMILY} teacher: {encoder} metadata lacks or mangles what sherpa-onnx's Whisper "
                            f"reads ({', '.join(missing) or 'integers expected'})") from None
        self.language = args.language or str(info.get("language") or "en")
        self.prompt = list(self.sot_sequence)
        if self.meta["is_multilingual"]:
            codes = meta.get("all_language_codes", "").split(",")
            ids = [int(x) for x in meta.get("all_language_tokens", "").split(",") if x.strip()]
            lang2id = dict(zip(codes, ids, strict=False))
            if self.language not in lang2id:
                raise UserError(f"{FAMILY} teacher: language '{self.language}' is not one of {encoder}'s "
                                f"({', '.join(codes[:12])}...)")
            self.prompt[1] = lang2id[self.language]
            if args.task == "translate":
                self.prompt[2] = self.meta["translate"]
        self.prompt.append(self.meta["no_timestamps"])
        self.task = args.task
        self.tail_paddings = args.tail_paddings
        self._fingerprint: str | None = None
        self.seconds = 0.0
        self.count = 0
        self.source_hash = _fingerprint(self.files, FAMILY)
        self.register_buffer("file_sha256", torch.tensor(list(bytes.fromhex(self.source_hash)), dtype=torch.uint8))

    def fingerprint(self) -> str:
        """sha256 over the model's files and the decoding settings (the key of cached transcripts)."""
        if self._fingerprint is None:
            import hashlib

            settings = f"{FAMILY};greedy;{self.prompt};{self.tail_paddings}"
            self._fingerprint = hashlib.sha256(f"{self.source_hash};{settings}".encode()).hexdigest()
        return self._fingerprint

    def encode(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Cross-attention keys and values of a waveform, and its number of real feature frames."""
        feats, t = whisper_features(wave, self.meta["n_mels"])
        frames = min(t + self.tail_paddings, MAX_FRAMES)
        mel = np.zeros((1, feats.shape[0], frames), np.float32)
        mel[0, :, :t] = feats
        cross_k, cross_v = self.encoder.run(ENCODER_OUTPUTS, {"mel": mel})
        return cross_k, cross_v, t

    def greedy(self, wave: np.ndarray) -> tuple[list[int], list[float]]:
        """Greedy token ids (without the prompt and ``eot``) and the log-probability of each scored token (the
        emitted ones, then ``eot`` when it ended the transcript)."""
        cross_k, cross_v, t = self.encode(wave)
        layers, ctx, state = self.meta["n_text_layer"], self.meta["n_text_ctx"], self.meta["n_text_state"]
        k_cache = np.zeros((layers, 1, ctx, state), np.float32)
        v_cache = np.zeros_like(k_cache)
        tokens = np.asarray([self.prompt], np.int64)
        offset = 0
        ids: list[int] = []
        logps: list[float] = []
        limit = min(int(t / 100.0 * 6), ctx // 2)
        eot = self.meta["eot"]
        step = 0
        while True:
            logits, k_cache, v_cache = self.decoder.run(DECODER_OUTPUTS, {
                "tokens": tokens, "in_n_layer_self_k_cache": k_cache, "in_n_layer_self_v_cache": v_cache,
                "n_layer_cross_k": cross_k, "n_layer_cross_v": cross_v,
                "offset": np.asarray([offset], np.int64)})
            offset += tokens.shape[1]
            last = logits[0, -1].astype(np.float64)
            best = int(np.argmax(last))
            log_z = float(np.log(np.exp(last - last.max()).sum()) + last.max())
            if step >= limit:
                break
            logps.append(float(last[best]) - log_z)
            if best == eot:
                break
            ids.append(best)
            step += 1
            tokens = np.asarray([[best]], np.int64)
            if offset + 1 >= ctx - 1:  # sherpa-onnx stops when the offset after this token reaches n_text_ctx - 1
                break
        return ids, logps

    def text(self, ids: Sequence[int]) -> str:
        """The transcript of token ids (their bytes as UTF-8; ids without a token, such as specials, skipped)."""
        return b"".join(self.id2bytes.get(i, b"") for i in ids).decode("utf-8", errors="replace").strip()

    def transcribe(self, waves: Sequence[torch.Tensor | np.ndarray]) -> list[Transcript]:
        """Greedy transcripts of 16 kHz waveforms, as sherpa-onnx gives them; confidence = mean token
        log-probability."""
        out = []
        for wave in waves:
            start = time.perf_counter()
            w = wave.detach().cpu().float().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave, np.float32)
            ids, logps = self.greedy(w)
            out.append(Transcript(self.text(ids), float(np.mean(logps)) if logps else float("-inf")))
            self.seconds += time.perf_counter() - start
            self.count += 1
        return out

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise UserError(f"teacher {FAMILY} gives transcripts, not per-frame outputs: distil it with the "
                        f"sequence_kd strategy")

    def train(self, mode: bool = True) -> OnnxWhisperTeacher:  # frozen
        return super().train(False)


def build_onnx_whisper(args: OnnxWhisperArgs, info: dict[str, Any] | None = None) -> OnnxWhisperTeacher:
    """A Whisper in sherpa-onnx's ONNX layout as a frozen teacher (transcripts with confidence)."""
    return OnnxWhisperTeacher(args, info or {})
