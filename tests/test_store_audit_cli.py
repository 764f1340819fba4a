"""`atp-bot store init|status`, `atp-bot audit verify` and `atp-bot history` as an operator runs them."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.audit import AuditAction, AuditEvent, AuditOutcome, open_audit
from bot.cli import main
from bot.store import open_store
from tests.storetools import CANARY, check_event, files_containing, make_settings, write_config


@pytest.fixture(autouse=True)
def _no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)


def _run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_store_init_status_and_history(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = write_config(tmp_path)
    code, out, err = _run(capsys, config, "store", "status")
    assert code == 2  # as set-password's: a store that is not set up is a configuration error
    assert "atp-bot store init" in err
    monkeypatch.setattr("sys.stdin", io.StringIO(CANARY + "\n"))
    code, _, err = _run(capsys, config, "set-password", "--account", "corp", "--password-stdin")
    assert code == 2
    assert "atp-bot store init" in err

    code, out, _ = _run(capsys, config, "store", "init")
    assert code == 0
    assert "created the embedded store" in out
    assert "store.key" in out
    key = (tmp_path / "state" / "store.key").read_bytes()
    code, out, err = _run(capsys, config, "store", "init")
    assert code == 0
    assert err.startswith("atp-bot: warning: the audit key file") and err.count("\n") == 1  # beside the trail
    assert "already exists; nothing was changed" in out
    assert (tmp_path / "state" / "store.key").read_bytes() == key

    settings = make_settings(tmp_path)
    open_store(settings).save("corp", SecretStr(CANARY), "slack:U123 (alice)")
    open_audit(settings).record(
        AuditEvent(
            actor="slack:U123 (alice)",
            action=AuditAction.SAVE,
            account="corp",
            outcome=AuditOutcome.OK,
            detail="saved in embedded",
        )
    )

    code, out, _ = _run(capsys, config, "store", "status")
    assert code == 0
    assert "corp: saved " in out
    assert "by slack:U123 (alice)" in out
    assert "lab: no credential saved" in out

    code, out, _ = _run(capsys, config, "history", "--json")
    events = json.loads(out)
    assert code == 0
    assert [e["action"] for e in events] == ["save", "store-init"]
    for event in events:
        assert {"time", "actor", "action", "account", "outcome"} <= set(event)

    code, out, _ = _run(capsys, config, "history", "--account", "corp", "--limit", "5")
    assert code == 0
    assert out.count("\n") == 1
    assert "save  corp  ok" in out
    code, out, _ = _run(capsys, config, "history", "--account", "lab")
    assert "No audit events for lab." in out
    with pytest.raises(SystemExit) as usage:
        main(["--config", str(config), "history", "--limit", "0"])
    assert usage.value.code == 2

    everything = capsys.readouterr()
    assert CANARY not in everything.out + everything.err + caplog.text
    assert files_containing(tmp_path, CANARY) == []


def test_insecure_key_file_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert _run(capsys, config, "store", "init")[0] == 0
    key_file = tmp_path / "state" / "store.key"
    key_file.chmod(0o644)
    code, _, err = _run(capsys, config, "store", "status")
    assert code == 2
    assert f"chmod 600 {key_file}" in err
    assert "Traceback" not in err


def test_store_init_on_another_backend_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, '[store]\nbackend = "command"\n[store.command]\nargv = ["/bin/true"]\n')
    code, _, err = _run(capsys, config, "store", "init")
    assert code == 2
    assert "init applies to the embedded store only" in err


def test_audit_verify_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    trail = open_audit(make_settings(tmp_path))
    for index in range(3):
        trail.record(check_event("cli:alice", detail=str(index)))
    code, out, _ = _run(capsys, config, "audit", "verify")
    assert code == 0
    assert "intact: 3 rows" in out
    with sqlite3.connect(tmp_path / "state" / "audit.sqlite") as db:
        db.execute("UPDATE audit_events SET actor = 'cli:mallory' WHERE id = 2")
    code, out, _ = _run(capsys, config, "audit", "verify")
    assert code == 1
    assert "BROKEN at row 2" in out
    assert "edited" in out


def test_store_rotate_key_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert _run(capsys, config, "store", "init")[0] == 0
    open_store(make_settings(tmp_path)).save("corp", SecretStr(CANARY), "cli:alice")
    code, out, _ = _run(capsys, config, "store", "rotate-key")
    assert code == 0
    assert "re-encrypted 1 credential(s)" in out
    secret = open_store(make_settings(tmp_path)).read("corp")
    assert secret is not None
    assert secret.get_secret_value() == CANARY
    code, out, _ = _run(capsys, config, "history", "--limit", "1")
    assert "store-rotate-key  -  ok: key id" in out
    assert CANARY not in out


def test_store_init_makes_the_audit_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    code, out, _ = _run(capsys, config, "store", "init")
    assert code == 0
    key_file = tmp_path / "state" / "audit.key"
    assert f"created the audit key in {key_file} (mode 0600)" in out
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_bytes()
    code, out, _ = _run(capsys, config, "audit", "verify")
    assert code == 0
    assert "intact: 1 rows (keyed from row 1)" in out  # the store-init row
    _run(capsys, config, "store", "init")  # refused (the store exists); the audit key is kept
    assert key_file.read_bytes() == key


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--limit", "abc"], "argument --limit: must be a whole number from 1 to 10000, not 'abc'"),
        (["--limit", "0"], "argument --limit: must be a whole number from 1 to 10000, not '0'"),
    ],
)
def test_history_limit_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["--config", str(write_config(tmp_path)), "history", *arguments])
    assert usage.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_history_of_an_unknown_account_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, write_config(tmp_path), "history", "--account", "nosuch")
    assert (code, out) == (2, "")
    assert err == "atp-bot: usage error: no account with id 'nosuch' (configured: corp, lab)\n"
