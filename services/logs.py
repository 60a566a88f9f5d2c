"""Logging set-up: readable text for a terminal, JSON lines for a deployment.

Log calls that concern one command pass `extra={"command_id": …}`, so a registration can be
followed from the HTTP request through the command processor in the JSON logs.

No line ever carries a key (docs/security.md): paths are logged with their key segment
replaced (services/http/middleware.py), headers are never logged, and every line leaves through a
formatter that masks each configured key wherever it appears, so a library's own message (an
exception quoting a URL, say) cannot leak one either.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable

import msgspec

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
MASK = "***"
_CARRIED = ("command_id", "app_id", "device_id", "partition", "offset")
_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CARRIED:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


class Masking(logging.Formatter):
    """Formats with `inner`, then masks every secret in the whole line (tracebacks too)."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner
        self.secrets: list[str] = []

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


_masking: Masking | None = None


def setup(level: str, fmt: str) -> None:
    global _masking
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    _masking = Masking(formatter)
    handler.setFormatter(_masking)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # faust and aiokafka are chatty at INFO; their warnings still show.
    for noisy in ("faust", "mode", "aiokafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, LEVELS[level]))


def hide(secrets: Iterable[str]) -> None:
    """Mask these values in every line from now on (the keys, once they are known)."""
    if _masking is not None:
        # Longest first: a key that contains another is masked whole.
        known = {*_masking.secrets, *(s for s in secrets if s)}
        _masking.secrets = sorted(known, key=len, reverse=True)
