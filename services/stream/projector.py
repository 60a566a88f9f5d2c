"""The projector: applies event batches to the SQLite projection and reports progress."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from projections.positions import Record
from projections.store import ApplyResult, ProjectionStore
from services.metrics import Metrics
from services.stream.read_back import ReadBack
from services.stream.visibility import Visibility

log = logging.getLogger(__name__)


class Projector:
    def __init__(
        self,
        store: ProjectionStore,
        visibility: Visibility,
        metrics: Metrics,
        expirations_changed: Callable[[int | None], None],
        read_back: ReadBack,
    ):
        self._store = store
        self._visibility = visibility
        self._metrics = metrics
        self._expirations_changed = expirations_changed
        self._read_back = read_back

    async def handle(self, records: Sequence[Record]) -> None:
        """Events read from the log. A ProjectionError propagates: the agent crashes and the
        worker stops, loudly, rather than moving past an event it could not apply."""
        copies = self._store.only_applied(records)
        self._applied(await self._store.apply(records))
        await self._read_back.only_copies(copies)

    async def handle_own(self, records: Sequence[Record]) -> None:
        """Events the command processor has just had acknowledged, folded at once: they are
        visible without a second trip through the consumer (docs/design.md §2 still holds: the
        fold, the positions and the transaction are the same as for events read back)."""
        result = await self._store.apply_next(records)
        if result is not None:
            self._metrics.inc("devreg_events_applied_at_once_total", result.applied)
            self._applied(result)
        await self._read_back.not_applied(self._store.not_applied(records))

    def _applied(self, result: ApplyResult) -> None:
        self._metrics.inc("devreg_events_applied_total", result.applied)
        self._metrics.inc("devreg_events_duplicate_total", result.duplicates)
        self._visibility.applied(result.positions)
        if result.applied:
            self._expirations_changed(result.earliest_expiration)
