"""The lab's Slack picture (pure): recorded calls of a password change drawn as an SVG document."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.change import ChangeOutcome, ChangeStatus
from bot.cli import main
from bot.config import Settings
from bot.directory import ConnectionTestResult, Outcome, PasswordExpiry, Reason
from bot.sensors.checks import SensorResult, ServiceStatus
from bot.store import CredentialMetadata
from commands.password.views import (
    Action,
    Block,
    PasswordModalOrigin,
    announcement,
    password_modal,
    result_modal,
)
from commands.shared.sensor_report import report
from lab.slack.picture import Run, render_picture, scene_from_calls, width, wrap
from lab.slack.webapi import Call

SVG = "{http://www.w3.org/2000/svg}"
NOW = datetime(2026, 11, 30, 10, 15, tzinfo=UTC)
PASSWORD = "Canary-Pa55word-7f3a!"  # what alice typed: in no call, and never in the picture
HOSTILE = "<script>&\"'\x01"  # what a sensor may say
SETTINGS = Settings.model_validate(
    {
        "accounts": [
            {"id": "contoso", "username": "svc-atp@contoso.test", "domain_controllers": ["ldaps://dc1"]},
            {"id": "fabrikam", "username": "svc@fabrikam.test", "domain_controllers": ["ldaps://dc2"]},
        ]
    }
)
STATE = PasswordModalOrigin(account_id=None, channel_id="C0OPS")
ANNOUNCED, REPORT = "1764497700.000010", "1764497701.000011"
HEADING = "*Follow-up checks* on 3 sensor(s): service state, credential errors since the change"


def call(method: str, args: dict[str, Any], **answer: Any) -> Call:
    return Call(method, args, json.dumps(args), 200, None, 0.0, answer={"ok": True, **answer})


def sensor(name: str, state: str = "Running") -> SensorResult:
    return SensorResult(
        name, f"http://{name}", "mdi", "contoso", NOW, 0.1, (ServiceStatus("AATPSensor", state),)
    )


def filled_form() -> dict[str, Any]:
    """The modal as Slack holds it once alice has typed: her password in its state (and, to be sure the
    picture never draws one, as an initial value too)."""
    form = password_modal(SETTINGS, STATE)
    for block in form["blocks"]:
        if block["type"] == "input" and block["element"]["type"] == "plain_text_input":
            block["element"]["initial_value"] = PASSWORD
    form["state"] = {"values": {Block.PASSWORD: {Action.PASSWORD: {"value": PASSWORD}}}}
    return form


def password_flow() -> list[Call]:
    """The calls of one `/atp password`: a wrong password, then the right one, the announcement and its
    threaded sensor report (posted, then updated twice), built with the bot's own Block Kit builders."""
    test = ConnectionTestResult(
        "contoso", Outcome.PASSED, "accepted", dc="ldaps://dc1", expiry=PasswordExpiry(True)
    )
    wrong = ConnectionTestResult("contoso", Outcome.REJECTED, "The password is wrong.", Reason.WRONG_PASSWORD)
    saved = ChangeOutcome(
        "contoso",
        ChangeStatus.SAVED,
        "saved",
        test,
        CredentialMetadata("contoso", NOW, "slack:U0ALICE", "embedded"),
    )
    rejected = ChangeOutcome("contoso", ChangeStatus.TEST_FAILED, "rejected", wrong)
    text, blocks = announcement(saved, "<@U0ALICE>", SETTINGS)
    results = [sensor("dc01"), sensor("dc02", HOSTILE), sensor("dc03")]
    posted, partial, final = (report(HEADING, shown, 3) for shown in ([], results[:1], results))
    thread, edit = {"channel": "C0OPS", "thread_ts": ANNOUNCED}, {"channel": "C0OPS", "ts": REPORT}
    return [
        call("views.open", {"trigger_id": "1.a", "view": filled_form()}, view={"id": "V1"}),
        call("views.update", {"view_id": "V1", "view": result_modal(rejected, STATE)}),
        call("views.update", {"view_id": "V1", "view": json.dumps(result_modal(saved, STATE))}),
        call("views.update", {"view_id": "V9", "view": result_modal(rejected, STATE)}),  # another modal
        call("chat.postMessage", {"channel": "C0OPS", "text": text, "blocks": blocks}, ts=ANNOUNCED),
        call("chat.postMessage", {**thread, "text": posted[0], "blocks": posted[1]}, ts=REPORT),
        call("chat.update", {**edit, "text": partial[0], "blocks": partial[1]}),
        call("chat.update", {**edit, "text": final[0], "blocks": json.dumps(final[1])}),  # form-encoded
    ]


def lines(svg: str) -> list[str]:
    """The text of every line drawn (each a <text> element, its styled parts in <tspan>s)."""
    root = ET.fromstring(svg)  # noqa: S314 (our own output; the lab has no defusedxml dependency)
    assert root.tag == f"{SVG}svg"
    return ["".join(element.itertext()) for element in root.iter(f"{SVG}text")]


def test_the_password_flow_is_drawn_as_well_formed_svg_with_what_slack_shows() -> None:
    svg = render_picture(password_flow(), {"U0ALICE": "alice"})
    drawn = lines(svg)
    for expected in [
        "Directory password",
        "Directory service account",
        "Select an option",
        "New password",
        "Confirm the new password",
        "Test and save",
        "Cancel",
        "Close",
        "Thread   #C0OPS",
        "atp-bot  APP  10:15",
        "1 reply",
        "(edited)",
    ]:
        assert expected in drawn, expected
    assert drawn.count("•" * 12) == 2  # both password inputs, as dots
    text = " ".join(drawn)
    assert "✅ Saved. ldaps://dc1 accepted the new password for contoso" in text
    assert "🔑 @alice changed the directory service account password for contoso" in text
    assert "🚨 1 of 3 sensor(s) need attention: dc02." in text
    assert "❌ dc02: service AATPSensor is <script>&\"'" in text  # peer text, escaped as text
    assert "Checking 3 sensor(s)" not in text  # the report as it ended up, not as first posted
    assert "Not saved" not in text  # the modal's last state


def test_no_password_is_ever_drawn() -> None:
    svg = render_picture(password_flow())
    assert PASSWORD not in svg
    assert PASSWORD not in " ".join(lines(svg))


def test_only_calls_slack_answered_with_ok_count() -> None:
    calls = password_flow()
    failed = Call("chat.postMessage", {"channel": "C0OPS", "text": "lost"}, "", 200, "channel_not_found", 0.0,
                  answer={"ok": False, "error": "channel_not_found"})  # fmt: skip
    scene = scene_from_calls([failed, *calls])
    assert scene.announcement is not None
    assert scene.announcement.ts == ANNOUNCED
    assert not scene.announcement.edited
    assert [(r.ts, r.edited) for r in scene.replies] == [(REPORT, True)]


def test_nothing_recorded_still_makes_a_picture() -> None:
    assert lines(render_picture([])) == ["The channel"]


def test_a_word_wider_than_its_column_is_cut_to_fit() -> None:
    wrapped = wrap([Run("see "), Run("x" * 300, "code"), Run(" and more")], 200, 15)
    assert len(wrapped) > 3
    assert all(sum(width(run, 15) for run in line) <= 200 for line in wrapped)
    assert (
        "".join(run.text for line in wrapped for run in line).replace(" ", "")
        == "see" + "x" * 300 + "andmore"
    )


@pytest.mark.parametrize("where", ["missing/slack.svg", "."])
def test_a_picture_path_that_cannot_be_written_is_a_usage_error_before_the_lab_starts(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lab", "demo", "--picture", str(tmp_path / where)]) == 2
    printed = capsys.readouterr()
    assert printed.err.startswith(f"atp-bot lab demo: --picture {tmp_path / where}: ")
    assert printed.out == ""  # the lab did not start
    assert not (tmp_path / "missing").exists()
