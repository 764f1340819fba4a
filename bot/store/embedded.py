"""The embedded store: AES-256-GCM encrypted passwords in a SQLite file in the state directory.

Each password is sealed with a fresh 96-bit nonce and the account id as associated data, so a
ciphertext copied onto another account's row does not decrypt. A save is one SQLite transaction: a
crash before the commit leaves the previous credential in place.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from bot.config import Settings
from bot.infra.files import replace_durably
from bot.infra.state_dir import state_dir, state_dir_lock
from bot.store.base import BackendName, CredentialMetadata, StoreError
from bot.store.keys import StoreKey, create_key_file, key_file_path, key_from_environment, load_key
from bot.store.sqlite_file import connect, fetch_one

DEFAULT_STORE_NAME = "credentials.sqlite"
FORMAT_VERSION = "1"
NONCE_BYTES = 12
_KEY_CHECK_AAD = b"atp-bot store key check"
_KEY_CHECK_TEXT = b"atp-bot"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
    """CREATE TABLE IF NOT EXISTS credentials (
        account_id TEXT PRIMARY KEY,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        key_id TEXT NOT NULL,
        saved_at TEXT NOT NULL,
        saved_by TEXT NOT NULL
    )""",
)


def store_path(settings: Settings) -> Path:
    return settings.store.path or state_dir(settings) / DEFAULT_STORE_NAME


def _seal(key: StoreKey, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key.material).encrypt(nonce, plaintext, aad)


class EmbeddedStore:
    """Open an initialised store with its key; `before_commit` is a test seam to simulate a crash."""

    def __init__(self, path: Path, key: StoreKey, *, before_commit: Callable[[], None] | None = None) -> None:
        self.path = path
        self._key = key
        self._before_commit = before_commit
        if not path.exists():
            raise StoreError(
                f"the embedded store {path} does not exist; create it with `atp-bot store init`",
                reason="config",
            )
        self._check_key()

    @property
    def backend(self) -> BackendName:
        return "embedded"

    def _check_key(self) -> None:
        try:
            with closing(connect(self.path)) as db:
                rows = dict(db.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path} is not a usable atp-bot store: {exc}", reason="io") from None
        if "key_check" not in rows:
            raise StoreError(f"{self.path} is not an initialised atp-bot store", reason="config")
        sealed = bytes(rows["key_check"])
        try:
            AESGCM(self._key.material).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _KEY_CHECK_AAD)
        except InvalidTag:
            expected = bytes(rows.get("key_id", b"?")).decode()
            raise StoreError(
                f"wrong store key: {self.path} was created with key id {expected}, but the key from "
                f"{self._key.source} has key id {self._key.key_id}",
                reason="key",
            ) from None

    def save(self, account_id: str, password: SecretStr, actor: str) -> CredentialMetadata:
        nonce, ciphertext = _seal(
            self._key, password.get_secret_value().encode("utf-8"), account_id.encode("utf-8")
        )
        meta = CredentialMetadata(account_id, datetime.now(UTC), actor, "embedded")
        try:
            with closing(connect(self.path)) as db, db:
                db.execute(
                    "INSERT INTO credentials (account_id, nonce, ciphertext, key_id, saved_at, saved_by) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET "
                    "nonce = excluded.nonce, ciphertext = excluded.ciphertext, key_id = excluded.key_id, "
                    "saved_at = excluded.saved_at, saved_by = excluded.saved_by",
                    (account_id, nonce, ciphertext, self._key.key_id, meta.saved_at.isoformat(), actor),
                )
                if self._before_commit is not None:
                    self._before_commit()
        except sqlite3.Error as exc:
            raise StoreError(
                f"could not save the credential of {account_id} in {self.path}: {exc}", reason="io"
            ) from None
        return meta

    def read(self, account_id: str) -> SecretStr | None:
        row = fetch_one(
            self.path, "SELECT nonce, ciphertext FROM credentials WHERE account_id = ?", (account_id,)
        )
        if row is None:
            return None
        try:
            plaintext = AESGCM(self._key.material).decrypt(
                bytes(row[0]), bytes(row[1]), account_id.encode("utf-8")
            )
        except InvalidTag:
            raise StoreError(
                f"the saved credential of {account_id} cannot be decrypted with the key from "
                f"{self._key.source} (wrong key, or the store was tampered with)",
                reason="key",
            ) from None
        return SecretStr(plaintext.decode("utf-8"))

    @property
    def key_id(self) -> str:
        return self._key.key_id

    def reencrypt(self, new_key: StoreKey) -> int:
        """Re-encrypt every credential with `new_key` in one transaction; then only it opens the store."""
        nonce, sealed = _seal(new_key, _KEY_CHECK_TEXT, _KEY_CHECK_AAD)
        try:
            with closing(connect(self.path)) as db, db:
                db.execute("UPDATE meta SET value = value WHERE name = 'format'")  # take the write lock first
                rows = db.execute("SELECT account_id, nonce, ciphertext FROM credentials").fetchall()
                for account_id, old_nonce, ciphertext in rows:
                    aad = account_id.encode("utf-8")
                    plaintext = AESGCM(self._key.material).decrypt(bytes(old_nonce), bytes(ciphertext), aad)
                    db.execute(
                        "UPDATE credentials SET nonce = ?, ciphertext = ?, key_id = ? WHERE account_id = ?",
                        (*_seal(new_key, plaintext, aad), new_key.key_id, account_id),
                    )
                db.execute("UPDATE meta SET value = ? WHERE name = 'key_id'", (new_key.key_id.encode(),))
                db.execute("UPDATE meta SET value = ? WHERE name = 'key_check'", (nonce + sealed,))
        except (sqlite3.Error, InvalidTag) as exc:
            raise StoreError(
                f"re-encrypting {self.path} failed, nothing was changed: {exc.__class__.__name__}",
                reason="io",
            ) from None
        self._key = new_key
        return len(rows)

    def metadata(self, account_id: str) -> CredentialMetadata | None:
        row = fetch_one(
            self.path, "SELECT saved_at, saved_by FROM credentials WHERE account_id = ?", (account_id,)
        )
        if row is None:
            return None
        return CredentialMetadata(account_id, datetime.fromisoformat(row[0]), row[1], "embedded")


@dataclass(frozen=True)
class InitResult:
    store_path: Path
    key_source: str
    key_created: bool


def store_exists(settings: Settings) -> bool:
    path = store_path(settings)
    return path.exists() and path.stat().st_size > 0


def init_embedded_store(settings: Settings) -> InitResult:
    """Create the key (unless it comes from the environment) and an empty store; never overwrite either."""
    path = store_path(settings)
    if store_exists(settings):
        raise StoreError(f"{path} already exists: refusing to overwrite the store", reason="config")
    env = key_from_environment(settings.store)
    key = load_key(settings) if env else create_key_file(key_file_path(settings))
    nonce, sealed = _seal(key, _KEY_CHECK_TEXT, _KEY_CHECK_AAD)
    try:
        with closing(connect(path)) as db, db:
            for statement in _SCHEMA:
                db.execute(statement)
            db.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?)",
                [
                    ("format", FORMAT_VERSION.encode()),
                    ("key_id", key.key_id.encode()),
                    ("key_check", nonce + sealed),
                ],
            )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot create the store {path}: {exc}", reason="io") from None
    return InitResult(path, key.source, key_created=env is None)


def _pending_key_path(settings: Settings) -> Path:
    path = key_file_path(settings)
    return path.with_name(path.name + ".new")


def open_embedded(settings: Settings, before_commit: Callable[[], None] | None = None) -> EmbeddedStore:
    path = store_path(settings)
    if not path.exists():
        raise StoreError(
            f"the embedded store {path} does not exist; create it with `atp-bot store init`", reason="config"
        )
    try:
        return EmbeddedStore(path, load_key(settings), before_commit=before_commit)
    except StoreError as exc:
        pending = _pending_key_path(settings)
        if exc.reason == "key" and pending.exists():
            raise StoreError(
                f"{exc.message}; a key rotation was interrupted after the store was re-encrypted: "
                f"the new key is in {pending} (mv {pending} {key_file_path(settings)})",
                reason="key",
            ) from None
        raise


@dataclass(frozen=True)
class RotateResult:
    key_path: Path
    old_key_id: str
    new_key_id: str
    credentials: int


def rotate_key(settings: Settings) -> RotateResult:
    """Re-encrypt every credential with a new key file, in one transaction; then swap the key files.

    The new key is written to `<key_file>.new` first, so an interruption after the commit leaves it
    there (and `open_embedded` says so) rather than losing it.
    """
    env = key_from_environment(settings.store)
    if env:
        raise StoreError(
            f"the store key comes from the environment variable {env}: rotation replaces a key file only",
            reason="config",
        )
    with state_dir_lock(settings, exclusive=True) as alone:
        if not alone:
            raise StoreError(
                f"atp-bot run is using the state directory {state_dir(settings)}: it would keep the old key. "
                "Stop it first (systemctl stop atp-bot), rotate, then start it again",
                reason="busy",
            )
        return _rotate(settings)


def _rotate(settings: Settings) -> RotateResult:
    store = open_embedded(settings)
    old_key_id, key_path, pending = store.key_id, key_file_path(settings), _pending_key_path(settings)
    new_key = create_key_file(pending)
    try:
        count = store.reencrypt(new_key)
    except StoreError:
        pending.unlink(missing_ok=True)
        raise
    replace_durably(pending, key_path)
    return RotateResult(key_path, old_key_id, new_key.key_id, count)
