"""Every parameter parser (services/http/params.py): for any text at all, a value in range or
a 400 with a Backendless code naming the parameter, never an exception of Python's own (a 500).

The budget follows the Hypothesis profile (tests/conftest.py: `ci` in `make test`, `fuzz` in
`make fuzz`), never below 500 examples: a parser runs in microseconds.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from events import rules
from services.http import params
from services.http.wire import WireError

# Text of every kind, and the kinds that broke parsers before: Unicode digits ('²', '٣'),
# numbers of thousands of digits, signs, control characters, percent-decoded slashes.
DIGITISH = st.text(st.characters(categories=["Nd", "No"]), max_size=30)
ANY_TEXT = st.one_of(
    st.none(),
    st.text(max_size=60),
    DIGITISH,
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["²", "1²", "٣", "0" * 5000, "9" * 5000, "-1", "+1", " 1", "1e3", "\x00"]),
)

PARSERS = settings(max_examples=max(500, settings.default.max_examples))


def refused(parse: Callable[[str | None], Any], raw: str | None, name: str) -> WireError | None:
    """None when `parse` accepted `raw`; else its WireError, checked to be a 400 naming
    `name` with a Backendless code."""
    try:
        parse(raw)
    except WireError as exc:
        error = exc
    else:
        return None
    assert error.status == 400
    assert error.code in (rules.INVALID_REQUEST, rules.LENGTH_EXCEEDED)
    assert name.lower() in error.message.lower(), error.message
    return error


@PARSERS
@given(ANY_TEXT)
@example("%C2%B2")
@example("²")
def test_given_any_limit_then_an_integer_in_range_or_a_400_naming_it(raw: str | None) -> None:
    if refused(params.LIMIT.parse, raw, "limit") is None:
        value = params.LIMIT.parse(raw)
        assert 1 <= value <= params.MAX_PAGE
        assert raw is None or (raw.isascii() and int(raw) == value)


@PARSERS
@given(ANY_TEXT)
def test_given_any_after_then_a_non_negative_integer_or_a_400_naming_it(raw: str | None) -> None:
    if refused(params.AFTER.parse, raw, "after") is None:
        assert params.AFTER.parse(raw) >= 0


@PARSERS
@given(st.one_of(ANY_TEXT, st.datetimes().map(lambda d: d.isoformat()), st.just("²")))
@example("2026-11-24T12:00:00Z")
@example("0001-01-01T00:00:00+14:00")
@example("9999-12-31T23:59:59-14:00")
def test_given_any_instant_then_ms_in_range_or_a_400_naming_it(raw: str | None) -> None:
    if refused(params.instant, raw, "instant") is None:
        assert 0 <= params.instant(raw) <= rules.MAX_TIME_MS


def test_given_the_instants_clients_send_then_they_are_read_as_meant() -> None:
    assert params.instant("1700000000000") == 1_700_000_000_000
    assert params.instant("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert params.instant("2023-11-14T22:13:20") == 1_700_000_000_000  # UTC without offset
    for bad in ("²", "٣", "9" * 5000, "-5", "yesterday", "", "1969-12-31T23:59:59Z"):
        assert refused(params.instant, bad, "instant") is not None, bad


@PARSERS
@given(st.one_of(st.none(), st.text(max_size=800), st.text(st.characters(codec="ascii"))))
@example("a/b")
@example("\x00")
@example("\x85")
@example("x" * 501)
def test_given_any_device_id_then_a_printable_segment_or_a_400_naming_it(raw: str | None) -> None:
    if refused(params.device_id, raw, "deviceId") is None:
        assert raw
        assert "/" not in raw
        assert not rules.unprintable(raw)
        assert len(raw) <= rules.MAX_FIELD_LENGTH


@PARSERS
@given(st.one_of(st.none(), st.text(max_size=600)))
@example("a,b")
@example("a\x00")
@example("news")
def test_given_any_channel_then_the_registration_rule_or_a_400_naming_it(raw: str | None) -> None:
    error = refused(params.channel, raw, "channel")
    assert (error is None) == (rules.check_channel(raw or "") is None)


@PARSERS
@given(st.one_of(st.none(), st.text(max_size=200)))
@example("a,,b")
@example(",")
def test_given_any_channel_list_then_valid_names_or_a_400(raw: str | None) -> None:
    if refused(params.channel_list, raw, "channel") is None:
        found = params.channel_list(raw)
        assert found is None or all(rules.check_channel(c) is None for c in found)


@PARSERS
@given(st.one_of(ANY_TEXT, st.binary(max_size=100).map(lambda b: base64.b64encode(b).decode())))
@example("%%")
@example("A" * 10_000)
def test_given_any_cursor_then_a_device_id_or_a_400_naming_it(raw: str | None) -> None:
    if refused(params.cursor, raw, "cursor") is None:
        found = params.cursor(raw)
        assert len(found) <= rules.MAX_FIELD_LENGTH
        assert not rules.unprintable(found)


@PARSERS
@given(st.text(max_size=500).filter(lambda t: not rules.unprintable(t)))
def test_given_a_device_id_then_its_cursor_reads_back_as_it(device: str) -> None:
    assert params.cursor(params.encode_cursor(device)) == device


@PARSERS
@given(ANY_TEXT)
@example("ios")
@example("\u0131os")  # a dotless i upper-cases to 'I': read as IOS, as Python reads it
def test_given_any_os_then_a_known_os_or_a_400_naming_it(raw: str | None) -> None:
    if refused(params.OS.parse, raw, "os") is None:
        assert raw is None or params.OS.parse(raw) in rules.OS_VALUES


@pytest.mark.parametrize(
    ("param", "raw"),
    [
        (params.LIMIT, "%C2%B2"),
        (params.LIMIT, "²"),
        (params.LIMIT, "0"),
        (params.LIMIT, "1001"),
        (params.LIMIT, "-1"),
        (params.LIMIT, "9" * 5000),
        (params.AFTER, "-1"),
        (params.INSTANT, "²"),
        (params.DEVICE_ID, ""),
        (params.DEVICE_ID, "a/b"),
        (params.DEVICE_ID, "a\x00"),
        (params.CHANNEL, "a,b"),
        (params.KIND, "\x1b"),
        (params.CURSOR, "!!"),
    ],
)
def test_given_the_issue_s_inputs_then_each_is_a_400(param: params.Param[Any], raw: str) -> None:
    assert refused(param.parse, raw, param.name.replace("_", "")) is not None
