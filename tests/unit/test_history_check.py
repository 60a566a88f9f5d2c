"""A page of a device's history over HTTP carries the audit's check of its part of the chain
(services/http/device_history.py check_page, projections/chain.py check_chain from a link)."""

from __future__ import annotations

import msgspec

from events import ChannelCreated, encode
from projections.chain import Link
from services.http.device_history import check_page
from tests.unit.domain import NOW, Registry, register, unregister


def _history() -> list[bytes]:
    registry = Registry()
    events = [
        *registry.accepted(register(channels=("news",), device_token="t1"), NOW),
        *registry.accepted(register("reg-2", channels=("sport",), device_token="t2"), NOW + 1),
        *registry.accepted(unregister("unreg-1"), NOW + 2),
    ]
    return [encode(e) for e in events if not isinstance(e, ChannelCreated)]


def _edit(raw: bytes, **fields: object) -> bytes:
    event = msgspec.json.decode(raw)
    event.update(fields)
    return msgspec.json.encode(event, order="sorted")


def test_given_an_untouched_history_paged_then_every_page_holds() -> None:
    events = _history()
    first = msgspec.json.decode(events[0])

    whole = check_page(events, None)
    tail = check_page(events[1:], Link(1, first["hash"]))

    assert [c.status for c in whole[0]] == ["applied"] * 3
    assert (whole[1].intact, whole[1].checked) == (True, 3)
    assert (tail[1].intact, tail[1].checked, [c.hashOk for c in tail[0]]) == (True, 2, [True] * 2)


def test_given_a_page_that_does_not_link_to_the_one_before_then_it_breaks_there() -> None:
    checks, chain = check_page(_history()[1:], Link(1, "0" * 64))

    assert (chain.intact, chain.brokenAt) == (False, 2)
    assert "broken hash chain" in (chain.reason or "")
    assert [c.status for c in checks] == ["broken", "unchecked"]


def test_given_an_event_whose_content_was_changed_then_its_hash_does_not_hold() -> None:
    events = _history()
    events[1] = _edit(events[1], device_token="forged")

    checks, chain = check_page(events, None)

    assert (chain.intact, chain.brokenAt, chain.reason) == (
        False,
        2,
        "its hash does not match its content",
    )
    assert [(c.status, c.hashOk) for c in checks] == [
        ("applied", True),
        ("broken", False),
        ("unchecked", True),
    ]


def test_given_an_event_of_a_type_this_devreg_does_not_know_then_not_checked_not_broken() -> None:
    events = _history()
    newer = _edit(events[2], type="device-erased/1", version=4)

    checks, chain = check_page([*events, newer], None)

    assert (chain.intact, chain.checked) == (True, 3)
    assert [c.status for c in checks] == ["applied", "applied", "applied", "unknown"]
