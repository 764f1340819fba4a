"""The audit trail's HMAC key: 32 random bytes in URL-safe base64, kept outside the audit database.

It comes from the environment variable `[audit] key_env` when that is set, else from `[audit] key_file`
(default `<state_dir>/audit.key`), a file readable by its owner only. Whoever can write the audit
database but lacks this key cannot re-chain edited rows or move the head back unnoticed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

from bot.audit.schema import trail_directory
from bot.config import ConfigError, Settings
from bot.config.base import read_private_file
from bot.config.secret_env import environment_secret
from bot.infra.files import sync_directory
from bot.infra.state_dir import state_dir

KEY_BYTES = 32
DEFAULT_KEY_NAME = "audit.key"


@dataclass(frozen=True)
class AuditKey:
    material: bytes = field(repr=False)
    source: str  # "environment variable X" or "key file /path", for messages

    def mac(self, message: bytes) -> str:
        """HMAC-SHA256 of `message`, in hex (64 characters, like the unkeyed SHA-256 hashes)."""
        return hmac.new(self.material, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AuditKeyInit:
    source: str
    created: bool
    warning: str | None = None  # the key file sits where the trail's writers can likely read it


def audit_key_path(settings: Settings) -> Path:
    return settings.audit.key_file or state_dir(settings) / DEFAULT_KEY_NAME


def _environment_variable(settings: Settings) -> str | None:
    """The configured key variable, if it is set in this process's environment."""
    name = settings.audit.key_env
    return name if name and environment_secret(name) else None


def _decode(text: str, source: str) -> AuditKey:
    try:
        material = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        material = b""
    if len(material) != KEY_BYTES:
        raise ConfigError(
            [
                f"audit: the key in {source} is not a valid audit key "
                f"({KEY_BYTES} bytes in URL-safe base64, as `atp-bot audit init` writes)"
            ]
        )
    return AuditKey(material, source)


def load_audit_key(settings: Settings) -> AuditKey | None:
    """The audit key, or None when none is configured yet (the trail then stays unkeyed)."""
    variable = _environment_variable(settings)
    if variable:
        return _decode(environment_secret(variable) or "", f"environment variable {variable}")
    path = audit_key_path(settings)
    if not os.path.lexists(path):
        return None
    return _decode(read_private_file("audit.key_file", path).get_secret_value(), f"key file {path}")


def key_beside_trail(settings: Settings) -> str | None:
    """Why the key file in use is too close to the trail (in the SQLite trail's own directory), or None.

    Whoever can write the trail there can most likely read the key next to it, and with the key
    re-chain an edited trail unnoticed: the key then proves nothing."""
    directory = trail_directory(settings)
    path = audit_key_path(settings)
    if _environment_variable(settings) or directory is None:
        return None
    if path.resolve().parent != directory.resolve():
        return None
    return (
        f"the audit key file {path} is in the audit trail's directory {directory}: whoever can write "
        "the trail can likely read the key and re-chain an edited trail unnoticed; move the key where "
        "the trail's writers cannot reach it (another directory or volume, [audit] key_file) or give it "
        "in the environment variable [audit] key_env"
    )


def create_audit_key(settings: Settings) -> AuditKeyInit:
    """Make the key file (mode 0600, durable) unless the key comes from the environment or the file
    exists; an existing key is never overwritten, since rows keyed with it would no longer verify."""
    existing = load_audit_key(settings)
    if existing is not None:
        return AuditKeyInit(existing.source, created=False, warning=key_beside_trail(settings))
    path = audit_key_path(settings)
    text = base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii") + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        sync_directory(path.parent)
    except FileExistsError:  # made by a concurrent `audit init` a moment ago
        return AuditKeyInit(f"key file {path}", created=False, warning=key_beside_trail(settings))
    except OSError as exc:
        raise ConfigError([f"audit: cannot create the key file {path}: {exc.strerror}"]) from None
    return AuditKeyInit(f"key file {path}", created=True, warning=key_beside_trail(settings))
