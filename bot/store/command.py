"""The command backend: an operator-provided program saves the credential (custom integrations).

The program is run without a shell, from the argv in the configuration. It receives the password on
standard input only (one line, UTF-8) — never in its arguments or environment, which other users of
the machine can read. Its environment is minimal: PATH, LANG, HOME, the variables named in
`[store.command] pass_env`, and the change: which account through ATP_BOT_ACCOUNT_ID and
ATP_BOT_USERNAME, who asked through ATP_BOT_ACTOR. No secret of atp-bot's own is ever in it. Exit
status 0 means saved.

Its output is the peer's text: it never goes into an error message or the audit trail (a program may
echo the password back, escaped or encoded); it is logged at DEBUG only, after every form of the
password has been redacted.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from pydantic import SecretStr

from bot.config import CommandStoreConfig, Settings
from bot.config.secret_env import taken_names
from bot.infra.redaction import scrub
from bot.store.base import BackendName, CredentialMetadata, StoreError, configured_account
from bot.store.ledger import MetadataLedger

log = logging.getLogger(__name__)

OUTPUT_LOG_LIMIT = 2000
# What any program needs to run; everything else only through `pass_env`.
BASE_ENV = ("PATH", "LANG", "HOME")


def _output_sizes(result: subprocess.CompletedProcess[str]) -> str:
    """What the program wrote, by size only (its text may hold the password in some form)."""
    sizes = [
        f"{len(text)} characters on {name}"
        for name, text in (("stdout", result.stdout), ("stderr", result.stderr))
        if text
    ]
    return ", ".join(sizes) or "no output"


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
            result = subprocess.run(
                self._config.argv,
                input=secret + "\n",
                capture_output=True,
                encoding="utf-8",
                errors="replace",
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
        for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            if text.strip():
                log.debug(
                    "store command %s %s: %s", program, name, scrub(text.strip(), secret)[:OUTPUT_LOG_LIMIT]
                )
        if result.returncode != 0:
            raise StoreError(
                f"the store command {program} failed with exit status {result.returncode} "
                f"({_output_sizes(result)}; the output is logged at DEBUG, atp-bot -v)",
                reason="exit-status",
            )
        return self._ledger.record(account_id, actor)

    def _environment(self, account_id: str, actor: str) -> dict[str, str]:
        """The child's whole environment. A secret is left out even if `pass_env` names it (the
        configuration refuses that) or an entry point failed to take it out of `os.environ`."""
        secret = self._settings.secret_env_names() | taken_names()
        wanted = [name for name in (*BASE_ENV, *self._config.pass_env) if name not in secret]
        env = {name: os.environ[name] for name in wanted if name in os.environ}
        env.update(
            ATP_BOT_ACCOUNT_ID=account_id,
            ATP_BOT_USERNAME=configured_account(self._settings, account_id).username,
            ATP_BOT_ACTOR=actor,
        )
        return env

    def read(self, account_id: str) -> SecretStr | None:
        """The command backend cannot read a credential back."""
        return None

    def metadata(self, account_id: str) -> CredentialMetadata | None:
        return self._ledger.get(account_id)
