"""Speech teachers from Hugging Face transformers, loaded from a local directory (``save_pretrained``).

``hf_speech`` names a directory holding one of:

* ``Wav2Vec2ForCTC``, ``HubertForCTC``, ``WavLMForCTC`` -- per-frame CTC logits over the model's own
  vocabulary (``vocab.json``), and hidden states;
* ``WhisperForConditionalGeneration`` -- encoder states, and greedy transcripts with confidence
  (:meth:`HFSpeech.transcribe`).

They read the batch's 16 kHz waveforms (``audio``/``audio_lengths``; the data loads them because this family
declares it reads them), never the fbank features. Nothing is downloaded: loading is offline
(``HF_HUB_OFFLINE=1``, ``local_files_only=True``) and safe: ``model.safetensors``, or a ``pytorch_model.bin`` only
when ``torch.load(weights_only=True)`` reads it (a pickle that would run code is refused). A directory that is
missing, holds another architecture, has no tokenizer/vocabulary, or a feature extractor whose sampling rate
is not 16 kHz is refused when the spec is validated (one line, exit 2).

Outputs, per batch:

* CTC models: ``logits`` and ``log_probs`` (B, T', V) with the columns reordered to the project's convention
  (the CTC blank -- the model's pad token -- LAST; ``|`` written ``▁``; letters lower-cased when the vocabulary
  has one case), ``logit_lengths`` (B,), ``states`` (B, T', H) (the last hidden layer, or ``layer``) with
  ``state_lengths``. ``units`` lists the reordered vocabulary: ``data.tokenizer: {from_teacher: NAME}`` adopts
  it, so a student's logits are over the same units and ``logit_kd`` can compare them.
* Whisper: ``states`` (B, T', H), the encoder's output over the real audio (Whisper's 30 s window cut to
  ``ceil(samples / 320)`` frames, 50 per second) with ``state_lengths``.

Both kinds transcribe: :meth:`HFSpeech.transcribe` decodes 16 kHz waveforms greedily and gives each transcript a
confidence, the mean log-probability of its tokens (what ``sequence_kd``'s ``min_confidence`` reads), and
:meth:`HFSpeech.fingerprint` keys the transcript store, so ``sequence_kd`` takes an ``hf_speech`` teacher as it
takes ``whisper_ct2``; :meth:`HFSpeech.transcribe_batch` gives a batch's transcripts normalised as the data
normalises transcripts.

The model is frozen (``requires_grad`` stays as built, but a stage trains it only if it lists it under
``train``) and its outputs can be cached (``cache: true`` of ``logit_kd``/``representation_kd``), so a heavy
teacher runs once per utterance.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from compressor.core.errors import UserError
from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Args, Registry
from compressor.core.teachers import safe_torch_load
from compressor.data.tokenizers import BLANK, WORD_BOUNDARY
from compressor.external.hf_text import _offline
from compressor.teaching.transcripts import Transcript

CTC_ARCHITECTURES = ("Wav2Vec2ForCTC", "HubertForCTC", "WavLMForCTC")
WHISPER_ARCHITECTURES = ("WhisperForConditionalGeneration",)
ARCHITECTURES = CTC_ARCHITECTURES + WHISPER_ARCHITECTURES
SAMPLE_RATE = 16000
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not readable JSON ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def feature_extractor_config(p: Path) -> tuple[Path, dict[str, Any]]:
    """The feature extractor's settings: ``preprocessor_config.json``, or the ``feature_extractor`` of a
    ``processor_config.json`` (as transformers 5 saves a processor)."""
    if (p / "preprocessor_config.json").is_file():
        return p / "preprocessor_config.json", _read_json(p / "preprocessor_config.json")
    if (p / "processor_config.json").is_file():
        fe = _read_json(p / "processor_config.json").get("feature_extractor")
        if isinstance(fe, dict):
            return p / "processor_config.json", fe
    raise ValueError(f"{p} has no feature extractor settings (preprocessor_config.json): save the processor or "
                     f"feature extractor with save_pretrained beside the model")


def inspect_dir(path: str) -> dict[str, Any]:
    """Check a transformers speech directory without loading its weights; its architecture and files.

    A :class:`ValueError` (one line) for every reason it cannot serve: see the module docstring."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ValueError(f"transformers model directory not found: {path}" if not p.exists() else
                         f"expected a transformers model directory (save_pretrained), got a file: {path}")
    if not (p / "config.json").is_file():
        raise ValueError(f"{path} is not a transformers model directory: it has no config.json")
    config = _read_json(p / "config.json")
    archs = config.get("architectures") or []
    arch = next((a for a in archs if a in ARCHITECTURES), None)
    if arch is None:
        raise ValueError(f"{path} holds a {', '.join(archs) or config.get('model_type', '?')} model; hf_speech "
                         f"loads {', '.join(ARCHITECTURES)}")
    weights = next((p / f for f in WEIGHT_FILES if (p / f).is_file()), None)
    if weights is None:
        raise ValueError(f"{path} has a config but no weights (model.safetensors or pytorch_model.bin)")
    if weights.suffix == ".bin":
        try:
            safe_torch_load(weights, str(weights), "; re-save it as model.safetensors")
        except UserError as e:
            raise ValueError(str(e)) from None
    pre, extractor = feature_extractor_config(p)
    rate = extractor.get("sampling_rate")
    if rate != SAMPLE_RATE:
        raise ValueError(f"{pre}: sampling_rate {rate}, but the data gives 16 kHz waveforms (a teacher for "
                         f"16000 Hz audio is needed)")
    if arch in CTC_ARCHITECTURES:
        if not (p / "vocab.json").is_file():
            raise ValueError(f"{path} has no vocab.json: a CTC model's output units need its tokenizer's "
                             f"vocabulary (save the processor or tokenizer beside the model)")
    elif not any((p / f).is_file() for f in ("tokenizer.json", "vocab.json")):
        raise ValueError(f"{path} has no tokenizer (tokenizer.json or vocab.json): Whisper's transcripts need it")
    return {"architecture": arch, "config": config, "weights": weights}


def ctc_units(path: str) -> tuple[list[str], list[int]]:
    """A CTC model's units in the project's convention, and the permutation of its logits that gives them.

    The blank is the model's pad token (``config.pad_token_id``), moved last; ``|`` (the word delimiter) becomes
    ``▁``; letters are lower-cased when the vocabulary has one case only."""
    p = Path(path).expanduser()
    vocab = _read_json(p / "vocab.json")
    config = _read_json(p / "config.json")
    size = int(config.get("vocab_size", len(vocab)))
    by_id: dict[int, str] = {}
    for tok, i in vocab.items():
        if not isinstance(i, int):
            raise ValueError(f"{p / 'vocab.json'}: token {tok!r} has a non-integer id {i!r}")
        by_id[i] = tok
    if sorted(by_id) != list(range(size)):
        raise ValueError(f"{p / 'vocab.json'} has {len(by_id)} tokens with ids {min(by_id, default=0)}.."
                         f"{max(by_id, default=0)}, but the model outputs {size} units (config vocab_size)")
    blank = config.get("pad_token_id")
    if not isinstance(blank, int) or not 0 <= blank < size:
        raise ValueError(f"{p / 'config.json'}: pad_token_id {blank!r} is not a unit of the model: the CTC blank "
                         f"is unknown")
    order = [i for i in range(size) if i != blank] + [blank]
    letters = [t for t in by_id.values() if len(t) == 1 and t.isalpha()]
    one_case = bool(letters) and (all(t.isupper() for t in letters) or all(t.islower() for t in letters))
    units = []
    for i in order[:-1]:
        tok = by_id[i]
        tok = WORD_BOUNDARY if tok in ("|", " ", WORD_BOUNDARY) else (tok.lower() if one_case else tok)
        units.append(tok)
    return units + [BLANK], order


class HFSpeechArgs(Args):
    """Arguments of ``hf_speech``."""

    path: str = Field(description="a local directory written by save_pretrained (model, feature extractor and "
                                  "tokenizer/vocab.json)")
    layer: int | None = Field(default=None, description="the hidden layer given as 'states' (default: the last; "
                                                        "0 is the feature projection, negative counts from the end)")
    max_new_tokens: int = Field(default=96, ge=1, le=440, description="Whisper: longest greedy transcript")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        inspect_dir(v)
        return v


def units_of(args: HFSpeechArgs) -> list[str] | None:
    """The output units of a CTC directory (None for Whisper, whose outputs are states and transcripts)."""
    if inspect_dir(args.path)["architecture"] not in CTC_ARCHITECTURES:
        return None
    return ctc_units(args.path)[0]


class HFSpeech(nn.Module):
    """A transformers speech model over the batch's 16 kHz waveforms (see the module docstring)."""

    def __init__(self, args: HFSpeechArgs) -> None:
        super().__init__()
        from compressor.core.teachers import files_hash

        _offline()
        import transformers

        found = inspect_dir(args.path)
        self.architecture: str = found["architecture"]
        path = str(Path(args.path).expanduser())
        cls = getattr(transformers, self.architecture)
        self.hf = cls.from_pretrained(path, local_files_only=True,
                                      use_safetensors=found["weights"].suffix == ".safetensors")
        self.hf.eval()
        #: transformers maps ``model.safetensors`` into memory instead of copying it: the weights are clean file
        #: pages already, so a cached teacher needs no offloading (see :func:`compressor.core.teachers.offload`)
        self.weights_mapped = found["weights"].suffix == ".safetensors"
        self.layer = args.layer
        self.max_new_tokens = args.max_new_tokens
        self.is_ctc = self.architecture in CTC_ARCHITECTURES
        pre = feature_extractor_config(Path(path))[1]
        self.do_normalize = bool(pre.get("do_normalize", False))
        self.units: list[str] | None = None
        if self.is_ctc:
            self.units, order = ctc_units(path)
            self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)
            self.blank_id = len(order) - 1
            self.vocab_size = len(order)
            # wav2vec 2.0 with group norm in its feature encoder is fed zero padding, not a mask (as
            # transformers documents); layer-norm models (and HuBERT/WavLM large) take the attention mask
            self.use_mask = getattr(self.hf.config, "feat_extract_norm", "layer") == "layer"
            self.tokenizer = None
        else:
            self.feature_extractor = transformers.WhisperFeatureExtractor(
                **{k: v for k, v in pre.items() if k not in ("feature_extractor_type", "processor_class")})
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        names = [f for f in os.listdir(path) if f.endswith((".json", ".txt", ".safetensors", ".bin", ".model"))]
        #: SHA-256 of the files the teacher came from (keys cached outputs together with the weights)
        self.source_hash = files_hash(Path(path) / f for f in names)

    # -- waveforms --------------------------------------------------------------------------------------
    def _waves(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if "audio" not in batch:
            raise KeyError("hf_speech reads 16 kHz waveforms (batch key 'audio'), which this batch lacks")
        audio = batch["audio"].float()
        lengths = batch.get("audio_lengths")
        if lengths is None:
            lengths = torch.full((audio.shape[0],), audio.shape[1], dtype=torch.long, device=audio.device)
        return audio, lengths.to(audio.device)

    def _normalized(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Zero-mean unit-variance per utterance over its real samples (the feature extractor's do_normalize)."""
        mask = (torch.arange(audio.shape[1], device=audio.device)[None, :] < lengths[:, None]).to(audio.dtype)
        if not self.do_normalize:
            return audio * mask
        n = mask.sum(1, keepdim=True).clamp_min(1)
        mean = (audio * mask).sum(1, keepdim=True) / n
        var = (((audio - mean) * mask) ** 2).sum(1, keepdim=True) / n
        return (audio - mean) / torch.sqrt(var + 1e-7) * mask

    def _whisper_features(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        waves = [audio[i, : int(n)].cpu().numpy() for i, n in enumerate(lengths)]
        feats = self.feature_extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        return feats.to(audio.device, dtype=next(self.hf.parameters()).dtype)

    # -- outputs ----------------------------------------------------------------------------------------
    def frames(self, samples: torch.Tensor) -> torch.Tensor:
        """Output frames of utterances of ``samples`` samples (50 per second for every supported model)."""
        if self.is_ctc:
            return self.hf._get_feat_extract_output_lengths(samples).long()
        return torch.clamp(torch.div(samples + 319, 320, rounding_mode="floor"), max=1500).long()

    def sequence_lengths(self, batch: dict[str, Any], steps: int) -> torch.Tensor:
        """Valid frames of each utterance's ``states``/``logits`` (for poolings and KD losses over sequences)."""
        _, lengths = self._waves(batch)
        return self.frames(lengths).clamp(max=steps)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        audio, lengths = self._waves(batch)
        if self.is_ctc:
            x = self._normalized(audio, lengths)
            mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]).long()
            out = self.hf(x, attention_mask=mask if self.use_mask else None, output_hidden_states=True)
            logits = out.logits.index_select(-1, self.order)
            frames = self.frames(lengths).clamp(max=logits.shape[1])
            states = out.hidden_states[-1 if self.layer is None else self.layer]
            return {"logits": logits, "log_probs": F.log_softmax(logits.float(), dim=-1), "logit_lengths": frames,
                    "states": states, "state_lengths": frames}
        enc = self.hf.model.encoder(self._whisper_features(audio, lengths), output_hidden_states=True)
        states = enc.last_hidden_state if self.layer is None else enc.hidden_states[self.layer]
        frames = self.frames(lengths).clamp(max=states.shape[1])
        t = int(frames.max())
        return {"states": states[:, :t], "state_lengths": frames}

    def fingerprint(self) -> str:
        """sha256 over the teacher's files and its decoding settings (the key of cached transcripts)."""
        import hashlib

        return hashlib.sha256(f"hf_speech;{self.source_hash};greedy;{self.max_new_tokens}".encode()).hexdigest()

    @torch.no_grad()
    def transcribe(self, waves: Sequence[torch.Tensor | np.ndarray]) -> list[Transcript]:
        """Greedy transcripts of 16 kHz waveforms with their confidence, the mean log-probability of their tokens:
        for Whisper the generated tokens (the end-of-text token included), for CTC log P(y|x) / (len(y) + 1)."""
        from compressor.families.asr.greedy import ctc_greedy
        from compressor.families.asr.metrics import detokenize

        out = []
        dev = next(self.hf.parameters()).device
        for wave in waves:
            audio = torch.as_tensor(np.asarray(wave, np.float32) if not isinstance(wave, torch.Tensor) else wave)
            audio = audio.detach().float().reshape(1, -1).to(dev)
            lengths = torch.tensor([audio.shape[1]], device=dev)
            if self.is_ctc:
                res = self.forward({"audio": audio, "audio_lengths": lengths})
                log_probs, n = res["log_probs"].cpu(), res["logit_lengths"].cpu()
                ids = ctc_greedy(log_probs, n, self.blank_id)[0]
                nll = F.ctc_loss(log_probs.transpose(0, 1), torch.tensor([ids or [0]]), n, torch.tensor([len(ids)]),
                                 blank=self.blank_id, reduction="sum", zero_infinity=True)
                assert self.units is not None
                out.append(Transcript(detokenize(ids, self.units, self.blank_id), -float(nll) / (len(ids) + 1)))
                continue
            room = int(getattr(self.hf.config, "max_target_positions", 448)) - 4  # start/language/task prompt
            gen = self.hf.generate(self._whisper_features(audio, lengths),
                                   max_new_tokens=min(self.max_new_tokens, room), do_sample=False, num_beams=1,
                                   output_scores=True, return_dict_in_generate=True)
            scores = self.hf.compute_transition_scores(gen.sequences, gen.scores, normalize_logits=True)[0]
            assert self.tokenizer is not None
            text = self.tokenizer.decode(gen.sequences[0, -len(gen.scores):], skip_special_tokens=True)
            finite = scores[torch.isfinite(scores)]
            out.append(Transcript(" ".join(text.split()), float(finite.mean()) if finite.numel() else float("-inf")))
        return out

    def transcribe_batch(self, batch: dict[str, Any]) -> list[str]:
        """Greedy transcripts of the batch's waveforms, normalised as the data normalises transcripts."""
        from compressor.data.text import normalize

        audio, lengths = self._waves(batch)
        return [normalize(t.text) for t in self.transcribe([audio[i, : int(n)] for i, n in enumerate(lengths)])]


def build_hf_speech(args: HFSpeechArgs, info: dict[str, Any] | None = None) -> HFSpeech:
    """A transformers speech model (wav2vec 2.0 / HuBERT / WavLM CTC, Whisper) from a local directory."""
    return HFSpeech(args)


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("model", "hf_speech", build_hf_speech, args=HFSpeechArgs,
                 doc="A transformers speech teacher from a local directory: wav2vec 2.0 / HuBERT / WavLM CTC "
                     "(logits, states) or Whisper (encoder states, transcripts); reads 16 kHz waveforms.",
                 reads=("audio", "audio_lengths"), units=units_of)
