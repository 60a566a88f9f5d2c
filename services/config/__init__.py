"""All of devreg's configuration, read from environment variables (services/environment.py)
and validated at start.

Nothing reads the environment anywhere else. Bad values fail with a message naming the
variable, before anything connects.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import msgspec

from events.user_tokens import TokenKeys
from services.config import credentials
from services.config.credentials import DEMO_APP_ID, AppKeys, ConfigError
from services.config.environment import KNOWN_VARIABLES, read_environment
from services.kafka.clients import KafkaAccess

__all__ = [
    "DEMO_APP_ID",
    "KNOWN_VARIABLES",
    "AppKeys",
    "ConfigError",
    "Settings",
    "load_settings",
]
DEMO_REST_KEY = "demo-rest-key"


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kafka_bootstrap: str | None  # None: start the embedded Tansu broker
    broker_port: int  # embedded broker; 0 picks a free port
    http_host: str
    http_port: int
    data_dir: Path
    apps: dict[str, AppKeys]  # app id -> its REST key and admin key
    demo_app: bool  # True when DEVREG_APPS was not set
    domain_app: str | None  # the app the custom-domain form `/api/...` serves; None: off
    # Session-token fingerprint keys; None until read from the data directory (keyfiles.py)
    token_keys: TokenKeys | None
    # How to connect to KAFKA_BOOTSTRAP: every client gets it (services/kafka/clients.py)
    kafka_security: KafkaAccess | None
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
    batch_window_ms: int
    read_back_recheck_ms: int  # services/stream/read_back.py; 0: never pause the read-back
    hand_off: bool  # own commands decided at Kafka's ack (services/stream/hand_off.py)
    commands_recheck_ms: int  # a paused commands partition is read again this often
    http_backlog: int  # the listening socket's accept queue
    http_max_writes: int  # POSTs/DELETEs in flight; past it a new one is answered 503 at once
    http_max_write_wait_ms: int  # ... and when the oldest in flight has waited this long
    gc_threshold: int  # the young generation's threshold; 0: Python's own GC settings
    log_level: str
    log_format: str  # "text" or "json"
    event_loop: str  # "uvloop" or "asyncio" (services/event_loop.py says why)
    replication_factor: int
    min_insync_replicas: int
    advertised_url: str  # how other workers and clients reach this one
    # Expiries decided ahead of their instant (services/stream/prepared_expiries.py): how far
    # ahead, and at most how many devices' decisions are kept meanwhile.
    expiry_lead_ms: int
    expiry_prepared_max: int
    kek: str | None  # DEVREG_KEK (base64); None: the data directory's key file
    one_device_per_token: frozenset[str]  # apps whose duplicate tokens are superseded
    retention_days: dict[str, float]  # app id -> days a device without channels is kept
    # The embedded mode (services/log/restore.py, rollover.py): records per partition the
    # broker is given from the kept log, and the records kept in a partition since then that
    # make devreg give the broker fresh, short partitions, and the most records a renewal
    # copies for the worker to read still (a backlog) before it waits for the worker.
    embedded_tail: int = 200
    embedded_rollover: int = 2000
    embedded_backlog: int = 20_000

    def secrets(self) -> list[str]:
        """Every configured value no log line may show (services/logs.py masks them)."""
        keys = [k for app in self.apps.values() for k in (app.rest, app.admin) if k]
        password = self.kafka_security.password if self.kafka_security else None
        return [*keys, *([password] if password else [])]

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
    def keys_topic(self) -> str:
        return f"{self.topic_prefix}.keys"

    @property
    def tokens_topic(self) -> str:
        return f"{self.topic_prefix}.tokens"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "token-index.sqlite"

    @property
    def keys_path(self) -> Path:
        return self.data_dir / "keys.sqlite"

    @property
    def kek_path(self) -> Path:
        return self.data_dir / "key-encryption-key"

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

    @property
    def kept_log_dir(self) -> Path:
        """The embedded mode's durable log (services/log/segments.py)."""
        return self.data_dir / "log"

    def kafka_at(self, bootstrap: str) -> KafkaAccess:
        """How every devreg client reaches the brokers at `bootstrap` (the credentials are
        KAFKA_BOOTSTRAP's: the embedded broker takes none); in the embedded mode, readers find
        the history the broker no longer holds in the kept log."""
        if self.kafka_security is None:
            kept = str(self.kept_log_dir) if self.embedded else None
            return KafkaAccess(bootstrap, kept_log=kept)
        return msgspec.structs.replace(self.kafka_security, bootstrap=bootstrap)

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


def parse_retention(raw: str, apps: Mapping[str, object]) -> dict[str, float]:
    """`app-id:days[,…]`; days may be a decimal (0.5 is twelve hours)."""
    days: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        app_id, sep, count = item.partition(":")
        try:
            value = float(count)
        except ValueError:
            value = -1.0
        if not sep or app_id not in apps or not 0 < value <= 36500:
            raise ConfigError(
                f"DEVREG_RETENTION_DAYS entry {item!r} is not app-id:days (a configured app,"
                " more than 0 and at most 36500 days)"
            )
        days[app_id] = value
    return days


def parse_shared_tokens(raw: str, apps: Mapping[str, object]) -> frozenset[str]:
    """The apps that keep one-device-per-token on (all but those DEVREG_ALLOW_SHARED_TOKENS
    names)."""
    named = {part.strip() for part in raw.split(",") if part.strip()}
    if "*" in named:
        return frozenset()
    unknown = sorted(named - set(apps))
    if unknown:
        raise ConfigError(f"DEVREG_ALLOW_SHARED_TOKENS names unknown apps: {', '.join(unknown)}")
    return frozenset(set(apps) - named)


def _bootstrap(raw: str) -> str | None:
    if not raw:
        return None
    for server in raw.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"KAFKA_BOOTSTRAP entry {server!r} is not host:port")
    return raw


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping (pass `os.environ`)."""
    e = read_environment(env)
    bootstrap = _bootstrap(e.kafka_bootstrap)
    # The demo app's admin key is generated into the data directory at start (keyfiles.py).
    apps = (
        credentials.parse_apps(e.devreg_apps)
        if e.devreg_apps
        else {DEMO_APP_ID: AppKeys(DEMO_REST_KEY)}
    )
    session_default = 2000 if bootstrap is None else 10000
    if e.devreg_min_insync_replicas > e.devreg_replication_factor:
        raise ConfigError(
            f"DEVREG_MIN_INSYNC_REPLICAS={e.devreg_min_insync_replicas} is above"
            f" DEVREG_REPLICATION_FACTOR={e.devreg_replication_factor}"
        )
    advertised = e.devreg_advertised_url or f"http://{e.devreg_http_host}:{e.devreg_http_port}"
    return Settings(
        kafka_bootstrap=bootstrap,
        broker_port=e.devreg_broker_port,
        http_host=e.devreg_http_host,
        http_port=e.devreg_http_port,
        data_dir=Path(e.devreg_data_dir),
        apps=apps,
        demo_app=not e.devreg_apps,
        domain_app=credentials.domain_app(e.devreg_domain_app, apps, not e.devreg_apps),
        token_keys=credentials.token_keys(e.devreg_token_keys),
        kafka_security=credentials.kafka_security(e, bootstrap),
        partitions=e.devreg_partitions,
        topic_prefix=e.devreg_topic_prefix,
        group_id=e.devreg_group_id,
        session_timeout_ms=e.devreg_session_timeout_ms or session_default,
        heartbeat_interval_ms=e.devreg_heartbeat_interval_ms,
        rebalance_timeout_ms=e.devreg_rebalance_timeout_ms,
        fetch_max_wait_ms=e.devreg_fetch_max_wait_ms,
        visible_timeout_ms=e.devreg_visible_timeout_ms,
        http_idle_timeout_ms=e.devreg_http_idle_timeout_ms,
        http_body_timeout_ms=e.devreg_http_body_timeout_ms,
        http_write_timeout_ms=e.devreg_http_write_timeout_ms,
        stop_timeout_ms=e.devreg_stop_timeout_ms,
        batch_size=e.devreg_batch_size,
        batch_window_ms=e.devreg_batch_window_ms,
        read_back_recheck_ms=e.devreg_read_back_recheck_ms,
        hand_off=e.devreg_hand_off,
        commands_recheck_ms=e.devreg_commands_recheck_ms,
        http_backlog=e.devreg_http_backlog,
        http_max_writes=e.devreg_http_max_writes,
        http_max_write_wait_ms=e.devreg_http_max_write_wait_ms,
        gc_threshold=e.devreg_gc_threshold,
        log_level=e.devreg_log_level,
        log_format=e.devreg_log_format,
        event_loop=e.devreg_event_loop,
        replication_factor=e.devreg_replication_factor,
        min_insync_replicas=e.devreg_min_insync_replicas,
        advertised_url=advertised.rstrip("/"),
        expiry_lead_ms=e.devreg_expiry_lead_ms,
        expiry_prepared_max=e.devreg_expiry_prepared_max,
        embedded_tail=e.devreg_embedded_tail,
        embedded_rollover=e.devreg_embedded_rollover,
        embedded_backlog=e.devreg_embedded_backlog,
        kek=e.devreg_kek or None,
        one_device_per_token=parse_shared_tokens(e.devreg_allow_shared_tokens, apps),
        retention_days=parse_retention(e.devreg_retention_days, apps),
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
