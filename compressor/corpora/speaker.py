"""One synthetic speaker: an espeak-ng voice, a variant and prosody (:class:`Voice`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an espeak voice (``en-us``, ``de``...), a variant (``m3``, ``f2``... or "")
    and prosody (``rate`` in words per minute, 80..450; ``pitch`` and ``pitch_range`` 0..100)."""

    name: str
    variant: str = ""
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50

    @property
    def espeak_name(self) -> str:
        return f"{self.name}+{self.variant}" if self.variant else self.name

    @property
    def speaker_id(self) -> str:
        tail = f"_g{self.pitch_range}" if self.pitch_range != 50 else ""
        return f"{self.name}_{self.variant or 'default'}_r{self.rate}_p{self.pitch}{tail}"
