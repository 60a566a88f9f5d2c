"""Every environment variable devreg reads, with its type, range and default, read with
msgspec (the package, services/config/__init__.py, builds the Settings from it). Nothing else
reads the environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.config.credentials import NAME_PATTERN, ConfigError
from services.kafka.clients import Mechanism, Protocol

Ms = int
_PORT = Meta(ge=0, le=65535)


def _ms(low: int, high: int) -> Meta:
    return Meta(ge=low, le=high)


class Environment(msgspec.Struct, kw_only=True, rename="upper"):
    """Every variable devreg reads, with its type, range and default: read with msgspec from
    the environment (an empty value counts as unset). Field names are the variables' names."""

    kafka_bootstrap: str = ""
    kafka_security_protocol: Protocol | None = None
    kafka_sasl_mechanism: Mechanism | None = None
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_sasl_password_file: str = ""
    kafka_ssl_cafile: str = ""
    devreg_apps: str = ""
    devreg_domain_app: str = ""
    devreg_token_keys: str = ""
    devreg_broker_port: Annotated[int, _PORT] = 0
    devreg_http_host: str = "127.0.0.1"
    devreg_http_port: Annotated[int, _PORT] = 8080
    devreg_data_dir: str = "./data"
    devreg_partitions: Annotated[int, Meta(ge=1, le=1000)] = 6
    devreg_topic_prefix: Annotated[str, Meta(pattern=NAME_PATTERN)] = "devreg"
    devreg_group_id: Annotated[str, Meta(pattern=NAME_PATTERN)] = "devreg"
    # Tansu holds a group join for half the session timeout, so the embedded broker gets a
    # short one (2 s); Apache Kafka refuses sessions below group.min.session.timeout.ms (6 s),
    # so elsewhere it is 10 s. None: the default for the broker in use.
    devreg_session_timeout_ms: Annotated[Ms, _ms(1000, 300000)] | None = None
    devreg_heartbeat_interval_ms: Annotated[Ms, _ms(100, 60000)] = 500
    devreg_rebalance_timeout_ms: Annotated[Ms, _ms(1000, 600000)] = 6000
    devreg_fetch_max_wait_ms: Annotated[Ms, _ms(1, 10000)] = 10
    devreg_visible_timeout_ms: Annotated[Ms, _ms(100, 600000)] = 5000
    devreg_http_idle_timeout_ms: Annotated[Ms, _ms(100, 3600000)] = 15000
    devreg_http_body_timeout_ms: Annotated[Ms, _ms(100, 600000)] = 10000
    devreg_http_write_timeout_ms: Annotated[Ms, _ms(100, 600000)] = 30000
    devreg_stop_timeout_ms: Annotated[Ms, _ms(1000, 600000)] = 15000
    devreg_batch_size: Annotated[int, Meta(ge=1, le=100000)] = 2000
    devreg_batch_window_ms: Annotated[Ms, _ms(1, 1000)] = 20
    devreg_read_back_recheck_ms: Annotated[Ms, _ms(0, 600000)] = 2000
    devreg_hand_off: bool = True
    devreg_commands_recheck_ms: Annotated[Ms, _ms(0, 600000)] = 500
    devreg_http_backlog: Annotated[int, Meta(ge=1, le=65535)] = 4096
    devreg_http_max_writes: Annotated[int, Meta(ge=1, le=1_000_000)] = 4096
    devreg_http_max_write_wait_ms: Annotated[Ms, _ms(10, 600000)] = 1000
    devreg_gc_threshold: Annotated[int, Meta(ge=0, le=10_000_000)] = 50_000
    devreg_log_level: Literal["debug", "info", "warn", "error"] = "info"
    devreg_log_format: Literal["text", "json"] = "text"
    devreg_event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    devreg_replication_factor: Annotated[int, Meta(ge=1, le=10)] = 1
    devreg_min_insync_replicas: Annotated[int, Meta(ge=1, le=10)] = 1
    devreg_advertised_url: Annotated[str, Meta(pattern="^https?://")] | None = None
    # The expiry scheduler hands the processor what falls due this far ahead, to decide
    # before the instant (docs/design.md §7); 0: decided at the instant only.
    devreg_expiry_lead_ms: Annotated[Ms, _ms(0, 3_600_000)] = 30_000
    devreg_expiry_prepared_max: Annotated[int, Meta(ge=0, le=10_000_000)] = 200_000
    devreg_embedded_tail: Annotated[int, Meta(ge=1, le=10_000_000)] = 200
    devreg_embedded_rollover: Annotated[int, Meta(ge=100, le=10_000_000)] = 2000
    devreg_embedded_backlog: Annotated[int, Meta(ge=100, le=100_000_000)] = 20_000
    # The key-encryption key that wraps every device's data key (docs/design.md §12): 32
    # bytes, base64. Unset: read from (or, the first time, written to) the data directory.
    devreg_kek: str = ""
    # Apps (comma-separated) whose duplicate tokens are NOT superseded; "*" for all.
    devreg_allow_shared_tokens: str = ""
    # app-id:days[,...]: erase a device once unregistered (or expired) for that many days.
    devreg_retention_days: str = ""


# Every variable load_settings reads: deployment files are checked against this list.
KNOWN_VARIABLES = frozenset(f.encode_name for f in msgspec.structs.fields(Environment))
# Variables whose values are secrets: an error names them, never shows them.
SECRET_VARIABLES = frozenset({"DEVREG_APPS", "DEVREG_TOKEN_KEYS", "KAFKA_SASL_PASSWORD"})
# Values compared case-insensitively.
_LOWERED = {"DEVREG_LOG_LEVEL", "DEVREG_LOG_FORMAT", "DEVREG_EVENT_LOOP", "DEVREG_HAND_OFF"}
_UPPERED = {"KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM"}
_AT = re.compile(r"at `\$\.(\w+)`")


def read_environment(env: Mapping[str, str]) -> Environment:
    """The variables devreg reads, typed and checked; ConfigError names the variable."""
    given = {name: env[name].strip() for name in KNOWN_VARIABLES if env.get(name, "").strip()}
    for name in _LOWERED & set(given):
        given[name] = given[name].lower()
    for name in _UPPERED & set(given):
        given[name] = given[name].upper()
    try:
        return msgspec.convert(given, Environment, strict=False)
    except msgspec.ValidationError as exc:
        where = _AT.search(str(exc))
        name = where.group(1) if where else "the environment"
        reason = str(exc).split(" - at ")[0]
        shown = "(hidden)" if name in SECRET_VARIABLES else repr(given.get(name, ""))
        raise ConfigError(f"{name}={shown}: {reason}") from None
