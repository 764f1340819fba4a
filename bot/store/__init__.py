"""Credential stores: where "Save" puts the directory service account's new password.

`open_store(settings)` returns the configured backend: the embedded encrypted SQLite store (default),
the ATA Center's own configuration, or an operator-provided command.
"""

from __future__ import annotations

from bot.config import Settings
from bot.infra.state_dir import state_dir
from bot.store.ata_center import AtaCenterStore
from bot.store.base import (
    BackendName,
    CredentialMetadata,
    CredentialStore,
    StoreError,
    StoreErrorReason,
    store_exit_code,
)
from bot.store.command import CommandStore
from bot.store.embedded import open_embedded

LEDGER_NAME = "store-ledger.sqlite"

__all__ = [
    "BackendName",
    "CredentialMetadata",
    "CredentialStore",
    "StoreError",
    "StoreErrorReason",
    "open_store",
    "store_exit_code",
]


def open_store(settings: Settings) -> CredentialStore:
    """The configured store, ready to use; raises StoreError (e.g. no key, wrong key, insecure key file)."""
    config = settings.store
    if config.backend == "ata-center":
        assert config.ata_center is not None  # guaranteed by StoreConfig validation
        return AtaCenterStore(config.ata_center, settings, state_dir(settings) / LEDGER_NAME)
    if config.backend == "command":
        assert config.command is not None
        return CommandStore(config.command, settings, state_dir(settings) / LEDGER_NAME)
    return open_embedded(settings)
