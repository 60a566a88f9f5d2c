"""The wall clock devreg stamps commands and answers with: ms since the epoch, UTC.

Decisions never read it: a command carries its own `issued_at` (events/decide.py), so a
command decided again after a crash decides the same. Only the edges stamp time: HTTP, the
scheduler, the audit commands.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
