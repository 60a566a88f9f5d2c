"""Configuration from the environment: the event loop choice, and the README's table."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import uvloop

from services import event_loop
from services.config import KNOWN_VARIABLES, ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_given_no_choice_then_uvloop_and_asyncio_on_request() -> None:
    assert load_settings({}).event_loop == "uvloop"
    assert event_loop.run(_loop_type(), "uvloop") is uvloop.Loop
    chosen = load_settings({"DEVREG_EVENT_LOOP": " AsyncIO "}).event_loop
    assert chosen == "asyncio"
    assert event_loop.run(_loop_type(), chosen) is not uvloop.Loop


def test_given_an_unknown_loop_then_the_error_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="DEVREG_EVENT_LOOP"):
        load_settings({"DEVREG_EVENT_LOOP": "trio"})


def test_every_variable_devreg_reads_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert [v for v in sorted(KNOWN_VARIABLES) if f"`{v}`" not in readme] == []


@pytest.mark.parametrize("name", sorted(v for v in KNOWN_VARIABLES if v.endswith(("_MS", "_PORT"))))
def test_given_a_number_that_is_not_one_then_the_error_names_the_variable(name: str) -> None:
    # Given Unicode digits, a sign, a fraction: none is a whole number of milliseconds or a port.
    for raw in ("٣", "-5", "1.5", "10" * 10):
        with pytest.raises(ConfigError, match=f"^{name}="):
            load_settings({name: raw})


def test_given_values_with_spaces_and_case_then_read_as_meant() -> None:
    settings = load_settings({"DEVREG_PARTITIONS": " 3 ", "DEVREG_LOG_LEVEL": "WARN"})
    assert (settings.partitions, settings.log_level) == (3, "warn")
    assert load_settings({}).session_timeout_ms == 2000  # the embedded broker's
    assert load_settings({"KAFKA_BOOTSTRAP": "k:9092"}).session_timeout_ms == 10000
