"""Kafka security settings (services/credentials.py) and what every client gets of them: each
aiokafka client built in services/kafka/clients.py, and faust (services/kafka/faust_app.py)."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from services.config import ConfigError, load_settings
from services.kafka import clients
from services.kafka.clients import KafkaAccess
from services.kafka.faust_app import broker_credentials
from tests.kafka_tls import self_signed

BOOT = {"KAFKA_BOOTSTRAP": "k1:9093,k2:9093"}


@pytest.fixture(scope="module")
def cafile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("`openssl` makes the test certificate")
    cert, _ = self_signed(tmp_path_factory.mktemp("ca"))
    return cert


def access(**env: str) -> KafkaAccess:
    settings = load_settings({**BOOT, **env})
    assert settings.kafka_bootstrap is not None
    return settings.kafka_at(settings.kafka_bootstrap)


def auth(options: dict[str, Any]) -> dict[str, Any]:
    """The security part of client options, the TLS context as (verify mode, CA subjects)."""
    found = {k: v for k, v in options.items() if k.startswith(("security", "sasl", "ssl"))}
    context = found.pop("ssl_context", None)
    if context is not None:
        subjects = [
            dict(x[0] for x in ca["subject"]).get("commonName") for ca in context.get_ca_certs()
        ]
        found["ssl"] = (context.verify_mode, context.check_hostname, subjects)
    return found


def test_given_no_settings_then_plaintext() -> None:
    kafka = access()
    assert kafka.options() == {
        "bootstrap_servers": "k1:9093,k2:9093",
        "security_protocol": "PLAINTEXT",
    }
    assert broker_credentials(kafka) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "scram-sha-512"])
def test_given_sasl_ssl_then_every_client_and_faust_get_the_same(
    cafile: Path, mechanism: str
) -> None:
    kafka = access(
        KAFKA_SECURITY_PROTOCOL="sasl_ssl",
        KAFKA_SASL_MECHANISM=mechanism,
        KAFKA_SASL_USERNAME="svc",
        KAFKA_SASL_PASSWORD="pw",
        KAFKA_SSL_CAFILE=str(cafile),
    )
    expected = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism.upper(),
        "sasl_plain_username": "svc",
        "sasl_plain_password": "pw",
        "ssl": (ssl.CERT_REQUIRED, True, ["localhost"]),
    }
    assert auth(kafka.options()) == expected
    # faust, as its aiokafka driver turns the credentials into client options
    assert auth(dict(credentials_to_aiokafka_auth(broker_credentials(kafka)))) == expected
    assert "pw" not in repr(kafka)


async def test_given_credentials_then_each_aiokafka_client_is_built_with_them(
    cafile: Path,
) -> None:
    kafka = access(
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        KAFKA_SASL_USERNAME="svc",
        KAFKA_SASL_PASSWORD="pw",
        KAFKA_SSL_CAFILE=str(cafile),
    )
    producer, consumer = clients.producer(kafka), clients.consumer(kafka)
    admin, client = clients.admin(kafka), clients.client(kafka)
    try:
        for built in (producer.client, consumer._client, admin._client, client):
            assert (built._security_protocol, built._sasl_mechanism) == (
                "SASL_SSL",
                "SCRAM-SHA-512",
            )
            assert (built._sasl_plain_username, built._sasl_plain_password) == ("svc", "pw")
            assert isinstance(built._ssl_context, ssl.SSLContext)
    finally:
        await producer.stop()
        await clients.stop_consumer(consumer)
        await admin.close()
        await client.close()


def test_given_ssl_or_sasl_plaintext_then_only_what_applies() -> None:
    tls = access(KAFKA_SECURITY_PROTOCOL="SSL")
    assert auth(tls.options())["security_protocol"] == "SSL"
    assert auth(tls.options())["ssl"][:2] == (ssl.CERT_REQUIRED, True)  # the system's CAs
    assert "sasl_mechanism" not in tls.options()
    assert (
        auth(dict(credentials_to_aiokafka_auth(broker_credentials(tls))))["security_protocol"]
        == "SSL"
    )
    sasl = access(
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", KAFKA_SASL_USERNAME="u", KAFKA_SASL_PASSWORD="p"
    )
    assert auth(sasl.options()) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",  # Kafka clients' default
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
    }
    faust_auth = dict(credentials_to_aiokafka_auth(broker_credentials(sasl)))
    assert (faust_auth["security_protocol"], faust_auth["ssl_context"]) == ("SASL_PLAINTEXT", None)


def test_given_a_password_file_then_read_and_masked_in_logs(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    settings = load_settings(
        {
            **BOOT,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_USERNAME": "u",
            "KAFKA_SASL_PASSWORD_FILE": str(secret),
        }
    )
    assert settings.kafka_at("k:1").password == "from-a-file"
    assert "from-a-file" in settings.secrets()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_USERNAME needs KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs KAFKA_SASL_USERNAME"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"}, "password"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SASL_USERNAME": "u"},
            "needs KAFKA_SECURITY_PROTOCOL=SASL",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SSL_CAFILE": "/etc/hosts"},
            "KAFKA_SSL_CAFILE needs",
        ),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/no/such"}, "no such file"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"}, "MECHANISM"),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_USERNAME": "u",
                "KAFKA_SASL_PASSWORD": "secret-pw",
                "KAFKA_SASL_PASSWORD_FILE": "/etc/hosts",
            },
            "set one of them",
        ),
    ],
)
def test_given_incomplete_settings_then_an_error_naming_them(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named) as error:
        load_settings({**BOOT, **env})
    assert "secret-pw" not in str(error.value)


def test_given_credentials_without_kafka_bootstrap_then_an_error() -> None:
    with pytest.raises(ConfigError, match="needs KAFKA_BOOTSTRAP"):
        load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL"})
