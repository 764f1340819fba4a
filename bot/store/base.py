"""What every credential store offers, and the one error type they raise."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from pydantic import SecretStr

from bot.config import AccountConfig, ConfigError, Settings
from bot.infra.exitcodes import ExitCode

BackendName = Literal["embedded", "ata-center", "command"]

# Why a save failed, for the audit reason code and the exit code (`unreachable` maps to exit 3).
StoreErrorReason = Literal[
    "config",
    "key",
    "unreachable",
    "tls",
    "auth",
    "rejected",
    "bad-response",
    "timeout",
    "exit-status",
    "io",
    "busy",  # another process holds what the operation needs (a running bot, for a key rotation)
]


# The one mapping from why a store failed to the exit code, for every command: a store that is not set up
# or a wrong key is a configuration error (2), an unreachable store a peer problem (3), the rest 1.
_EXIT_CODES: dict[str, ExitCode] = {
    "config": ExitCode.USAGE,
    "key": ExitCode.USAGE,
    "unreachable": ExitCode.UNREACHABLE,
}


def store_exit_code(reason: str) -> ExitCode:
    """The exit code for a store failure's reason (a StoreErrorReason; anything else is a problem)."""
    return _EXIT_CODES.get(reason, ExitCode.PROBLEM)


class StoreError(Exception):
    """A store operation failed. The message is for an operator and never contains the secret."""

    def __init__(self, message: str, reason: StoreErrorReason = "io") -> None:
        super().__init__(message)
        self.message = message
        self.reason: StoreErrorReason = reason


@dataclass(frozen=True)
class CredentialMetadata:
    """When and by whom an account's credential was last saved, and where (never the secret)."""

    account_id: str
    saved_at: datetime  # UTC
    saved_by: str
    backend: BackendName


class CredentialStore(Protocol):
    """Where "Save" puts the new directory service account password."""

    @property
    def backend(self) -> BackendName: ...

    def save(self, account_id: str, password: SecretStr, actor: str) -> CredentialMetadata:
        """Make `password` the saved credential of `account_id`, atomically; raise StoreError."""
        ...

    def read(self, account_id: str) -> SecretStr | None:
        """The saved password (for the bot's own use), or None if none is saved or the backend can't tell."""
        ...

    def metadata(self, account_id: str) -> CredentialMetadata | None:
        """When and by whom the credential was last saved through atp-bot, or None."""
        ...


def configured_account(settings: Settings, account_id: str) -> AccountConfig:
    """The account's configuration, or a StoreError naming the configured ids."""
    try:
        return settings.account(account_id)
    except ConfigError as exc:
        raise StoreError(exc.problems[0], reason="config") from None
