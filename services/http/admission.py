"""Admission of writes: a POST or DELETE is refused at once (503, code 5904, Retry-After)
when the worker already has more in flight than it can answer in time.

Under open-loop load beyond what one worker decides, every accepted write waits longer than
the one before it, until all of them time out (5900) after having cost their full work. Past
either bound below, a new write is refused before anything is sent to Kafka: it costs
little, tells the client to come back, and leaves the worker to answer the writes it took
within their deadline.

- `max_writes`: how many may be in flight at once;
- `max_wait_s`: how long the oldest one in flight may have waited: when the pipeline is that
  far behind, a new one would wait at least as long.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count

from events import rules
from services.http.wire import WireError
from services.metrics import Metrics

RETRY_AFTER_S = 1


class Admission:
    def __init__(
        self,
        max_writes: int,
        max_wait_s: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._max_writes = max_writes
        self._max_wait_s = max_wait_s
        self._metrics = metrics
        self._clock = clock
        self._started: dict[int, float] = {}  # in start order: the first is the oldest
        self._ids = count()

    @property
    def in_flight(self) -> int:
        return len(self._started)

    def _oldest_wait_s(self, now: float) -> float:
        for started in self._started.values():
            return now - started
        return 0.0

    @contextmanager
    def write(self) -> Iterator[None]:
        """Around one write's wait for Kafka and visibility; raises WireError (503) instead
        of entering when the worker is too far behind."""
        now = self._clock()
        if len(self._started) >= self._max_writes or self._oldest_wait_s(now) > self._max_wait_s:
            self._metrics.inc("devreg_http_writes_refused_total")
            message = "Too many registrations are waiting to be applied; retry later"
            raise WireError(rules.SERVER_BUSY, message, 503, RETRY_AFTER_S)
        ticket = next(self._ids)
        self._started[ticket] = now
        try:
            yield
        finally:
            del self._started[ticket]
