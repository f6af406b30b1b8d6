"""Teachers from outside the project: pre-trained models read from their own file formats.

* ``whisper_ct2`` (:mod:`compressor.teachers.whisper_ct2`): a CTranslate2 Whisper run by ``faster-whisper``;
  transcripts with a confidence (mean token log-probability). Needs the ``whisper`` extra.
* ``onnx_transducer`` / ``onnx_ctc`` (:mod:`compressor.teachers.onnx_sherpa`): ONNX models in sherpa-onnx's
  NeMo layouts (every ``compressor export`` of an RNN-T or CTC model is one) run by onnxruntime: per-frame
  logits, encoder outputs and greedy transcripts.

Every teacher here is frozen (it has no trainable parameters) and offers
``transcribe(waves) -> list[Transcript]`` on 16 kHz mono waveforms and ``fingerprint()`` (a hash of its files),
which :mod:`compressor.teachers.transcripts` uses to cache transcripts and the ``sequence_kd`` strategy to train
a student on them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Transcript:
    """A teacher's transcript of one utterance; ``confidence`` is its mean token log-probability (<= 0)."""

    text: str
    confidence: float
