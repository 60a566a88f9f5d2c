"""The credentials devreg is configured with, parsed and checked: each app's two keys
(DEVREG_APPS), the custom-domain app, the session-token fingerprint keys and how to connect
to Kafka. A ConfigError names the variable and the app, never a key or a password."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from events.user_tokens import TokenKeys
from services.kafka.clients import KafkaAccess, Mechanism
from services.kafka.clients import Protocol as SecurityProtocol

DEMO_APP_ID = "demo-app"
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
# App ids that would be read as a URL base: `/api/...` (custom domain), `/admin/{app}/...`.
RESERVED_APP_IDS = frozenset({"api", "admin"})
# Keys travel in a URL path segment (REST) or a header (admin): printable ASCII, no '/',
# no ':' or ',' (the separators of DEVREG_APPS), no space.
_KEY = re.compile(r"^[!-~]+$")
MIN_ADMIN_KEY = 16  # an admin key opens every device's data: not a word one could guess


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class AppKeys:
    """An app's two keys (docs/security.md). Never shown in a repr, a log or an error."""

    rest: str = field(repr=False)
    admin: str | None = field(default=None, repr=False)  # None: admin routes closed


def parse_apps(raw: str) -> dict[str, AppKeys]:
    """`app-id:rest-key[:admin-key][,…]` to a dict; raises ConfigError naming DEVREG_APPS.
    Error messages name the app, never a key."""
    apps: dict[str, AppKeys] = {}
    for number, item in enumerate(raw.split(","), start=1):
        app_id, *keys = item.strip().split(":")
        if not app_id or len(keys) not in (1, 2) or not all(keys):
            raise ConfigError(
                f"DEVREG_APPS entry {number} is not of the form app-id:rest-key[:admin-key]"
            )
        if not re.match(NAME_PATTERN, app_id):
            raise ConfigError(f"DEVREG_APPS: app id {app_id!r} must match {NAME_PATTERN}")
        if app_id in RESERVED_APP_IDS:
            raise ConfigError(f"DEVREG_APPS: app id {app_id!r} is reserved for a URL form")
        if app_id in apps:
            raise ConfigError(f"DEVREG_APPS names app {app_id!r} twice")
        if not all(_KEY.match(k) and "/" not in k for k in keys):
            raise ConfigError(
                f"DEVREG_APPS: the keys of app {app_id!r} must be printable ASCII without"
                " '/', ':', ',' or spaces"
            )
        admin = keys[1] if len(keys) == 2 else None
        if admin is not None and len(admin) < MIN_ADMIN_KEY:
            raise ConfigError(
                f"DEVREG_APPS: the admin key of app {app_id!r} is shorter than"
                f" {MIN_ADMIN_KEY} characters"
            )
        if admin is not None and admin == keys[0]:
            raise ConfigError(f"DEVREG_APPS: app {app_id!r} has the same REST and admin key")
        apps[app_id] = AppKeys(keys[0], admin)
    return apps


def domain_app(raw: str, apps: Mapping[str, AppKeys], demo: bool) -> str | None:
    """DEVREG_DOMAIN_APP: an app of DEVREG_APPS. Unset: off, except for the demo app."""
    if not raw:
        return DEMO_APP_ID if demo else None
    if raw not in apps:
        raise ConfigError(f"DEVREG_DOMAIN_APP={raw!r} is not an app of DEVREG_APPS")
    return raw


def token_keys(raw: str) -> TokenKeys | None:
    if not raw:
        return None
    try:
        return TokenKeys.parse(raw)
    except ValueError as exc:
        raise ConfigError(f"DEVREG_TOKEN_KEYS: {exc}") from None


class KafkaSecurityVariables(Protocol):
    """The variables kafka_security reads (services/config/environment.py Environment)."""

    @property
    def kafka_security_protocol(self) -> SecurityProtocol | None: ...
    @property
    def kafka_sasl_mechanism(self) -> Mechanism | None: ...
    @property
    def kafka_sasl_username(self) -> str: ...
    @property
    def kafka_sasl_password(self) -> str: ...
    @property
    def kafka_sasl_password_file(self) -> str: ...
    @property
    def kafka_ssl_cafile(self) -> str: ...


def kafka_security(e: KafkaSecurityVariables, bootstrap: str | None) -> KafkaAccess | None:
    """KAFKA_SECURITY_PROTOCOL and what goes with it, checked together; None: plaintext."""
    protocol = e.kafka_security_protocol
    sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
    given = [
        name
        for name, value in (
            ("KAFKA_SASL_MECHANISM", e.kafka_sasl_mechanism),
            ("KAFKA_SASL_USERNAME", e.kafka_sasl_username),
            ("KAFKA_SASL_PASSWORD", e.kafka_sasl_password),
            ("KAFKA_SASL_PASSWORD_FILE", e.kafka_sasl_password_file),
            ("KAFKA_SSL_CAFILE", e.kafka_ssl_cafile),
        )
        if value
    ]
    if protocol is None:
        if given:
            raise ConfigError(f"{given[0]} needs KAFKA_SECURITY_PROTOCOL")
        return None
    if bootstrap is None:
        raise ConfigError(
            "KAFKA_SECURITY_PROTOCOL needs KAFKA_BOOTSTRAP (the embedded broker takes no"
            " credentials)"
        )
    if not sasl and any(name.startswith("KAFKA_SASL_") for name in given):
        raise ConfigError(f"{given[0]} needs KAFKA_SECURITY_PROTOCOL=SASL_SSL or SASL_PLAINTEXT")
    if e.kafka_ssl_cafile and protocol not in ("SSL", "SASL_SSL"):
        raise ConfigError("KAFKA_SSL_CAFILE needs KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL")
    if e.kafka_ssl_cafile and not Path(e.kafka_ssl_cafile).is_file():
        raise ConfigError(f"KAFKA_SSL_CAFILE={e.kafka_ssl_cafile!r}: no such file")
    if e.kafka_sasl_password and e.kafka_sasl_password_file:
        raise ConfigError("KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE: set one of them")
    password = e.kafka_sasl_password
    if e.kafka_sasl_password_file:
        try:
            password = Path(e.kafka_sasl_password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"KAFKA_SASL_PASSWORD_FILE: {exc.strerror}") from None
    if sasl and not (e.kafka_sasl_username and password):
        raise ConfigError(
            f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and a"
            " password (KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE)"
        )
    return KafkaAccess(
        bootstrap,
        security_protocol=protocol,
        sasl_mechanism=(e.kafka_sasl_mechanism or "PLAIN") if sasl else None,
        username=e.kafka_sasl_username or None,
        password=password or None,
        cafile=e.kafka_ssl_cafile or None,
    )
