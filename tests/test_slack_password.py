"""`/atp password` end to end: the real Bolt app (both modes) against the Slack emulator, a real Samba AD
DC, the WinRM emulator, the embedded store and the audit trail."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from bot.change import open_changes
from bot.change.portal import PORTAL_URL
from bot.directory import AccountLocks
from bot.store import open_store
from commands import MODULES
from commands.password.portal import DONE_ACTION
from commands.password.views import Action, Block
from lab.domain import LabDomain
from lab.samba import LabUser
from lab.winrm.server import WinRMEmulator
from tests.conftest import CANARY, SENSOR_WINRM_PASSWORD_ENV, lab_account, sensor_config
from tests.slack_lab import (
    ALICE,
    MALLORY,
    OPS,
    Lab,
    click_done,
    initialised_changes,
    message,
    open_modal,
    running_lab,
    values,
    view_text,
    wait_for,
)

pytestmark = pytest.mark.samba

MODES = ["socket", "http"]


class Peers(NamedTuple):
    """The real peers every test here drives: the Samba DC, a fresh AD account, two emulated sensors."""

    lab_domain: LabDomain
    user: LabUser
    sensors: WinRMEmulator
    tmp_path: Path


@pytest.fixture
def peers(
    lab_domain: LabDomain, fresh_user: LabUser, sensors: WinRMEmulator, env: None, tmp_path: Path
) -> Peers:
    return Peers(lab_domain, fresh_user, sensors, tmp_path)


@contextmanager
def password_lab(
    mode: str, lab: LabDomain, user: LabUser, sensors: WinRMEmulator, tmp_path: Path
) -> Iterator[Lab]:
    account = lab_account(lab, user)
    other = {**account, "id": "other"}
    config = {
        "state_dir": str(tmp_path / "state"),
        "accounts": [account, other],
        **sensor_config(sensors, "svc"),
    }
    with running_lab(mode, modules=MODULES, config=config, changes=initialised_changes) as running:
        yield running


def recorded(lab: Lab) -> str:
    return json.dumps([c.args for c in lab.emulator.calls()]) + json.dumps(
        [c.body for c in lab.emulator.calls()]
    )


@pytest.mark.parametrize("mode", MODES)
def test_happy_path(
    mode: str,
    peers: Peers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lab_domain, fresh_user, sensors, tmp_path = peers
    caplog.set_level(logging.DEBUG)
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    sensors.host("sensor02").set_service("AATPSensor", "Stopped")
    with password_lab(mode, lab_domain, fresh_user, sensors, tmp_path) as lab:
        view_id = open_modal(lab)
        modal = lab.emulator.view(view_id)
        inputs = [b for b in modal["blocks"] if b["type"] == "input"]
        assert [b["block_id"] for b in inputs] == [Block.PASSWORD, Block.CONFIRM]
        assert all("initial_value" not in b["element"] for b in inputs)

        delivery = lab.emulator.submit_view(view_id, values(CANARY))
        assert not delivery.late
        assert delivery.ack is not None
        assert delivery.ack["response_action"] == "update"
        assert "Testing the connection" in json.dumps(delivery.ack["view"])
        wait_for(lambda: "Saved." in view_text(lab, view_id), timeout=15)
        modal_text = view_text(lab, view_id)
        assert "Tested and kept in the embedded store" in modal_text
        assert "Directory service accounts" in modal_text and PORTAL_URL in modal_text

        announcement = wait_for(lambda: [m for m in lab.emulator.messages(OPS) if m.thread_ts is None])[0]
        assert f"<@{ALICE}> changed the directory service account password for *svc*" in announcement.text
        assert fresh_user.upn in announcement.text
        assert "expires" in announcement.text
        assert (
            "Tested and kept in the embedded store; Defender for Identity gets it when you save it in the "
            "portal." in announcement.text
        )
        assert "*Waiting for the portal*" in json.dumps(announcement.blocks)
        # The follow-up checks wait for the portal step: a click by someone not allowed changes nothing.
        click_done(lab.emulator, announcement, MALLORY)
        wait_for(lambda: [m for m in lab.emulator.messages(OPS) if m.ephemeral_to == MALLORY])
        assert [m for m in lab.emulator.messages(OPS) if m.thread_ts == announcement.ts] == []
        click_done(lab.emulator, announcement, ALICE)
        wait_for(
            lambda: "Done in the portal*: confirmed by" in json.dumps(message(lab, announcement.ts).blocks)
        )
        assert DONE_ACTION not in json.dumps(message(lab, announcement.ts).blocks)

        def final_report() -> str | None:
            thread = [m for m in lab.emulator.messages(OPS) if m.thread_ts == announcement.ts]
            text = thread[-1].text if thread else ""
            return text if "need attention" in text or "All 2" in text else None

        report = wait_for(final_report, timeout=30)
        assert "1 of 2 sensor(s) need attention: sensor02" in report
        assert lab.emulator.calls("chat.update")

        changes = lab.runtime.services.changes
        assert changes is not None
        saved = changes.store.read("svc")
        assert saved is not None
        assert saved.get_secret_value() == CANARY
        actions = [(r.actor, r.action, r.outcome) for r in reversed(changes.audit.recent("svc"))]
        actor = "slack:U0ALICE (alice)"
        assert actions == [
            (actor, "test", "ok"),
            (actor, "save", "ok"),
            (actor, "portal-updated", "ok"),
            (actor, "check", "failed"),
        ]
        assert CANARY not in recorded(lab)
    assert CANARY not in caplog.text
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file() and path.name != "credentials.sqlite":
            assert CANARY.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("mode", MODES)
def test_wrong_password_shows_the_reason_and_saves_nothing(
    mode: str,
    peers: Peers,
) -> None:
    lab_domain, fresh_user, sensors, tmp_path = peers
    with password_lab(mode, lab_domain, fresh_user, sensors, tmp_path) as lab:
        view_id = open_modal(lab)
        lab.emulator.submit_view(view_id, values(CANARY))
        wait_for(lambda: "Not saved." in view_text(lab, view_id), timeout=15)
        text = view_text(lab, view_id)
        assert "The password is wrong" in text
        assert "wrong_password" in text
        assert lab.emulator.calls("chat.postMessage") == []
        changes = lab.runtime.services.changes
        assert changes is not None
        assert changes.store.read("svc") is None
        # "Try again" brings the form back for the same account.
        lab.emulator.click(Action.RETRY, view_id=view_id, value=_retry_value(lab, view_id))
        wait_for(lambda: Block.PASSWORD in view_text(lab, view_id))
        assert CANARY not in recorded(lab)


def _retry_value(lab: Lab, view_id: str) -> str:
    for block in lab.emulator.view(view_id)["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == Action.RETRY:
                return str(element["value"])
    raise AssertionError("no Try again button")


@pytest.mark.parametrize(
    ("typed", "confirm", "block", "message"),
    [
        ("", "", Block.PASSWORD, "Enter the new password."),
        ("Good-Pa55word!", "Other-Pa55word!", Block.CONFIRM, "do not match"),
        ("x" * 257, "x" * 257, Block.PASSWORD, "longer than 256"),
        (" Good-Pa55word!", " Good-Pa55word!", Block.PASSWORD, "starts or ends with a space"),
        ("Good\tPa55word!", "Good\tPa55word!", Block.PASSWORD, "control characters"),
        ("Good-Pa55word!", "", Block.CONFIRM, "Type the new password again"),
        ("Good\ud800Pa55word!", "Good\ud800Pa55word!", Block.PASSWORD, "not valid text"),  # a lone surrogate
    ],
)
def test_invalid_input_gets_inline_errors_and_changes_nothing(
    peers: Peers,
    typed: str,
    confirm: str,
    block: str,
    message: str,
) -> None:
    lab_domain, fresh_user, sensors, tmp_path = peers
    with password_lab("socket", lab_domain, fresh_user, sensors, tmp_path) as lab:
        view_id = open_modal(lab)
        delivery = lab.emulator.submit_view(view_id, values(typed, confirm))
        assert delivery.ack is not None
        assert delivery.ack["response_action"] == "errors"
        assert message in delivery.ack["errors"][block]
        assert lab.emulator.calls("views.update") == []
        changes = lab.runtime.services.changes
        assert changes is not None
        assert [(r.action, r.outcome, r.reason) for r in changes.audit.recent()] == [
            ("change", "refused", "invalid-input")
        ]
    assert lab_domain.dc.user_state(fresh_user.name)["badPwdCount"] == 0


def test_several_accounts_need_a_choice(
    peers: Peers,
) -> None:
    lab_domain, fresh_user, sensors, tmp_path = peers
    with password_lab("socket", lab_domain, fresh_user, sensors, tmp_path) as lab:
        view_id = open_modal(lab, "password")
        assert Block.ACCOUNT in view_text(lab, view_id)
        delivery = lab.emulator.submit_view(view_id, values("Good-Pa55word!"))
        assert delivery.ack is not None
        assert delivery.ack["errors"] == {Block.ACCOUNT: "Choose a configured account."}
        unknown = lab.emulator.slash_command("password nope")
        assert "There is no account `nope`" in unknown.text


def test_unauthorized_user_is_refused_and_audited(
    peers: Peers,
) -> None:
    lab_domain, fresh_user, sensors, tmp_path = peers
    with password_lab("http", lab_domain, fresh_user, sensors, tmp_path) as lab:
        delivery = lab.emulator.slash_command("password svc", user=MALLORY)
        assert "not allowed" in delivery.text
        assert lab.emulator.calls("views.open") == []
        changes = lab.runtime.services.changes
        assert changes is not None
        assert [(r.action, r.outcome) for r in changes.audit.recent()] == [("password", "denied")]


def test_a_second_change_in_flight_is_told_so(
    peers: Peers,
) -> None:
    lab_domain, fresh_user, sensors, tmp_path = peers
    with password_lab("socket", lab_domain, fresh_user, sensors, tmp_path) as lab:
        view_id = open_modal(lab)
        with AccountLocks(tmp_path / "state").hold("svc"):  # e.g. a CLI change of the same account
            lab.emulator.submit_view(view_id, values(fresh_user.password))
            wait_for(lambda: "in progress" in view_text(lab, view_id), timeout=15)
        assert lab.emulator.calls("chat.postMessage") == []
    assert lab_domain.dc.user_state(fresh_user.name)["badPwdCount"] == 0


def test_slack_rate_limit_then_success(
    peers: Peers,
) -> None:
    lab_domain, fresh_user, sensors, tmp_path = peers
    with password_lab("socket", lab_domain, fresh_user, sensors, tmp_path) as lab:
        view_id = open_modal(lab)
        lab.emulator.fail("chat.postMessage", status=429, retry_after=1, times=1)
        lab.emulator.submit_view(view_id, values(fresh_user.password))
        wait_for(lambda: [m for m in lab.emulator.messages(OPS) if m.thread_ts is None], timeout=20)
        statuses = [c.status for c in lab.emulator.calls("chat.postMessage")]
        assert statuses[:2] == [429, 200]
        settings = lab.runtime.services.settings
        saved = open_store(settings).metadata("svc")
        assert saved is not None


def test_closed_modal_gets_the_outcome_by_ephemeral_message(
    peers: Peers,
) -> None:
    lab_domain, fresh_user, sensors, tmp_path = peers
    with password_lab("socket", lab_domain, fresh_user, sensors, tmp_path) as lab:
        view_id = open_modal(lab)
        lab.emulator.submit_view(view_id, values("Wrong-Pa55word!"))
        lab.emulator.close_view(view_id)
        ephemeral = wait_for(
            lambda: [m for m in lab.emulator.messages(OPS) if m.ephemeral_to == ALICE], timeout=15
        )
        assert "The password is wrong" in ephemeral[0].text


def test_status_and_history(
    peers: Peers,
) -> None:
    lab_domain, fresh_user, sensors, tmp_path = peers
    with password_lab("http", lab_domain, fresh_user, sensors, tmp_path) as lab:
        ack = lab.emulator.slash_command("status")
        assert "Checking 2 sensor(s)" in ack.text

        def final() -> str | None:
            texts = [c.args.get("text", "") for c in lab.emulator.calls("response_url")]
            return next((t for t in reversed(texts) if "All 2 sensor(s)" in t), None)

        assert wait_for(final, timeout=30)
        assert "No audit events for svc." in lab.emulator.slash_command("history SVC").text
        assert "There is no account `nope`" in lab.emulator.slash_command("history nope").text
        everything = lab.emulator.slash_command("history").text
        assert "slack:U0ALICE (alice)  check  -  ok: 2 of 2 sensors healthy" in everything


def test_sensor_checks_that_cannot_run_say_why(peers: Peers, monkeypatch: pytest.MonkeyPatch) -> None:
    lab_domain, fresh_user, sensors, tmp_path = peers
    monkeypatch.delenv(SENSOR_WINRM_PASSWORD_ENV)  # the WinRM password cannot be read
    with password_lab("socket", lab_domain, fresh_user, sensors, tmp_path) as lab:
        lab.emulator.slash_command("status")

        def told(texts: list[str]) -> str | None:
            return next((t for t in texts if "could not be checked" in t), None)

        status = wait_for(lambda: told([c.args.get("text", "") for c in lab.emulator.calls("response_url")]))
        assert SENSOR_WINRM_PASSWORD_ENV in status
        view_id = open_modal(lab)
        lab.emulator.submit_view(view_id, values(fresh_user.password))
        announced = wait_for(
            lambda: [m for m in lab.emulator.messages(OPS) if DONE_ACTION in json.dumps(m.blocks)]
        )
        click_done(lab.emulator, announced[0], ALICE)  # the portal step: the follow-up checks start now
        follow_up = wait_for(
            lambda: told([m.text for m in lab.emulator.messages(OPS) if m.thread_ts]), timeout=20
        )
        assert "*Follow-up checks*" in follow_up and SENSOR_WINRM_PASSWORD_ENV in follow_up
        assert [h.counters.requests for h in sensors.hosts.values()] == [0, 0]
        changes = lab.runtime.services.changes
        assert changes is not None
        failed_checks = [(r.account, r.reason) for r in changes.audit.recent() if r.action == "check"]
        assert failed_checks == [("svc", "config"), (None, None)]  # the follow-up's, then the status'


def test_store_failure_after_a_passed_test_says_not_saved(peers: Peers) -> None:
    lab_domain, fresh_user, sensors, tmp_path = peers
    failing = tmp_path / "vault-put"
    failing.write_text("#!/bin/sh\ncat >/dev/null\necho 'vault is sealed' >&2\nexit 2\n")
    failing.chmod(0o700)
    account = lab_account(lab_domain, fresh_user)
    config = {
        "state_dir": str(tmp_path / "state"),
        "accounts": [account],
        "store": {"backend": "command", "command": {"argv": [str(failing)]}},
        **sensor_config(sensors, "svc"),
    }
    with running_lab("socket", modules=MODULES, config=config, changes=open_changes) as lab:
        view_id = open_modal(lab)
        lab.emulator.submit_view(view_id, values(fresh_user.password))
        wait_for(lambda: "NOT saved" in view_text(lab, view_id), timeout=15)
        assert "Tested OK but NOT saved." in view_text(lab, view_id)
        assert lab.emulator.calls("chat.postMessage") == []  # no announcement of a change that did not happen
        changes = lab.runtime.services.changes
        assert changes is not None
        assert [(r.action, r.outcome) for r in reversed(changes.audit.recent())] == [
            ("test", "ok"),
            ("save", "error"),
        ]


def test_a_missing_ca_file_ends_the_modal_and_is_audited(peers: Peers) -> None:
    lab_domain, fresh_user, sensors, tmp_path = peers
    missing = tmp_path / "contoso-ca.pem"
    account = {**lab_account(lab_domain, fresh_user), "ca_file": str(missing)}
    config = {"state_dir": str(tmp_path / "state"), "accounts": [account], **sensor_config(sensors, "svc")}
    with running_lab("socket", modules=MODULES, config=config, changes=initialised_changes) as lab:
        view_id = open_modal(lab)
        lab.emulator.submit_view(view_id, values(fresh_user.password))
        wait_for(lambda: "Something went wrong" in view_text(lab, view_id), timeout=15)
        text = view_text(lab, view_id)
        assert f"account svc: ca_file {missing} cannot be read (No such file or directory)" in text
        assert "Nothing was saved." in text
        assert "Testing" not in text
        assert lab.emulator.calls("chat.postMessage") == []
        changes = lab.runtime.services.changes
        assert changes is not None
        assert [(r.action, r.outcome, r.reason) for r in changes.audit.recent()] == [
            ("change", "error", "config")
        ]
    assert lab_domain.dc.user_state(fresh_user.name)["badPwdCount"] == 0


def test_a_failure_after_the_save_says_the_password_was_saved(peers: Peers) -> None:
    lab_domain, fresh_user, sensors, tmp_path = peers
    with password_lab("socket", lab_domain, fresh_user, sensors, tmp_path) as lab:
        view_id = open_modal(lab)
        lab.emulator.fail("chat.postMessage", status=200, error="channel_not_found")  # the announcement
        lab.emulator.submit_view(view_id, values(fresh_user.password))
        wait_for(lambda: "but then something went wrong" in view_text(lab, view_id), timeout=15)
        assert "*Saved*" in view_text(lab, view_id)
        assert "Nothing was saved" not in view_text(lab, view_id)
        changes = lab.runtime.services.changes
        assert changes is not None
        rows = [(r.action, r.outcome, r.reason) for r in reversed(changes.audit.recent())]
        assert rows == [("test", "ok", None), ("save", "ok", None), ("change", "error", "internal-error")]
        assert changes.store.read("svc") is not None


def test_status_shows_a_pending_portal_step_until_it_is_done(peers: Peers) -> None:
    lab_domain, fresh_user, sensors, tmp_path = peers
    with password_lab("socket", lab_domain, fresh_user, sensors, tmp_path) as lab:
        view_id = open_modal(lab)
        lab.emulator.submit_view(view_id, values(fresh_user.password))
        announced = wait_for(
            lambda: [m for m in lab.emulator.messages(OPS) if DONE_ACTION in json.dumps(m.blocks)]
        )
        status = lab.emulator.slash_command("status svc")
        assert "*svc*: waiting for the portal step since" in status.text
        assert "(saved by slack:U0ALICE (alice))" in status.text
        click_done(lab.emulator, announced[0])
        wait_for(lambda: "Done in the portal*" in json.dumps(message(lab, announced[0].ts).blocks))
        assert "waiting for the portal step" not in lab.emulator.slash_command("status svc").text
