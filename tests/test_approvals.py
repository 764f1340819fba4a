"""Two-person approval end to end: the real Bolt app (both modes) against the Slack emulator, a real Samba
AD DC, the WinRM emulator, the embedded store, the audit trail and the held requests' SQLite file."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from bot.change import open_changes
from bot.change.approvals import APPROVALS_FILE
from bot.infra.redaction import secret_forms
from bot.infra.state_dir import sqlite_engine
from commands import MODULES
from commands.password.approval import Action, sweep_expired
from lab.domain import LabDomain
from lab.samba import LabUser
from lab.slack import SlackEmulator
from lab.winrm.server import WinRMEmulator
from tests.conftest import CANARY, lab_account, sensor_config
from tests.slack_lab import (
    ALICE,
    BOB,
    MALLORY,
    OPS,
    Lab,
    click_done,
    initialised_changes,
    open_modal,
    running_lab,
    values,
    view_text,
    wait_for,
)

pytestmark = pytest.mark.samba

MODES = ["socket", "http"]
ALICE_ACTOR = "slack:U0ALICE (alice)"
BOB_ACTOR = "slack:U0BOB (bob) via @secops"  # an approver through approver_usergroups


class Peers(NamedTuple):
    lab_domain: LabDomain
    user: LabUser
    sensors: WinRMEmulator
    tmp_path: Path


@pytest.fixture
def peers(
    lab_domain: LabDomain, fresh_user: LabUser, sensors: WinRMEmulator, env: None, tmp_path: Path
) -> Peers:
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    return Peers(lab_domain, fresh_user, sensors, tmp_path)


@contextmanager
def approval_lab(
    mode: str,
    peers: Peers,
    *,
    restart: bool = False,
    account: Mapping[str, Any] | None = None,
    slack: Mapping[str, Any] | None = None,
    **approvals: Any,
) -> Iterator[Lab]:
    """`/atp password` with `[approvals] required`: BOB (of user group S0SECOPS) approves. `restart`:
    the store exists already (a second run on the same state directory); `account` and `slack` add keys
    to the account's table and to `[slack]`."""
    config = {
        "state_dir": str(peers.tmp_path / "state"),
        "accounts": [{**lab_account(peers.lab_domain, peers.user), **(account or {})}],
        "approvals": {"required": True, "approver_usergroups": ["S0SECOPS"], **approvals},
        **sensor_config(peers.sensors, "svc"),
    }
    changes = open_changes if restart else initialised_changes
    with running_lab(mode, modules=MODULES, config=config, changes=changes, **(slack or {})) as running:
        yield running


class Asked(NamedTuple):
    view_id: str  # ALICE's modal
    ts: str  # the approvers' message
    request_id: str


def request_approval(lab: Lab) -> Asked:
    """ALICE submits the canary; her modal, the approvers' message and the request, once it waits."""
    view_id = open_modal(lab, "password", user=ALICE)
    delivery = lab.emulator.submit_view(view_id, values(CANARY))
    assert not delivery.late
    wait_for(lambda: "Waiting for approval" in view_text(lab, view_id), timeout=15)
    (message,) = wait_for(lambda: [m for m in lab.emulator.messages(OPS) if "asks to save" in m.text])
    assert f"<@{ALICE}> asks to save a new password for *svc*" in message.text
    assert "tested OK on" in message.text
    return Asked(view_id, message.ts, message.blocks[-1]["elements"][0]["value"])


def click(emulator: SlackEmulator, asked: Asked, action: Action, user: str) -> None:
    delivery = emulator.click(action, user=user, value=asked.request_id, channel=OPS, message_ts=asked.ts)
    assert not delivery.late


def current(emulator: SlackEmulator, asked: Asked) -> str:
    """The approvers' message as it reads now."""
    return next(m.text for m in emulator.messages(OPS) if m.ts == asked.ts)


def ephemerals(lab: Lab, user: str) -> str:
    return " ".join(m.text for m in lab.emulator.messages() if m.ephemeral_to == user)


def saved(lab: Lab) -> str | None:
    changes = lab.runtime.services.changes
    assert changes is not None
    secret = changes.store.read("svc")
    return secret.get_secret_value() if secret is not None else None


def audited(lab: Lab) -> list[tuple[str, str, str]]:
    changes = lab.runtime.services.changes
    assert changes is not None
    return [(r.actor, r.action, r.outcome) for r in reversed(changes.audit.recent("svc"))]


def assert_canary_nowhere(lab: Lab, peers: Peers, caplog: pytest.LogCaptureFixture) -> None:
    """Not in any Slack call (messages, views, private_metadata), log, audit row, or state file but the
    store's own, in any of its forms."""
    forms = secret_forms(CANARY)
    calls = json.dumps([c.args for c in lab.emulator.calls()]) + json.dumps(
        [c.body for c in lab.emulator.calls()]
    )
    for form in forms:
        assert form not in calls
        assert form not in caplog.text
    for path in (peers.tmp_path / "state").rglob("*"):
        if path.is_file() and path.name != "credentials.sqlite":
            data = path.read_bytes()
            assert not any(form.encode() in data for form in forms), path


@pytest.mark.parametrize("mode", MODES)
def test_approve_saves_with_both_people_audited(
    mode: str, peers: Peers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with approval_lab(mode, peers) as lab:
        message = request_approval(lab)
        assert saved(lab) is None  # nothing saved before the approval

        click(lab.emulator, message, Action.APPROVE, BOB)
        wait_for(lambda: "Saved." in view_text(lab, message.view_id), timeout=15)
        assert saved(lab) == CANARY
        assert f"Approved by <@{BOB}>: saved." in current(lab.emulator, message)
        announced = wait_for(
            lambda: [m for m in lab.emulator.messages(OPS) if "changed the directory" in m.text]
        )
        assert f"Approved by <@{BOB}>." in announced[0].text
        assert "Defender for Identity does not have it yet" in view_text(lab, message.view_id)
        click_done(lab.emulator, announced[0])  # the portal step: the follow-up checks start now
        assert audited(lab)[:4] == [
            (ALICE_ACTOR, "test", "ok"),
            (ALICE_ACTOR, "approval-request", "ok"),
            (BOB_ACTOR, "approve", "ok"),
            (ALICE_ACTOR, "save", "ok"),
        ]
        changes = lab.runtime.services.changes
        assert changes is not None
        (save,) = [r for r in changes.audit.recent("svc") if r.action == "save"]
        assert f"approved by {BOB_ACTOR}" in (save.detail or "")
        wait_for(lambda: any(a == "check" for _, a, _ in audited(lab)), timeout=30)
        assert_canary_nowhere(lab, peers, caplog)


@pytest.mark.parametrize("mode", MODES)
def test_self_approval_and_non_approvers_are_refused_then_deny_saves_nothing(
    mode: str, peers: Peers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with approval_lab(mode, peers, approvers=[ALICE]) as lab:  # an approver, but the requester
        message = request_approval(lab)
        click(lab.emulator, message, Action.APPROVE, ALICE)
        wait_for(lambda: "another approver must decide" in ephemerals(lab, ALICE))
        click(lab.emulator, message, Action.APPROVE, MALLORY)
        wait_for(lambda: "Only an approver" in ephemerals(lab, MALLORY))
        assert saved(lab) is None

        click(lab.emulator, message, Action.DENY, BOB)
        wait_for(lambda: "Denied by" in view_text(lab, message.view_id))
        assert f"Denied by <@{BOB}>: nothing was saved." in current(lab.emulator, message)
        click(lab.emulator, message, Action.APPROVE, BOB)  # an Approve after the Deny
        wait_for(lambda: "already denied" in ephemerals(lab, BOB))
        assert saved(lab) is None
        assert audited(lab) == [
            (ALICE_ACTOR, "test", "ok"),
            (ALICE_ACTOR, "approval-request", "ok"),
            (ALICE_ACTOR, "approve", "refused"),
            ("slack:U0MALLORY (mallory)", "approve", "denied"),
            (BOB_ACTOR, "deny", "ok"),
        ]
        assert_canary_nowhere(lab, peers, caplog)


@pytest.mark.parametrize("mode", MODES)
def test_two_approvals_at_once_save_once(mode: str, peers: Peers) -> None:
    with approval_lab(mode, peers) as lab:
        message = request_approval(lab)
        clicks = [
            threading.Thread(target=click, args=(lab.emulator, message, Action.APPROVE, BOB))
            for _ in range(2)
        ]
        for thread in clicks:
            thread.start()
        for thread in clicks:
            thread.join()
        wait_for(lambda: "Approved by" in current(lab.emulator, message), timeout=15)
        wait_for(
            lambda: "decided already" in ephemerals(lab, BOB) or "already approved" in ephemerals(lab, BOB)
        )
        actions = [a for _, a, _ in audited(lab)]
        assert actions.count("approve") == 1
        assert actions.count("save") == 1
        assert saved(lab) == CANARY


@pytest.mark.parametrize("mode", MODES)
def test_the_requester_cancels(mode: str, peers: Peers) -> None:
    with approval_lab(mode, peers) as lab:
        message = request_approval(lab)
        lab.emulator.click(Action.CANCEL, user=ALICE, value=message.request_id, view_id=message.view_id)
        wait_for(lambda: "Request cancelled" in view_text(lab, message.view_id))
        assert f"Cancelled by <@{ALICE}>" in current(lab.emulator, message)
        click(lab.emulator, message, Action.APPROVE, BOB)
        wait_for(lambda: "already cancelled" in ephemerals(lab, BOB))
        assert saved(lab) is None
        assert (ALICE_ACTOR, "approval-cancel", "ok") in audited(lab)


@pytest.mark.parametrize("mode", MODES)
def test_an_expired_request_saves_nothing_and_says_so(mode: str, peers: Peers) -> None:
    with approval_lab(mode, peers) as lab:
        message = request_approval(lab)
        past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        engine = sqlite_engine(peers.tmp_path / "state" / APPROVALS_FILE)
        with engine.begin() as db:
            db.execute(text("UPDATE approval_requests SET expires_at = :past"), {"past": past})
        click(lab.emulator, message, Action.APPROVE, BOB)  # too late: refused even before the sweep
        wait_for(lambda: "expired" in ephemerals(lab, BOB))
        assert sweep_expired(lab.runtime.services) == 1
        assert "without a decision: nothing was saved" in current(lab.emulator, message)
        assert "without a decision" in view_text(lab, message.view_id)
        assert saved(lab) is None
        assert ("atp-bot:approvals", "approval-expire", "ok") in audited(lab)
        with engine.begin() as db:
            assert (
                db.execute(
                    text("SELECT count(*) FROM approval_requests WHERE ciphertext IS NOT NULL")
                ).scalar()
                == 0
            )
        engine.dispose()


def test_a_pending_request_survives_a_restart(peers: Peers) -> None:
    with approval_lab("socket", peers) as lab:
        message = request_approval(lab)
    with approval_lab("socket", peers, restart=True) as lab:  # only the state directory is left
        click(lab.emulator, message, Action.APPROVE, BOB)
        wait_for(lambda: saved(lab) == CANARY, timeout=15)
        assert (BOB_ACTOR, "approve", "ok") in audited(lab)


def test_approvers_by_direct_message(peers: Peers) -> None:
    with approval_lab("socket", peers, notify="dm", approvers=["U0MALLORY"]) as lab:
        view_id = open_modal(lab, "password", user=ALICE)
        lab.emulator.submit_view(view_id, values(CANARY))
        wait_for(lambda: "Waiting for approval" in view_text(lab, view_id), timeout=15)
        dms = wait_for(lambda: [m for m in lab.emulator.messages() if m.channel.startswith("D")])
        assert sorted(m.channel for m in dms) == [f"D{BOB}", f"D{MALLORY}"]
        assert not [m for m in lab.emulator.messages(OPS) if "asks to save" in m.text]


def test_an_approval_after_a_newer_save_is_refused(peers: Peers) -> None:
    with approval_lab("socket", peers) as lab:
        message = request_approval(lab)
        changes = lab.runtime.services.changes
        assert changes is not None
        newer = changes.change(
            "svc", SecretStr(CANARY), "cli:root", note="Break-glass change (no approval): x"
        )
        assert newer.saved_ok
        click(lab.emulator, message, Action.APPROVE, BOB)
        wait_for(
            lambda: "a newer password was saved meanwhile" in view_text(lab, message.view_id), timeout=15
        )
        assert "a newer password was saved meanwhile" in current(lab.emulator, message)
        assert [(a, o) for a, _, o in audited(lab) if _ == "save"] == [
            ("cli:root", "ok"),
            (ALICE_ACTOR, "refused"),
        ]
        assert not [m for m in lab.emulator.messages(OPS) if "changed the directory" in m.text]


def test_approvers_that_cannot_be_asked_withdraw_the_request(peers: Peers) -> None:
    with approval_lab("socket", peers) as lab:
        lab.emulator.fail("chat.postMessage", status=200, error="channel_not_found")
        view_id = open_modal(lab, "password", user=ALICE)
        lab.emulator.submit_view(view_id, values(CANARY))
        wait_for(lambda: "Nothing was saved" in view_text(lab, view_id), timeout=15)
        assert ("atp-bot:approvals", "approval-cancel", "error") in audited(lab)
        engine = sqlite_engine(peers.tmp_path / "state" / APPROVALS_FILE)
        with engine.begin() as db:
            assert (
                db.execute(text("SELECT count(*) FROM approval_requests WHERE state = 'pending'")).scalar()
                == 0
            )
        engine.dispose()
        assert saved(lab) is None
