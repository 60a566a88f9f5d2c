"""Percentiles of one run, and the median/min/max of a figure over several runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import msgspec


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class Spread(msgspec.Struct, frozen=True):
    """A figure measured over several runs."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Spread:
        clean = [s for s in samples if not math.isnan(s)]
        if not clean:
            return cls(math.nan, math.nan, math.nan, 0)
        return cls(statistics.median(clean), min(clean), max(clean), len(clean))


def fmt(value: float) -> str:
    """Readable figure: thousands separators for big ones, 3 significant digits for small."""
    if math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_spread(spread: Spread) -> str:
    if spread.runs == 0:
        return "-"
    if spread.runs == 1:
        return fmt(spread.median)
    return f"{fmt(spread.median)} ({fmt(spread.low)}-{fmt(spread.high)})"
