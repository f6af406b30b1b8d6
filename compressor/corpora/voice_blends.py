"""Blended voice variants: new espeak-ng voices composed from the settings of the training variants.

An espeak-ng variant is a small text file of settings: formant frequencies, heights and widths, pitch, echo,
spectral tone, voicing and consonant levels, breathiness, flutter, roughness, the Klatt synthesiser's mode.
The corpora's training speakers use 37 of the synthesiser's variants; a *blend* (variant name ``blend<N>``)
takes each group of settings from a training variant drawn by ``N`` (a variant without that group gives
espeak's default), then spreads them: the frequencies of formants 1-5 move by up to ±12% and their heights by
x0.7-1.2, and every blend writes a voicing level (x0.7-1.3) and consonant levels (x0.5-1.5 each) around its
donor's (around 100 where the donor sets none). A corpus can so train on as many distinct voices as it asks for,
spread beyond the 37, while no held-out variant's settings are ever read. Same ``N``, same file, same audio.

espeak-ng finds a variant only in its data folder, which is inside an installed package: blends are written to
private data folders (``$TMPDIR/compressor-espeak-<uid>-<hash>-r<recipe>-g<K>``) that link to every file of the
installed one. espeak-ng lists at most 349 voices and variants, so each folder holds one group of ``GROUP`` blends.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
from pathlib import Path

from compressor.corpora.voices import BLEND_PREFIX, TRAIN_VARIANTS, is_blend

#: Groups of settings a blend takes whole from one donor variant (a formant set only makes sense as a set).
GROUPS: dict[str, tuple[str, ...]] = {
    "formants": ("formant",),
    "pitch": ("pitch",),
    "echo": ("echo",),
    "tone": ("tone",),
    "voicing": ("voicing",),
    "consonants": ("consonants",),
    "breath": ("breath", "breathw"),
    "flutter": ("flutter",),
    "roughness": ("roughness",),
    "klatt": ("klatt",),
    "stress": ("intonation", "stressAdd", "stressAmp", "stressLength"),
}
FORMANT_SHIFT = 0.12
FORMANT_HEIGHT = (0.7, 1.2)
MOVED_FORMANTS = ("1", "2", "3", "4", "5")
#: Settings every blend writes, spread around the donor's values (around 100 where the donor has no such line;
#: espeak-ng's own defaults are voicing 100, consonants 90 100).
SPREAD: dict[str, tuple[tuple[int, ...], float, float]] = {
    "consonants": ((100, 100), 0.5, 1.5),
    "voicing": ((100,), 0.7, 1.3),
}
#: Bump when what a blend's file holds changes: part of the cache key of corpora with blends and of the private
#: data folders' names (a folder keeps the blend files it was given).
RECIPE = 2
GROUP = 50  # blends per private data folder (espeak-ng's voice list holds 349 entries, 104 are installed variants)


def group_of(variant: str) -> int:
    """The private data folder a blend lives in."""
    return int(variant[len(BLEND_PREFIX):]) // GROUP


def _variant_lines(data: Path, variant: str) -> dict[str, list[str]]:
    """A variant file's setting lines by group (lines of no group, e.g. ``name``, left out)."""
    text = (data / "voices" / "!v" / variant).read_text(encoding="latin-1")
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        for group, keys in GROUPS.items():
            if words[0] in keys:
                out.setdefault(group, []).append(" ".join(words))
    return out


def blend_text(variant: str, data: Path) -> str:
    """The espeak-ng variant file of blend ``variant``, from the training variants' files under ``data``."""
    if not is_blend(variant):
        raise ValueError(f"{variant!r} is not a blend name (blend<N>)")
    rng = random.Random(f"voice-blend:{variant}")
    donors = sorted(v for v in TRAIN_VARIANTS if v)  # never a held-out variant
    lines = ["language variant", f"name {variant}"]
    for group in GROUPS:
        taken = _variant_lines(data, rng.choice(donors)).get(group, [])
        if group in SPREAD:
            default, low, high = SPREAD[group]
            values = [int(w) for w in taken[0].split()[1:]] if taken else list(default)
            lines.append(" ".join([group, *(str(max(1, round(v * rng.uniform(low, high)))) for v in values)]))
            continue
        for line in taken:
            words = line.split()
            if group == "formants" and len(words) >= 4 and words[1] in MOVED_FORMANTS:
                words[2] = str(max(1, round(int(words[2]) * rng.uniform(1 - FORMANT_SHIFT, 1 + FORMANT_SHIFT))))
                words[3] = str(max(1, round(int(words[3]) * rng.uniform(*FORMANT_HEIGHT))))
            lines.append(" ".join(words))
    return "\n".join(lines) + "\n"


def private_data_dir(data: str, group: int = 0) -> str:
    """Private espeak-ng data folder ``group``: links to every file of ``data``, and room for that group's blends
    (made once, shared by every process of the machine's user; folder creation and blend files are atomic)."""
    src = Path(data)
    key = hashlib.sha1(str(src.resolve()).encode()).hexdigest()[:12]
    user = os.getuid() if hasattr(os, "getuid") else 0
    dest = Path(tempfile.gettempdir()) / f"compressor-espeak-{user}-{key}-r{RECIPE}-g{group}"
    if (dest / "voices" / "!v").is_dir():
        return str(dest)
    work = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    for entry in src.iterdir():
        if entry.name != "voices":
            (work / entry.name).symlink_to(entry)
    for entry in (src / "voices").iterdir():
        if entry.name != "!v":
            (work / "voices").mkdir(exist_ok=True)
            (work / "voices" / entry.name).symlink_to(entry)
    (work / "voices" / "!v").mkdir(parents=True)
    for entry in (src / "voices" / "!v").iterdir():
        (work / "voices" / "!v" / entry.name).symlink_to(entry)
    try:
        work.rename(dest)
    except OSError:  # another process made it first: use theirs
        shutil.rmtree(work)  # removes the links, never what they point to
    return str(dest)


def ensure_blend(variant: str, private: str, data: str) -> None:
    """Write blend ``variant``'s file into the private data folder ``private`` (its group's) unless it is there."""
    path = Path(private) / "voices" / "!v" / variant
    if path.exists():
        return
    tmp = path.with_name(f".{variant}.{os.getpid()}")
    tmp.write_text(blend_text(variant, Path(data)), encoding="latin-1")
    os.replace(tmp, path)
