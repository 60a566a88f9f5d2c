"""`devreg run`: the whole service on one machine, on the embedded broker by default.

The embedded broker's log lives in memory, so a clean stop exports devreg's topics to the
data directory and the next start re-publishes them, in order and at the same offsets,
before the worker starts. A crash loses what came after the last clean stop (README).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from services.config import Settings
from services.http.access import ADMIN_HEADER
from services.kafka.clients import Ends, KafkaAccess
from services.keyfiles import DEMO_ADMIN_KEY_FILE
from services.log.broker import EmbeddedBroker
from services.log.topics import compacted_topics, ensure_topics
from services.shutdown import exit_if_abandoned
from services.worker import Worker

log = logging.getLogger(__name__)


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def topic_names(settings: Settings) -> list[str]:
    return [
        settings.commands_topic,
        settings.events_topic,
        settings.outcomes_topic,
        settings.dlq_topic,
        *compacted_topics(settings),
    ]


def _banner(settings: Settings, bootstrap: str) -> str:
    base = f"http://{settings.http_host}:{settings.http_port}"
    app_id, keys = next(iter(settings.apps.items()))
    if settings.demo_app:
        # Generated into the data directory (services/keyfiles.py); this is the operator's
        # own terminal, and there is no other way to learn it.
        admin = f"{keys.admin}   (saved in {settings.data_dir / DEMO_ADMIN_KEY_FILE})"
    else:
        admin = "(as configured in DEVREG_APPS)" if keys.admin else "(none: admin routes closed)"
    lines = [
        "",
        f"devreg is serving on {base}",
        f"  Kafka bootstrap: {bootstrap}"
        + (" (embedded Tansu, memory)" if settings.embedded else ""),
        f"  app id:          {app_id}",
        f"  REST API key:    {keys.rest}"
        + ("   (demo app: set DEVREG_APPS for your own)" if settings.demo_app else ""),
        f"  admin key:       {admin}",
        f"  registrations:   {base}/{app_id}/{keys.rest}/messaging/registrations",
        f"  admin routes:    {base}/admin/{app_id}/messaging/channels"
        f"  (header {ADMIN_HEADER}: <admin key>)",
        f"  console:         {base}/console  (sign in with the app id and its admin key)",
    ]
    if settings.domain_app:
        lines.append(
            f"  custom domain:   {base}/api/messaging/registrations serves app"
            f" {settings.domain_app!r} with no key"
        )
    lines += [
        "Press Ctrl-C to stop"
        + (" (the log is saved to the data directory)." if settings.embedded else "."),
        "",
    ]
    return "\n".join(lines)


async def _serve(
    settings: Settings, kafka: KafkaAccess, stop: asyncio.Event, ends: Ends | None = None
) -> int:
    def announce() -> None:
        print(_banner(settings, kafka.bootstrap), file=sys.stderr, flush=True)

    worker = Worker(settings, kafka, ends)
    failure = await worker.run(stop, announce)
    code = 1 if failure else 0
    # On an external Kafka, a stop that had to abandon a part ends the process at once; the
    # embedded broker is this process's own, stopped (and its log exported) on the way out.
    return code if settings.embedded else exit_if_abandoned(worker.abandoned, code)


async def run(settings: Settings) -> int:
    stop = asyncio.Event()
    stop_on_signals(stop)
    if not settings.embedded:
        assert settings.kafka_bootstrap is not None
        return await _serve(settings, settings.kafka_at(settings.kafka_bootstrap), stop)
    from services.log import archive

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(port=settings.broker_port, log_path=settings.data_dir / "tansu.log")
    await broker.start()
    # So `devreg export`, `replay`, … run beside `make run` find the broker without configuration.
    settings.bootstrap_file.write_text(broker.bootstrap)
    kafka = settings.kafka_at(broker.bootstrap)
    try:
        await ensure_topics(settings, kafka)
        # A fresh broker: the log ends where the archive ends (nothing else has written yet).
        ends: Ends = {}
        if settings.archive_path.exists():
            summary = await archive.import_log(kafka, settings.archive_path)
            log.info("restored the log from %s: %s", settings.archive_path, summary)
            ends = {(t, p): n for t, parts in summary.records.items() for p, n in parts.items()}
        code = await _serve(settings, kafka, stop, ends)
        exported = await archive.export_log(
            kafka,
            topic_names(settings),
            settings.archive_path,
            compacted=compacted_topics(settings),
        )
        log.info("saved the log to %s: %s", settings.archive_path, exported)
        return code
    finally:
        settings.bootstrap_file.unlink(missing_ok=True)
        await broker.stop()
