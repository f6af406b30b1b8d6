"""English speech synthesisers other than espeak-ng, for evaluation sets that no training corpus resembles.

Every training corpus of the project is spoken by espeak-ng (:mod:`compressor.corpora.synth`). The
synthesisers here use other methods and ship their voice data inside their wheels (no download at run time):

* ``pico``: SVOX Pico (``py-nanotts``), an HMM-based statistical parametric synthesiser with its own
  lingware: American (``en-US``) and British (``en-GB``) English, 16 kHz;
* ``hibari``: Hibari (``hibari-tts``), a small neural model distilled from Kokoro with its own lexicon-based
  G2P: the American voice ``heart`` (the one its wheel bundles; its other voices are downloads, never used
  here), 24 kHz.

Both come with the ``heldout`` extra (``pip install "compressor[heldout]"``), pinned to the versions tested;
the versions installed are part of the held-out corpus's cache key. Each speaker is a voice of one
synthesiser at one speaking rate (and, for Pico, one pitch).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
from dataclasses import dataclass
from typing import Any

import numpy as np

from compressor.core.errors import UserError

EXTRA = "heldout"


@dataclass(frozen=True)
class OtherVoice:
    """One speaker of a non-espeak synthesiser: its voice, speaking-rate factor and pitch factor."""

    synthesizer: str
    name: str
    speed: float = 1.0
    pitch: float = 1.0

    @property
    def speaker_id(self) -> str:
        return f"{self.synthesizer}_{self.name}_s{self.speed:g}_p{self.pitch:g}"


@dataclass(frozen=True)
class SynthInfo:
    """What a spec names (``name``), where it comes from (``distribution``, imported as ``module``), its
    method, and its speakers in the order a corpus takes them (the first ``voices`` of them)."""

    name: str
    distribution: str
    module: str
    method: str
    voices: tuple[OtherVoice, ...]


#: Pico speakers: both accents at each (speed, pitch), accents alternating so any first few mix them.
_PICO_PROSODY = ((1.0, 1.0), (0.9, 0.85), (1.1, 1.2), (0.95, 1.1), (1.05, 0.9), (0.85, 1.0))
_HIBARI_SPEEDS = (1.0, 0.9, 1.1, 0.85, 1.15)

SYNTHESIZERS: dict[str, SynthInfo] = {
    "pico": SynthInfo("pico", "py-nanotts", "py_nanotts", "SVOX Pico: HMM-based statistical parametric synthesis",
                      tuple(OtherVoice("pico", accent, speed, pitch) for speed, pitch in _PICO_PROSODY
                            for accent in ("en-US", "en-GB"))),
    "hibari": SynthInfo("hibari", "hibari-tts", "hibari", "Hibari: neural synthesis distilled from Kokoro",
                        tuple(OtherVoice("hibari", "heart", speed) for speed in _HIBARI_SPEEDS)),
}

#: Pico's output level at volume 1 clips about 1% of the samples; half of it peaks near 0.6.
_PICO_VOLUME = 0.5
#: glibc's mallopt parameter and the allocation size from which memory always comes from the kernel, zeroed
_M_MMAP_THRESHOLD = -3
_MMAP_FROM = 128 * 1024


def _zeroed_large_allocations() -> bool:
    """Make every large allocation of this process fresh zeroed memory (glibc; False elsewhere).

    py-nanotts allocates Pico's working memory with ``malloc`` on every call and Pico reads some of it before
    writing it. glibc raises its mmap threshold after the first such block is freed, so later blocks come
    from the heap holding the previous utterance's data, and the audio would depend on what was spoken
    before. A fixed threshold keeps every block mmapped, hence zeroed: the same text gives the same audio."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM))
    except (OSError, AttributeError):
        return False


def synth_info(name: str) -> SynthInfo:
    try:
        return SYNTHESIZERS[name]
    except KeyError:
        raise UserError(f"unknown synthesizer '{name}'; available: {', '.join(SYNTHESIZERS)}") from None


def require(names: list[str], where: str = "synthesizers") -> dict[str, str]:
    """The installed version of each synthesiser's package; a :class:`UserError` naming the extra to install
    when one is missing."""
    versions = {}
    for name in names:
        info = synth_info(name)
        try:
            importlib.import_module(info.module)
            versions[name] = importlib.metadata.version(info.distribution)
        except (ImportError, importlib.metadata.PackageNotFoundError) as e:
            raise UserError(f"{where}: synthesizer '{name}' needs the '{info.distribution}' package, which is not "
                            f"installed ({e}): pip install \"compressor[{EXTRA}]\" (or pip install -e "
                            f"\".[{EXTRA}]\" in a checkout)") from None
    return versions


class OtherSynth:
    """Speaks text with the synthesisers above; each engine is loaded on first use (one per process).

    Loading Pico fixes this process's malloc mmap threshold (see :func:`_zeroed_large_allocations`): use it in
    a worker process, as the held-out corpus does."""

    def __init__(self) -> None:
        self._engines: dict[str, Any] = {}

    def _engine(self, name: str) -> Any:
        if name not in self._engines:
            require([name])
            if name == "pico":
                from py_nanotts import NanoTTS
                _zeroed_large_allocations()
                self._engines[name] = NanoTTS()
            else:
                from hibari import Hibari
                from hibari.voices import VOICES
                if not VOICES.get("heart", {}).get("bundled"):
                    raise UserError("hibari: this hibari-tts does not bundle its 'heart' voice; install the "
                                    f"version the '{EXTRA}' extra pins")
                self._engines[name] = Hibari(voice="heart", threads=1)
        return self._engines[name]

    def synthesize(self, text: str, voice: OtherVoice, seed: int = 0) -> tuple[np.ndarray, int]:
        """``(float32 samples in [-1, 1], sample rate)``; the same arguments give the same audio."""
        engine = self._engine(voice.synthesizer)
        if voice.synthesizer == "pico":
            pcm = engine.speak(text, voice=voice.name, speed=voice.speed, pitch=voice.pitch, volume=_PICO_VOLUME)
            return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, 16000
        # hibari: its noise excitation is drawn from `seed`
        audio = engine(text, speed=voice.speed, seed=seed)
        return np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0), int(engine.sample_rate)
