"""The [store] and [audit] configuration tables: precise errors, no secrets in the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.cli import main
from bot.config import ConfigError, read_secret
from bot.config.secret_env import taken_names
from bot.store import StoreError, open_store
from bot.store.keys import encode_key
from tests.storetools import make_settings, write_config


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


_WINRM_FROM_ENV = '[winrm]\nusername = "CONTOSO\\\\atp-checker"\npassword_env = "ATP_BOT_TEST_WINRM"\n'


@pytest.mark.parametrize("secret", ["ATP_BOT_TEST_WINRM", "ATP_BOT_STORE_KEY", "SLACK_BOT_TOKEN"])
def test_pass_env_never_names_a_secret(tmp_path: Path, secret: str) -> None:
    extra = f'[store]\nbackend = "command"\n[store.command]\nargv = ["/bin/true"]\npass_env = ["{secret}"]\n'
    with pytest.raises(ConfigError, match=f"store.command.pass_env: {secret} holds a secret"):
        make_settings(tmp_path, _WINRM_FROM_ENV + extra)


def test_every_entry_point_takes_the_configured_secrets_out_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once read they live in memory only, and a later read of the same setting still gets them."""
    secrets = {
        "ATP_BOT_STORE_KEY": encode_key(os.urandom(32)),
        "ATP_BOT_TEST_WINRM": "WinRM-Canary-Pa55",
        "SLACK_BOT_TOKEN": "xoxb-canary-token",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    config = write_config(tmp_path, _WINRM_FROM_ENV)
    assert main(["--config", str(config), "store", "init"]) == 0
    assert set(secrets).isdisjoint(os.environ)
    assert main(["--config", str(config), "store", "status"]) == 0  # reads the store key a second time
    assert (
        read_secret("winrm", env="ATP_BOT_TEST_WINRM", file=None).get_secret_value()
        == secrets["ATP_BOT_TEST_WINRM"]
    )
    assert set(secrets) <= taken_names()
