"""Control and format characters from peers (terminal escapes, RLO, zero-width, NUL) reach no person raw:
the audit trail stores them escaped, the CLI prints them escaped, Slack receives them escaped."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.audit.trail import AuditEvent, AuditOutcome, open_audit
from bot.cli import main
from bot.infra.controls import escape_controls
from bot.slack.client import build_client
from bot.slack.views import plain, section
from commands.alerts import Action
from lab.slack.emulator import SlackEmulator
from lab.winrm.model import Host, log_line
from lab.winrm.server import WinRMEmulator
from tests.slack_lab import OPS, wait_for
from tests.storetools import make_settings, write_config
from tests.test_slack_alerts import alert_messages, alerts_lab, buttons
from tests.winrm_lab import settings_toml

# A screen clear, a window title (OSC … BEL), a right-to-left override, a zero-width space and NUL.
HOSTILE = "x\x1b[2J\x1b]0;pwned\x07y\u202ez\u200bw\x00v"
ESCAPED = "x\\x1b[2J\\x1b]0;pwned\\x07y\\u202ez\\u200bw\\x00v"


def strings(value: Any) -> list[str]:
    """Every string inside a JSON-like value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in strings(item)]
    return []


def raw_controls(value: Any) -> set[str]:
    """Every Cc/Cf character but newline and tab in any string inside `value`."""
    return {
        c
        for text in strings(value)
        for c in text
        if c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cf")
    }


def test_escape_controls_shows_every_control_and_format_character() -> None:
    assert escape_controls(HOSTILE) == ESCAPED
    assert escape_controls("line\n\tnext é 中 \u00a0") == "line\n\tnext é 中 \u00a0"  # kept as is
    assert escape_controls("\r\x7f\x85\u00ad\ufeff") == "\\x0d\\u007f\\u0085\\u00ad\\ufeff"
    assert escape_controls("tag\U000e0041") == "tag\\udb40\\udc41"  # beyond the BMP: UTF-16 escapes
    assert escape_controls(ESCAPED) == ESCAPED  # escaping twice changes nothing
    document = json.dumps({"name": HOSTILE + "\x9b\U000e0041"}, ensure_ascii=False)
    assert json.loads(escape_controls(document)) == {"name": HOSTILE + "\x9b\U000e0041"}
    assert not raw_controls(escape_controls(document))


def test_every_cc_and_cf_character_of_this_unicode_database_is_escaped_and_nothing_else() -> None:
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and c != ord("|")]
    escaped = escape_controls("|".join(chars)).split("|")
    expected = [c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cf") for c in chars]
    assert [e != c for e, c in zip(escaped, chars, strict=True)] == expected
    assert all(
        e.isascii() and e.isprintable() for e, changed in zip(escaped, expected, strict=True) if changed
    )


def _hostile_sensor(emulator: WinRMEmulator) -> Host:
    host = Host.sensor("s1")
    host.set_service("AATPSensor", f"Stopped {HOSTILE}")
    host.append_log(log_line(datetime.now(UTC), f"The supplied credential is invalid. {HOSTILE}"))
    emulator.add_host(host)
    return host


def _config(tmp_path: Path, emulator: WinRMEmulator) -> Path:
    path = tmp_path / "atp-bot.toml"
    sensors = [{"name": "s1", "endpoint": emulator.endpoint("s1")}]
    path.write_text(settings_toml(sensors, checks={"host_timeout": 5}), encoding="utf-8")
    return path


@pytest.mark.parametrize("command", [["check"], ["check", "--json"], ["sensors"], ["sensors", "--json"]])
def test_check_and_sensors_print_what_a_sensor_sent_escaped(
    command: list[str], emulator: WinRMEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _hostile_sensor(emulator)
    assert main(["--config", str(_config(tmp_path, emulator)), *command]) == 1
    printed = capsys.readouterr()
    assert not raw_controls(printed.out) and not raw_controls(printed.err)
    if "--json" in command:
        document = json.loads(printed.out)  # still JSON, and it decodes to what the sensor sent
        assert any(HOSTILE in text for text in strings(document))
    else:
        assert f"service AATPSensor is Stopped {ESCAPED}" in printed.out


def test_slack_calls_and_the_audit_row_hold_the_escaped_text(
    sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    """Through the real monitor, Bolt app and change path: the alert Slack records, the *Start service*
    answer and the `start-service` audit row show the sensor's characters as escapes, never raw."""
    sensors.host("sensor01").append_log(log_line(datetime.now(UTC), f"credential is invalid {HOSTILE}"))
    sensors.host("sensor02").set_service("AATPSensor", f"Stopped {HOSTILE}")
    with alerts_lab(sensors, tmp_path) as lab:
        scheduler = lab.runtime.services.scheduler
        assert scheduler is not None
        scheduler.run_cycle_now()
        alert = wait_for(lambda: alert_messages(lab))[0]
        lab.emulator.slash_command("status")  # answered through the response URL, not the Web API client
        status = wait_for(
            lambda: [c.args for c in lab.emulator.calls("response_url") if "attention" in str(c.args)],
            timeout=30,
        )
        start_id = f"{Action.START_SERVICE}:sensor02:AATPSensor"
        value = str(buttons(alert.blocks)[start_id]["value"])  # type: ignore[attr-defined]
        lab.emulator.click(start_id, channel=OPS, message_ts=alert.ts, value=value)  # type: ignore[attr-defined]
        wait_for(lambda: sensors.host("sensor02").service_state("AATPSensor") == "Running", timeout=15)
        changes = lab.runtime.services.changes
        assert changes is not None
        row = wait_for(lambda: [r for r in changes.audit.recent() if r.action == "start-service"])[0]
        wait_for(lambda: [m for m in lab.emulator.messages(OPS) if m.thread_ts == alert.ts])  # type: ignore[attr-defined]
        calls = lab.emulator.calls()
    assert not raw_controls(status) and "\\u202e" in json.dumps(status, ensure_ascii=False)
    assert row.detail is not None and f"(it was Stopped {ESCAPED})" in row.detail
    assert not raw_controls(row.as_dict())
    assert all(not raw_controls(call.args) for call in calls), [
        c.method for c in calls if raw_controls(c.args)
    ]
    posted = json.dumps([c.args for c in calls if c.method == "chat.postMessage"], ensure_ascii=False)
    assert "\\u202e" in posted and "\\u200b" in posted


def test_block_kit_text_built_anywhere_reaches_slack_escaped() -> None:
    """The Web API client is the net under the text helpers: a view or block built without them."""
    with SlackEmulator() as slack:
        client = build_client(slack.api_url, SecretStr(slack.bot_token))
        client.chat_postMessage(channel=OPS, text=HOSTILE, blocks=[section(HOSTILE)])
        (call,) = slack.calls("chat.postMessage")
    assert not raw_controls(call.args)
    assert call.args["text"] == ESCAPED
    assert json.dumps(call.args["blocks"]).count(ESCAPED.replace("\\", "\\\\")) == 1
    assert plain(HOSTILE)["text"] == HOSTILE  # the builders stay pure; the client escapes on the way out


def test_new_rows_are_escaped_and_a_trail_with_raw_characters_still_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path)
    event = AuditEvent(
        actor="cli:alice", action="check", account=None, outcome=AuditOutcome.OK, detail=HOSTILE
    )
    with monkeypatch.context() as old_code:  # rows as a version that stored the characters raw wrote them
        old_code.setattr("bot.audit.trail.escape_controls", lambda text: text)
        old = open_audit(settings).record(event)
    new = open_audit(settings).record(event)
    assert raw_controls(old.detail) and new.detail == " ".join(ESCAPED.split())
    assert open_audit(settings).verify().intact  # history is not rewritten
    config = write_config(tmp_path)
    assert main(["--config", str(config), "history"]) == 0
    printed = capsys.readouterr().out
    assert not raw_controls(printed) and printed.count("\\u202e") == 2  # the old row is shown escaped too
