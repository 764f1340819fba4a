"""Issue 16.2: drift, the password changed in AD without atp-bot, seen without a bind as the account.

`atp-bot verify` against the real Samba AD DC: a reset with `samba-tool user setpassword` after the last
save is drift until the new password is saved; wrong binds by a stand-in sensor raise badPwdCount and
are reported before the lockout threshold.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.monitor.drift_watch import run_drift_check
from bot.monitor.models import DriftNotice
from commands import MODULES
from commands.alerts import drift_message
from commands.password.views import Action as PasswordAction
from lab.domain import LOCKOUT_THRESHOLD, LabDomain, new_password
from lab.samba import LabUser
from lab.winrm.server import WinRMEmulator
from tests.conftest import closed_port_url, lab_account, run_cli, sensor_config
from tests.monitor_tools import Clock, RecordingNotifier, alert_rows, make_runtime, monitor_settings
from tests.slack_lab import initialised_changes, running_lab, wait_for

pytestmark = pytest.mark.samba


def write_config(tmp_path: Path, lab: LabDomain, user: LabUser, *, dcs: list[str] | None = None) -> Path:
    secret = tmp_path / "lookup-password"
    secret.write_text(lab.users["lookup"].password)
    os.chmod(secret, 0o600)
    dc_list = ", ".join(f'"{url}"' for url in dcs or [lab.dc.ldaps_url, lab.dc.ldap_url])
    config = tmp_path / "atp-bot.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[[accounts]]\nid = "acct"\nusername = "{user.upn}"\n'
        f'domain_controllers = [{dc_list}]\nca_file = "{lab.dc.ca_file}"\n'
        f'lookup_username = "{lab.users["lookup"].upn}"\nlookup_password_file = "{secret}"\n'
        "[lockout_guard]\nmax_rejections = 5\n"
    )
    return config


def verify(config: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    done = run_cli(config, "verify", "--json", *args)
    assert done.stdout.startswith("["), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def save(config: Path, password: str) -> None:
    done = run_cli(
        config, "set-password", "--account", "acct", "--password-stdin", "--no-checks", stdin=password
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def user(lab_domain: LabDomain) -> LabUser:
    return lab_domain.dc.create_user(f"svc-drift-{new_password()[4:10].lower()}", new_password())


def test_a_reset_in_ad_is_drift_until_the_new_password_is_saved(
    lab_domain: LabDomain, user: LabUser, tmp_path: Path, env: None
) -> None:
    config = write_config(tmp_path, lab_domain, user)
    assert run_cli(config, "store", "init").returncode == 0
    save(config, user.password)

    code, [report] = verify(config)
    assert code == 0, report
    assert set(report) == {
        "account",
        "in_sync",
        "password_changed_at",
        "saved_at",
        "bad_password_count",
        "lockout_threshold",
        "locked",
        "findings",
        "portal_step",
    }
    assert report["in_sync"] is True and report["bad_password_count"] == 0 and report["locked"] is False
    assert report["lockout_threshold"] == LOCKOUT_THRESHOLD
    assert report["portal_step"]["saved_by"].startswith("cli:")  # saved, not yet in the Defender portal
    assert report["portal_step"]["pending_since"] == report["saved_at"]
    shown = run_cli(config, "verify").stdout
    assert "PORTAL STEP PENDING: account acct: waiting for the portal step since" in shown
    assert run_cli(config, "portal-done", "--account", "acct", "--no-checks").returncode == 0
    assert verify(config)[1][0]["portal_step"] is None

    new = new_password()
    lab_domain.dc.samba_tool_reset(user.name, new)
    code, [report] = verify(config, "--account", "acct")
    assert code == 1
    assert report["in_sync"] is False
    assert report["password_changed_at"] > report["saved_at"]
    assert any("changed in AD at" in f and "not through atp-bot" in f for f in report["findings"])

    save(config, new)  # a password set through atp-bot updates the baseline
    code, [report] = verify(config)
    assert code == 0 and report["in_sync"] is True, report


def test_wrong_binds_by_a_sensor_are_reported_before_the_lockout(
    lab_domain: LabDomain, user: LabUser, tmp_path: Path, env: None
) -> None:
    config = write_config(tmp_path, lab_domain, user)
    assert run_cli(config, "store", "init").returncode == 0
    save(config, user.password)
    lab_domain.dc.attempt_bind(user, "the-sensors-old-password")  # a stand-in sensor, wrong password

    code, [report] = verify(config)

    assert code == 1
    assert report["bad_password_count"] == 1 and report["locked"] is False
    expected = f"badPwdCount 1 of the lockout threshold {LOCKOUT_THRESHOLD} on {lab_domain.dc.ldaps_url}"
    assert any(expected in f for f in report["findings"]), report["findings"]
    assert lab_domain.dc.user_state(user.name)["badPwdCount"] == 1, "verify itself sent no password"


def test_bind_tests_the_stored_password_and_catches_a_stale_one(
    lab_domain: LabDomain, user: LabUser, tmp_path: Path, env: None
) -> None:
    config = write_config(tmp_path, lab_domain, user)
    assert run_cli(config, "store", "init").returncode == 0
    save(config, user.password)
    code, [report] = verify(config, "--bind")
    assert code == 0 and report["in_sync"] is True, report

    lab_domain.dc.samba_tool_reset(user.name, new_password())
    code, [report] = verify(config, "--bind")
    assert code == 1
    assert any("stale_password" in f for f in report["findings"]), report["findings"]


def test_unreachable_dcs_exit_3_and_no_lookup_account_exits_2(
    lab_domain: LabDomain, user: LabUser, tmp_path: Path, env: None
) -> None:
    config = write_config(tmp_path, lab_domain, user, dcs=[closed_port_url()])
    assert run_cli(config, "store", "init").returncode == 0
    code, [report] = verify(config)
    assert code == 3
    assert report["in_sync"] is None and report["findings"]

    bare = tmp_path / "bare.toml"
    bare.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[[accounts]]\nid = "acct"\nusername = "{user.upn}"\n'
        f'domain_controllers = ["{lab_domain.dc.ldaps_url}"]\n'
    )
    done = run_cli(bare, "verify")
    assert done.returncode == 2
    assert "lookup_username" in done.stderr


def test_the_monitor_reports_a_reset_once_and_recovers_after_a_save(
    lab_domain: LabDomain, user: LabUser, tmp_path: Path, env: None
) -> None:
    secret = tmp_path / "lookup-password"
    secret.write_text(lab_domain.users["lookup"].password)
    account = (
        f'[[accounts]]\nid = "svc"\nusername = "{user.upn}"\n'
        f'domain_controllers = ["{lab_domain.dc.ldaps_url}"]\nca_file = "{lab_domain.dc.ca_file}"\n'
        f'lookup_username = "{lab_domain.users["lookup"].upn}"\nlookup_password_file = "{secret}"\n'
    )
    notifier = RecordingNotifier()
    runtime = make_runtime(
        monitor_settings(tmp_path, None, account=account), notifier, Clock(datetime.now(UTC))
    )
    try:
        assert runtime.changes.change("svc", SecretStr(user.password), "test").saved_ok
        assert run_drift_check(runtime) == []

        new = new_password()
        lab_domain.dc.samba_tool_reset(user.name, new)
        [alert] = run_drift_check(runtime)
        assert not alert.recovered
        assert "changed in AD at" in alert.findings[0] and "not through atp-bot" in alert.findings[0]
        assert run_drift_check(runtime) == [], "one alert per event"

        assert runtime.changes.change("svc", SecretStr(new), "test").saved_ok
        [recovery] = run_drift_check(runtime)
        assert recovery.recovered
        assert notifier.names() == ["post_drift", "post_drift"]
        assert [(outcome, reason) for outcome, reason, _ in alert_rows(runtime)] == [
            ("failed", "password_drift"),
            ("ok", "password_drift"),
        ]
    finally:
        runtime.memory.close()


def test_the_slack_alert_offers_update_password() -> None:
    text, blocks = drift_message(DriftNotice(account_id="contoso", findings=("changed in AD at 09:14",)))
    assert "changed in AD at 09:14" in text
    [button] = blocks[-1]["elements"]
    assert button["action_id"] == PasswordAction.OPEN and button["value"] == "contoso"
    text, blocks = drift_message(DriftNotice(account_id="contoso", findings=("ok",), recovered=True))
    assert "in sync with AD again" in text and len(blocks) == 1


@pytest.mark.parametrize("mode", ["socket", "http"])
def test_atp_status_shows_the_drift_lines(
    mode: str, lab_domain: LabDomain, user: LabUser, sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    secret = tmp_path / "lookup-password"
    secret.write_text(lab_domain.users["lookup"].password)
    account = {
        **lab_account(lab_domain, user, "svc"),
        "lookup_username": lab_domain.users["lookup"].upn,
        "lookup_password_file": str(secret),
    }
    config = {"state_dir": str(tmp_path / "state"), "accounts": [account], **sensor_config(sensors, "svc")}
    with running_lab(mode, modules=MODULES, config=config, changes=initialised_changes) as lab:
        changes = lab.runtime.services.changes
        assert changes is not None and changes.change("svc", SecretStr(user.password), "test").saved_ok
        lab_domain.dc.samba_tool_reset(user.name, new_password())
        lab.emulator.slash_command("status")

        def drift() -> str | None:
            texts = [c.args.get("text", "") for c in lab.emulator.calls("response_url")]
            return next((t for t in texts if "Password drift" in t), None)

        text = wait_for(drift, timeout=30)
        assert "DRIFT: account svc" in text
        assert "changed in AD at" in text and "not through atp-bot" in text


def test_bind_needs_the_embedded_store(tmp_path: Path) -> None:
    secret = tmp_path / "lookup-password"
    secret.write_text("unused")
    config = tmp_path / "atp-bot.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        '[[accounts]]\nid = "acct"\nusername = "svc@contoso.test"\n'
        'domain_controllers = ["ldaps://127.0.0.1:1"]\n'
        f'lookup_username = "lookup@contoso.test"\nlookup_password_file = "{secret}"\n'
        '[store]\nbackend = "command"\n[store.command]\nargv = ["/bin/true"]\n'
    )
    done = run_cli(config, "verify", "--bind")
    assert done.returncode == 2
    assert "only the embedded store" in done.stderr
