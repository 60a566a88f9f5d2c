"""The token index folds the processor's own claims at Kafka's acknowledgement
(services/tokens/relay.py `handle_own`), as the projection folds its events: by the time a
registration is answered, a lookup of its token names it, with no trip through the consumer
(docs/design.md §12)."""

from __future__ import annotations

import uuid

from tests.integration.token_support import admin
from tests.support import WorkerProcess, call, metric, registration

REGISTRATIONS = 20


async def test_given_a_registration_answered_then_its_token_is_in_the_index_at_once(
    devreg_worker: WorkerProcess,
) -> None:
    worker = devreg_worker
    before = await metric(worker, "devreg_token_records_folded_at_once_total")
    for n in range(REGISTRATIONS):
        # Given a device registered with a token of its own
        device, token = f"own-{n}-{uuid.uuid4().hex[:8]}", f"push-{uuid.uuid4().hex}"
        body = registration(device, deviceToken=token)
        status, answer = await call("POST", worker.url("messaging/registrations"), body)
        assert status == 200, answer

        # When its token is looked up the moment the registration is answered
        status, found = await admin(worker, "POST", "tokens/lookup", {"deviceToken": token})

        # Then the index names the device: its claim was folded before the answer
        assert (status, found.get("deviceId")) == (200, device), (n, found)
    folded = await metric(worker, "devreg_token_records_folded_at_once_total")
    assert folded - before >= REGISTRATIONS
