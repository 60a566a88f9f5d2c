"""All of devreg's configuration, read from environment variables and validated at start.

Nothing reads the environment anywhere else. Bad values fail with a message naming the
variable, before anything connects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import msgspec

from services.kafka.clients import KafkaAccess

DEMO_APP_ID = "demo-app"
DEMO_REST_KEY = "demo-rest-key"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kafka_bootstrap: str | None  # None: start the embedded Tansu broker
    broker_port: int  # embedded broker; 0 picks a free port
    http_host: str
    http_port: int
    data_dir: Path
    apps: dict[str, str]  # app id -> REST API key
    demo_app: bool  # True when DEVREG_APPS was not set
    partitions: int
    topic_prefix: str
    group_id: str
    session_timeout_ms: int
    heartbeat_interval_ms: int
    rebalance_timeout_ms: int
    fetch_max_wait_ms: int
    visible_timeout_ms: int  # read-your-writes: how long POST waits to be visible
    http_idle_timeout_ms: int  # a connection without a complete request is closed after it
    http_body_timeout_ms: int  # a request body not received in full by then gets a 408
    http_write_timeout_ms: int  # a streamed answer the client stops reading: dropped after it
    stop_timeout_ms: int  # a stop is over within about this long (services/shutdown.py)
    batch_size: int
    read_back_recheck_ms: int  # services/stream/read_back.py; 0: never pause the read-back
    log_level: str
    log_format: str  # "text" or "json"
    event_loop: str  # "uvloop" or "asyncio" (services/event_loop.py says why)
    replication_factor: int
    min_insync_replicas: int
    advertised_url: str  # how other workers and clients reach this one

    @property
    def default_app(self) -> str:
        """The app served by the custom-domain URL form `/api/...`: the first one configured."""
        return next(iter(self.apps))

    @property
    def embedded(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def commands_topic(self) -> str:
        return f"{self.topic_prefix}.commands"

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}.events"

    @property
    def outcomes_topic(self) -> str:
        return f"{self.topic_prefix}.outcomes"

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic_prefix}.commands.dlq"

    @property
    def projection_path(self) -> Path:
        return self.data_dir / "projection.sqlite"

    @property
    def decisions_path(self) -> Path:
        return self.data_dir / "decisions.sqlite"

    @property
    def bootstrap_file(self) -> Path:
        """Written by `devreg run` while its embedded broker is up: where to find it."""
        return self.data_dir / "embedded-broker.address"

    def kafka_at(self, bootstrap: str) -> KafkaAccess:
        """How every devreg client reaches the brokers at `bootstrap`."""
        return KafkaAccess(bootstrap)

    def resolve_kafka(self) -> KafkaAccess | None:
        """KAFKA_BOOTSTRAP, else the running embedded broker of this data directory."""
        if self.kafka_bootstrap:
            return self.kafka_at(self.kafka_bootstrap)
        if self.bootstrap_file.exists():
            address = self.bootstrap_file.read_text().strip()
            return self.kafka_at(address) if address else None
        return None

    @property
    def archive_path(self) -> Path:
        return self.data_dir / "log-archive.ndjson"


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range [{low}, {high}]")
    return value


def _name(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not _NAME.match(value):
        raise ConfigError(f"{name}={value!r} must match {_NAME.pattern}")
    return value


def parse_apps(raw: str) -> dict[str, str]:
    """`app-id:rest-key[,app-id:rest-key…]` to a dict; raises ConfigError naming DEVREG_APPS."""
    apps: dict[str, str] = {}
    for item in raw.split(","):
        app_id, sep, key = item.strip().partition(":")
        if not sep or not app_id or not key:
            raise ConfigError(f"DEVREG_APPS entry {item!r} is not of the form app-id:rest-key")
        if "/" in app_id or "/" in key:
            raise ConfigError(f"DEVREG_APPS entry {item!r} must not contain '/'")
        if app_id == "api":
            raise ConfigError("DEVREG_APPS: app id 'api' is reserved for the /api/... URL form")
        if app_id in apps:
            raise ConfigError(f"DEVREG_APPS names app {app_id!r} twice")
        apps[app_id] = key
    return apps


def _bootstrap(env: Mapping[str, str]) -> str | None:
    raw = env.get("KAFKA_BOOTSTRAP", "").strip()
    if not raw:
        return None
    for server in raw.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"KAFKA_BOOTSTRAP entry {server!r} is not host:port")
    return raw


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping (pass `os.environ`)."""
    bootstrap = _bootstrap(env)
    apps_raw = env.get("DEVREG_APPS", "").strip()
    apps = parse_apps(apps_raw) if apps_raw else {DEMO_APP_ID: DEMO_REST_KEY}
    # Tansu holds a group join for half the session timeout, so the embedded broker gets a
    # short one; Apache Kafka refuses sessions below group.min.session.timeout.ms (6 s).
    session_default = 2000 if bootstrap is None else 10000
    session = _int(env, "DEVREG_SESSION_TIMEOUT_MS", session_default, 1000, 300000)
    log_level = env.get("DEVREG_LOG_LEVEL", "info").strip().lower()
    if log_level not in {"debug", "info", "warn", "error"}:
        raise ConfigError(f"DEVREG_LOG_LEVEL={log_level!r} must be debug, info, warn or error")
    log_format = env.get("DEVREG_LOG_FORMAT", "").strip().lower() or "text"
    if log_format not in {"text", "json"}:
        raise ConfigError(f"DEVREG_LOG_FORMAT={log_format!r} must be text or json")
    event_loop = env.get("DEVREG_EVENT_LOOP", "").strip().lower() or "uvloop"
    if event_loop not in {"uvloop", "asyncio"}:
        raise ConfigError(f"DEVREG_EVENT_LOOP={event_loop!r} must be uvloop or asyncio")
    http_host = env.get("DEVREG_HTTP_HOST", "").strip() or "127.0.0.1"
    http_port = _int(env, "DEVREG_HTTP_PORT", 8080, 0, 65535)
    replication = _int(env, "DEVREG_REPLICATION_FACTOR", 1, 1, 10)
    advertised = env.get("DEVREG_ADVERTISED_URL", "").strip() or f"http://{http_host}:{http_port}"
    if not advertised.startswith(("http://", "https://")):
        raise ConfigError(f"DEVREG_ADVERTISED_URL={advertised!r} must start with http(s)://")
    return Settings(
        kafka_bootstrap=bootstrap,
        broker_port=_int(env, "DEVREG_BROKER_PORT", 0, 0, 65535),
        http_host=http_host,
        http_port=http_port,
        data_dir=Path(env.get("DEVREG_DATA_DIR", "").strip() or "./data"),
        apps=apps,
        demo_app=not apps_raw,
        partitions=_int(env, "DEVREG_PARTITIONS", 6, 1, 1000),
        topic_prefix=_name(env, "DEVREG_TOPIC_PREFIX", "devreg"),
        group_id=_name(env, "DEVREG_GROUP_ID", "devreg"),
        session_timeout_ms=session,
        heartbeat_interval_ms=_int(env, "DEVREG_HEARTBEAT_INTERVAL_MS", 500, 100, 60000),
        rebalance_timeout_ms=_int(env, "DEVREG_REBALANCE_TIMEOUT_MS", 6000, 1000, 600000),
        fetch_max_wait_ms=_int(env, "DEVREG_FETCH_MAX_WAIT_MS", 10, 1, 10000),
        visible_timeout_ms=_int(env, "DEVREG_VISIBLE_TIMEOUT_MS", 5000, 100, 600000),
        http_idle_timeout_ms=_int(env, "DEVREG_HTTP_IDLE_TIMEOUT_MS", 15000, 100, 3600000),
        http_body_timeout_ms=_int(env, "DEVREG_HTTP_BODY_TIMEOUT_MS", 10000, 100, 600000),
        http_write_timeout_ms=_int(env, "DEVREG_HTTP_WRITE_TIMEOUT_MS", 30000, 100, 600000),
        stop_timeout_ms=_int(env, "DEVREG_STOP_TIMEOUT_MS", 15000, 1000, 600000),
        batch_size=_int(env, "DEVREG_BATCH_SIZE", 2000, 1, 100000),
        read_back_recheck_ms=_int(env, "DEVREG_READ_BACK_RECHECK_MS", 2000, 0, 600000),
        log_level=log_level,
        log_format=log_format,
        event_loop=event_loop,
        replication_factor=replication,
        min_insync_replicas=_int(env, "DEVREG_MIN_INSYNC_REPLICAS", 1, 1, replication),
        advertised_url=advertised.rstrip("/"),
    )


# Every variable load_settings reads: deployment files are checked against this list.
KNOWN_VARIABLES = frozenset(
    {
        "KAFKA_BOOTSTRAP",
        "DEVREG_APPS",
        "DEVREG_BROKER_PORT",
        "DEVREG_HTTP_HOST",
        "DEVREG_HTTP_PORT",
        "DEVREG_DATA_DIR",
        "DEVREG_PARTITIONS",
        "DEVREG_TOPIC_PREFIX",
        "DEVREG_GROUP_ID",
        "DEVREG_SESSION_TIMEOUT_MS",
        "DEVREG_HEARTBEAT_INTERVAL_MS",
        "DEVREG_REBALANCE_TIMEOUT_MS",
        "DEVREG_FETCH_MAX_WAIT_MS",
        "DEVREG_VISIBLE_TIMEOUT_MS",
        "DEVREG_HTTP_IDLE_TIMEOUT_MS",
        "DEVREG_HTTP_BODY_TIMEOUT_MS",
        "DEVREG_HTTP_WRITE_TIMEOUT_MS",
        "DEVREG_STOP_TIMEOUT_MS",
        "DEVREG_BATCH_SIZE",
        "DEVREG_LOG_LEVEL",
        "DEVREG_LOG_FORMAT",
        "DEVREG_EVENT_LOOP",
        "DEVREG_REPLICATION_FACTOR",
        "DEVREG_MIN_INSYNC_REPLICAS",
        "DEVREG_ADVERTISED_URL",
    }
)


def require_kafka(settings: Settings, command: str) -> KafkaAccess:
    """The broker to talk to: KAFKA_BOOTSTRAP, or the one `devreg run` started."""
    kafka = settings.resolve_kafka()
    if kafka is None:
        raise ConfigError(
            f"`devreg {command}` needs KAFKA_BOOTSTRAP (host:port of a broker), or a running"
            f" `devreg run` with the same DEVREG_DATA_DIR ({settings.data_dir})"
        )
    return kafka
