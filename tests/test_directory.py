"""The connection test against a real Samba AD DC: verdicts, failover, TLS, lockout protection, secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import AccountConfig, LockoutGuardConfig
from bot.directory import AccountLocks, LockoutGuard, Reason
from bot.directory.bind import AttemptOutcome, ConnectionTestResult, Outcome, run_connection_test
from lab.domain import LabDomain
from lab.faults import silent_tls_server
from lab.samba import LabUser
from lab.tlsca import issue_ca_and_server_cert
from tests.conftest import CANARY, assert_no_canary, closed_port_url
from tests.conftest import run_cli as cli

pytestmark = pytest.mark.samba


def account_for(lab: LabDomain, user: LabUser | str, **overrides: object) -> AccountConfig:
    fields: dict[str, object] = {
        "id": "acct",
        "username": user.upn if isinstance(user, LabUser) else user,
        "domain_controllers": [lab.dc.ldaps_url],
        "ca_file": lab.dc.ca_file,
        "connect_timeout": 3,
        "receive_timeout": 3,
    }
    fields.update(overrides)
    return AccountConfig.model_validate(fields)


def run(
    account: AccountConfig, password: str, state: Path, max_rejections: int = 100
) -> ConnectionTestResult:
    guard = LockoutGuard.at_path(state / "guard.sqlite", LockoutGuardConfig(max_rejections=max_rejections))
    with AccountLocks(state).hold(account.id) as lease:
        return run_connection_test(account, SecretStr(password), guard=guard, lease=lease)


def test_right_password_passes_with_expiry(lab_domain: LabDomain, tmp_path: Path) -> None:
    user = lab_domain.users["contoso"]
    result = run(account_for(lab_domain, user), user.password, tmp_path)
    assert result.outcome is Outcome.PASSED
    assert result.dc == lab_domain.dc.ldaps_url
    assert result.bind_identity == user.dn
    assert result.expiry is not None and result.expiry.at is not None
    # Samba's default maximum password age is 42 days.
    assert timedelta(days=41) < result.expiry.at - datetime.now(UTC) < timedelta(days=43)


def test_password_that_never_expires(lab_domain: LabDomain, tmp_path: Path) -> None:
    user = lab_domain.users["noexpiry"]
    result = run(account_for(lab_domain, user), user.password, tmp_path)
    assert result.passed
    assert result.expiry is not None and result.expiry.never
    assert "never expires" in result.message


def test_down_level_name_and_starttls(lab_domain: LabDomain, tmp_path: Path) -> None:
    user = lab_domain.users["contoso"]
    account = account_for(
        lab_domain, f"{lab_domain.dc.netbios}\\{user.name}", domain_controllers=[lab_domain.dc.ldap_url]
    )
    result = run(account, user.password, tmp_path)
    assert result.passed, result.message
    assert result.dc == lab_domain.dc.ldap_url
    assert result.bind_identity == user.dn


@pytest.mark.parametrize(
    ("account_id", "reason", "code"),
    [
        ("disabled", Reason.ACCOUNT_DISABLED, "533"),
        ("expired", Reason.ACCOUNT_EXPIRED, "701"),
        ("mustchange", Reason.MUST_CHANGE_PASSWORD, "773"),
        ("locked", Reason.ACCOUNT_LOCKED, "775"),
    ],
)
def test_account_problems_are_decoded(
    lab_domain: LabDomain, tmp_path: Path, account_id: str, reason: Reason, code: str
) -> None:
    user = lab_domain.users[account_id]
    result = run(account_for(lab_domain, user), user.password, tmp_path)
    assert (result.outcome, result.reason, result.ad_code) == (Outcome.REJECTED, reason, code)


def test_wrong_password_and_unknown_user(lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path) -> None:
    result = run(account_for(lab_domain, fresh_user), "Not-The-Password-1", tmp_path)
    assert (result.outcome, result.reason, result.ad_code) == (Outcome.REJECTED, Reason.WRONG_PASSWORD, "52e")
    ghost = run(account_for(lab_domain, "nobody@contoso.test"), "Whatever-1", tmp_path)
    assert ghost.reason is Reason.WRONG_PASSWORD  # AD does not reveal whether the user exists


def test_unreachable_first_dc_fails_over(lab_domain: LabDomain, tmp_path: Path) -> None:
    user = lab_domain.users["contoso"]
    dead = closed_port_url()
    account = account_for(lab_domain, user, domain_controllers=[dead, lab_domain.dc.ldaps_url])
    result = run(account, user.password, tmp_path)
    assert result.passed
    assert [(a.url, a.outcome) for a in result.attempts] == [
        (dead, AttemptOutcome.UNREACHABLE),
        (lab_domain.dc.ldaps_url, AttemptOutcome.OK),
    ]


def test_all_dcs_unreachable(lab_domain: LabDomain, tmp_path: Path) -> None:
    account = account_for(lab_domain, lab_domain.users["contoso"], domain_controllers=[closed_port_url()])
    result = run(account, "irrelevant", tmp_path)
    assert (result.outcome, result.reason) == (Outcome.UNREACHABLE, Reason.DC_UNREACHABLE)
    assert "Connection refused" in result.message


def test_rejected_password_is_never_tried_on_another_dc(
    lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path
) -> None:
    account = account_for(
        lab_domain, fresh_user, domain_controllers=[lab_domain.dc.ldaps_url, lab_domain.dc.ldap_url]
    )
    result = run(account, "Not-The-Password-1", tmp_path)
    assert result.reason is Reason.WRONG_PASSWORD
    assert [a.url for a in result.attempts] == [lab_domain.dc.ldaps_url]
    assert lab_domain.dc.user_state(fresh_user.name)["badPwdCount"] == 1


def test_wrong_ca_is_a_tls_error_and_the_right_ca_passes(lab_domain: LabDomain, tmp_path: Path) -> None:
    user = lab_domain.users["contoso"]
    other = issue_ca_and_server_cert(tmp_path / "other-ca", ["elsewhere.test"], [])
    result = run(account_for(lab_domain, user, ca_file=other.ca_file), user.password, tmp_path)
    assert (result.outcome, result.reason) == (Outcome.UNREACHABLE, Reason.TLS_ERROR)
    assert "certificate is not trusted by the CA in ca_file" in result.message
    assert run(account_for(lab_domain, user), user.password, tmp_path).passed


def test_tls_verification_can_be_disabled(lab_domain: LabDomain, tmp_path: Path) -> None:
    user = lab_domain.users["contoso"]
    result = run(account_for(lab_domain, user, ca_file=None, tls_verify=False), user.password, tmp_path)
    assert result.passed


def test_dc_that_never_answers_the_bind_is_not_retried_elsewhere(
    lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path
) -> None:
    tls = lab_domain.dc.tls
    assert tls is not None
    with silent_tls_server(tls, host=lab_domain.dc.address) as port:
        silent = f"ldaps://{lab_domain.dc.address}:{port}"
        account = account_for(
            lab_domain, fresh_user, domain_controllers=[silent, lab_domain.dc.ldaps_url], receive_timeout=1
        )
        result = run(account, fresh_user.password, tmp_path)
    assert (result.outcome, result.reason) == (Outcome.UNREACHABLE, Reason.NO_ANSWER)
    assert [a.url for a in result.attempts] == [silent]


def test_guard_keeps_the_account_from_locking_out(
    lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path
) -> None:
    """Many wrong submissions with the lab's lockout threshold of 3: the account is never locked."""
    account = account_for(lab_domain, fresh_user)
    outcomes = [run(account, f"Wrong-Password-{i}", tmp_path, max_rejections=2) for i in range(6)]
    assert [r.outcome for r in outcomes] == [Outcome.REJECTED] * 2 + [Outcome.REFUSED] * 4
    assert all(r.reason is Reason.GUARD_LIMIT for r in outcomes[2:])
    assert "until" in outcomes[-1].message
    state = lab_domain.dc.user_state(fresh_user.name)
    assert state["badPwdCount"] == 2 and not state["locked"]
    assert run(account, fresh_user.password, tmp_path, max_rejections=2).reason is Reason.GUARD_LIMIT


def lookup_settings(lab_domain: LabDomain, tmp_path: Path) -> dict[str, object]:
    secret = tmp_path / "lookup-password"
    secret.write_text(lab_domain.users["lookup"].password + "\n")
    return {"lookup_username": lab_domain.users["lookup"].upn, "lookup_password_file": secret}


def test_precheck_refuses_when_one_more_failure_would_lock(
    lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path
) -> None:
    """badPwdCount = threshold - 1 (made by someone else): atp-bot does not send the password at all."""
    for attempt in range(2):
        lab_domain.dc.attempt_bind(fresh_user, f"Someone-Else-{attempt}")
    account = account_for(lab_domain, fresh_user, **lookup_settings(lab_domain, tmp_path))
    result = run(account, "Yet-Another-Wrong-1", tmp_path)
    assert (result.outcome, result.reason) == (Outcome.REFUSED, Reason.NEAR_LOCKOUT)
    state = lab_domain.dc.user_state(fresh_user.name)
    assert state["badPwdCount"] == 2 and not state["locked"]


def test_precheck_sees_a_locked_account_and_lets_healthy_ones_through(
    lab_domain: LabDomain, tmp_path: Path
) -> None:
    lookup = lookup_settings(lab_domain, tmp_path)
    locked = lab_domain.users["locked"]
    result = run(account_for(lab_domain, locked, **lookup), locked.password, tmp_path)
    assert (result.outcome, result.reason) == (Outcome.REFUSED, Reason.ACCOUNT_LOCKED)
    healthy = lab_domain.users["contoso"]
    assert run(account_for(lab_domain, healthy, **lookup), healthy.password, tmp_path).passed


def test_precheck_with_a_broken_lookup_account_still_tests_with_a_note(
    lab_domain: LabDomain, tmp_path: Path
) -> None:
    secret = tmp_path / "bad-lookup"
    secret.write_text("not-the-lookup-password\n")
    user = lab_domain.users["contoso"]
    account = account_for(
        lab_domain, user, lookup_username=lab_domain.users["lookup"].upn, lookup_password_file=secret
    )
    result = run(account, user.password, tmp_path)
    assert result.passed
    assert any("pre-check unavailable" in note for note in result.notes)


def test_canary_password_never_reaches_logs(
    lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path, canary_logs: pytest.LogCaptureFixture
) -> None:
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    account = account_for(
        lab_domain, fresh_user, domain_controllers=[closed_port_url(), lab_domain.dc.ldaps_url]
    )
    results = [run(account, CANARY, tmp_path), run(account, CANARY + "-wrong", tmp_path)]
    assert [r.outcome for r in results] == [Outcome.PASSED, Outcome.REJECTED]
    assert any(r.name.startswith("ldap3") for r in canary_logs.records), (
        "ldap3's own logging was not captured"
    )
    assert_no_canary(canary_logs, *(repr(r) for r in results))


# --- the CLI, as an operator runs it --------------------------------------------------------------


@pytest.fixture
def lab_config(lab_domain: LabDomain, tmp_path: Path) -> Path:
    config = tmp_path / "atp-bot.toml"
    config.write_text(lab_domain.config_toml(tmp_path / "state"))
    return config


@pytest.mark.parametrize(
    ("account_id", "exit_code", "expected"),
    [
        ("contoso", 0, "PASSED: account contoso"),
        ("noexpiry", 0, "accepted the password; it never expires."),
        ("disabled", 1, "reason: account_disabled, AD code 533"),
        ("expired", 1, "reason: account_expired, AD code 701"),
        ("mustchange", 1, "reason: must_change_password, AD code 773"),
        ("locked", 1, "reason: account_locked, AD code 775"),
    ],
)
def test_cli_verdicts(
    lab_domain: LabDomain, lab_config: Path, account_id: str, exit_code: int, expected: str
) -> None:
    done = cli(lab_config, "test-connection", "--password-stdin", "--account", account_id,
               stdin=lab_domain.users[account_id].password + "\n")  # fmt: skip
    assert done.returncode == exit_code, done.stdout + done.stderr
    assert expected in done.stdout


def test_cli_json_and_canary(lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path) -> None:
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    config = tmp_path / "c.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[[accounts]]\nid = "svc"\nusername = "{fresh_user.upn}"\n'
        f'domain_controllers = ["{closed_port_url()}", "{lab_domain.dc.ldaps_url}"]\n'
        f'ca_file = "{lab_domain.dc.ca_file}"\n'
    )
    done = cli(
        config, "-v", "test-connection", "--account", "svc", "--password-stdin", "--json", stdin=CANARY + "\n"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] and report["password_expires"] and report["dc"] == lab_domain.dc.ldaps_url
    assert [a["outcome"] for a in report["attempts"]] == ["unreachable", "ok"]
    wrong = cli(config, "-v", "test-connection", "--account", "svc", "--password-stdin", stdin=CANARY + "x\n")
    assert wrong.returncode == 1
    for text in (done.stdout, done.stderr, wrong.stdout, wrong.stderr):
        assert CANARY not in text
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes()


def test_cli_unreachable_exits_3(lab_domain: LabDomain, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'state_dir = "{tmp_path}"\n[[accounts]]\nid = "svc"\nusername = "a@contoso.test"\n'
        f'domain_controllers = ["{closed_port_url()}"]\n'
    )
    done = cli(config, "test-connection", "--account", "svc", "--password-stdin", stdin="whatever\n")
    assert done.returncode == 3
    assert "UNREACHABLE: account svc: No domain controller could be reached." in done.stdout


def test_cli_refuses_argv_less_prompt_without_tty(lab_config: Path) -> None:
    done = cli(lab_config, "test-connection", "--account", "contoso", stdin="")
    assert done.returncode == 2
    assert "use --password-stdin" in done.stderr
    unknown = cli(lab_config, "test-connection", "--account", "nope", "--password-stdin", stdin="x\n")
    assert unknown.returncode == 2
    assert "no account with id 'nope'" in unknown.stderr
