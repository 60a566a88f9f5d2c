"""The worker's garbage collector: what start-up built is frozen, and young collections are
rarer.

A request allocates a few hundred container objects (the request, its futures, the command,
its record), nearly all gone when it is answered. With Python's default threshold (700) the
young generation is collected every few requests, and each full collection walks everything
start-up built (faust, aiokafka, aiohttp, their modules), which never becomes garbage. Frozen,
that is never walked again; a higher threshold collects the same garbage in fewer, larger
passes. docs/benchmarks.md has the measurements.
"""

from __future__ import annotations

import gc


def tune(young_threshold: int) -> None:
    """Call once start-up is over; 0 leaves Python's defaults."""
    if not young_threshold:
        return
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)
