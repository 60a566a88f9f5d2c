"""devreg's benchmark harness: `python -m bench` (see docs/benchmarks.md).

One module per benchmark (register, freshness, ingest, lookup, channel_page, rebuild, expiry),
plus what they stand on: stack (broker and worker processes), feed (bulk commands), load
(HTTP load generator), reading (topic reads), servers (stand-in HTTP servers), report.
"""
