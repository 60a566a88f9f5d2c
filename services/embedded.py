"""`devreg run`: the whole service on one machine, on the embedded broker by default.

The embedded broker's log lives in memory, and it slows down with every batch it holds
(docs/design.md §10). So in the embedded mode devreg keeps the log itself, in the data
directory (services/log/journal.py, segments.py): the broker is started empty and given only
the tail of each partition (services/log/recovery.py), and while devreg runs it is given fresh,
short partitions whenever they have grown (services/log/rollover.py). A crash loses nothing
that was acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from services.config import Settings
from services.config.keyfiles import DEMO_ADMIN_KEY_FILE
from services.http.access import ADMIN_HEADER
from services.kafka.clients import Ends, KafkaAccess, connect_directly
from services.log.broker import BrokerError, EmbeddedBroker
from services.log.journal import Journal
from services.log.public_port import PublicPort
from services.log.recovery import Embedded, recover
from services.log.segments import SegmentLog
from services.log.topics import compacted_topics
from services.shutdown import exit_if_abandoned
from services.worker import Worker

log = logging.getLogger(__name__)


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def _banner(settings: Settings, bootstrap: str) -> str:
    base = f"http://{settings.http_host}:{settings.http_port}"
    app_id, keys = next(iter(settings.apps.items()))
    if settings.demo_app:
        # Generated into the data directory (services/config/keyfiles.py); this is the operator's
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
        + (f" (the log is kept in {settings.kept_log_dir})." if settings.embedded else "."),
        "",
    ]
    return "\n".join(lines)


async def _serve(
    settings: Settings,
    kafka: KafkaAccess,
    stop: asyncio.Event,
    ends: Ends | None = None,
    embedded: Embedded | None = None,
    advertised: str | None = None,
) -> int:
    def announce() -> None:
        print(_banner(settings, advertised or kafka.bootstrap), file=sys.stderr, flush=True)

    worker = Worker(settings, kafka, ends, embedded)
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
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    segments = SegmentLog(settings.kept_log_dir)
    broker = EmbeddedBroker(log_path=settings.data_dir / "tansu.log")
    public = PublicPort((broker.host, broker.port))
    try:
        broker.advertised_port = await public.start(broker.host, settings.broker_port)
    except OSError as exc:
        raise BrokerError(f"cannot listen on {broker.host}:{settings.broker_port}: {exc}") from exc
    advertised = f"{broker.host}:{broker.advertised_port}"
    try:
        await broker.start()
        # So `devreg export`, `replay`, … run beside `make run` find the broker without
        # configuration: through the public port, like any other client.
        settings.bootstrap_file.write_text(advertised)
        kafka = settings.kafka_at(broker.bootstrap)
        with connect_directly(advertised, broker.bootstrap):
            restored = await recover(settings, kafka, segments)
            print(f"devreg: recovered the log: {restored.describe()}", file=sys.stderr, flush=True)
            # The broker's ends are the kept log's (nothing else has written yet).
            ends: Ends = {tp: end for tp, end in segments.ends().items()}
            journal = Journal(segments, kafka, compacted_topics(settings))
            embedded = Embedded(journal, broker, restored, public)
            return await _serve(settings, kafka, stop, ends, embedded, advertised)
    finally:
        settings.bootstrap_file.unlink(missing_ok=True)
        await public.stop()
        await broker.stop()
        segments.sync()
        segments.close()
