"""Keys devreg generates once into its data directory when they are not configured: the demo
app's admin key (`devreg run` with no DEVREG_APPS). Files of mode 0600, read again on every
start, so a restart keeps them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import msgspec

from services.config import DEMO_APP_ID, AppKeys, Settings

DEMO_ADMIN_KEY_FILE = "demo-admin.key"


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


def complete(settings: Settings) -> Settings:
    """Settings with every key present, generating those not configured (see module doc)."""
    apps = settings.apps
    if settings.demo_app and apps[DEMO_APP_ID].admin is None:
        key, _ = _read_or_create(
            settings.data_dir / DEMO_ADMIN_KEY_FILE, lambda: secrets.token_urlsafe(24)
        )
        apps = {**apps, DEMO_APP_ID: AppKeys(apps[DEMO_APP_ID].rest, key)}
    return msgspec.structs.replace(settings, apps=apps)
