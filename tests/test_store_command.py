"""The command backend: the secret on standard input only, a timeout, exit status, redacted output."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import Settings
from bot.store import StoreError, open_store
from tests.storetools import CANARY, files_containing, make_settings, toml_str

# A store command that records what it received: stdin, argv and environment, each in its own file.
_RECORDER = """
import json, os, sys, time
out = sys.argv[1]
mode = sys.argv[2]
data = sys.stdin.read()
with open(out + ".stdin", "w") as f:
    f.write(data)
with open(out + ".argv", "w") as f:
    json.dump(sys.argv, f)
with open(out + ".env", "w") as f:
    json.dump(dict(os.environ), f)
secret = data.rstrip("\\n")
if mode == "chatty":
    print("saved " + secret)
    print("note: " + secret, file=sys.stderr)
elif mode == "fail":
    print("vault said no to " + secret, file=sys.stderr)
    sys.exit(7)
elif mode == "slow":
    time.sleep(30)
"""


def _settings(tmp_path: Path, mode: str, timeout: float = 10.0, more: str = "") -> tuple[Settings, Path]:
    script = tmp_path / "recorder.py"
    script.write_text(_RECORDER, encoding="utf-8")
    out = tmp_path / "received"
    argv = ", ".join(toml_str(a) for a in (sys.executable, script, out, mode))
    extra = f'[store]\nbackend = "command"\n[store.command]\nargv = [{argv}]\ntimeout = {timeout}\n{more}'
    return make_settings(tmp_path, extra), out


def test_secret_goes_on_stdin_only(tmp_path: Path) -> None:
    settings, out = _settings(tmp_path, "quiet")
    store = open_store(settings)
    meta = store.save("corp", SecretStr(CANARY), "cli:alice")
    assert Path(str(out) + ".stdin").read_text() == CANARY + "\n"
    argv = json.loads(Path(str(out) + ".argv").read_text())
    env = json.loads(Path(str(out) + ".env").read_text())
    assert CANARY not in json.dumps(argv)
    assert CANARY not in json.dumps(env)
    assert env["ATP_BOT_ACCOUNT_ID"] == "corp"
    assert env["ATP_BOT_USERNAME"] == "CONTOSO\\svc-atp"
    assert env["ATP_BOT_ACTOR"] == "cli:alice"
    assert meta.backend == "command"
    assert store.read("corp") is None
    saved = store.metadata("corp")
    assert saved is not None
    assert saved.saved_by == "cli:alice"
    assert files_containing(tmp_path / "state", CANARY) == []


def test_output_is_logged_with_the_secret_redacted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings, _ = _settings(tmp_path, "chatty")
    open_store(settings).save("corp", SecretStr(CANARY), "cli:alice")
    assert "saved [REDACTED]" in caplog.text
    assert "note: [REDACTED]" in caplog.text
    assert CANARY not in caplog.text


def test_non_zero_exit_is_an_error_without_the_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings, _ = _settings(tmp_path, "fail")
    store = open_store(settings)
    with pytest.raises(StoreError, match="exit status 7") as caught:
        store.save("corp", SecretStr(CANARY), "cli:alice")
    assert caught.value.reason == "exit-status"
    assert "vault said no" not in caught.value.message  # the program's text stays out of the message
    assert "characters on stderr" in caught.value.message
    assert "vault said no to [REDACTED]" in caplog.text  # and is logged, redacted, at DEBUG
    assert CANARY not in caplog.text
    assert store.metadata("corp") is None


def test_timeout_stops_the_command(tmp_path: Path) -> None:
    settings, _ = _settings(tmp_path, "slow", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"did not finish within 0\.5 s") as caught:
        open_store(settings).save("corp", SecretStr(CANARY), "cli:alice")
    assert caught.value.reason == "timeout"
    assert time.monotonic() - started < 10


def test_missing_program_is_a_config_error(tmp_path: Path) -> None:
    extra = '[store]\nbackend = "command"\n[store.command]\nargv = ["/nonexistent/save-it"]\n'
    with pytest.raises(StoreError, match="cannot run the store command") as caught:
        open_store(make_settings(tmp_path, extra)).save("corp", SecretStr(CANARY), "cli:a")
    assert caught.value.reason == "config"


def test_the_program_gets_a_minimal_environment_without_any_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "ATP_BOT_STORE_KEY": "store-key-canary",
        "ATP_BOT_TEST_ATA": "ata-canary",
        "SLACK_BOT_TOKEN": "xoxb-canary",
        "PGPASSWORD": "unrelated-canary",
    }
    for name, value in {**secrets, "LANG": "C.UTF-8", "VAULT_ADDR": "https://vault.test"}.items():
        monkeypatch.setenv(name, value)
    audit = '[audit]\nurl = "postgresql+psycopg://atp@db/atp"\npassword_env = "ATP_BOT_TEST_ATA"\n'
    settings, out = _settings(tmp_path, "quiet", more='pass_env = ["VAULT_ADDR"]\n' + audit)
    open_store(settings).save("corp", SecretStr(CANARY), "cli:alice")
    env = json.loads(Path(str(out) + ".env").read_text())
    expected = {
        "PATH",
        "LANG",
        "HOME",
        "VAULT_ADDR",
        "ATP_BOT_ACCOUNT_ID",
        "ATP_BOT_USERNAME",
        "ATP_BOT_ACTOR",
    }
    assert set(env) <= expected | {"LC_CTYPE"}  # Python itself may set LC_CTYPE (PEP 538)
    assert {"PATH", "LANG", "VAULT_ADDR", "ATP_BOT_ACCOUNT_ID"} <= set(env)
    assert not any(value in json.dumps(env) for value in secrets.values())
