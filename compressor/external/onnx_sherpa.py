"""ONNX models in sherpa-onnx's NeMo layouts as frozen teachers, run by onnxruntime.

* ``onnx_transducer``: ``encoder.onnx`` (``audio_signal`` (N, 80, T) float, ``length`` (N,) int64 -> (N, D, T'),
  lengths), ``decoder.onnx`` (one prediction step: ``targets`` (N, 1) int32, ``target_length`` (N,) int32,
  h and c (L, N, H) -> (N, D, 1), lengths, h', c'), ``joiner.onnx`` ((N, D, T), (N, D, U) -> (N, T, U, V)) and
  ``tokens.txt`` (blank last). It behaves as a project RNN-T (``encode``/``predict``/``join``): its forward gives
  the RNN-T lattice ``logits`` (so ``lattice_kd`` and ``logit_kd`` can use it), ``encoder_out``, and greedy
  transcripts through :func:`compressor.families.rnnt.decoding.greedy_search`.
* ``onnx_ctc``: ``model.onnx`` (``audio_signal`` (N, 80, T), ``length`` (N,) -> ``logprobs`` (N, T', V),
  lengths) and ``tokens.txt`` (blank last): per-frame ``log_probs`` as the ``ctc`` task reads them, greedy
  transcripts.

Every ``compressor export`` of an ``rnnt_lstm`` or ``quartznet`` model is such a folder, as are the NeMo models of
sherpa-onnx's zoo. Features are the ones sherpa-onnx computes for the runtime (``nemo_transducer`` or
``nemo_ctc``): from waveforms by kaldi-native-fbank (:func:`compressor.export.frontend.sherpa_fbank`), in
batches by the data layer's equal :func:`compressor.data.features.fbank`; normalised per utterance when the
model's metadata says ``normalize_type=per_feature``. A transcript's confidence is its mean log-probability per
token (the sequence's -loss under the model divided by its length plus one).

Spec::

    teacher: {name: onnx_transducer, model_dir: runs/teacher-run/export}
    teacher: {name: onnx_ctc, model_dir: path/to/sherpa-onnx-nemo-ctc-model, model: model.int8.onnx}
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from compressor.core.errors import UserError
from compressor.core.registry import Args
from compressor.core.teachers import files_hash
from compressor.families.asr.metrics import detokenize
from compressor.teaching.transcripts import Transcript


class OnnxTeacherArgs(Args):
    """Arguments of ``onnx_transducer`` and ``onnx_ctc``: the folder and, optionally, its file names."""

    model_dir: str = Field(description="folder with the .onnx files and tokens.txt (e.g. a compressor export)")
    model: str = Field(default="model.onnx", description="onnx_ctc: the model file in model_dir")
    encoder: str = Field(default="encoder.onnx", description="onnx_transducer: the encoder file")
    decoder: str = Field(default="decoder.onnx", description="onnx_transducer: the decoder file")
    joiner: str = Field(default="joiner.onnx", description="onnx_transducer: the joiner file")
    tokens: str = Field(default="tokens.txt")
    threads: int = Field(default=1, ge=1, description="onnxruntime intra-op threads")


def _folder(args: OnnxTeacherArgs, family: str) -> Path:
    folder = Path(args.model_dir).expanduser()
    if not folder.is_dir():
        raise UserError(f"{family} teacher: model_dir {folder}: no such folder")
    return folder


def _file(folder: Path, name: str, family: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise UserError(f"{family} teacher: {path} not found")
    return path


def _read_tokens(path: Path, family: str) -> list[str]:
    """tokens.txt (``symbol id`` per line) in id order; one clear error when malformed."""
    out: dict[int, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        sym, _, idx = line.rstrip("\n").rpartition(" ")
        if not sym or not idx.isdigit():
            raise UserError(f"{family} teacher: {path}:{n}: expected 'symbol id', got {line!r}")
        out[int(idx)] = sym
    if not out or sorted(out) != list(range(len(out))):
        raise UserError(f"{family} teacher: {path}: token ids are not 0..N-1")
    return [out[i] for i in range(len(out))]


def _session(path: Path, threads: int, family: str) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise UserError(f"{family} teacher: {path}: not a loadable ONNX model ({' '.join(str(e).split())[:200]})"
                        ) from None


def _check_io(session: Any, path: Path, family: str, expected: list[tuple[int, str]], layout: str) -> None:
    """Inputs of ``session`` must have these ranks and element types, in order."""
    inputs = session.get_inputs()
    got = [(len(i.shape), i.type) for i in inputs]
    want = [(rank, f"tensor({kind})") for rank, kind in expected]
    if got != want:
        have = ", ".join(f"{i.name} {i.type} rank {len(i.shape)}" for i in inputs)
        raise UserError(f"{family} teacher: {path} inputs ({have}) do not match sherpa-onnx's {layout}")


def _fingerprint(paths: Sequence[Path], family: str) -> str:
    return hashlib.sha256(f"{family};{files_hash(paths)}".encode()).hexdigest()


class _OnnxTeacher(nn.Module):
    """What both layouts share: tokens, the front end, feature normalisation, the frozen-ness."""

    family = ""
    frontend = ""

    def __init__(self, files: list[Path], tokens: list[str], normalize_type: str, info: dict[str, Any]) -> None:
        super().__init__()
        self.files = files
        self.tokens = tokens
        self.vocab_size = len(tokens)
        self.blank_id = len(tokens) - 1
        self.normalize_type = normalize_type
        self.data_normalize = str(info.get("normalize_type", "") or "")
        data_frontend = info.get("frontend")
        self.data_frontend = None if data_frontend is None else str(data_frontend)
        self._fingerprint: str | None = None
        self.seconds = 0.0
        self.count = 0
        self.source_hash = self.fingerprint()  # how logit_kd's cache and teacher offloading know external teachers
        # The files' hash as a buffer: the model's state dict (what checkpoints and the teacher-output cache of
        # logit_kd / representation_kd hash) then tells two ONNX teachers apart, though neither has parameters.
        self.register_buffer("file_sha256", torch.tensor(list(bytes.fromhex(self.fingerprint())), dtype=torch.uint8))

    def fingerprint(self) -> str:
        """sha256 over the model's files (the key of cached transcripts)."""
        if self._fingerprint is None:
            self._fingerprint = _fingerprint(self.files, self.family)
        return self._fingerprint

    def _check_batch_features(self) -> None:
        from compressor.export.frontend import same_features

        if self.data_frontend is not None and same_features(self.data_frontend, self.frontend) is False:
            raise UserError(f"{self.family} teacher reads sherpa-onnx's '{self.frontend}' features, the data computes "
                            f"'{self.data_frontend}': set data.frontend: {self.frontend}")

    def _prepare(self, features: torch.Tensor, lengths: torch.Tensor, from_batch: bool) -> np.ndarray:
        """(B, T, F) fbank -> the (B, F, T) float32 array the model reads (normalised as its metadata says)."""
        x = features.detach().float().cpu()
        if self.normalize_type == "per_feature" and not (from_batch and self.data_normalize == "per_feature"):
            x = x.clone()
            for i, n in enumerate(lengths.tolist()):
                x[i, : int(n)] = per_feature(x[i, : int(n)])
        return np.ascontiguousarray(x.transpose(1, 2).numpy())

    def _waves_features(self, wave: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        from compressor.export.frontend import sherpa_fbank  # kaldi-native-fbank, set up as sherpa-onnx sets it up

        w = wave.detach().cpu().float().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave, np.float32)
        feats = torch.as_tensor(sherpa_fbank(w, 16000, self.frontend)).float()
        return feats[None], torch.tensor([feats.shape[0]], dtype=torch.int64)

    def train(self, mode: bool = True) -> _OnnxTeacher:  # frozen: nothing changes between train and eval
        return super().train(False)


def per_feature(x: torch.Tensor) -> torch.Tensor:
    from compressor.data.features import per_feature_normalize

    return per_feature_normalize(x)


class OnnxCTCTeacher(_OnnxTeacher):
    """A NeMo CTC ``model.onnx`` + ``tokens.txt`` (sherpa-onnx ``from_nemo_ctc``) run by onnxruntime."""

    family = "onnx_ctc"
    frontend = "nemo_ctc"

    def __init__(self, args: OnnxTeacherArgs, info: dict[str, Any]) -> None:
        folder = _folder(args, self.family)
        model_path = _file(folder, args.model, self.family)
        tokens_path = _file(folder, args.tokens, self.family)
        tokens = _read_tokens(tokens_path, self.family)
        session = _session(model_path, args.threads, self.family)
        _check_io(session, model_path, self.family, [(3, "float"), (1, "int64")],
                  "NeMo CTC layout (audio_signal (N, 80, T) float, length (N,) int64)")
        meta = session.get_modelmeta().custom_metadata_map
        super().__init__([model_path, tokens_path], tokens, meta.get("normalize_type", ""), info)
        vocab = meta.get("vocab_size")
        if vocab is not None and vocab.isdigit() and int(vocab) != len(tokens):
            raise UserError(f"onnx_ctc teacher: {tokens_path} has {len(tokens)} tokens, {model_path} says "
                            f"vocab_size={vocab}")
        self.session = session

    def run(self, features: torch.Tensor, lengths: torch.Tensor, from_batch: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw fbank (B, T, 80), lengths -> log-probabilities (B, T', V) and their lengths."""
        x = self._prepare(features, lengths, from_batch)
        names = [i.name for i in self.session.get_inputs()]
        log_probs, out_len = self.session.run(None, {names[0]: x, names[1]: lengths.cpu().to(torch.int64).numpy()})
        return torch.from_numpy(log_probs).float(), torch.from_numpy(np.asarray(out_len)).to(torch.int64)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``log_probs``/``logits`` (B, T', V) and ``logit_lengths``, as the ``ctc`` task reads them."""
        self._check_batch_features()
        dev = batch["features"].device
        log_probs, lengths = self.run(batch["features"], batch["feature_lengths"], from_batch=True)
        log_probs = log_probs.log_softmax(-1).to(dev)
        return {"log_probs": log_probs, "logits": log_probs, "logit_lengths": lengths.to(dev)}

    def transcribe(self, waves: Sequence[torch.Tensor | np.ndarray]) -> list[Transcript]:
        """Greedy CTC transcripts of 16 kHz waveforms; confidence = log P(y|x) / (len(y) + 1)."""
        import time

        from compressor.families.asr.greedy import ctc_greedy

        out = []
        for wave in waves:
            start = time.perf_counter()
            feats, n = self._waves_features(wave)
            log_probs, lengths = self.run(feats, n)
            log_probs = log_probs.log_softmax(-1)
            ids = ctc_greedy(log_probs, lengths, self.blank_id)[0]
            nll = F.ctc_loss(log_probs.transpose(0, 1), torch.tensor([ids or [0]]), lengths,
                             torch.tensor([len(ids)]), blank=self.blank_id, reduction="sum", zero_infinity=True)
            out.append(Transcript(detokenize(ids, self.tokens, self.blank_id), -float(nll) / (len(ids) + 1)))
            self.seconds += time.perf_counter() - start
            self.count += 1
        return out


class OnnxTransducerTeacher(_OnnxTeacher):
    """A NeMo-style transducer (encoder/decoder/joiner.onnx + tokens.txt) run by onnxruntime, with the
    project's RNN-T interface (``encode``, ``predict``, ``join``)."""

    family = "onnx_transducer"
    frontend = "nemo_transducer"

    def __init__(self, args: OnnxTeacherArgs, info: dict[str, Any]) -> None:
        folder = _folder(args, self.family)
        paths = {k: _file(folder, getattr(args, k), self.family) for k in ("encoder", "decoder", "joiner", "tokens")}
        tokens = _read_tokens(paths["tokens"], self.family)
        sessions = {k: _session(paths[k], args.threads, self.family) for k in ("encoder", "decoder", "joiner")}
        _check_io(sessions["encoder"], paths["encoder"], self.family, [(3, "float"), (1, "int64")],
                  "NeMo transducer encoder layout (audio_signal (N, 80, T) float, length (N,) int64)")
        _check_io(sessions["decoder"], paths["decoder"], self.family,
                  [(2, "int32"), (1, "int32"), (3, "float"), (3, "float")],
                  "NeMo transducer decoder layout (targets (N, 1) int32, target_length (N,) int32, states h, c)")
        _check_io(sessions["joiner"], paths["joiner"], self.family, [(3, "float"), (3, "float")],
                  "NeMo transducer joiner layout (encoder_outputs (N, D, T), decoder_outputs (N, D, U))")
        meta = sessions["encoder"].get_modelmeta().custom_metadata_map
        super().__init__([paths[k] for k in ("encoder", "decoder", "joiner", "tokens")], tokens,
                         meta.get("normalize_type", ""), info)
        vocab = meta.get("vocab_size")  # without the blank
        if vocab is not None and vocab.isdigit() and int(vocab) + 1 != len(tokens):
            raise UserError(f"onnx_transducer teacher: {paths['tokens']} has {len(tokens)} tokens, "
                            f"{paths['encoder']} says vocab_size={vocab} (+1 blank)")
        try:
            self.pred_layers = int(meta["pred_rnn_layers"])
            self.pred_hidden = int(meta["pred_hidden"])
        except (KeyError, ValueError):
            raise UserError(f"onnx_transducer teacher: {paths['encoder']} lacks the metadata pred_rnn_layers and "
                            f"pred_hidden that sherpa-onnx's NeMo transducer needs") from None
        self.sessions = sessions

    # -- the RNN-T interface ----------------------------------------------------------------------
    def encode(self, features: torch.Tensor, lengths: torch.Tensor, from_batch: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw fbank (B, T, 80), lengths -> encoder output (B, T', D) and its lengths."""
        s = self.sessions["encoder"]
        names = [i.name for i in s.get_inputs()]
        enc, enc_len = s.run(None, {names[0]: self._prepare(features, lengths, from_batch),
                                    names[1]: lengths.cpu().to(torch.int64).numpy()})
        return torch.from_numpy(enc).float().transpose(1, 2), torch.from_numpy(np.asarray(enc_len)).to(torch.int64)

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.pred_layers, batch_size, self.pred_hidden)
        return torch.zeros(shape), torch.zeros(shape)

    def predict(self, tokens: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Tokens (B, U) -> prediction outputs (B, U, D) and the state (h, c), one decoder step per token."""
        s = self.sessions["decoder"]
        names = [i.name for i in s.get_inputs()]
        b = tokens.shape[0]
        h, c = state if state is not None else self.initial_state(b)
        outs = []
        for u in range(tokens.shape[1]):
            out, _, h_new, c_new = s.run(None, {
                names[0]: tokens[:, u : u + 1].cpu().to(torch.int32).numpy(),
                names[1]: np.ones(b, dtype=np.int32), names[2]: h.cpu().float().numpy(),
                names[3]: c.cpu().float().numpy()})
            outs.append(torch.from_numpy(out).float()[:, :, 0])
            h, c = torch.from_numpy(h_new), torch.from_numpy(c_new)
        return torch.stack(outs, 1), (h, c)

    def _joiner(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """enc (B, T, D), pred (B, U, D) -> (B, T, U, V)."""
        s = self.sessions["joiner"]
        names = [i.name for i in s.get_inputs()]
        (out,) = s.run(None, {names[0]: np.ascontiguousarray(enc.detach().cpu().float().transpose(1, 2).numpy()),
                              names[1]: np.ascontiguousarray(pred.detach().cpu().float().transpose(1, 2).numpy())})
        return torch.from_numpy(out).float()

    def join(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """The joint network on one frame and one prediction per utterance ((B, D) each -> (B, V)), or on the
        lattice (enc (B, T, 1, D), pred (B, 1, U, D) -> (B, T, U, V))."""
        if enc.dim() == 2:
            return self._joiner(enc[:, None], pred[:, None])[:, 0, 0].to(enc.device)
        if enc.dim() == 4 and enc.shape[2] == 1 and pred.dim() == 4 and pred.shape[1] == 1:
            return self._joiner(enc[:, :, 0], pred[:, 0]).to(enc.device)
        raise ValueError(f"onnx_transducer join: unsupported shapes {tuple(enc.shape)} and {tuple(pred.shape)}")

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The RNN-T lattice over ``batch["tokens"]`` (``logits`` (B, T', U+1, V), ``logit_lengths``) and
        ``encoder_out`` (B, T', D)."""
        self._check_batch_features()
        dev = batch["features"].device
        enc, enc_len = self.encode(batch["features"], batch["feature_lengths"], from_batch=True)
        tokens = batch["tokens"].cpu()
        blank = torch.full((tokens.shape[0], 1), self.blank_id, dtype=tokens.dtype)
        pred, _ = self.predict(torch.cat([blank, tokens], 1))
        logits = self._joiner(enc, pred)
        return {"logits": logits.to(dev), "logit_lengths": enc_len.to(dev), "encoder_out": enc.to(dev)}

    def transcribe(self, waves: Sequence[torch.Tensor | np.ndarray]) -> list[Transcript]:
        """Greedy transcripts (sherpa-onnx's NeMo greedy search) of 16 kHz waveforms; confidence =
        log P(y|x) / (len(y) + 1) under the model."""
        import time

        from compressor.families.rnnt.decoding import greedy_search
        from compressor.families.rnnt.loss import rnnt_loss_torch

        out = []
        for wave in waves:
            start = time.perf_counter()
            feats, n = self._waves_features(wave)
            ids = greedy_search(self, feats, n, self.blank_id)[0]
            enc, enc_len = self.encode(feats, n)
            y = torch.tensor([ids], dtype=torch.int64).reshape(1, len(ids))
            pred, _ = self.predict(torch.cat([torch.tensor([[self.blank_id]]), y], 1))
            nll = rnnt_loss_torch(self._joiner(enc, pred), y, enc_len, torch.tensor([len(ids)]), self.blank_id,
                                  "sum")
            out.append(Transcript(detokenize(ids, self.tokens, self.blank_id), -float(nll) / (len(ids) + 1)))
            self.seconds += time.perf_counter() - start
            self.count += 1
        return out


def build_onnx_ctc(args: OnnxTeacherArgs, info: dict[str, Any] | None = None) -> OnnxCTCTeacher:
    """A NeMo CTC ONNX model (sherpa-onnx layout) as a frozen teacher."""
    return OnnxCTCTeacher(args, info or {})


def build_onnx_transducer(args: OnnxTeacherArgs, info: dict[str, Any] | None = None) -> OnnxTransducerTeacher:
    """A NeMo-style ONNX transducer (sherpa-onnx layout) as a frozen teacher."""
    return OnnxTransducerTeacher(args, info or {})


def units_of(args: OnnxTeacherArgs) -> list[str]:
    """The teacher's output units, read from its ``tokens.txt`` (blank last, ``▁`` between words: the layout of
    this project's exports and of sherpa-onnx's NeMo models), for ``tokenizer: {from_teacher: NAME}``."""
    return _read_tokens(_file(_folder(args, "onnx"), args.tokens, "onnx"), "onnx")
