"""`devreg` command line: one subcommand per concern, each a small main()."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from services import event_loop, logs
from services.audit.arguments import add_commands
from services.audit.forget import add_forget, forget_main
from services.config import ConfigError, Settings, load_settings, require_kafka


def run_main(settings: Settings, args: argparse.Namespace) -> int:
    from services import embedded
    from services.config import keyfiles

    settings = keyfiles.complete(settings)
    logs.hide(settings.secrets())
    return event_loop.run(embedded.run(settings), settings.event_loop)


def worker_main(settings: Settings, args: argparse.Namespace) -> int:
    from services import embedded
    from services.config import keyfiles
    from services.shutdown import exit_if_abandoned
    from services.worker import Worker

    if settings.kafka_bootstrap is None:
        raise ConfigError("`devreg worker` needs KAFKA_BOOTSTRAP; `devreg run` starts a broker")
    kafka = settings.kafka_at(settings.kafka_bootstrap)
    settings = keyfiles.complete(settings)
    logs.hide(settings.secrets())

    async def serve() -> int:
        stop = asyncio.Event()
        embedded.stop_on_signals(stop)
        worker = Worker(settings, kafka)
        failure = await worker.run(stop)
        return exit_if_abandoned(worker.abandoned, 1 if failure else 0)

    return event_loop.run(serve(), settings.event_loop)


def export_main(settings: Settings, args: argparse.Namespace) -> int:
    from services.log import archive
    from services.log.topics import compacted_topics, topic_names

    kafka = require_kafka(settings, "export")
    summary = event_loop.run(
        archive.export_log(
            kafka, topic_names(settings), Path(args.path), compacted=compacted_topics(settings)
        ),
        settings.event_loop,
    )
    print(summary, file=sys.stderr)
    return 0


def import_main(settings: Settings, args: argparse.Namespace) -> int:
    from services.log import archive
    from services.log.topics import ensure_topics

    kafka = require_kafka(settings, "import")

    async def restore() -> object:
        await ensure_topics(settings, kafka)
        return await archive.import_log(kafka, Path(args.path))

    print(event_loop.run(restore(), settings.event_loop), file=sys.stderr)
    return 0


Main = Callable[[Settings, argparse.Namespace], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devreg",
        description="Event-sourced push device registry (Backendless-compatible) on Kafka.",
        epilog="Configuration comes from environment variables: see README.md.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the whole service (embedded broker unless KAFKA_BOOTSTRAP)")
    sub.add_parser("worker", help="start one worker against KAFKA_BOOTSTRAP")
    export = sub.add_parser("export", help="write devreg's topics to an NDJSON archive")
    export.add_argument("path", help="archive file to write")
    imp = sub.add_parser("import", help="re-publish an archive into empty topics, same offsets")
    imp.add_argument("path", help="archive file to read")
    _MAINS.update(add_commands(sub))
    add_forget(sub)
    return parser


_MAINS: dict[str, Main] = {
    "run": run_main,
    "worker": worker_main,
    "export": export_main,
    "import": import_main,
    "forget": forget_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"devreg: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level, settings.log_format)
    logs.hide(settings.secrets())
    try:
        return _MAINS[args.command](settings, args)
    except ConfigError as exc:
        print(f"devreg: {exc}", file=sys.stderr)
        return 2
