"""Anchoring the audit chain outside the bot's reach: `[audit] anchor_command` gets every new head, and
`audit init` warns about a key file kept beside the trail."""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.audit.trail import AuditTrail, open_audit
from bot.cli import main
from bot.config import ConfigError
from bot.monitor.audit_head import audit_head_notice
from bot.monitor.render import render_audit_head
from commands.alerts import audit_head_message
from lab.postgres import PostgresCluster
from tests.peers import postgres_cluster
from tests.storetools import check_event, make_settings, toml_str, write_config

PG_PASSWORD = "pg-test-password-anchor"
PG_PASSWORD_ENV = "ATP_TEST_ANCHOR_DB_PASSWORD"
_names = itertools.count()

# An anchor sink: appends what it is given to a file, unless the mode file says to fail or hang.
_SINK = """
import json, os, sys, time
out, mode_file = sys.argv[1], sys.argv[2]
data = sys.stdin.read()
mode = open(mode_file).read().strip() if os.path.exists(mode_file) else "ok"
if mode == "fail":
    print("webhook said 503", file=sys.stderr)
    sys.exit(3)
if mode == "hang":
    time.sleep(60)
with open(out, "a") as f:
    f.write(data)
with open(out + ".env", "w") as f:
    json.dump({"env": dict(os.environ), "argv": sys.argv}, f)
"""


def _anchor_table(tmp_path: Path, timeout: float = 20.0) -> str:
    script = tmp_path / "sink.py"
    script.write_text(_SINK, encoding="utf-8")
    argv = ", ".join(toml_str(a) for a in (sys.executable, script, tmp_path / "heads", tmp_path / "mode"))
    return f"[audit]\nanchor_command = [{argv}]\nanchor_timeout = {timeout}\n"


def _received(tmp_path: Path) -> list[str]:
    heads = tmp_path / "heads"
    return heads.read_text(encoding="ascii").splitlines() if heads.exists() else []


def _record(trail: AuditTrail, count: int) -> list[str]:
    """Append `count` rows, then wait for the background delivery; each row's `ID:HASH`."""
    rows = [trail.record(check_event(detail=f"event {n}")) for n in range(count)]
    assert trail.anchor is not None
    trail.anchor.wait(60)
    return [f"{row.id}:{row.hash}" for row in rows]


@pytest.fixture
def audit_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("ATP_BOT_AUDIT_KEY", key)
    return key


def test_every_head_reaches_the_anchor_command_and_nothing_else(
    tmp_path: Path, audit_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, _anchor_table(tmp_path))
    heads = _record(open_audit(make_settings(tmp_path, _anchor_table(tmp_path))), 3)
    assert _received(tmp_path) == heads  # one `ID:HASH` line per head, oldest first
    for anchor in heads:
        assert main(["--config", str(config), "audit", "verify", "--anchor", anchor]) == 0
    capsys.readouterr()
    seen = json.loads((tmp_path / "heads.env").read_text())
    assert set(seen["env"]) <= {"PATH", "LANG", "HOME", "LC_CTYPE"}  # Python may set LC_CTYPE (PEP 538)
    assert audit_key not in json.dumps(seen)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from postgres_cluster(PG_PASSWORD)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The [audit] lines of the trail's database: the default SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return ""
    cluster: PostgresCluster = request.getfixturevalue("cluster")
    monkeypatch.setenv(PG_PASSWORD_ENV, PG_PASSWORD)
    url = cluster.create_database(f"audit_anchor_{next(_names)}")
    return f'url = "{url}"\npassword_env = "{PG_PASSWORD_ENV}"\n'


def test_a_failing_sink_is_reported_and_caught_up_from_the_last_head_it_took(
    tmp_path: Path,
    audit_key: str,
    database: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    tables = _anchor_table(tmp_path) + database
    config = write_config(tmp_path, tables)
    trail = open_audit(make_settings(tmp_path, tables))
    first = _record(trail, 1)
    (tmp_path / "mode").write_text("fail")
    with caplog.at_level(logging.ERROR, logger="bot.audit.anchor"):
        missed = _record(trail, 2)  # the appends themselves succeed
    assert _received(tmp_path) == first
    assert "failed with exit status 3" in caplog.text and "after row 1" in caplog.text
    assert "webhook said 503" not in caplog.text  # the sink's output only at DEBUG

    assert main(["--config", str(config), "audit", "verify"]) == 0  # the chain itself is intact
    err = capsys.readouterr().err
    assert "the anchor command failed" in err and "heads after row 1 (up to row 3)" in err

    (tmp_path / "mode").unlink()
    later = _record(trail, 1)
    assert _received(tmp_path) == first + missed + later  # no head skipped
    assert main(["--config", str(config), "audit", "verify"]) == 0
    assert "anchor command" not in capsys.readouterr().err


def test_a_hung_sink_is_stopped_and_never_holds_an_append(tmp_path: Path, audit_key: str) -> None:
    (tmp_path / "mode").write_text("hang")
    trail = open_audit(make_settings(tmp_path, _anchor_table(tmp_path, timeout=1)))
    started = time.monotonic()
    trail.record(check_event())
    appended = time.monotonic() - started
    assert trail.anchor is not None
    trail.anchor.wait(60)
    assert appended < 30  # long before the sink would have finished (60 s)
    status = trail.anchor.status()
    assert status.problem is not None and "did not finish within 1 s and was stopped" in status.problem
    assert _received(tmp_path) == []


def test_the_daily_announcement_catches_up_and_tells_a_failing_sink(tmp_path: Path, audit_key: str) -> None:
    (tmp_path / "mode").write_text("fail")
    trail = open_audit(make_settings(tmp_path, _anchor_table(tmp_path)))
    _record(trail, 2)
    notice = audit_head_notice(trail, datetime.now(UTC))
    assert notice.intact and notice.anchor_problem is not None
    assert "failed with exit status 3" in render_audit_head(notice)
    assert "failed with exit status 3" in audit_head_message(notice)
    (tmp_path / "mode").unlink()
    notice = audit_head_notice(trail, datetime.now(UTC))
    assert notice.anchor_problem is None and notice.head is not None
    assert _received(tmp_path)[-1] == notice.head


def test_the_cli_hands_over_the_head_of_its_own_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ATP_BOT_AUDIT_KEY", raising=False)
    config = write_config(tmp_path, _anchor_table(tmp_path))
    assert main(["--config", str(config), "audit", "init"]) == 0  # appends the audit-init row
    deadline = time.monotonic() + 60
    while not _received(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    capsys.readouterr()
    assert _received(tmp_path) == [open_audit(make_settings(tmp_path)).verify().anchor]


@pytest.mark.parametrize(
    ("value", "error"),
    [('"/usr/bin/anchor"', "list"), ('["anchor"]', "absolute path"), ("[]", "at least 1")],
)
def test_anchor_command_is_an_argv_list(tmp_path: Path, value: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        make_settings(tmp_path, f"[audit]\nanchor_command = {value}\n")


def test_audit_init_warns_when_the_key_file_sits_beside_the_trail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ATP_BOT_AUDIT_KEY", raising=False)
    for name in ("beside", "apart", "env"):
        (tmp_path / name).mkdir()
    beside = write_config(tmp_path / "beside")
    assert main(["--config", str(beside), "audit", "init"]) == 0
    err = capsys.readouterr().err
    assert "warning: the audit key file" in err and "is in the audit trail's directory" in err
    assert main(["--config", str(beside), "audit", "init"]) == 0  # and again, while it stays there
    assert "is in the audit trail's directory" in capsys.readouterr().err

    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    apart = write_config(tmp_path / "apart", f"[audit]\nkey_file = {toml_str(keys / 'audit.key')}\n")
    assert main(["--config", str(apart), "audit", "init"]) == 0
    assert capsys.readouterr().err == ""

    monkeypatch.setenv("ATP_BOT_AUDIT_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    assert main(["--config", str(write_config(tmp_path / "env")), "audit", "init"]) == 0
    assert capsys.readouterr().err == ""
