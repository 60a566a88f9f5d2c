"""The key-encryption key: from DEVREG_KEK, else from the data directory's key file, which is
created (mode 0600) the first time. Every worker of a group, and the CLI, must use the same
one: a deployment with several workers sets DEVREG_KEK."""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path

from services.config import ConfigError, Settings
from services.keys import cipher

log = logging.getLogger(__name__)


def _decode(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip() + "=" * (-len(text.strip()) % 4), altchars=b"-_")
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != cipher.KEY_BYTES:
        raise ConfigError(f"{source} must be {cipher.KEY_BYTES} bytes in base64")
    return key


def load_kek(settings: Settings, create: bool = True) -> bytes:
    if settings.kek:
        return _decode(settings.kek, "DEVREG_KEK")
    path = settings.kek_path
    if path.exists():
        return _decode(path.read_text(), str(path))
    if not create:
        raise ConfigError(f"no DEVREG_KEK and no key file at {path}")
    return _create(path)


def _create(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = cipher.new_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(base64.b64encode(key).decode() + "\n")
        out.flush()
        os.fsync(out.fileno())
    log.warning(
        "created a key-encryption key at %s: keep it with the data (without it no token can be"
        " read); every worker of a group needs the same one (DEVREG_KEK)",
        path,
    )
    return key
