"""The worker's metrics, served at /metrics by prometheus_client (HELP and TYPE lines, labels,
histograms in seconds).

Every metric is declared once, below, with its help text and label names; a call that names an
undeclared metric or other labels fails at once. Each worker has a registry of its own (tests
run several in one process). docs/operations.md lists them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.registry import Collector

# Request latencies and expiry lag, in seconds: from 1 ms to 10 s.
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

COUNTERS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "devreg_commands_total": ("Commands decided: accepted, rejected, or repeated", ("result",)),
    "devreg_outcomes_total": ("Outcomes published, by Backendless code (0: accepted)", ("code",)),
    "devreg_commands_dead_lettered_total": ("Records that were not a command (to the DLQ)", ()),
    "devreg_events_emitted_total": ("Events published by this worker's processor", ()),
    "devreg_events_applied_total": ("Events applied to the projection", ()),
    "devreg_events_applied_at_once_total": (
        "Of those, events applied as soon as Kafka acknowledged them (write-through)",
        (),
    ),
    "devreg_events_duplicate_total": ("Re-emitted events skipped by the projection", ()),
    "devreg_expiry_commands_total": ("Expiry commands sent by the scheduler", ()),
    "devreg_expiry_devices_total": ("Device expiries the scheduler's commands carried", ()),
    "devreg_expiry_prepared_total": (
        "Expiry commands decided ahead of their instant: kept, used, or dropped (a device"
        " of it decided on since), and prepare passes that failed",
        ("result",),
    ),
    "devreg_supersede_commands_total": ("Supersede commands sent by the token index", ()),
    "devreg_retention_commands_total": ("Forget commands sent by retention", ()),
    "devreg_handler_failures_total": ("Handler failures that stopped the worker", ()),
    "devreg_http_exports_cut_total": ("Streamed exports cut off: the client stopped reading", ()),
    "devreg_http_live_cut_total": (
        "Live event streams cut off: the viewer fell behind or stopped reading",
        (),
    ),
    "devreg_read_back_pauses_total": ("Events partitions paused: only own events to read", ()),
    "devreg_read_back_resumes_total": ("Events partitions read again, by reason", ("reason",)),
    "devreg_embedded_rollovers_total": (
        "Times the embedded broker was given fresh, short partitions from the kept log",
        (),
    ),
    "devreg_embedded_rollover_backlog_records_total": (
        "Records renewals copied below the tails because the worker had still to read them",
        (),
    ),
    "devreg_embedded_rollover_foreign_records_total": (
        "Records others wrote to the fresh partitions before a renewal gave them their tails,"
        " given back after the tails",
        (),
    ),
    "devreg_tokens_read_back_pauses_total": (
        "Tokens partitions paused: only records the token index folded at once to read",
        (),
    ),
    "devreg_tokens_read_back_resumes_total": (
        "Tokens partitions read again, by reason",
        ("reason",),
    ),
    "devreg_read_back_rechecks_put_off_total": (
        "Rechecks of paused events partitions put off: the processor had batches in flight",
        (),
    ),
    "devreg_expiry_bursts_held_total": (
        "Expiry bursts whose commits were held until sent, by how the hold ended",
        ("ended",),
    ),
    "devreg_commands_read_back_rechecks_put_off_total": (
        "Rechecks of paused commands partitions put off: an expiry burst was being sent",
        (),
    ),
    "devreg_tokens_read_back_rechecks_put_off_total": (
        "Rechecks of paused tokens partitions put off: the processor had batches in flight",
        (),
    ),
    "devreg_token_records_folded_at_once_total": (
        "Claims and releases folded into the token index at Kafka's acknowledgement",
        (),
    ),
    "devreg_commands_read_back_pauses_total": (
        "Commands partitions paused: only commands decided already to read",
        (),
    ),
    "devreg_commands_read_back_resumes_total": (
        "Commands partitions read again, by reason",
        ("reason",),
    ),
    "devreg_commands_handed_off_total": (
        "Own commands decided from Kafka's acknowledgement, without reading them back",
        (),
    ),
    "devreg_commands_left_to_log_total": (
        "Own commands left to be read from the log, by reason (gap, fenced)",
        ("reason",),
    ),
    "devreg_tokens_opened_total": (
        "Sealed texts opened with their key: read, and not remembered as opened",
        (),
    ),
    "devreg_http_writes_refused_total": (
        "POSTs and DELETEs answered 503 at once: too many in flight or waiting too long",
        (),
    ),
}
GAUGES: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "devreg_expirations_pending": ("Subscriptions with an expiration still to come", ()),
    "devreg_projection_lag_events": (
        "Events this worker emitted and its projection has not applied yet",
        ("partition",),
    ),
    "devreg_read_back_paused_partitions": ("Events partitions whose read-back is paused", ()),
    "devreg_live_viewers": ("Live event streams this worker serves now", ()),
    "devreg_tokens_read_back_paused_partitions": (
        "Tokens partitions whose read-back is paused",
        (),
    ),
    "devreg_commands_read_back_paused_partitions": (
        "Commands partitions whose read-back is paused",
        (),
    ),
    "devreg_http_writes_in_flight": ("POSTs and DELETEs being answered", ()),
}
HISTOGRAMS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "devreg_http_request_duration_seconds": (
        "HTTP request latency, by method, route template and status",
        ("method", "route", "status"),
    ),
    "devreg_expiry_send_lag_seconds": (
        "From an expiration to its expiry command being sent",
        (),
    ),
    "devreg_embedded_rollover_seconds": (
        "How long new commands were held while the embedded broker's partitions were renewed",
        (),
    ),
}
Labels = tuple[tuple[str, str], ...]


class Metrics:
    def __init__(self) -> None:
        # A `_created` series per counter tells nobody anything here, and doubles the page.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self._families: dict[str, Any] = {}
        for name, (doc, labels) in COUNTERS.items():
            self._declare(name, Counter(name, doc, labels, registry=self.registry))
        for name, (doc, labels) in GAUGES.items():
            self._declare(name, Gauge(name, doc, labels, registry=self.registry))
        for name, (doc, labels) in HISTOGRAMS.items():
            family = Histogram(name, doc, labels, registry=self.registry, buckets=BUCKETS_S)
            self._declare(name, family)
        # A labelled child per label values, looked up once: .labels() costs more than .inc().
        self._children: dict[tuple[str, Labels], Any] = {}

    def _declare(self, name: str, family: Collector) -> None:
        self._families[name] = family

    def _child(self, name: str, labels: dict[str, str]) -> Any:
        key = (name, tuple(sorted(labels.items())))
        child = self._children.get(key)
        if child is None:
            family = self._families[name]
            child = family.labels(**labels) if labels else family
            self._children[key] = child
        return child

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        self._child(name, labels).inc(amount)

    def set(self, name: str, value: float, **labels: str) -> None:
        self._child(name, labels).set(value)

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        self._child(name, labels).observe(seconds)

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's current value (0 if never touched)."""
        sample = name if name in GAUGES else name.removesuffix("_total") + "_total"
        found = self.registry.get_sample_value(sample, labels or None)
        return found or 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)
