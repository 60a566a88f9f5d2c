"""The two folds of device events agree: `events.evolve` (the processor's state, deciding and
the HTTP as-of) and `projections.fold` (the projection's rows: live, rebuild, verify, as-of).

Over generated command histories, decided in order, the rows folded in any batch split (with
every event delivered again, as after a crash) hold exactly the state evolve holds: token, OS,
OS version, version, last hash, and each channel's registration id and expiration."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from events import AnyEvent, ChannelCreated, DeviceState
from projections.fold import Changes, DeviceKey, DeviceRow, SubKey, SubRow, fold
from tests.unit.test_fold_properties import NOW, Step, decide_in, steps, to_command


def _decided_log(script: list[Step]) -> tuple[list[AnyEvent], dict[DeviceKey, DeviceState]]:
    states: dict[DeviceKey, DeviceState] = {}
    known: dict[str, set[str]] = {}
    log: list[AnyEvent] = []
    now = NOW
    for index, step in enumerate(script):
        now += step.advance_ms
        command = to_command(step, index, now, states.get((step.app_id, step.device_id)))
        log += decide_in(states, known.setdefault(command.app_id, set()), command, now).events
    return log, states


def _rows(
    batches: list[list[AnyEvent]],
) -> tuple[dict[DeviceKey, DeviceRow], dict[SubKey, SubRow]]:
    """The projection's fold, batch by batch, over rows kept as a store keeps them."""
    devices: dict[DeviceKey, DeviceRow] = {}
    subs: dict[SubKey, SubRow] = {}
    for batch in batches:
        keys = {(e.app_id, e.device_id) for e in batch if not isinstance(e, ChannelCreated)}
        changes = Changes({k: devices[k] for k in keys if k in devices})
        for event in batch:
            fold(changes, event)
        devices.update(changes.devices)
        for key, row in changes.subs.items():
            if row is None:
                subs.pop(key, None)
            else:
                subs[key] = row
    return devices, subs


def _split(log: list[AnyEvent], cuts: list[int]) -> list[list[AnyEvent]]:
    bounds = sorted({min(c, len(log)) for c in cuts} | {0, len(log)})
    return [log[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(steps, min_size=4, max_size=50),
    st.lists(st.integers(0, 120), max_size=6),
    st.booleans(),
)
def test_given_any_history_then_the_rows_hold_what_evolve_holds(
    script: list[Step], cuts: list[int], delivered_twice: bool
) -> None:
    # Given a decided history, folded into rows in some batch split (and delivered again).
    log, states = _decided_log(script)
    batches = _split(log, cuts) + (_split(log, cuts[::-1]) if delivered_twice else [])

    # When
    devices, subs = _rows(batches)

    # Then every device evolve knows has the same row, and the same channels.
    for key, state in states.items():
        if state.version == 0:
            assert key not in devices  # never registered: no row
            continue
        row = devices[key]
        expected = (state.device_token, state.os, state.os_version, state.version, state.last_hash)
        assert (row.device_token, row.os, row.os_version, row.version, row.last_hash) == expected
        mine = {
            c: (r.registration_id, r.expiration) for (a, d, c), r in subs.items() if (a, d) == key
        }
        assert mine == {c: (s.registration_id, s.expiration) for c, s in state.channels.items()}
    assert set(devices) == {k for k, s in states.items() if s.version > 0}
