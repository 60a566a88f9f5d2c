"""A channel's subscriptions over time, folded from the projection's history (`device_events`).

Why the history table and not the log: every worker's projection already holds its own
partitions' applied events, indexed by device, so a worker answers for its partitions with a
query on its own file (fanned out and summed like the channel counts), without a Kafka
consumer per request reading the whole log (which the embedded broker serves in O(n^2),
docs/design.md §10). The fold is the one every as-of answer uses (`events.evolve`), and a
device counts at an instant exactly when the as-of route would have shown it on the channel.

Bounded work: SQLite finds the devices whose events name the channel (a byte search in C, no
decoding), only their events are decoded and folded, one device at a time, and the answer is
a fixed number of instants whatever the history's length.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

import aiosqlite
import msgspec

from events import DeviceEvent, DeviceState, decode_event, empty_state, evolve
from projections.queries import Partitions, in_partitions
from projections.sqlite import offloaded

_FETCH = 1000  # rows per round trip to SQLite's thread

Row = tuple[str, int, int, bytes]  # device id, version, occurred_at, event


def instants(since: int, until: int, points: int) -> list[int]:
    """`points` instants from `since` to `until`, both included, as evenly spread as whole
    milliseconds allow (every worker computes the same ones)."""
    span = until - since
    return [since + (span * k) // (points - 1) for k in range(points)]


def intervals(events: Iterable[DeviceEvent], app_id: str, channel: str) -> Iterator[range]:
    """The spans [start, end) during which one device was on `channel`, from its events in
    version order. As the as-of route does, the state at an instant is the fold of the events
    up to the first one that happened after it (versions, not times, order a history), and a
    subscription whose expiration has passed is not counted even before its expiry event."""
    state: DeviceState | None = None
    start: int | None = None
    for event in events:
        if state is None:
            state = empty_state(app_id, event.device_id)
        visible_from = event.occurred_at if start is None else max(start, event.occurred_at)
        if start is not None:
            yield from _span(state, channel, start, visible_from)
        state = evolve(state, event)
        start = visible_from
    if state is not None and start is not None:
        yield from _span(state, channel, start, None)


def _span(state: DeviceState, channel: str, start: int, end: int | None) -> Iterator[range]:
    """The part of [start, end) (end None: still on) during which `state` is on `channel`."""
    subscription = state.channels.get(channel)
    if subscription is None:
        return
    limit = subscription.expiration
    stop = end if limit is None else (limit if end is None else min(end, limit))
    if stop is None:
        yield range(start, _FOREVER)
    elif stop > start:
        yield range(start, stop)


_FOREVER = 2**62  # beyond any instant (ms) a query can name


def count_at(spans: Iterable[range], moments: list[int]) -> list[int]:
    """How many spans hold each of the (sorted) `moments`: a difference array, so the cost is
    one binary search per span, not per span and moment."""
    diff = [0] * (len(moments) + 1)
    for span in spans:
        first = bisect.bisect_left(moments, span.start)
        after = bisect.bisect_left(moments, span.stop)
        if first < after:
            diff[first] += 1
            diff[after] -= 1
    counts, running = [], 0
    for delta in diff[:-1]:
        running += delta
        counts.append(running)
    return counts


def _needle(channel: str) -> bytes:
    # The channel as the canonical encoding writes it (quoted, escaped): events are stored as
    # the processor encoded them, so a registration or removal naming the channel holds it.
    return msgspec.json.encode(channel)


async def channel_series(
    conn: aiosqlite.Connection,
    app_id: str,
    channel: str,
    moments: list[int],
    partitions: Partitions = None,
) -> list[int]:
    """Devices on `channel` at each of `moments`, from this file's devices (of `partitions`)."""
    sql = (
        "SELECT e.device_id, e.version, e.occurred_at, e.event FROM device_events e"
        " JOIN devices d ON d.app_id = e.app_id AND d.device_id = e.device_id"
        " WHERE e.app_id = ?1 AND e.device_id IN (SELECT device_id FROM device_events"
        " WHERE app_id = ?1 AND instr(event, ?2) > 0)"
        f"{in_partitions('d.partition', partitions)}"
        " ORDER BY e.device_id, e.version"
    )
    counts = [0] * len(moments)
    # A scan of the app's history: on SQLite's thread, so the loop goes on serving.
    async with offloaded(conn), conn.execute(sql, (app_id, _needle(channel))) as cursor:
        device: str | None = None
        events: list[DeviceEvent] = []
        while rows := list(await cursor.fetchmany(_FETCH)):
            for device_id, _version, _at, raw in rows:
                if device_id != device:
                    _add(counts, count_at(intervals(events, app_id, channel), moments))
                    device, events = device_id, []
                event = _decoded(raw)
                if event is not None:
                    events.append(event)
        _add(counts, count_at(intervals(events, app_id, channel), moments))
    return counts


def _decoded(raw: bytes) -> DeviceEvent | None:
    try:
        event = decode_event(raw)
    except msgspec.DecodeError:
        return None  # a type newer than this devreg: it cannot be folded here
    return event if isinstance(event, DeviceEvent) else None


def _add(total: list[int], part: list[int]) -> None:
    for i, value in enumerate(part):
        total[i] += value
