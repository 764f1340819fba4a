"""Two-person approval shows the approver what the requester saw, and never saves a stale approval: the real
Bolt app against the Slack emulator, a real Samba AD DC (pwdLastSet, the lookup account), the embedded
store and the audit trail."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import SlackConfig
from bot.slack.authz import click_counts
from commands.password.approval import Action
from lab.domain import LabDomain, new_password
from lab.samba import LabUser
from lab.winrm.server import WinRMEmulator
from tests.conftest import CANARY, closed_port_url
from tests.slack_lab import ALICE, BOB, OPS, RANDOM, Lab, view_text, wait_for
from tests.test_approvals import (
    ALICE_ACTOR,
    BOB_ACTOR,
    MODES,
    Asked,
    Peers,
    approval_lab,
    assert_canary_nowhere,
    audited,
    click,
    current,
    ephemerals,
    request_approval,
    saved,
)

pytestmark = pytest.mark.samba

STALE = "Refused as stale"


@pytest.fixture
def peers(
    lab_domain: LabDomain, fresh_user: LabUser, sensors: WinRMEmulator, env: None, tmp_path: Path
) -> Peers:
    """The peers of test_approvals: the account's password in AD is the canary."""
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    return Peers(lab_domain, fresh_user, sensors, tmp_path)


def lookup_account(lab_domain: LabDomain, tmp_path: Path) -> dict[str, object]:
    """The account's read-only lookup account (what reads pwdLastSet)."""
    secret = tmp_path / "lookup-password"
    secret.write_text(lab_domain.users["lookup"].password + "\n")
    secret.chmod(0o600)
    return {"lookup_username": lab_domain.users["lookup"].upn, "lookup_password_file": str(secret)}


def assert_refused_as_stale(lab: Lab, asked: Asked, why: str) -> None:
    """Both people told why, nothing saved, the audit trail says so."""
    wait_for(lambda: STALE in view_text(lab, asked.view_id), timeout=15)
    told = view_text(lab, asked.view_id)
    message = current(lab.emulator, asked)
    assert why in told and why in message
    assert f"Approved by <@{BOB}>. {STALE}" in message and "Nothing was saved." in message
    assert audited(lab)[-2:] == [(BOB_ACTOR, "approve", "ok"), (ALICE_ACTOR, "save", "refused")]
    changes = lab.runtime.services.changes
    assert changes is not None
    (refused,) = [r for r in changes.audit.recent("svc") if r.action == "save" and r.outcome == "refused"]
    assert refused.reason == "stale"
    assert f"approved by {BOB_ACTOR}" in (refused.detail or "") and why in (refused.detail or "")
    assert not [m for m in lab.emulator.messages(OPS) if "changed the directory" in m.text]


def test_the_approver_sees_the_tests_warning_and_what_the_approval_cannot_check(
    peers: Peers, caplog: pytest.LogCaptureFixture
) -> None:
    """No KDC answers and the password was set in AD minutes ago: the test passes with a warning, which
    the approvers' message, the waiting modal and the announcement all show; without a lookup account
    the approver is told that pwdLastSet is not checked again."""
    caplog.set_level(logging.DEBUG)
    no_kdc = {"kdc": [f"127.0.0.1:{closed_port_url().rpartition(':')[2]}"]}
    with approval_lab("socket", peers, account=no_kdc) as lab:
        asked = request_approval(lab)
        for seen in (current(lab.emulator, asked), view_text(lab, asked.view_id)):
            assert "may be the previous one" in seen
            assert "has no lookup account" in seen and "not changed in AD since this test" in seen

        click(lab.emulator, asked, Action.APPROVE, BOB)
        wait_for(lambda: saved(lab) == CANARY, timeout=15)
        (announced,) = wait_for(
            lambda: [m for m in lab.emulator.messages(OPS) if "changed the directory" in m.text]
        )
        assert "may be the previous one" in announced.text
        assert "may be the previous one" in current(lab.emulator, asked)  # still there once decided
        assert_canary_nowhere(lab, peers, caplog)


def test_a_password_changed_in_ad_after_the_test_is_refused_as_stale(peers: Peers) -> None:
    account = lookup_account(peers.lab_domain, peers.tmp_path)
    with approval_lab("socket", peers, account=account) as lab:
        asked = request_approval(lab)
        assert "lookup account" not in current(lab.emulator, asked)  # pwdLastSet was read: it is checked
        peers.lab_domain.dc.set_password(peers.user.name, new_password())  # someone resets it in AD

        click(lab.emulator, asked, Action.APPROVE, BOB)
        assert_refused_as_stale(lab, asked, "was changed in AD at")
        assert saved(lab) is None


def test_an_approval_with_pwdlastset_unchanged_saves(peers: Peers) -> None:
    account = lookup_account(peers.lab_domain, peers.tmp_path)
    with approval_lab("socket", peers, account=account) as lab:
        asked = request_approval(lab)
        click(lab.emulator, asked, Action.APPROVE, BOB)
        wait_for(lambda: saved(lab) == CANARY, timeout=15)
        assert (ALICE_ACTOR, "save", "ok") in audited(lab)


def test_a_save_straight_into_the_store_after_the_test_is_refused_as_stale(peers: Peers) -> None:
    with approval_lab("socket", peers) as lab:
        asked = request_approval(lab)
        changes = lab.runtime.services.changes
        assert changes is not None
        other = new_password()
        changes.store.save("svc", SecretStr(other), "cli:root")  # no audit row: only the store knows

        click(lab.emulator, asked, Action.APPROVE, BOB)
        assert_refused_as_stale(lab, asked, "store saved a password at")
        assert saved(lab) == other


def test_a_requester_no_longer_allowed_is_refused_as_stale(peers: Peers) -> None:
    with approval_lab("socket", peers) as lab:
        asked = request_approval(lab)
        (message,) = [m for m in lab.emulator.messages(OPS) if m.ts == asked.ts]
    # Restarted with ALICE removed from allowed_users (she is in no allowed user group). Slack keeps the
    # approvers' message; ALICE's modal is gone, so she is told by an ephemeral message.
    with approval_lab("socket", peers, restart=True, slack={"allowed_users": ["U0NOBODY"]}) as lab:
        with lab.emulator.workspace.lock:
            lab.emulator.workspace.messages.append(message)
        click(lab.emulator, asked, Action.APPROVE, BOB)
        why = "may no longer use /atp password (user not allowed)"
        told = wait_for(
            lambda: [m for m in lab.emulator.messages(OPS) if m.ephemeral_to == ALICE], timeout=15
        )
        assert STALE in told[0].text and why in told[0].text
        assert why in current(lab.emulator, asked) and STALE in current(lab.emulator, asked)
        assert audited(lab)[-2:] == [(BOB_ACTOR, "approve", "ok"), (ALICE_ACTOR, "save", "refused")]
        assert saved(lab) is None


@pytest.mark.parametrize("mode", MODES)
def test_a_click_from_another_channel_changes_nothing(mode: str, peers: Peers) -> None:
    with approval_lab(mode, peers) as lab:
        asked = request_approval(lab)
        elsewhere = lab.emulator.click(
            Action.APPROVE, user=BOB, value=asked.request_id, channel=RANDOM, message_ts=asked.ts
        )
        assert not elsewhere.late
        wait_for(lambda: "counts only where atp-bot posted it" in ephemerals(lab, BOB))
        (refusal,) = [m for m in lab.emulator.messages(RANDOM) if m.ephemeral_to == BOB]
        assert "Nothing was changed." in refusal.text
        assert saved(lab) is None
        # refused before his access is checked: no user group granted anything, so none is named
        assert audited(lab)[-1] == ("slack:U0BOB (bob)", "approve", "denied")
        changes = lab.runtime.services.changes
        assert changes is not None
        assert changes.audit.recent("svc")[0].reason == "channel not allowed"

        click(lab.emulator, asked, Action.APPROVE, BOB)  # from the approvals channel: it counts
        wait_for(lambda: saved(lab) == CANARY, timeout=15)


def test_which_click_channels_count() -> None:
    config = SlackConfig(allowed_channels=["C0SEC"])
    assert click_counts(config, OPS, {OPS, f"D{BOB}"})
    assert click_counts(config, f"D{BOB}", {OPS, f"D{BOB}"})
    assert click_counts(config, "C0SEC", {OPS})
    assert not click_counts(config, RANDOM, {OPS})
    assert not click_counts(config, f"D{ALICE}", {OPS, f"D{BOB}"})
    assert not click_counts(config, None, {OPS})
    assert not click_counts(config, "", {OPS})
