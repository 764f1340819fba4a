"""The [store] and [audit] configuration tables: precise errors, no secrets in the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import ConfigError
from bot.store import StoreError, open_store
from tests.storetools import make_settings


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[store]\nbackend = "ata-center"\n', 'store: backend "ata-center" needs a [store.ata_center] table'),
        ('[store]\nbackend = "command"\n', 'store: backend "command" needs a [store.command] table'),
        (
            '[store]\nbackend = "vault"\n',
            "store.backend: must be one of embedded, ata-center, command",
        ),
        (
            '[store.ata_center]\nurl = "http://center"\nusername = "C\\\\u"\npassword_env = "X"\n',
            "store.ata_center.url: 'http://center': must be https://<center>[:port]",
        ),
        (
            '[store.ata_center]\nurl = "https://center"\nusername = "admin"\npassword_env = "X"\n',
            "store.ata_center.username: must be a UPN",
        ),
        (
            '[store.ata_center]\nurl = "https://center"\nusername = "C\\\\u"\n',
            "store.ata_center: set password_env or password_file",
        ),
        ('[store.command]\nargv = ["save-it"]\n', "store.command.argv: argv[0] must be the absolute path"),
        ("[store.command]\nargv = []\n", "store.command.argv: must have at least 1 item(s)"),
        (
            '[audit]\nurl = "postgresql+psycopg://atp:hunter2@db/atp"\n',
            "audit.url: must not contain a password",
        ),
        ('[audit]\nurl = "::not a url::"\n', "audit.url: not a valid SQLAlchemy URL"),
    ],
)
def test_invalid_store_and_audit_config(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(tmp_path, extra)
    assert any(problem.startswith(message) for problem in caught.value.problems), caught.value.problems
    assert "hunter2" not in str(caught.value)


def test_missing_ata_center_password_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATP_TEST_ATA_PASSWORD", raising=False)
    extra = (
        '[store]\nbackend = "ata-center"\n[store.ata_center]\nurl = "https://127.0.0.1:9"\n'
        'username = "CONTOSO\\\\ata-admin"\npassword_env = "ATP_TEST_ATA_PASSWORD"\n'
    )
    with pytest.raises(StoreError, match="ATP_TEST_ATA_PASSWORD is not set") as caught:
        open_store(make_settings(tmp_path, extra)).save("corp", SecretStr("x"), "cli:a")
    assert caught.value.reason == "config"


def test_unknown_account_is_a_store_error(tmp_path: Path) -> None:
    extra = '[store]\nbackend = "command"\n[store.command]\nargv = ["/bin/true"]\n'
    with pytest.raises(StoreError, match="no account with id 'nope'"):
        open_store(make_settings(tmp_path, extra)).save("nope", SecretStr("x"), "cli:a")
