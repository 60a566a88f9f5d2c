"""A Kafka that needs credentials: a worker (its producers and admin client, faust's consumer
group and producer) and the CLI connect over TLS with SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)
through a front that checks both (tests/kafka_front.py: the embedded broker checks neither);
a wrong password is refused, and shown nowhere.

What this cannot test here: a broker's own SASL and TLS, its ACLs, a real cluster
(docs/security.md).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.kafka_front import Front, FrontedBroker
from tests.kafka_tls import self_signed, server_context
from tests.support import WorkerProcess, call, devreg, registration, wait_for

if shutil.which("openssl") is None:
    pytest.skip("`openssl` makes the brokers' test certificate", allow_module_level=True)

USER, PASSWORD = "devreg", f"pw-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
async def secured(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FrontedBroker]:
    """A broker reachable only over TLS, with a SASL user."""
    directory = tmp_path_factory.mktemp("secured")
    cert, key = self_signed(directory)
    front = Front(("127.0.0.1", 0), {USER: PASSWORD}, server_context(cert, key))
    broker = FrontedBroker(directory / "tansu.log", front, cafile=cert)
    await broker.start()
    yield broker
    await broker.stop()


def credentials(broker: FrontedBroker, mechanism: str, password: str = PASSWORD) -> dict[str, str]:
    return {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": mechanism,
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": password,
        "KAFKA_SSL_CAFILE": str(broker.cafile),
    }


async def test_given_sasl_ssl_then_a_worker_and_the_cli_work_through_it(
    secured: FrontedBroker, tmp_path: Path
) -> None:
    # Given a worker configured with SCRAM-SHA-512 over TLS, the broker's CA its only trust
    env = credentials(secured, "SCRAM-SHA-512")
    worker = WorkerProcess(tmp_path / "data", secured.bootstrap, env=env)
    await worker.start()  # topics created by its admin client, its consumer group joined
    try:
        # When a device registers (a command produced, decided, its events produced, read
        # back by faust's consumer) and is read back
        url = worker.url("messaging/registrations")
        status, body = await call("POST", url, json=registration("secure-1"))
        assert status == 200, body
        status, body = await call("GET", f"{url}/secure-1")
        assert status == 200, body

        # Then the CLI, with the same settings, reads the log through the same front
        code, out, err = await devreg(worker, "replay", "--app", worker.app_id, "--quiet")
        assert code == 0, err
        assert b"secure-1" in out
        code, out, err = await devreg(worker, "topics")
        assert code == 0, err
        # And every connection authenticated as the user, none was refused
        assert secured.front.refused == []
        assert len(secured.front.authenticated) >= 4  # producers, faust, the CLI's clients
        assert set(secured.front.authenticated) == {f"SCRAM-SHA-512 {USER}"}
        assert PASSWORD not in worker.log()
    finally:
        await worker.stop()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_given_each_mechanism_then_the_cli_authenticates_with_it(
    secured: FrontedBroker, tmp_path: Path, mechanism: str
) -> None:
    worker = WorkerProcess(tmp_path, secured.bootstrap, env=credentials(secured, mechanism))
    code, _, err = await devreg(worker, "topics")
    assert code == 0, err
    assert f"{mechanism} {USER}" in secured.front.authenticated


async def test_given_a_wrong_password_then_refused_and_shown_nowhere(
    secured: FrontedBroker, tmp_path: Path
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    env = credentials(secured, "SCRAM-SHA-256", wrong)
    refused_before = len(secured.front.refused)
    # When the CLI connects with it, Then it fails, naming no password
    worker = WorkerProcess(tmp_path / "data", secured.bootstrap, env=env)
    code, out, err = await devreg(worker, "topics", deadline_s=90)
    assert code != 0
    assert wrong not in err
    assert wrong.encode() not in out
    # And a worker does not start: it exits with an error, the password not in its log
    with pytest.raises(AssertionError, match="devreg exited with"):
        await worker.start(deadline_s=90)
    assert wrong not in worker.log()
    assert any(f"SCRAM-SHA-256 {USER}" == r for r in secured.front.refused[refused_before:])


async def test_given_no_credentials_then_the_front_lets_nothing_through(
    secured: FrontedBroker, tmp_path: Path
) -> None:
    # Given a client that speaks TLS but no SASL (the setting forgotten)
    env = {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(secured.cafile)}
    worker = WorkerProcess(tmp_path, secured.bootstrap, env=env)
    code, _, err = await devreg(worker, "topics", deadline_s=90)
    assert code != 0, err
    await wait_for(lambda: any("before authentication" in r for r in secured.front.refused), 5)
