"""A registration's token is remembered as opened when it is sealed (services/keys/personal.py),
so neither the write (whose token the processor fingerprints for the token index) nor the
reads that follow it open a token: the worker's count of openings stays put. An
erasure still drops what was remembered (tests/integration/test_keyring_opened.py)."""

from __future__ import annotations

from tests.integration.http_contract.registration_api import (
    get_registration,
    new_device,
    register,
)
from tests.support import WorkerProcess, metric

OPENED = "devreg_tokens_opened_total"


async def test_given_devices_registered_over_http_then_writes_and_reads_open_no_token(
    devreg_worker: WorkerProcess,
) -> None:
    # Given devices registered over HTTP (their tokens sealed at the edge)
    before = await metric(devreg_worker, OPENED)
    devices = [new_device("opened") for _ in range(5)]
    for device in devices:
        await register(devreg_worker, device, deviceToken=f"push-{device}")
    registered = await metric(devreg_worker, OPENED)

    # When each is read back, twice
    tokens = [(await get_registration(devreg_worker, d))["deviceToken"] for d in devices * 2]

    # Then the tokens read right, and none was opened, by the writes or the reads
    assert tokens == [f"push-{d}" for d in devices * 2]
    assert await metric(devreg_worker, OPENED) == registered == before
