"""The embedded store's key: 32 random bytes, URL-safe base64 text, from an environment variable or a file.

The file must be readable by its owner only; atp-bot refuses a key that group or others can read
and says how to fix it, rather than use a key that may already have leaked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings, StoreConfig
from bot.config.secret_env import environment_secret
from bot.infra.files import sync_directory, write_synced
from bot.infra.state_dir import state_dir
from bot.store.base import StoreError

KEY_BYTES = 32
DEFAULT_KEY_NAME = "store.key"


@dataclass(frozen=True)
class StoreKey:
    material: bytes
    source: str  # "environment variable X" or "key file /path", for messages

    @property
    def key_id(self) -> str:
        """A short fingerprint that identifies the key without revealing it."""
        return hashlib.sha256(b"atp-bot store key id\0" + self.material).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"StoreKey(source={self.source!r}, key_id={self.key_id!r})"


def key_file_path(settings: Settings) -> Path:
    return settings.store.key_file or state_dir(settings) / DEFAULT_KEY_NAME


def key_from_environment(config: StoreConfig) -> str | None:
    """The name of the environment variable that holds the key, if it is configured and set."""
    if config.key_env and environment_secret(config.key_env):
        return config.key_env
    return None


def encode_key(material: bytes) -> str:
    return base64.urlsafe_b64encode(material).decode("ascii")


def decode_key(text: str, source: str) -> StoreKey:
    try:
        material = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        material = b""
    if len(material) != KEY_BYTES:
        raise StoreError(
            f"the store key in {source} is not a valid key "
            f"({KEY_BYTES} bytes in URL-safe base64, as `atp-bot store init` writes)",
            reason="key",
        )
    return StoreKey(material, source)


def check_private(path: Path) -> None:
    """Refuse a key file that group or others can read (or write)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise StoreError(
            f"no store key: {path} does not exist; run `atp-bot store init` "
            "or set the key environment variable",
            reason="key",
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot read the store key file {path}: {exc.strerror}", reason="key") from None
    if not stat.S_ISREG(mode):
        raise StoreError(f"the store key file {path} is not a regular file", reason="key")
    if mode & 0o077:
        raise StoreError(
            f"the store key file {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"fix it with: chmod 600 {path}",
            reason="key",
        )


def load_key(settings: Settings) -> StoreKey:
    env = key_from_environment(settings.store)
    text = environment_secret(env) if env else None
    if env and text:
        return decode_key(text, f"environment variable {env}")
    path = key_file_path(settings)
    check_private(path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read the store key file {path}: {exc}", reason="key") from None
    return decode_key(text, f"key file {path}")


def create_key_file(path: Path) -> StoreKey:
    """Write a new random key to `path` (mode 0600), durably (file and directory synced, so a power loss
    cannot leave a store encrypted with a key that is not on disk); never overwrite an existing file."""
    material = os.urandom(KEY_BYTES)
    try:
        write_synced(path, encode_key(material) + "\n", exclusive=True)
        sync_directory(path.parent)
    except FileExistsError:
        raise StoreError(
            f"{path} already exists: refusing to overwrite a store key "
            "(the credentials saved with it would become unreadable)",
            reason="key",
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot create the store key file {path}: {exc.strerror}", reason="key") from None
    return StoreKey(material, f"key file {path}")
