"""`python -m bench.sqltrace REPORT -- <devreg args>`: devreg with SQL and batch timings.

A diagnostic, used by `python -m bench --trace-sql DIR`: runs `services.cli.main` in this
process after wrapping (at run time, production code untouched)
- every call aiosqlite hands to its thread, timed inside that thread, and every call of the
  worker's stores (run inline on the loop): the SQLite time of each statement, not the time
  spent waiting for the thread or the GIL;
- the command processor's and the projector's batch handlers: batches, records per batch,
  time per record.
The summary is written to REPORT when the worker exits.
"""

from __future__ import annotations

import atexit
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite.core

from projections.sqlite import InlineConnection
from services.cli import main as devreg_main
from services.stream import processor, projector

_sql_seconds: dict[str, float] = {}
_sql_calls: Counter[str] = Counter()
_batches: dict[str, list[float]] = {}  # handler -> [batches, records, seconds]


def _label(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    name = getattr(fn, "__name__", repr(fn))
    if args and isinstance(args[0], str):
        return f"{name} {' '.join(args[0].split())[:90]}"
    return name


def _trace_sql() -> None:
    for cls in (aiosqlite.core.Connection, InlineConnection):
        _trace_calls(cls)


def _trace_calls(cls: Any) -> None:
    """Every call `cls` runs, timed where it runs: aiosqlite's thread or (InlineConnection,
    the worker's stores) the event loop's."""
    original: Any = cls._execute

    async def execute(self: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        label = _label(fn, args)

        def timed(*a: Any, **k: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                elapsed = time.perf_counter() - started
                _sql_seconds[label] = _sql_seconds.get(label, 0.0) + elapsed
                _sql_calls[label] += 1

        return await original(self, timed, *args, **kwargs)

    cls._execute = execute


def _trace_handler(cls: Any, name: str) -> None:
    original = cls.handle
    totals = _batches.setdefault(name, [0.0, 0.0, 0.0])

    async def handle(self: Any, records: Sequence[Any]) -> None:
        started = time.perf_counter()
        try:
            await original(self, records)
        finally:
            totals[0] += 1
            totals[1] += len(records)
            totals[2] += time.perf_counter() - started

    cls.handle = handle


def report() -> str:
    lines = []
    for name, (batches, records, seconds) in _batches.items():
        per_batch = records / max(batches, 1)
        per_record = seconds / max(records, 1) * 1e6
        lines.append(
            f"{name}: {batches:.0f} batches, {records:.0f} records ({per_batch:.0f}/batch),"
            f" {seconds:.2f} s in the handler ({per_record:.0f} µs/record)"
        )
    lines.append(f"SQLite, where each call ran: {sum(_sql_seconds.values()):.2f} s")
    for label, seconds in sorted(_sql_seconds.items(), key=lambda item: -item[1])[:15]:
        calls = _sql_calls[label]
        each_ms = seconds / calls * 1e3
        lines.append(f"  {seconds:7.2f} s {calls:7d} calls {each_ms:8.3f} ms  {label}")
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[2] != "--":
        raise SystemExit(__doc__)
    target = Path(sys.argv[1])
    _trace_sql()
    _trace_handler(processor.CommandProcessor, "command processor")
    _trace_handler(projector.Projector, "projector")
    atexit.register(lambda: target.write_text(report()))
    return devreg_main(sys.argv[3:])


if __name__ == "__main__":
    sys.exit(main())
