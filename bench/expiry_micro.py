"""The CPU an expiry burst costs the command processor per device, in process.

    python -m bench.expiry_micro [N] [--runs R] [--single] [--ahead] [--profile]

The real CommandProcessor (parse, decide, record batches, the decision store's commit, the
write-through fold into a real projection file) with a producer that acknowledges at once: no
broker, no faust, no scheduler. N devices are registered with one expiration, then expired
by the commands the scheduler builds for them (`--single`: one ExpireRegistration per
device, as before `expire-registrations/1`), handed over in the batches the hand-off makes
(`--ahead`: the commands the scheduler makes ahead, decided by `CommandProcessor.prepare`
before the clock starts, as docs/design.md §7 says; that CPU and the memory the kept
decisions take, traced in a run of its own, are printed too). Prints the process CPU per device of
the expiry alone; run it back to back with another tree
(`PYTHONPATH=<tree>`) to compare. Its figures are in docs/benchmarks.md, never in code.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import importlib.util
import os
import pstats
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import RecordMetadata, TopicPartition

from events import Command, RegisterDevice, encode
from events.identity import partition_key
from projections.positions import Record
from projections.store import DueExpiration, ProjectionStore
from services.config import load_settings
from services.kafka.partitioner import partition_for
from services.metrics import Metrics
from services.stream.decision_store import DecisionStore
from services.stream.processor import CommandProcessor
from services.stream.projector import Projector
from services.stream.visibility import Visibility

PARTITIONS = 6
# Where the tree makes its expiry commands: their own module since the eighth session, the
# scheduler's before (this bench runs against older trees too).
made: Any = importlib.import_module(
    "services.stream.expiry_commands"
    if importlib.util.find_spec("services.stream.expiry_commands")
    else "services.stream.scheduler"
)
APP = "bench"


class Producer:
    """aiokafka's producer as the processor uses it, acknowledging every batch at once."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = {}

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(1024 * 1024, 0)

    async def send_batch(self, builder: Any, topic: str, *, partition: int) -> Any:
        base = self.next.get((topic, partition), 0)
        self.next[(topic, partition)] = base + builder._relative_offset
        done = asyncio.get_running_loop().create_future()
        tp = TopicPartition(topic, partition)
        done.set_result(RecordMetadata(topic, partition, tp, base, -1, 0, None))
        return done


class ReadBack:
    async def only_copies(self, partitions: object) -> None:
        pass

    async def not_applied(self, partitions: object) -> None:
        pass


def _partition(device_id: str) -> int:
    return partition_for(partition_key(APP, device_id), PARTITIONS)


def expiry_commands(n: int, expiration: int, single: bool, ahead: bool = False) -> list[Command]:
    due = [DueExpiration(expiration, APP, f"d{i:07d}", 1) for i in range(n)]
    now = None if ahead else expiration + 5  # None: made ahead, issued at the expiration
    if single or not hasattr(made, "expiry_commands"):
        return [made.expiry_command(d, expiration + 5) for d in due]
    return list(made.expiry_commands(due, now, lambda app, device: _partition(device)))


Ahead = tuple[float, float]  # CPU µs and bytes kept per device, of the decisions made ahead


async def one_run(
    n: int, single: bool, profile: bool, ahead: bool = False, traced: bool = False
) -> tuple[float, Ahead]:
    """`traced`: the memory the decisions made ahead keep, by tracemalloc (its CPU then is
    not a figure: tracing slows every allocation)."""
    data = Path(tempfile.mkdtemp(prefix="expiry-micro-"))
    env = {"DEVREG_APPS": f"{APP}:key", "DEVREG_DATA_DIR": str(data), "KAFKA_BOOTSTRAP": "x:1"}
    env.update({k: v for k, v in os.environ.items() if k.startswith("DEVREG_")})
    settings = load_settings(env)
    decisions = await DecisionStore.open(data / "decisions.sqlite")
    projection = await ProjectionStore.open(data / "projection.sqlite", swappable=False)
    visibility = Visibility(settings.events_topic)
    metrics = Metrics()
    projector = Projector(projection, visibility, metrics, lambda e: None, ReadBack())  # type: ignore[arg-type]
    processor = CommandProcessor(
        settings,
        decisions,
        Producer(),
        visibility,
        metrics,
        lambda app, device: _partition(device),
        lambda exc: None,
        projector.handle_own,
        None,  # no keys: the token index's releases are measured by the worker's bench row
    )
    offsets = [0] * PARTITIONS

    def record(command: Command, device_id: str) -> Record:
        key = partition_key(APP, device_id)
        p = partition_for(key, PARTITIONS)
        r = Record(
            settings.commands_topic, p, offsets[p], command.issued_at or 0, key, encode(command)
        )
        offsets[p] += 1
        return r

    expiration = int(time.time() * 1000) + 1000
    registrations = [
        record(
            RegisterDevice(
                command_id=f"r{i}",
                app_id=APP,
                device_id=f"d{i:07d}",
                issued_at=expiration - 1000,
                device_token=f"t{i}",
                os="ANDROID",
                os_version="14",
                channels=("news",),
                expiration=expiration,
            ),
            f"d{i:07d}",
        )
        for i in range(n)
    ]
    for start in range(0, n, settings.batch_size):
        await processor.handle(registrations[start : start + settings.batch_size])
    await processor.drain()
    built = expiry_commands(n, expiration, single, ahead)
    commands = [record(c, _first_device(c)) for c in built]
    weights = [_devices(c) for c in built]
    decided_ahead = (0.0, 0.0)
    if ahead:
        if traced:
            tracemalloc.start()
        cpu_started = time.process_time()
        handed = [(r.partition, c) for r, c in zip(commands, built, strict=True)]
        kept = await processor.prepare(handed)  # type: ignore[arg-type]
        assert kept == len(built), f"{kept} of {len(built)} commands were decided ahead"
        cpu_us = (time.process_time() - cpu_started) * 1e6 / n
        held = tracemalloc.get_traced_memory()[0] / n if traced else 0.0
        tracemalloc.stop()
        decided_ahead = (cpu_us, held)
    profiler = cProfile.Profile() if profile else None
    started = time.process_time()
    if profiler:
        profiler.enable()
    batch: list[Record] = []
    weight = 0
    for r, w in zip(commands, weights, strict=True):
        batch.append(r)
        weight += w
        if weight >= settings.batch_size:
            await processor.handle(batch)
            batch, weight = [], 0
    if batch:
        await processor.handle(batch)
    await processor.drain()
    if profiler:
        profiler.disable()
    cpu = time.process_time() - started
    left = await projection.pending_expirations()
    assert left == 0, f"{left} subscriptions still hold an expiration"
    await asyncio.gather(decisions.close(), projection.close())
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    return cpu * 1e6 / n, decided_ahead


def _devices(command: Command) -> int:
    return len(getattr(command, "devices", ())) or 1


def _first_device(command: Command) -> str:
    devices = getattr(command, "devices", ())
    return devices[0].device_id if devices else command.device_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, nargs="?", default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--single", action="store_true", help="one command per device")
    parser.add_argument("--profile", action="store_true", help="cProfile the last run")
    parser.add_argument("--ahead", action="store_true", help="decided ahead (design §7)")
    args = parser.parse_args()
    runs = [
        asyncio.run(one_run(args.n, args.single, args.profile and i == args.runs - 1, args.ahead))
        for i in range(args.runs)
    ]
    if args.ahead:  # one more run, traced, for the memory alone
        _, (_, held) = asyncio.run(one_run(args.n, args.single, False, True, traced=True))
    figures = [cpu for cpu, _ in runs]
    form = (
        "one command per device"
        if args.single or not hasattr(made, "expiry_commands")
        else "commands of many devices"
    )
    print(
        f"expiry of {args.n:,} devices, {form}: µs of CPU per device, median"
        f" {statistics.median(figures):.1f} (runs: {', '.join(f'{f:.1f}' for f in figures)})"
    )
    if args.ahead:
        cpu = statistics.median(a[0] for _, a in runs)
        print(
            f"decided ahead, before the clock: {cpu:.1f} µs of CPU, {held:,.0f} bytes kept"
            " per device (tracemalloc, a run of its own)"
        )


if __name__ == "__main__":
    main()
