"""The command backend: an operator-provided program saves the credential (custom integrations).

The program is run as `bot.infra.operator_command` runs every program the operator configures: no
shell, the argv from the configuration, a bounded time and output, a minimal environment. It receives
the password on standard input only (one line, UTF-8). Its environment holds PATH, LANG, HOME, the
variables named in `[store.command] pass_env`, and the change: which account through
ATP_BOT_ACCOUNT_ID and ATP_BOT_USERNAME, who asked through ATP_BOT_ACTOR. No secret of atp-bot's own is
ever in it. Exit status 0 means saved.

Its output is the peer's text: it never goes into an error message or the audit trail (a program may
echo the password back, escaped or encoded); it is logged at DEBUG only, after every form of the
password has been redacted.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import SecretStr

from bot.config import CommandStoreConfig, Settings
from bot.infra.operator_command import CommandTimeout, command_environment, run_command
from bot.infra.redaction import scrub
from bot.store.base import BackendName, CredentialMetadata, StoreError, configured_account
from bot.store.ledger import MetadataLedger

log = logging.getLogger(__name__)

OUTPUT_LOG_LIMIT = 2000


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
        env = self._environment(account_id, actor)
        try:
            result = run_command(self._config.argv, secret + "\n", timeout=self._config.timeout, env=env)
        except CommandTimeout:
            raise StoreError(
                f"the store command {program} did not finish within {self._config.timeout:g} s "
                "and was stopped; the credential may or may not have been saved",
                reason="timeout",
            ) from None
        except OSError as exc:
            raise StoreError(
                f"cannot run the store command {program}: {exc.strerror}", reason="config"
            ) from None
        for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            if text.strip():
                log.debug(
                    "store command %s %s: %s", program, name, scrub(text.strip(), secret)[:OUTPUT_LOG_LIMIT]
                )
        if result.returncode != 0:
            raise StoreError(
                f"the store command {program} failed with exit status {result.returncode} "
                f"({result.output_sizes()}; the output is logged at DEBUG, atp-bot -v)",
                reason="exit-status",
            )
        return self._ledger.record(account_id, actor)

    def _environment(self, account_id: str, actor: str) -> dict[str, str]:
        change = {
            "ATP_BOT_ACCOUNT_ID": account_id,
            "ATP_BOT_USERNAME": configured_account(self._settings, account_id).username,
            "ATP_BOT_ACTOR": actor,
        }
        return command_environment(self._settings, self._config.pass_env, change)

    def read(self, account_id: str) -> SecretStr | None:
        """The command backend cannot read a credential back."""
        return None

    def metadata(self, account_id: str) -> CredentialMetadata | None:
        return self._ledger.get(account_id)
