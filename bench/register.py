"""HTTP register throughput and latency, closed loop, at 16 and 64 connections.

Three servers take the same POST …/messaging/registrations load (a new device per request):
- baseline:  a trivial aiohttp handler that only validates the body (bench.servers validate);
- Kafka ack: devreg's register path up to Kafka's acknowledgement of the command, with
             read-your-writes off (bench.servers kafka-ack): the figure the issue's target is
             about. devreg has no switch to turn read-your-writes off, hence the stand-in;
- devreg:    the real worker, as it is: a POST answers once the registration is visible to
             GET (Kafka ack + decision + events acked + projection applied).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import load, wrk
from bench.report import Row, Target
from bench.session import Session, log
from bench.stack import PARTITIONS, Server, Stack, describe_cpu
from bench.stats import Spread

VARIANTS = {
    "baseline": "validate-only aiohttp handler",
    "ack": "POST → command acked by Kafka (read-your-writes off)",
    "devreg": "devreg as is (read-your-writes)",
}


# Parse Server 9.10 on PostgreSQL 15, this machine, wrk (issue 19): register, closed loop.
PARSE = {16: {"rate": 1680.0, "p99_ms": 25.0}, 64: {"rate": 1605.0, "p99_ms": 80.0}}


def body(tag: str, n: int) -> bytes:
    return (
        f'{{"deviceToken":"tok-{tag}-{n}","deviceId":"{tag}-{n}","os":"ANDROID",'
        f'"osVersion":"14","channels":["news"]}}'
    ).encode()


def requests(path: str, tag: str) -> Callable[[int], bytes]:
    return lambda n: load.post_json(path, body(tag, n))


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


class Point(msgspec.Struct, frozen=True):
    variant: str
    connections: int
    summary: load.Summary


async def one_run(session: Session, run: int) -> list[Point]:
    sizes = session.sizes
    points: list[Point] = []
    ack_topic = f"ack{run}.commands"
    async with session.stack("register") as stack:
        await create_topic(stack.bootstrap, ack_topic)
        ack_args = ("--bootstrap", stack.bootstrap, "--topic", ack_topic)
        async with Server("validate") as validate, Server("kafka-ack", *ack_args) as ack:
            servers = {
                "baseline": (validate.port, validate.pid),
                "ack": (ack.port, ack.pid),
                "devreg": (stack.worker.port, stack.worker.pid),
            }
            for connections in sizes.connections:
                for variant, (port, pid) in servers.items():
                    async with session.profiled(f"register-{variant}-c{connections}", pid):
                        summary = await _measure(session, stack, variant, port, connections, run)
                    log.info("register %s c=%d: %s", variant, connections, summary)
                    points.append(Point(variant, connections, summary))
    return points


async def _measure(
    session: Session, stack: Stack, variant: str, port: int, connections: int, run: int
) -> load.Summary:
    path = stack.worker.registrations_path
    tag = f"r{run}-{variant}-c{connections}"
    wrk_args = None
    if session.wrk:
        lua = wrk.REGISTER_LUA.format(prefix=tag, path=path)
        wrk_args = (f"http://127.0.0.1:{port}{path}", lua)
    sizes = session.sizes
    meter = stack.cpu_meter().start()
    summary = await load.load_test(
        port, connections, sizes.http_duration_s, sizes.http_warmup_s, requests(path, tag), wrk_args
    )
    if variant == "devreg" and connections == max(sizes.connections) and run == 0:
        session.note(
            f"register, devreg as is, {connections} connections, CPU (cores): "
            f"{describe_cpu(meter.stop())}"
        )
    return summary


async def run(session: Session) -> list[Row]:
    points = [p for run in range(session.sizes.runs) for p in await one_run(session, run)]
    rows: list[Row] = []
    for connections in session.sizes.connections:

        def spread(variant: str, figure: str, c: int = connections) -> Spread:
            chosen = [p.summary for p in points if p.variant == variant and p.connections == c]
            return Spread.of([getattr(s, figure) for s in chosen])

        errors = sum(p.summary.errors for p in points if p.connections == connections)
        if errors:
            session.note(f"register at {connections} connections: {errors} non-200 answers")
        at_target = connections == 64
        for variant in ("ack", "devreg"):
            what = f"HTTP register, {connections} conn, {VARIANTS[variant]}"
            for figure, metric, target in (
                ("rate", "req/s", Target(">=", 10_000)),
                ("p50_ms", "p50 ms", None),
                ("p99_ms", "p99 ms", Target("<=", 15)),
            ):
                baseline: Spread | None = spread("baseline", figure)
                baseline_what = "validate-only"
                if variant == "devreg":
                    # Read-your-writes is what Parse's POST does: compare with Parse.
                    parse = PARSE.get(connections, {}).get(figure)
                    baseline = Spread.of([parse]) if parse is not None else None
                    baseline_what = "Parse Server (issue 19)" if parse is not None else ""
                rows.append(
                    Row(
                        bench="register",
                        what=what,
                        metric=metric,
                        devreg=spread(variant, figure),
                        baseline=baseline,
                        baseline_what=baseline_what,
                        target=target if at_target and variant == "ack" else None,
                    )
                )
    return rows
