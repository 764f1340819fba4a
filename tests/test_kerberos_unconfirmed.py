"""A password that no KDC confirmed is never a plain pass: a visible warning ("not confirmed as the current
password by Kerberos") in the result, the CLI, the Slack modal, the announcement and the audit row, however
old `pwdLastSet` is; with `[[accounts]] kerberos_check = "required"`, a failed test.

Against the real Samba AD DC for the bind, with the KDC port closed or served by lab/kdc.py.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.audit import open_audit
from bot.config import AccountConfig, LockoutGuardConfig, load_settings
from bot.directory import (
    AccountLocks,
    ConnectionTestResult,
    LockoutGuard,
    Outcome,
    Reason,
    run_connection_test,
)
from bot.directory.kerberos_check import UNCONFIRMED
from bot.store import open_store
from commands import MODULES
from lab.domain import LabDomain
from lab.faults import silent_tcp_server
from lab.kdc import RC4_HMAC, fake_kdc
from lab.samba import LabUser
from lab.winrm.server import WinRMEmulator
from tests.conftest import closed_port_url, lab_account, run_cli, sensor_config
from tests.slack_lab import OPS, initialised_changes, open_modal, running_lab, values, view_text, wait_for

pytestmark = pytest.mark.samba

LONG_AGO = datetime.now(UTC) - timedelta(days=30)


@pytest.fixture
def closed_kdc() -> str:
    return f"127.0.0.1:{closed_port_url().rpartition(':')[2]}"


@pytest.fixture
def old_user(lab_domain: LabDomain, fresh_user: LabUser) -> LabUser:
    """An account whose password AD set a month ago (far outside the previous-password window)."""
    lab_domain.dc.backdate_password_last_set(fresh_user.name, LONG_AGO)
    return fresh_user


def account_for(lab: LabDomain, user: LabUser, **overrides: object) -> AccountConfig:
    fields = {**lab_account(lab, user, "acct"), "connect_timeout": 2, "receive_timeout": 2, **overrides}
    return AccountConfig.model_validate(fields)


def guard_at(state: Path) -> LockoutGuard:
    return LockoutGuard.at_path(state / "guard.sqlite", LockoutGuardConfig(max_rejections=100))


def run(account: AccountConfig, password: str, state: Path) -> ConnectionTestResult:
    with AccountLocks(state).hold(account.id) as lease:
        return run_connection_test(account, SecretStr(password), guard=guard_at(state), lease=lease)


def test_no_kdc_warns_even_when_the_password_was_set_long_ago(
    lab_domain: LabDomain, old_user: LabUser, closed_kdc: str, tmp_path: Path
) -> None:
    result = run(account_for(lab_domain, old_user, kdc=[closed_kdc]), old_user.password, tmp_path)

    assert result.passed
    assert len(result.warnings) == 1 and UNCONFIRMED in result.warnings[0]
    assert "may be the previous one" not in result.warnings[0]
    assert f"last changed in AD at {LONG_AGO:%Y-%m-%d %H:%M} UTC" in " ".join(result.notes)
    assert guard_at(tmp_path).count("acct").rejections == 0


def test_a_kdc_offering_only_rc4_gets_nothing_and_leaves_the_warning(
    lab_domain: LabDomain, old_user: LabUser, tmp_path: Path
) -> None:
    with fake_kdc([RC4_HMAC]) as kdc:
        account = account_for(lab_domain, old_user, kdc=[f"127.0.0.1:{kdc.port}"])
        result = run(account, old_user.password, tmp_path)
    assert result.passed
    assert UNCONFIRMED in result.warnings[0] and "no AES encryption type" in result.warnings[0]
    assert [r.preauthenticated for r in kdc.requests] == [False]
    assert guard_at(tmp_path).count("acct").rejections == 0, "no KDC received anything keyed with it"


def test_required_fails_the_test_when_no_kdc_confirms(
    lab_domain: LabDomain, old_user: LabUser, closed_kdc: str, tmp_path: Path
) -> None:
    account = account_for(lab_domain, old_user, kdc=[closed_kdc], kerberos_check="required")
    result = run(account, old_user.password, tmp_path)

    assert result.outcome is Outcome.REJECTED
    assert result.reason is Reason.KERBEROS_UNCONFIRMED
    assert UNCONFIRMED in result.message and 'kerberos_check = "required"' in result.message
    assert guard_at(tmp_path).count("acct").rejections == 0, "AD accepted it and no KDC received it"

    with silent_tcp_server() as port:
        hung = run(account.model_copy(update={"kdc": [f"127.0.0.1:{port}"]}), old_user.password, tmp_path)
    assert hung.reason is Reason.KERBEROS_UNCONFIRMED
    assert guard_at(tmp_path).count("acct").rejections == 1, "a KDC that got it and never answered may count"

    confirmed = run(account.model_copy(update={"kdc": None}), old_user.password, tmp_path)
    assert confirmed.passed and confirmed.warnings == ()


def cli(config: Path, user: LabUser, *args: str) -> subprocess.CompletedProcess[str]:
    """`atp-bot <args> --account acct --password-stdin` with the user's password on stdin."""
    return run_cli(config, *args, "--account", "acct", "--password-stdin", stdin=user.password)


def write_config(tmp_path: Path, lab: LabDomain, user: LabUser, kdc: str, extra: str = "") -> Path:
    config = tmp_path / "atp-bot.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[[accounts]]\nid = "acct"\nusername = "{user.upn}"\n'
        f'domain_controllers = ["{lab.dc.ldaps_url}"]\nca_file = "{lab.dc.ca_file}"\n'
        f'kdc = ["{kdc}"]\nconnect_timeout = 2\nreceive_timeout = 2\n{extra}'
        "[lockout_guard]\nmax_rejections = 5\n"
    )
    return config


def test_cli_and_audit_show_the_warning(
    lab_domain: LabDomain, old_user: LabUser, closed_kdc: str, tmp_path: Path, env: None
) -> None:
    config = write_config(tmp_path, lab_domain, old_user, closed_kdc)
    assert run_cli(config, "store", "init").returncode == 0

    tested = cli(config, old_user, "test-connection")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.startswith("PASSED") and f"warning: The password was {UNCONFIRMED}" in tested.stdout

    as_json = cli(config, old_user, "test-connection", "--json")
    assert any(UNCONFIRMED in warning for warning in json.loads(as_json.stdout)["warnings"])

    saved = cli(config, old_user, "set-password", "--no-checks")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert UNCONFIRMED in saved.stdout

    tests = [r for r in open_audit(load_settings(config)).recent("acct") if r.action == "test"]
    assert [r.outcome for r in tests] == ["ok", "ok", "ok"]
    assert all(UNCONFIRMED in (r.detail or "") for r in tests), [r.detail for r in tests]
    printed = tested.stdout + tested.stderr + as_json.stdout + saved.stdout + saved.stderr
    assert old_user.password not in printed + "".join(r.detail or "" for r in tests)


def test_cli_required_fails_saves_nothing_and_audits(
    lab_domain: LabDomain, old_user: LabUser, closed_kdc: str, tmp_path: Path, env: None
) -> None:
    config = write_config(tmp_path, lab_domain, old_user, closed_kdc, 'kerberos_check = "required"\n')
    assert run_cli(config, "store", "init").returncode == 0

    tested = cli(config, old_user, "test-connection")
    assert tested.returncode == 1, tested.stdout + tested.stderr
    assert tested.stdout.startswith("REJECTED") and UNCONFIRMED in tested.stdout
    assert "reason: kerberos_unconfirmed" in tested.stdout

    refused = cli(config, old_user, "set-password", "--no-checks")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert UNCONFIRMED in refused.stdout
    assert open_store(load_settings(config)).metadata("acct") is None

    rows = open_audit(load_settings(config)).recent("acct")
    assert [(r.action, r.outcome, r.reason) for r in rows if r.action == "test"] == [
        ("test", "failed", "kerberos_unconfirmed")
    ] * 2
    assert all(UNCONFIRMED in (r.detail or "") for r in rows if r.action == "test")


@pytest.fixture
def slack_config(
    lab_domain: LabDomain,
    old_user: LabUser,
    closed_kdc: str,
    sensors: WinRMEmulator,
    env: None,
    tmp_path: Path,
) -> dict[str, object]:
    return {
        "state_dir": str(tmp_path / "state"),
        "accounts": [{**lab_account(lab_domain, old_user), "kdc": [closed_kdc]}],
        **sensor_config(sensors, "svc"),
    }


def test_the_modal_the_announcement_and_the_audit_row_carry_the_warning(
    old_user: LabUser, slack_config: dict[str, object]
) -> None:
    with running_lab("socket", modules=MODULES, config=slack_config, changes=initialised_changes) as lab:
        view_id = open_modal(lab)
        lab.emulator.submit_view(view_id, values(old_user.password))
        wait_for(lambda: "Saved." in view_text(lab, view_id), timeout=30)
        assert UNCONFIRMED in view_text(lab, view_id)
        announcement = wait_for(lambda: [m for m in lab.emulator.messages(OPS) if m.thread_ts is None])[0]
        assert UNCONFIRMED in announcement.text and UNCONFIRMED in json.dumps(announcement.blocks)
        changes = lab.runtime.services.changes
        assert changes is not None
        (test,) = [r for r in changes.audit.recent("svc") if r.action == "test"]
        assert test.outcome == "ok" and UNCONFIRMED in (test.detail or "")


def test_required_in_slack_saves_nothing_and_says_why(
    old_user: LabUser, slack_config: dict[str, object]
) -> None:
    accounts = slack_config["accounts"]
    assert isinstance(accounts, list)
    slack_config["accounts"] = [{**accounts[0], "kerberos_check": "required"}]
    with running_lab("socket", modules=MODULES, config=slack_config, changes=initialised_changes) as lab:
        view_id = open_modal(lab)
        lab.emulator.submit_view(view_id, values(old_user.password))
        wait_for(lambda: "Not saved." in view_text(lab, view_id), timeout=30)
        text = view_text(lab, view_id)
        assert UNCONFIRMED in text and "kerberos_unconfirmed" in text
        assert lab.emulator.calls("chat.postMessage") == []
        changes = lab.runtime.services.changes
        assert changes is not None
        assert changes.store.read("svc") is None
        tests = [(r.outcome, r.reason) for r in changes.audit.recent("svc") if r.action == "test"]
        assert tests == [("failed", "kerberos_unconfirmed")]
