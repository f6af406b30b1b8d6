"""fairseq's vq-wav2vec (k-means) and its BERT (RoBERTa) checkpoints, loaded safely (seed 000 Sec. 4.2).

Seed 000 borrows fairseq's pre-trained vq-wav2vec BERT: ``vq-wav2vec_kmeans.pt`` maps a 16 kHz waveform to two
groups of k-means codes per 10 ms, and ``bert_kmeans.pt`` (a RoBERTa) reads those codes as tokens ``"a-b"``
of its ``dict.txt``. This module loads both without ever unpickling code::

    torch.load(path, weights_only=True)   with only argparse.Namespace allowed (the "args" of old checkpoints)

then checks what the checkpoint is (``wav2vec`` with ``vq_type: kmeans`` for the quantiser, ``roberta*``
for the BERT), and builds the models with fairseq's own classes (the optional extra ``fairseq``:
``READTHEDOCS=1 pip install --no-build-isolation "compressor[fairseq]"``, which installs ``fairseq-fixed``).
:class:`FairseqVQBert` is the pair as one module: waveform -> codes -> [CLS] (``<s>``) + unit tokens + ``</s>``
-> RoBERTa states.

Bad input is a :class:`~compressor.core.errors.UserError` (exit 2) naming the file: a checkpoint with pickled code
or objects, the wrong kind (a wav2vec 2.0 where vq-wav2vec is expected), a gumbel quantiser, a dictionary
whose unit tokens do not fit the quantiser's codebook (or whose size differs from the BERT's embedding), and a
missing extra.
"""

from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, field_validator
from torch import nn

from compressor.core.errors import UserError
from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Args, Registry

INSTALL_HINT = ('READTHEDOCS=1 pip install --no-build-isolation "compressor[fairseq]" (installs fairseq-fixed '
                'against the installed torch, without its C++ extensions; see docs/getting-started.md)')


def require_fairseq() -> Any:
    """The ``fairseq`` module, or one clear line saying how to install the extra."""
    try:
        import fairseq  # noqa: F401
        from fairseq.models.roberta import RobertaModel  # noqa: F401
        from fairseq.models.wav2vec.wav2vec import Wav2VecModel  # noqa: F401
    except ImportError as e:
        raise UserError(f"loading fairseq checkpoints needs the optional extra 'fairseq', which is not installed "
                        f"({e}): {INSTALL_HINT}") from None
    return fairseq


def safe_load(path: str | Path) -> dict[str, Any]:
    """A fairseq checkpoint as plain data: ``weights_only`` unpickling, argparse.Namespace the only class."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = " ".join(str(e).split())
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found is None:
            raise UserError(f"{path}: not a readable torch checkpoint ({text[:160]})") from None
        raise UserError(f"{path}: refused: the checkpoint holds pickled code or objects ({found.group(1)}) that "
                        "a weights-only load does not run") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise UserError(f"{path}: not a fairseq checkpoint (expected a dict with 'model' weights and 'args' or "
                        f"'cfg')")
    return state


def model_config(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """The model's configuration as a dict: ``cfg["model"]`` (fairseq >= 0.10) or the legacy ``args``."""
    cfg = state.get("cfg")
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), (dict, argparse.Namespace)):
        model = cfg["model"]
        return dict(vars(model)) if isinstance(model, argparse.Namespace) else dict(model)
    args = state.get("args")
    if isinstance(args, argparse.Namespace):
        out = dict(vars(args))
        out.setdefault("_name", out.get("arch"))
        return out
    raise UserError(f"{path}: a fairseq checkpoint names its model in 'cfg' or 'args'; this one has neither")


def checkpoint_kind(state: dict[str, Any], path: Path) -> str:
    """``vq_wav2vec_kmeans``, ``vq_wav2vec_gumbel``, ``wav2vec``, ``wav2vec2``, ``roberta`` or the arch name."""
    cfg = model_config(state, path)
    name = str(cfg.get("_name") or cfg.get("arch") or "")
    if name == "wav2vec":
        vq = cfg.get("vq_type")
        return f"vq_wav2vec_{vq}" if vq in ("kmeans", "gumbel") else "wav2vec"
    if name.startswith("wav2vec2") or name.startswith("wav2vec_ctc") or name == "wav2vec_seq2seq":
        return "wav2vec2"
    if name.startswith("roberta"):
        return "roberta"
    return name or "unknown"


def expect_kind(state: dict[str, Any], path: Path, kind: str) -> dict[str, Any]:
    found = checkpoint_kind(state, path)
    if found != kind:
        wanted = {"vq_wav2vec_kmeans": "a vq-wav2vec checkpoint with k-means quantisation (arch wav2vec, "
                                       "vq_type kmeans)",
                  "roberta": "a RoBERTa (BERT) checkpoint"}[kind]
        raise UserError(f"{path}: expected {wanted}, found a {found} checkpoint")
    return model_config(state, path)


def _namespace(cfg: dict[str, Any]) -> argparse.Namespace:
    return argparse.Namespace(**{k: v for k, v in cfg.items() if k != "_name"})


def load_vq_wav2vec(path: str | Path) -> nn.Module:
    """fairseq's ``Wav2VecModel`` with its k-means quantiser, weights loaded, in eval mode."""
    path = Path(path).expanduser()
    state = safe_load(path)
    cfg = expect_kind(state, path, "vq_wav2vec_kmeans")
    require_fairseq()
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.models.wav2vec.wav2vec import Wav2VecConfig, Wav2VecModel
    from omegaconf import OmegaConf

    if state.get("args") is not None:
        model_cfg = convert_namespace_to_omegaconf(state["args"]).model
    else:
        known = {k: v for k, v in cfg.items() if k in Wav2VecConfig.__dataclass_fields__}
        model_cfg = OmegaConf.merge(OmegaConf.structured(Wav2VecConfig), known)
    model = Wav2VecModel.build_model(model_cfg, task=None)
    _load_weights(model, state["model"], path)
    return model.eval()


class _DictTask:
    """The one thing fairseq's RobertaModel.build_model asks of a task: its dictionary."""

    def __init__(self, dictionary: Any) -> None:
        self.source_dictionary = dictionary
        self.dictionary = dictionary


def load_roberta(path: str | Path, dictionary: str | Path | None = None) -> tuple[nn.Module, Any]:
    """fairseq's RoBERTa and its ``Dictionary`` (``dict.txt`` beside the checkpoint unless given)."""
    path = Path(path).expanduser()
    state = safe_load(path)
    cfg = expect_kind(state, path, "roberta")
    require_fairseq()
    from fairseq.data import Dictionary
    from fairseq.models.roberta import RobertaModel

    dict_path = Path(dictionary).expanduser() if dictionary else path.parent / "dict.txt"
    if not dict_path.is_file():
        raise UserError(f"{dict_path}: the RoBERTa's dictionary (dict.txt) is missing")
    dictionary_obj = Dictionary.load(str(dict_path))
    dictionary_obj.add_symbol("<mask>")  # as fairseq's masked_lm task does
    rows = state["model"].get("encoder.sentence_encoder.embed_tokens.weight")
    if rows is not None and int(rows.shape[0]) != len(dictionary_obj):
        raise UserError(f"{dict_path}: {len(dictionary_obj)} tokens (with <mask>), but the BERT in {path} embeds "
                        f"{int(rows.shape[0])}")
    args = state["args"] if state.get("args") is not None else _namespace(cfg)
    model = RobertaModel.build_model(args, _DictTask(dictionary_obj))
    _load_weights(model, state["model"], path)
    return model.eval(), dictionary_obj


def _load_weights(model: nn.Module, weights: dict[str, Any], path: Path) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    bad = [k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape)]
    if missing or bad:
        what = (f"missing {missing[:3]}" if missing else f"shape of {bad[0]}: {tuple(weights[bad[0]].shape)} "
                f"vs {tuple(own[bad[0]].shape)}")
        raise UserError(f"{path}: the weights do not fit the model its own configuration builds ({what})")
    model.load_state_dict({k: v for k, v in weights.items() if k not in unexpected})


def unit_token_ids(dictionary: Any, num_vars: int, groups: int, path: Path) -> torch.Tensor:
    """(num_vars ** groups,) dictionary ids of the unit tokens ``"a-b"`` (unk where a pair never occurred);
    refuses a dictionary whose unit tokens name codes the quantiser does not have."""
    table = torch.full((num_vars ** groups,), dictionary.unk(), dtype=torch.long)
    for i, sym in enumerate(dictionary.symbols):
        if sym.startswith("<") or sym.startswith("madeupword"):
            continue
        parts = sym.split("-")
        if len(parts) != groups or not all(p.isdigit() for p in parts):
            raise UserError(f"{path}: dictionary token '{sym}' is not a unit of {groups} group(s) ('a-b')")
        codes = [int(p) for p in parts]
        if max(codes) >= num_vars:
            raise UserError(f"{path}: dictionary token '{sym}' names code {max(codes)}, but the quantiser's "
                            f"codebook has {num_vars} codes per group")
        flat = 0
        for c in codes:
            flat = flat * num_vars + c
        table[flat] = i
    return table


class FairseqVQBert(nn.Module):
    """vq-wav2vec (k-means) + its RoBERTa: 16 kHz audio -> ``cls`` (B, H), ``states`` (B, T, H)."""

    def __init__(self, vq_wav2vec: str | Path, roberta: str | Path, dictionary: str | Path | None = None) -> None:
        super().__init__()
        self.vq = load_vq_wav2vec(vq_wav2vec)
        self.bert, self.dictionary = load_roberta(roberta, dictionary)
        quantizer = self.vq.vector_quantizer
        dict_path = Path(dictionary) if dictionary else Path(roberta).expanduser().parent / "dict.txt"
        self.register_buffer("unit_ids", unit_token_ids(self.dictionary, int(quantizer.num_vars),
                                                        int(quantizer.groups), dict_path), persistent=False)
        self.num_vars, self.groups = int(quantizer.num_vars), int(quantizer.groups)
        self.mask_token_id = self.dictionary.index("<mask>")
        self.pad_token_id = self.dictionary.pad()
        self.special_token_ids = [self.dictionary.bos(), self.dictionary.eos(), self.dictionary.unk()]
        self.unit_vocab_size = len(self.dictionary)
        self.token_key, self.token_length_key = "units", "unit_lengths"

    def codes(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, S) waveform -> (B, T) dictionary ids of the unit tokens (one per 10 ms)."""
        with torch.no_grad():
            z = self.vq.feature_extractor(audio)
            _, idx = self.vq.vector_quantizer.forward_idx(z)  # (B, T, groups)
        flat = torch.zeros(idx.shape[:2], dtype=torch.long, device=idx.device)
        for g in range(idx.shape[2]):
            flat = flat * self.num_vars + idx[:, :, g].long()
        return self.unit_ids[flat]

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``cls``/``hidden`` (B, H) and ``states`` (B, T, H) from ``units`` or the ``audio`` waveforms."""
        ids = batch["units"] if "units" in batch else self.codes(batch["audio"])
        b = ids.shape[0]
        bos = torch.full((b, 1), self.dictionary.bos(), dtype=ids.dtype, device=ids.device)
        eos = torch.full((b, 1), self.dictionary.eos(), dtype=ids.dtype, device=ids.device)
        x, _ = self.bert(torch.cat([bos, ids, eos], 1), features_only=True)
        return {"cls": x[:, 0], "hidden": x[:, 0], "states": x[:, 1:-1]}

    def sequence_lengths(self, batch: dict[str, Any], steps: int) -> torch.Tensor:
        """Valid unit positions per utterance (about one per 10 ms): what the feature encoder's convolutions give
        for its real samples (``audio_lengths``)."""
        audio = batch["audio"]
        samples = batch.get("audio_lengths")
        if samples is None:
            samples = torch.full((audio.shape[0],), audio.shape[1], dtype=torch.long, device=audio.device)
        n = samples.long()
        for conv in (m for m in self.vq.feature_extractor.modules() if isinstance(m, nn.Conv1d)):
            k, s, p, d = conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]
            n = torch.div(n + 2 * p - d * (k - 1) - 1, s, rounding_mode="floor") + 1
        return n.clamp(min=1, max=steps)


class FairseqVQBertArgs(Args):
    """Arguments of ``fairseq_vq_bert``: fairseq's vq-wav2vec (k-means) and RoBERTa checkpoint files."""

    vq_wav2vec: str = Field(description="vq-wav2vec_kmeans.pt (fairseq checkpoint)")
    roberta: str = Field(description="bert_kmeans.pt (fairseq RoBERTa checkpoint over the unit tokens)")
    dictionary: str | None = Field(default=None, description="its dict.txt (default: beside the RoBERTa file)")

    @field_validator("vq_wav2vec", "roberta", "dictionary")
    @classmethod
    def _exists(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).expanduser().is_file():
            raise ValueError(f"no such file: {v}")
        return v


def build_fairseq_vq_bert(args: FairseqVQBertArgs, info: dict[str, Any] | None = None) -> FairseqVQBert:
    """fairseq's vq-wav2vec + RoBERTa over the batch's 16 kHz waveforms (seed 000's teacher)."""
    return FairseqVQBert(args.vq_wav2vec, args.roberta, args.dictionary)


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("model", "fairseq_vq_bert", build_fairseq_vq_bert, args=FairseqVQBertArgs,
                 doc="fairseq vq-wav2vec (k-means) + its RoBERTa, loaded safely; reads 16 kHz waveforms "
                     "(outputs cls, hidden, states). Needs the extra 'fairseq'.",
                 reads=("audio", "audio_lengths"))
