"""Counters, gauges and histograms for /metrics, in the Prometheus text format."""

from __future__ import annotations

from collections import Counter

BUCKETS_MS: tuple[float, ...] = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{v}"' for k, v in labels] + ([extra] if extra else [])
    return "{" + ",".join(parts) + "}" if parts else ""


class Metrics:
    def __init__(self) -> None:
        self._counters: Counter[tuple[str, Labels]] = Counter()
        self._gauges: dict[tuple[str, Labels], float] = {}
        # Per histogram: one count per bucket, then the +Inf count, then the sum.
        self._histograms: dict[tuple[str, Labels], list[float]] = {}

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        self._counters[(name, tuple(sorted(labels.items())))] += amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self._gauges[(name, tuple(sorted(labels.items())))] = value

    def observe(self, name: str, value: float, **labels: str) -> None:
        """One observation of a histogram in milliseconds."""
        key = (name, tuple(sorted(labels.items())))
        counts = self._histograms.setdefault(key, [0.0] * (len(BUCKETS_MS) + 2))
        for i, bound in enumerate(BUCKETS_MS):
            if value <= bound:
                counts[i] += 1
        counts[-2] += 1
        counts[-1] += value

    def value(self, name: str, **labels: str) -> int:
        return self._counters[(name, tuple(sorted(labels.items())))]

    def render(self) -> str:
        lines: list[str] = []
        typed: set[str] = set()

        def header(name: str, kind: str) -> None:
            if name not in typed:
                typed.add(name)
                lines.append(f"# TYPE {name} {kind}")

        for (name, labels), count in sorted(self._counters.items()):
            header(name, "counter")
            lines.append(f"{name}{_labels(labels)} {count}")
        for (name, labels), value in sorted(self._gauges.items()):
            header(name, "gauge")
            lines.append(f"{name}{_labels(labels)} {value:g}")
        for (name, labels), counts in sorted(self._histograms.items()):
            header(name, "histogram")
            for bound, hits in zip(BUCKETS_MS, counts, strict=False):
                le = 'le="%g"' % bound  # noqa: UP031 (Python 3.11: no nested quotes in f-strings)
                lines.append(f"{name}_bucket{_labels(labels, le)} {int(hits)}")
            inf = 'le="+Inf"'
            lines.append(f"{name}_bucket{_labels(labels, inf)} {int(counts[-2])}")
            lines.append(f"{name}_count{_labels(labels)} {int(counts[-2])}")
            lines.append(f"{name}_sum{_labels(labels)} {counts[-1]:g}")
        return "\n".join(lines) + "\n"
