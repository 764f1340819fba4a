"""The command backend: an operator-provided program saves the credential (custom integrations).

The program is run without a shell, from the argv in the configuration. It receives the password on
standard input only (one line) — never in its arguments or environment, which other users of the
machine can read. It learns which account through ATP_BOT_ACCOUNT_ID and ATP_BOT_USERNAME, and who
asked through ATP_BOT_ACTOR. Exit status 0 means saved.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from pydantic import SecretStr

from bot.config import CommandStoreConfig, Settings
from bot.store.base import BackendName, CredentialMetadata, StoreError, configured_account, scrub
from bot.store.ledger import MetadataLedger

log = logging.getLogger(__name__)

OUTPUT_LOG_LIMIT = 2000
ERROR_TAIL_LINES = 3


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-ERROR_TAIL_LINES:])


class CommandStore:
    def __init__(self, config: CommandStoreConfig, settings: Settings, ledger_path: Path) -> None:
        self._config = config
        self._settings = settings
        self._ledger = MetadataLedger(ledger_path, "command")

    @property
    def backend(self) -> BackendName:
        return "command"

    def save(self, account_id: str, password: SecretStr, actor: str) -> CredentialMetadata:
        secret = password.get_secret_value()
        program = self._config.argv[0]
        env = dict(os.environ)
        env.update(
            ATP_BOT_ACCOUNT_ID=account_id,
            ATP_BOT_USERNAME=configured_account(self._settings, account_id).username,
            ATP_BOT_ACTOR=actor,
        )
        try:
            result = subprocess.run(
                self._config.argv,
                input=secret + "\n",
                capture_output=True,
                text=True,
                env=env,
                timeout=self._config.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StoreError(
                f"the store command {program} did not finish within {self._config.timeout:g} s "
                "and was stopped; the credential may or may not have been saved",
                reason="timeout",
            ) from None
        except OSError as exc:
            raise StoreError(
                f"cannot run the store command {program}: {exc.strerror}", reason="config"
            ) from None
        stdout, stderr = scrub(result.stdout, secret), scrub(result.stderr, secret)
        for name, text in (("stdout", stdout), ("stderr", stderr)):
            if text.strip():
                log.info("store command %s %s: %s", program, name, text.strip()[:OUTPUT_LOG_LIMIT])
        if result.returncode != 0:
            detail = _tail(stderr) or _tail(stdout) or "no output"
            raise StoreError(
                f"the store command {program} failed with exit status {result.returncode}: {detail}",
                reason="exit-status",
            )
        return self._ledger.record(account_id, actor)

    def read(self, account_id: str) -> SecretStr | None:
        """The command backend cannot read a credential back."""
        return None

    def metadata(self, account_id: str) -> CredentialMetadata | None:
        return self._ledger.get(account_id)
