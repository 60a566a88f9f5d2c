"""`python -m bench`: run devreg's benchmarks, print the table, write docs/benchmarks.md.

    python -m bench                      # everything, 3 runs each (what `make bench` runs)
    python -m bench --quick              # smaller sizes, 1 run: a smoke test (~2 minutes)
    python -m bench --only get,expiry    # some of them
    python -m bench --profile prof/      # py-spy the worker while measuring (raw stacks)
    python -m bench --wrk                # wrk instead of the asyncio load generator
    python -m bench --trace-sql tr/      # SQLite time per statement, records per batch
    python -m bench --worker-env DEVREG_FETCH_MAX_WAIT_MS=2   # try a setting

Figures measured with --profile or --trace-sql are slowed down by the instrumentation.

The doc is written by a full run (no --quick, no --only) or when --out is given.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from bench import (
    capacity,
    channel_page,
    expiry,
    freshness,
    ingest,
    long_run,
    lookup,
    rebuild,
    register,
    report,
    startup,
)
from bench import wrk as wrk_tool
from bench.report import Row
from bench.session import FULL, QUICK, Session, Sizes, log
from bench.stats import Spread

Benchmark = Callable[[Session], Awaitable[list[Row]]]
# In running order: the ingest keeps its last stack up for the query benchmarks after it;
# expiry comes last (it can take minutes when the pipeline falls behind).
BENCHMARKS: dict[str, Benchmark] = {
    "register": register.run,
    "freshness": freshness.run,
    "capacity": capacity.run,
    "ingest": ingest.run,
    "get": lookup.run,
    "channel": channel_page.run,
    "rebuild": rebuild.run,
    "expiry": expiry.run,
    "long": long_run.run,
    "startup": startup.run,
}
ALIASES = {"rss": "ingest", "lookup": "get"}
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
TEMPLATE = f"# devreg benchmarks\n\n{report.BEGIN}\n{report.END}\n"


def _names(raw: list[str]) -> list[str]:
    wanted = {ALIASES.get(n.strip(), n.strip()) for item in raw for n in item.split(",") if n}
    unknown = wanted - set(BENCHMARKS)
    if unknown:
        known = ", ".join([*BENCHMARKS, *ALIASES])
        raise SystemExit(f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: {known}")
    return [name for name in BENCHMARKS if name in wanted]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run (smoke test)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help=f"run only these: {', '.join([*BENCHMARKS, *ALIASES])}",
    )
    parser.add_argument("--runs", type=int, help="runs per figure (default 3, quick 1)")
    parser.add_argument("--ingest", type=int, help="devices per ingest run / population")
    parser.add_argument("--freshness", help="registrations/s for the freshness rows, e.g. 1000,100")
    parser.add_argument("--expiry", help="pending expirations per burst, e.g. 10000,100000")
    parser.add_argument("--wrk", action="store_true", help="use wrk for the closed-loop HTTP load")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy the worker during each measurement; raw profiles go to DIR",
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the devreg workers, e.g. DEVREG_BATCH_SIZE=5000",
    )
    parser.add_argument(
        "--trace-sql",
        type=Path,
        metavar="DIR",
        help="run workers under bench.sqltrace (SQL and batch timings); reports go to DIR",
    )
    parser.add_argument(
        "--out", type=Path, help=f"write the doc here (default {DOC} on a full run)"
    )
    parser.add_argument("--long-run", type=int, help="registrations of the long run (1M)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return parser


def _sizes(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else FULL
    changes: dict[str, object] = {}
    if args.runs:
        changes["runs"] = args.runs
    if args.ingest:
        changes["ingest"] = args.ingest
    if args.freshness:
        changes["freshness_rates"] = tuple(float(n) for n in args.freshness.split(","))
    if args.expiry:
        changes["expiry"] = tuple(int(n) for n in args.expiry.split(","))
    if args.long_run:
        changes["long_run"] = args.long_run
    return msgspec.structs.replace(sizes, **changes)


async def _run_all(session: Session, names: list[str], rows: list[Row]) -> None:
    """Run the benchmarks, appending to `rows` as they finish (kept if interrupted)."""
    try:
        for name in names:
            log.info("=== %s", name)
            try:
                rows += await BENCHMARKS[name](session)
            except Exception as exc:
                traceback.print_exc()
                rows.append(
                    Row(
                        bench=name,
                        what=name,
                        metric="",
                        devreg=Spread.of([]),
                        note=f"failed: {exc!r}"[:200],
                    )
                )
            print(report.console_table([r for r in rows if r.bench == name]), flush=True)
    finally:
        await session.close()


def _load_average(when: str) -> str:
    """Other processes on the machine skew every figure: say how busy it was."""
    one, five, _ = os.getloadavg()
    return f"load average {when}: {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # connection noise at teardown
    if (
        args.profile
        and not shutil.which("py-spy")
        and not Path(sys.executable).with_name("py-spy").exists()
    ):
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    if args.wrk and not wrk_tool.available():
        raise SystemExit("--wrk: wrk is not installed (apt-get install -y wrk)")
    names = _names(args.only) if args.only else list(BENCHMARKS)
    # SIGTERM unwinds like Ctrl-C, so brokers and workers are stopped and scratch removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    root = Path(tempfile.mkdtemp(prefix="devreg-bench-"))
    worker_env = dict(item.split("=", 1) for item in args.worker_env)
    session = Session(_sizes(args), root, args.profile, args.wrk, args.trace_sql, worker_env)
    if worker_env:
        session.note(f"worker environment: {worker_env}")
    session.note("load generator: " + ("wrk, 1 thread" if args.wrk else "bench.load (asyncio)"))
    session.note(_load_average("before the run"))
    facts = report.machine()  # before the run: the code measured is the code at the start
    rows: list[Row] = []
    interrupted = False
    try:
        asyncio.run(_run_all(session, names, rows))
    except KeyboardInterrupt:
        interrupted = True
        session.note("**interrupted**: only the rows above were measured")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    session.note(_load_average("after the run"))
    print("\n" + report.console_table(rows))
    for note in session.notes:
        print(f"- {note}")
    command = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    full_run = not (args.quick or args.only or interrupted)
    out = args.out or (DOC if full_run else None)
    if out is not None:
        report.write_doc(
            out, report.results_block(rows, command.strip(), session.notes, facts), TEMPLATE
        )
        print(f"wrote {out}")
    if args.json:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(rows)))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
