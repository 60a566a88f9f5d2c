"""Keys devreg generates once into its data directory when they are not configured: the demo
app's admin key (`devreg run` with no DEVREG_APPS) and the session-token fingerprint keys
(no DEVREG_TOKEN_KEYS). Files of mode 0600, read again on every start, so a restart keeps them.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import msgspec

from events.user_tokens import TokenKeys
from services.config import DEMO_APP_ID, AppKeys, ConfigError, Settings

log = logging.getLogger(__name__)
DEMO_ADMIN_KEY_FILE = "demo-admin.key"
TOKEN_KEYS_FILE = "token-fingerprint.keys"


def _read_or_create(path: Path, generate: Callable[[], str]) -> tuple[str, bool]:
    """The file's text, or a new value written to a new file only its owner can read."""
    try:
        return path.read_text().strip(), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = generate()
    # O_EXCL: two processes starting at once must not overwrite each other's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip(), False
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value, True


def _new_token_keys() -> str:
    kid = secrets.token_hex(4)  # distinct per generated key: fingerprints name their key
    return f"{kid}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def complete(settings: Settings) -> Settings:
    """Settings with every key present, generating those not configured (see module doc)."""
    apps = settings.apps
    if settings.demo_app and apps[DEMO_APP_ID].admin is None:
        key, _ = _read_or_create(
            settings.data_dir / DEMO_ADMIN_KEY_FILE, lambda: secrets.token_urlsafe(24)
        )
        apps = {**apps, DEMO_APP_ID: AppKeys(apps[DEMO_APP_ID].rest, key)}
    tokens = settings.token_keys
    if tokens is None:
        path = settings.data_dir / TOKEN_KEYS_FILE
        spec, created = _read_or_create(path, _new_token_keys)
        try:
            tokens = TokenKeys.parse(spec)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if created and not settings.embedded:
            # Several workers must fingerprint alike (a partition moves between them, and a
            # command is decided again by its new owner): give them one DEVREG_TOKEN_KEYS.
            log.warning(
                "DEVREG_TOKEN_KEYS is not set: generated a fingerprint key into %s; every"
                " worker of a group needs the same DEVREG_TOKEN_KEYS",
                path,
            )
    return msgspec.structs.replace(settings, apps=apps, token_keys=tokens)
