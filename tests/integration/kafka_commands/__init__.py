"""Commands published straight to Kafka (docs/design.md §4): outcomes, dead letters, idempotency.

A producer outside devreg publishes to `<prefix>.commands` with the device's partition key;
the tests read `<prefix>.outcomes`, `<prefix>.events` and `<prefix>.commands.dlq` from the
beginning with plain consumers, and check the effect over HTTP.

To prove something did *not* happen (no second outcome, no event), a test publishes a marker
command to the same partition after it and reads until the marker's own record: the processor
handles a partition in order and emits a command's records to the partition it came from, so
anything the first command produced sits before the marker's.

The modules here share one worker and one producer (conftest.py): each test uses a device
and command ids of its own.
"""
