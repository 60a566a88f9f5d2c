"""Counters for /metrics, in the Prometheus text format."""

from __future__ import annotations

from collections import Counter

BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class Metrics:
    def __init__(self) -> None:
        self._counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self._help: dict[str, str] = {}
        self._histograms: dict[str, list[float]] = {}  # bucket counts, then +Inf count, sum

    def inc(self, name: str, amount: int = 1, help_text: str = "", **labels: str) -> None:
        self._counters[(name, tuple(sorted(labels.items())))] += amount
        if help_text:
            self._help.setdefault(name, help_text)

    def observe(self, name: str, value: float) -> None:
        """One observation of a histogram in milliseconds."""
        counts = self._histograms.setdefault(name, [0.0] * (len(BUCKETS_MS) + 2))
        for i, bound in enumerate(BUCKETS_MS):
            if value <= bound:
                counts[i] += 1
        counts[-2] += 1
        counts[-1] += value

    def value(self, name: str, **labels: str) -> int:
        return self._counters[(name, tuple(sorted(labels.items())))]

    def render(self) -> str:
        lines: list[str] = []
        seen: set[str] = set()
        for (name, labels), value in sorted(self._counters.items()):
            if name not in seen:
                seen.add(name)
                if name in self._help:
                    lines.append(f"# HELP {name} {self._help[name]}")
                lines.append(f"# TYPE {name} counter")
            label_text = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}} {value}" if labels else f"{name} {value}")
        for name, counts in sorted(self._histograms.items()):
            lines.append(f"# TYPE {name} histogram")
            for bound, count in zip(BUCKETS_MS, counts, strict=False):
                lines.append(f'{name}_bucket{{le="{bound}"}} {int(count)}')
            lines.append(f'{name}_bucket{{le="+Inf"}} {int(counts[-2])}')
            lines.append(f"{name}_count {int(counts[-2])}")
            lines.append(f"{name}_sum {counts[-1]}")
        return "\n".join(lines) + "\n"
