"""One guard per third-party private name devreg touches.

devreg reaches into private names of three libraries, each in one adapter module:
- aiokafka (services/kafka/faust_app.py, `_tune_consumer`): two settings faust does not expose;
  (services/kafka/clients.py, `connect_directly`): the connection factory its clients call;
- faust-streaming and mode (services/kafka/faust_app.py, services/kafka/faust_delivery.py):
  the consumer thread that builds the aiokafka consumer, and the fetch loop's delivery race;
- aiosqlite (projections/sqlite.py, `InlineConnection`): running calls on the loop's thread.

Each test names one private name and fails loudly if an upgrade renames or removes it, so an
upgrade breaks here, with the name, and not in production. The libraries are pinned to the
tested ranges in pyproject.toml.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import aiokafka.client
import aiosqlite
import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service

from projections.sqlite import InlineConnection


def _init_source(cls: type) -> str:
    return inspect.getsource(cls.__init__)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "argument"),
    [
        ("_fetch_max_wait_ms", "fetch_max_wait_ms"),
        ("_partition_assignment_strategy", "partition_assignment_strategy"),
    ],
)
def test_aiokafka_consumer_keeps_its_setting_in(name: str, argument: str) -> None:
    # Given the aiokafka consumer faust builds, devreg overwrites these two attributes before
    # it starts: they must still hold the constructor's setting and be read at start.
    assert f"self.{name} = {argument}" in _init_source(AIOKafkaConsumer)
    assert f"self.{name}" in inspect.getsource(AIOKafkaConsumer.start)


def test_aiokafka_clients_connect_through_their_module_create_conn() -> None:
    # connect_directly replaces `aiokafka.client.create_conn`: the bootstrap and every broker
    # connection must still be made through that module-level name, host and port first.
    assert callable(aiokafka.client.create_conn)
    connect = inspect.getsource(AIOKafkaClient._get_conn)
    assert re.search(r"await create_conn\(\s*broker\.host,\s*broker\.port,", connect)
    assert re.search(
        r"await create_conn\(\s*host,\s*port,", inspect.getsource(AIOKafkaClient.bootstrap)
    )


def test_faust_consumer_has_its_thread() -> None:
    assert "self._thread" in inspect.getsource(faust_aiokafka.Consumer)


@pytest.mark.parametrize("name", ["_create_worker_consumer", "_ensure_consumer", "call_thread"])
def test_faust_consumer_thread_has(name: str) -> None:
    assert callable(getattr(faust_aiokafka.AIOKafkaConsumerThread, name))


def test_faust_thread_builds_the_consumer_through_create_worker_consumer() -> None:
    # devreg wraps `_create_worker_consumer` to tune the consumer it returns.
    source = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread)
    assert "self._create_worker_consumer(transport)" in source


@pytest.mark.parametrize("name", ["_stopped", "_crashed"])
def test_mode_service_has_event(name: str) -> None:
    # The delivering consumer (services/kafka/faust_delivery.py) reads these two events.
    assert f"self.{name} = self._new{name}_event()" in inspect.getsource(Service)


@pytest.mark.parametrize("name", ["_execute", "_connect"])
def test_aiosqlite_connection_has_method(name: str) -> None:
    method: Any = getattr(aiosqlite.Connection, name)
    assert inspect.iscoroutinefunction(method)
    assert name in InlineConnection.__dict__  # the adapter overrides exactly this one


@pytest.mark.parametrize("name", ["_running", "_connection", "_connector"])
def test_aiosqlite_connection_keeps(name: str) -> None:
    assert f"self.{name}" in _init_source(aiosqlite.Connection)
