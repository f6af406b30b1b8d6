"""One statistics for every benchmark claim: paired differences by seed with 95% t-intervals, the unpaired
mean ± std beside them, and one verdict rule, printed the same way on every RESULTS page.

The benchmarks' designs are paired: every row of one seed shares that seed's data and initialisation, so a
claim "A beats B" is judged on the per-seed differences ``d_s = A_s - B_s`` (signed so that a positive ``d``
is what the claim says), not on the two unpaired spreads. With ``n`` seeds, the 95% t-interval is

    mean(d) ± t(0.975, n - 1) * std(d) / sqrt(n)

and the verdict is

* **holds** when the whole interval is above zero,
* **does not hold** when the whole interval is below zero,
* **inside the interval** when zero is inside it: the seeds cannot tell (a single run, n = 1, has no
  interval, i.e. an unbounded one, so it is always inside the interval).

A single value prints as ``m (n = 1)``, never as ``m ± 0.0``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from scipy import stats as _scipy

CONFIDENCE = 0.95
HOLDS, FAILS, INSIDE = "holds", "does not hold", "inside the interval"
RULE = ("Verdicts: paired differences by seed (positive = as the claim says), mean with its 95% t-interval; "
        "**holds** when the interval lies above zero, **does not hold** when it lies below, **inside the "
        "interval** when it contains zero (always so for n = 1). The unpaired mean ± std (sample std over seeds) "
        "of each side is shown beside it.")

Values = Sequence[float] | Mapping[int, float]


@dataclass(frozen=True)
class Spread:
    """The unpaired summary of one row: ``n`` runs, their mean and sample std (None for n = 1)."""

    n: int
    mean: float
    std: float | None

    def text(self, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
        """``m ± s (n = k)``, or ``m (n = 1)`` for a single run; ``-`` when there is none."""
        if self.n == 0:
            return "-"
        m = f"{self.mean * scale:.{digits}f}{unit}"
        if self.std is None:
            return f"{m} (n = 1)"
        return f"{m} ± {self.std * scale:.{digits}f}{unit} (n = {self.n})"


def spread(values: Values) -> Spread:
    """Mean and sample standard deviation of ``values`` (a list, or a mapping seed -> value)."""
    vals = [float(v) for v in (values.values() if isinstance(values, Mapping) else values)]
    if not vals:
        return Spread(0, math.nan, None)
    return Spread(len(vals), statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None)


def fmt(values: Values, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
    """:meth:`Spread.text` of ``values``: the one way every table prints a row's runs."""
    return spread(values).text(scale, digits, unit)


@dataclass(frozen=True)
class Interval:
    """Per-seed differences: their mean, the 95% t-interval (unbounded for n < 2) and the verdict."""

    n: int
    mean: float
    low: float
    high: float
    seeds: tuple[int, ...] = field(default=())

    @property
    def verdict(self) -> str:
        if self.n == 0:
            return "not measured"
        if self.low > 0:
            return HOLDS
        if self.high < 0:
            return FAILS
        return INSIDE

    def text(self, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
        """``+8.7 [+6.9, +10.5] (n = 3)``; ``+8.7 (n = 1, no interval)`` for a single pair."""
        if self.n == 0:
            return "-"
        m = f"{self.mean * scale:+.{digits}f}{unit}"
        if self.n < 2:
            return f"{m} (n = 1, no interval)"
        return f"{m} [{self.low * scale:+.{digits}f}, {self.high * scale:+.{digits}f}] (n = {self.n})"


def interval(diffs: Values, confidence: float = CONFIDENCE) -> Interval:
    """The t-interval of the mean of per-seed differences (a list, or a mapping seed -> difference)."""
    seeds = tuple(sorted(diffs)) if isinstance(diffs, Mapping) else tuple(range(len(diffs)))
    d = [float(diffs[s]) for s in seeds] if isinstance(diffs, Mapping) else [float(v) for v in diffs]
    if not d:
        return Interval(0, math.nan, -math.inf, math.inf, ())
    mean = statistics.fmean(d)
    if len(d) < 2:
        return Interval(1, mean, -math.inf, math.inf, seeds)
    half = float(_scipy.t.ppf(0.5 + confidence / 2, len(d) - 1)) * statistics.stdev(d) / math.sqrt(len(d))
    return Interval(len(d), mean, mean - half, mean + half, seeds)


def by_seed(values: Values) -> dict[int, float]:
    """A mapping seed -> value; a list is read in seed order (index = seed)."""
    if isinstance(values, Mapping):
        return {int(k): float(v) for k, v in values.items()}
    return {i: float(v) for i, v in enumerate(values)}


def paired(a: Values, b: Values, higher_is_better: bool = True) -> Interval:
    """The claim "a is better than b", over the seeds both have: ``a - b`` per seed (``b - a`` when lower is
    better, e.g. an error rate), so a positive difference is what the claim says."""
    sa, sb = by_seed(a), by_seed(b)
    sign = 1.0 if higher_is_better else -1.0
    return interval({s: sign * (sa[s] - sb[s]) for s in sorted(sa.keys() & sb.keys())})


@dataclass
class Claim:
    """One claim of a paper, judged by :func:`interval` over per-seed differences."""

    source: str
    text: str
    diff: Interval
    sides: str = ""  # the unpaired mean ± std of what is compared, e.g. "KD 11.7 ± 1.2 vs alone 20.3 ± 0.3"
    note: str = ""
    scale: float | None = None  # this claim's own units (default: the table's)
    unit: str | None = None

    @property
    def verdict(self) -> str:
        return self.diff.verdict

    def as_dict(self, scale: float = 1.0, digits: int = 1, unit: str = "") -> dict[str, str | int | float]:
        return {"source": self.source, "claim": self.text, "verdict": self.verdict,
                "paired_difference": self.diff.text(scale, digits, unit), "n": self.diff.n,
                "mean_difference": self.diff.mean, "low": self.diff.low, "high": self.diff.high,
                "unpaired": self.sides, "note": self.note}


def note_earlier(claims: Sequence[Claim], earlier: Mapping[str, str], rule: str) -> list[Claim]:
    """Note each claim's verdict under an earlier rule (``earlier``: claim text, or its start, -> verdict)
    where it differs from today's; returns the claims whose verdict changed."""
    changed = []
    for c in claims:
        old = next((v for k, v in earlier.items() if c.text.startswith(k[:30]) or k.startswith(c.text[:30])), None)
        if old is not None and old.split(",")[0].split(" (")[0] != c.verdict:
            c.note = (c.note + "; " if c.note else "") + f"was \"{old}\" ({rule})"
            changed.append(c)
    return changed


def claims_table(claims: Sequence[Claim], scale: float = 1.0, digits: int = 1, unit: str = "") -> list[str]:
    """The claims as one markdown table, with the rule above it: the same layout on every RESULTS page."""
    lines = [RULE, "", "| Source | Claim | Verdict | paired difference [95% CI] | unpaired mean ± std | Note |",
             "|---|---|---|---|---|---|"]
    for c in claims:
        own = c.diff.text(scale if c.scale is None else c.scale, digits, unit if c.unit is None else c.unit)
        lines.append(f"| {c.source} | {c.text} | **{c.verdict}** | {own} | "
                     f"{c.sides} | {c.note} |")
    return lines


def measured_header(title: str, when: str, commit: str, compute: str, command: str = "",
                    caveats: Sequence[str] = ()) -> list[str]:
    """The lines that open a table: when, on what commit, with what compute it was measured, and caveats."""
    lines = [f"### {title}", "", f"Measured {when} on commit `{commit}`; compute: {compute}."]
    if command:
        lines.append(f"Command: `{command}`.")
    lines += [f"> **Caveat:** {c}" for c in caveats]
    return lines + [""]
