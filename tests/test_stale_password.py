"""Issue 16.3: a previous password, still accepted by an LDAP bind after a reset in AD, never passes.

Against the real Samba AD DC: its LDAP simple bind keeps accepting the previous password for a while
after an admin reset ("old password allowed period"), its KDC does not.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from bot.change import ChangeOutcome, ChangeStatus
from bot.config import AccountConfig, LockoutGuardConfig, load_settings
from bot.directory import (
    AccountLocks,
    ConnectionTestResult,
    LockoutGuard,
    Outcome,
    Reason,
    run_connection_test,
)
from bot.directory.kerberos_check import UNCONFIRMED, kdc_hosts, krb5_conf
from bot.store import CredentialMetadata, open_store
from commands import MODULES
from commands.password.views import PasswordModalOrigin, announcement, result_modal
from lab.domain import LabDomain, new_password
from lab.faults import silent_tcp_server
from lab.samba import LabUser
from lab.winrm.server import WinRMEmulator
from tests.conftest import CANARY, assert_no_canary, closed_port_url, lab_account, run_cli, sensor_config
from tests.slack_lab import initialised_changes, open_modal, running_lab, values, view_text, wait_for
from tests.storetools import files_containing, make_settings

pytestmark = pytest.mark.samba

GUARD_FILE = "guard.sqlite"


def account_for(lab: LabDomain, user: LabUser, **overrides: object) -> AccountConfig:
    fields: dict[str, object] = {
        **lab_account(lab, user, "acct"),
        "connect_timeout": 2,
        "receive_timeout": 2,
    }
    fields.update(overrides)
    return AccountConfig.model_validate(fields)


def guard_at(state: Path) -> LockoutGuard:
    return LockoutGuard.at_path(state / GUARD_FILE, LockoutGuardConfig(max_rejections=100))


def run(account: AccountConfig, password: str, state: Path) -> ConnectionTestResult:
    with AccountLocks(state).hold(account.id) as lease:
        return run_connection_test(account, SecretStr(password), guard=guard_at(state), lease=lease)


def rejections(state: Path, account_id: str = "acct") -> int:
    return guard_at(state).count(account_id).rejections


@pytest.fixture
def reset_user(lab_domain: LabDomain) -> tuple[LabUser, str]:
    """A user whose password an admin just reset with samba-tool: (user with the OLD password, new one)."""
    user = lab_domain.dc.create_user(f"svc-stale-{new_password()[4:10].lower()}", CANARY)
    new = new_password()
    lab_domain.dc.samba_tool_reset(user.name, new)
    return user, new


def test_previous_password_is_stale_and_counted(
    lab_domain: LabDomain,
    reset_user: tuple[LabUser, str],
    tmp_path: Path,
    canary_logs: pytest.LogCaptureFixture,
) -> None:
    user, new = reset_user
    account = account_for(lab_domain, user)
    assert lab_domain.dc.attempt_bind(user, user.password)["result"] == 0, "the DC should accept the old bind"

    result = run(account, user.password, tmp_path)

    assert result.outcome is Outcome.REJECTED
    assert result.reason is Reason.STALE_PASSWORD
    assert "previous one" in result.message and "not the current password" in result.message
    assert rejections(tmp_path) == 1, "the KDC's pre-authentication failure counts like a failed bind"
    assert lab_domain.dc.user_state(user.name)["badPwdCount"] == 1, "as AD counted it"
    assert_no_canary(canary_logs, repr(result))

    current = run(account, new, tmp_path)
    assert current.passed, current.message
    assert current.warnings == ()
    assert rejections(tmp_path) == 1


def test_down_level_name_is_confirmed_by_the_kdc(
    lab_domain: LabDomain, reset_user: tuple[LabUser, str], tmp_path: Path
) -> None:
    user, new = reset_user
    account = account_for(lab_domain, user, username=f"{lab_domain.dc.netbios}\\{user.name}")
    assert run(account, user.password, tmp_path).reason is Reason.STALE_PASSWORD
    assert run(account, new, tmp_path).passed


def test_no_kdc_falls_back_on_a_recent_pwdlastset_warning(
    lab_domain: LabDomain, reset_user: tuple[LabUser, str], tmp_path: Path
) -> None:
    user, _ = reset_user
    port = closed_port_url().rpartition(":")[2]
    account = account_for(lab_domain, user, kdc=[f"127.0.0.1:{port}"])

    result = run(account, user.password, tmp_path)

    assert result.passed
    assert len(result.warnings) == 1
    assert "changed in AD at" in result.warnings[0] and "may be the previous one" in result.warnings[0]
    assert UNCONFIRMED in result.warnings[0]
    assert rejections(tmp_path) == 0, "a KDC that cannot be reached never received the password"


def test_a_kdc_that_never_answers_is_bounded_and_counted(
    lab_domain: LabDomain, reset_user: tuple[LabUser, str], tmp_path: Path
) -> None:
    user, new = reset_user
    with silent_tcp_server() as port:
        result = run(account_for(lab_domain, user, kdc=[f"127.0.0.1:{port}"]), new, tmp_path)
    assert result.passed
    assert "no answer from the KDC" in result.warnings[0]
    assert rejections(tmp_path) == 1, "the password may have reached a KDC that counted it"


def write_config(tmp_path: Path, lab: LabDomain, user: LabUser) -> Path:
    config = tmp_path / "atp-bot.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[[accounts]]\nid = "acct"\nusername = "{user.upn}"\n'
        f'domain_controllers = ["{lab.dc.ldaps_url}"]\nca_file = "{lab.dc.ca_file}"\n'
        "[lockout_guard]\nmax_rejections = 5\n"
    )
    return config


def test_cli_test_connection_and_set_password_refuse_the_previous_password(
    lab_domain: LabDomain, reset_user: tuple[LabUser, str], tmp_path: Path, env: None
) -> None:
    user, new = reset_user
    config = write_config(tmp_path, lab_domain, user)
    assert run_cli(config, "store", "init").returncode == 0

    tested = run_cli(
        config, "test-connection", "--account", "acct", "--json", "--password-stdin", stdin=CANARY
    )
    assert tested.returncode == 1, tested.stdout + tested.stderr
    verdict = json.loads(tested.stdout)
    assert verdict["reason"] == "stale_password" and not verdict["passed"]

    refused = run_cli(
        config, "set-password", "--account", "acct", "--password-stdin", "--no-checks", stdin=CANARY
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "not the current password" in refused.stdout
    assert open_store(load_settings(config)).metadata("acct") is None
    assert not files_containing(tmp_path, CANARY)
    assert CANARY not in tested.stdout + tested.stderr + refused.stdout + refused.stderr

    saved = run_cli(config, "set-password", "--account", "acct", "--password-stdin", "--no-checks", stdin=new)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert open_store(load_settings(config)).metadata("acct") is not None


@pytest.mark.parametrize("mode", ["socket", "http"])
def test_the_modal_says_stale_and_saves_nothing(
    mode: str,
    lab_domain: LabDomain,
    reset_user: tuple[LabUser, str],
    sensors: WinRMEmulator,
    env: None,
    tmp_path: Path,
) -> None:
    user, _ = reset_user
    config = {
        "state_dir": str(tmp_path / "state"),
        "accounts": [lab_account(lab_domain, user, "svc")],
        **sensor_config(sensors, "svc"),
    }
    with running_lab(mode, modules=MODULES, config=config, changes=initialised_changes) as lab:
        view_id = open_modal(lab)
        lab.emulator.submit_view(view_id, values(CANARY))
        wait_for(lambda: "Not saved." in view_text(lab, view_id), timeout=30)
        text = view_text(lab, view_id)
        assert "not the current password" in text and "stale_password" in text
        assert lab.emulator.calls("chat.postMessage") == []
        changes = lab.runtime.services.changes
        assert changes is not None
        assert changes.store.read("svc") is None
        calls = json.dumps([c.body for c in lab.emulator.calls()])
        assert CANARY not in calls


def test_a_warning_reaches_the_modal_and_the_announcement(tmp_path: Path) -> None:
    warning = "The account's password was changed in AD at 2026-11-30 09:14 UTC, less than 60 minutes ago"
    test = ConnectionTestResult("corp", Outcome.PASSED, "ok", dc="ldaps://dc1", warnings=(warning,))
    saved = CredentialMetadata("corp", datetime.now(UTC), "slack:U1", "embedded")
    outcome = ChangeOutcome("corp", ChangeStatus.SAVED, "Saved.", test=test, saved=saved)
    modal = json.dumps(result_modal(outcome, PasswordModalOrigin(account_id="corp", channel_id="C1")))
    assert warning in modal
    text, blocks = announcement(outcome, "U1", make_settings(tmp_path))
    assert warning in text and warning in json.dumps(blocks)


def test_kdcs_default_to_each_dc_host_once_and_bad_entries_are_refused() -> None:
    fields = {
        "id": "acct",
        "username": "CONTOSO\\svc",
        "domain_controllers": ["ldaps://dc1.contoso.test", "ldap://dc1.contoso.test", "ldaps://dc2:1636"],
    }
    assert kdc_hosts(AccountConfig.model_validate(fields)) == ["dc1.contoso.test:88", "dc2:88"]
    explicit = AccountConfig.model_validate({**fields, "kdc": ["kdc1", "kdc2:8888"]})
    assert kdc_hosts(explicit) == ["kdc1:88", "kdc2:8888"]
    for bad in (["kdc one"], ["kdc:port"], ["krb5://kdc"], []):
        with pytest.raises(ValidationError):
            AccountConfig.model_validate({**fields, "kdc": bad})
    conf = krb5_conf("CONTOSO.TEST", ["dc1:88"])
    assert "CONTOSO.TEST = {\n    kdc = dc1:88\n  }" in conf and "udp_preference_limit = 1" in conf
