"""Writes refused at once when the worker is too far behind (services/http/admission.py)."""

from __future__ import annotations

import pytest

from events import rules
from services.http.admission import Admission
from services.http.wire import WireError
from services.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_given_as_many_writes_in_flight_as_allowed_then_the_next_is_refused() -> None:
    metrics = Metrics()
    admission = Admission(max_writes=2, max_wait_s=1.0, metrics=metrics, clock=Clock())
    with admission.write(), admission.write():
        with pytest.raises(WireError) as refused, admission.write():
            pass
        assert (refused.value.status, refused.value.code) == (503, rules.SERVER_BUSY)
        assert refused.value.retry_after_s >= 1
    # Once they are answered, writes are admitted again
    with admission.write():
        assert admission.in_flight == 1
    assert admission.in_flight == 0
    assert metrics.value("devreg_http_writes_refused_total") == 1


def test_given_the_oldest_write_waiting_too_long_then_a_new_one_is_refused() -> None:
    clock = Clock()
    admission = Admission(max_writes=100, max_wait_s=1.0, metrics=Metrics(), clock=clock)
    with admission.write():
        clock.now += 0.5
        with admission.write():  # the oldest has waited 0.5 s: admitted
            clock.now += 0.6
            with pytest.raises(WireError), admission.write():  # it has waited 1.1 s
                pass
        # The oldest is still the first one
        with pytest.raises(WireError), admission.write():
            pass
    with admission.write():  # nothing waits any more
        pass


def test_given_a_write_that_fails_then_it_leaves_the_count() -> None:
    admission = Admission(max_writes=1, max_wait_s=1.0, metrics=Metrics(), clock=Clock())
    with pytest.raises(RuntimeError), admission.write():
        raise RuntimeError("Kafka said no")
    with admission.write():
        pass
