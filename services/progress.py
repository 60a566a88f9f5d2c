"""Progress of long reads on stderr: a bar with events/s and an ETA on a terminal, plain lines
every few seconds otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_TTY_EVERY_S = 0.2
_LINE_EVERY_S = 5.0
_BAR = 24


def _duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """`advance(n)` as events go by, `finish()` at the end; `total` may be a rough estimate."""

    def __init__(
        self, label: str, total: int | None = None, out: TextIO | None = None, quiet: bool = False
    ):
        self.label, self.total, self.count = label, total, 0
        self._out = out or sys.stderr
        self._tty = self._out.isatty()
        self._quiet = quiet
        self._started = self._shown = time.monotonic()

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return self.count / elapsed if elapsed > 0 else 0.0

    def advance(self, n: int) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._shown >= (_TTY_EVERY_S if self._tty else _LINE_EVERY_S):
            self._shown = now
            self._show()

    def line(self) -> str:
        rate = self.rate
        text = f"{self.label}: {self.count:,} events, {rate:,.0f} events/s"
        if self.total:
            done = min(self.count / self.total, 1.0)
            eta = (self.total - self.count) / rate if rate else 0.0
            bar = "#" * round(done * _BAR) + "." * (_BAR - round(done * _BAR))
            # The total comes from end offsets, which the embedded broker under-reports.
            text = f"{self.label}: [{bar}] {done:4.0%} {self.count:,}/~{self.total:,} events"
            text += f", {rate:,.0f} events/s, ETA {_duration(eta)}"
        return text

    def _show(self) -> None:
        if self._quiet:
            return
        if self._tty:
            self._out.write("\r\x1b[K" + self.line())
        else:
            self._out.write(self.line() + "\n")
        self._out.flush()

    def finish(self) -> None:
        if self._quiet:
            return
        elapsed = time.monotonic() - self._started
        end = "\r\x1b[K" if self._tty else ""
        self._out.write(
            f"{end}{self.label}: {self.count:,} events in {elapsed:.1f}s,"
            f" {self.rate:,.0f} events/s\n"
        )
        self._out.flush()
