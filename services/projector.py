"""The projector: applies event batches to the SQLite projection and reports progress."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from projections.positions import Record
from projections.store import ProjectionStore
from services.metrics import Metrics
from services.visibility import Visibility

log = logging.getLogger(__name__)


class Projector:
    def __init__(
        self,
        store: ProjectionStore,
        visibility: Visibility,
        metrics: Metrics,
        expirations_changed: Callable[[int | None], None],
    ):
        self._store = store
        self._visibility = visibility
        self._metrics = metrics
        self._expirations_changed = expirations_changed

    async def handle(self, records: Sequence[Record]) -> None:
        # A ProjectionError propagates: the agent crashes and the worker stops, loudly,
        # rather than moving past an event it could not apply.
        result = await self._store.apply(records)
        self._metrics.inc("devreg_events_applied_total", result.applied)
        self._metrics.inc("devreg_events_duplicate_total", result.duplicates)
        self._visibility.applied(result.positions)
        if result.applied:
            self._expirations_changed(result.earliest_expiration)
