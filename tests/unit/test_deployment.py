"""docker-compose.yml and the Dockerfile, checked without a container engine: the services,
ports, volumes and environment must be ones devreg really reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.config import KNOWN_VARIABLES, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


# What docker compose substitutes for `${VAR:-default}` and `${VAR:?message}` (required: a
# value the operator gives) when checking the file without an engine.
_GIVEN = {"DEVREG_TOKEN_KEYS": "k1:" + "A" * 44, "DEVREG_KEK": "A" * 43 + "="}


def _substituted(value: str) -> str:
    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.group(1), match.group(2), match.group(3)
        return rest if kind == ":-" else _GIVEN[name]

    return re.sub(r"\$\{(\w+)(:-|:\?)([^}]*)\}", one, value)


def test_compose_runs_kafka_in_kraft_mode_with_a_volume(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = _env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    data_dir = env["KAFKA_LOG_DIRS"]
    assert any(v.endswith(":" + data_dir) for v in kafka["volumes"])
    assert kafka["volumes"][0].split(":")[0] in compose["volumes"]


def test_compose_workers_are_configured_only_with_variables_devreg_reads(
    compose: dict[str, Any],
) -> None:
    workers = {n: s for n, s in compose["services"].items() if n.startswith("devreg-")}
    assert len(workers) >= 2
    urls = set()
    for name, service in workers.items():
        env = _env(service)
        assert set(env) <= KNOWN_VARIABLES, f"{name}: unknown {set(env) - KNOWN_VARIABLES}"
        settings = load_settings({k: _substituted(v) for k, v in env.items()})
        assert settings.token_keys is not None, f"{name}: one DEVREG_TOKEN_KEYS for all workers"
        assert settings.kafka_bootstrap == "kafka:9092"
        assert settings.http_host == "0.0.0.0" or "DEVREG_HTTP_HOST" not in env
        urls.add(settings.advertised_url)
        # Each worker keeps its SQLite stores on a volume of its own.
        [volume] = service["volumes"]
        assert volume.split(":")[1] == "/var/lib/devreg"
        assert volume.split(":")[0] in compose["volumes"]
        # The published port reaches the port the image listens on.
        assert [p.rsplit(":", 1)[1] for p in service["ports"]] == ["8080"]
    assert len(urls) == len(workers), "each worker needs its own advertised URL"


def test_dockerfile_is_slim_non_root_with_a_health_check() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "python:3.11-slim" in text
    assert "\nUSER devreg" in text
    assert "HEALTHCHECK" in text
    assert "/healthz" in text
    for variable in ("DEVREG_DATA_DIR", "DEVREG_HTTP_HOST", "DEVREG_HTTP_PORT"):
        assert variable in KNOWN_VARIABLES
        assert variable in text
