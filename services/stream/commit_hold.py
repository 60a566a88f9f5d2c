"""Holding the commits of an expiry burst until the burst is sent (docs/design.md §7).

At an instant for which the processor kept decisions made ahead (prepared_expiries.py), what
the target asks (in the log within a second) is only their sending: ~5 µs per device. The
commits and folds of each batch (the decision store, the projection, the token index) cost
~40-60 µs per device of SQLite on the event loop; run between the burst's sends, they put the
last expiry in the log only once nearly all of them had run (docs/benchmarks.md). So:

- the scheduler tells the processor just before it sends an instant's commands decided ahead
  (`CommandProcessor.hold_commits`), and the worker pauses its readers of its own records
  (events, tokens, commands: services/stream/read_back.py `hold_off`), so that none of the
  burst is read back from the log and folded there while its commits wait;
- the commits of the batches sent meanwhile wait, and then run in order, as ever;
- their token records wait too, and go out after the burst (token_lane.py);
- the garbage collector waits too: its young collections took 60-100 ms of each 100k burst,
  over a heap holding the kept decisions (docs/benchmarks.md). What the burst allocates is
  freed by reference counting as ever; cycles wait until the hold ends (2 s at most).

The hold ends as soon as any of these holds:
- no kept decision is due any more (all used, or dropped: those are decided afresh);
- a batch with a decision made afresh is sent: a command that is not part of the burst
  (an HTTP registration, say) never waits on it beyond what it would without the hold;
- `HOLD_MAX_S` passed since it began: a due command that never arrives (its partition moved)
  holds nothing for long;
- the processor drains (a seek, a stop) or its kept decisions are forgotten (a rebalance).

What is held is only the commit: nothing acknowledged is lost by it (a crash re-processes the
commands, as for any batch in flight), and readers wait for the fold as they would anyway.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

HOLD_MAX_S = 2.0  # a hold never lasts longer than this


class CommitHold:
    def __init__(
        self,
        due: Callable[[int], bool],
        released: Callable[[str], None] = lambda why: None,
        hold_max_s: float = HOLD_MAX_S,
    ):
        self._due = due  # whether kept decisions due at this time (ms) remain
        self._on_release = released  # told each time a hold ends, and why
        self._hold_max_s = hold_max_s
        self._released: asyncio.Event | None = None  # set while a hold is on
        self._timer: asyncio.TimerHandle | None = None
        self._collecting = False  # the collector was on when the hold began

    @property
    def active(self) -> bool:
        return self._released is not None

    def begin(self) -> bool:
        """Hold from now, if kept decisions are due (the scheduler is about to send them)."""
        if self._due(_now_ms()) and not self.active:
            self._released = asyncio.Event()
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._hold_max_s, self.release, "bound")
            self._collecting = gc.isenabled()
            gc.disable()
        return self.active

    def after_sending(self, afresh: bool) -> None:
        """After a batch was handed to the producer: keep or end the hold (only the
        scheduler's word begins one)."""
        if not self.active:
            return
        if afresh:
            self.release("afresh")
        elif not self._due(_now_ms()):
            self.release("sent")

    async def passed(self) -> None:
        """Returns once no hold is on (at once, mostly)."""
        released = self._released
        if released is not None:
            await released.wait()

    def release(self, why: str) -> None:
        """End the hold, if one is on: `why` is "sent" (nothing kept is due any more),
        "afresh", "bound" (HOLD_MAX_S), "drain" or "rebalance"."""
        released, self._released = self._released, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._collecting:
            self._collecting = False
            gc.enable()
        if released is not None:
            released.set()
            self._on_release(why)


def _now_ms() -> int:
    return int(time.time() * 1000)
