"""`atp-bot guard status` and `atp-bot guard reset`, as processes, against a real Samba DC whose lockout
threshold is 3: the counts and the window, an audited reset, refused while AD says the account is one
bad password from lockout, and a test cut short mid-bind that stays counted."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from bot.config import LockoutGuardConfig
from bot.directory.lockout import GUARD_FILE, AccountLocks, LockoutGuard
from lab.domain import LabDomain
from lab.faults import silent_tls_server
from lab.samba import LabUser
from tests.conftest import closed_port_url, lab_account, run_cli
from tests.slack_lab import wait_for

pytestmark = pytest.mark.samba

WRONG = "The password is wrong"


def write_config(
    tmp_path: Path,
    lab_domain: LabDomain,
    user: LabUser,
    *,
    max_rejections: int,
    lookup: bool = False,
    **overrides: object,
) -> Path:
    account = lab_account(lab_domain, user) | overrides
    if lookup:
        secret = tmp_path / "lookup-password"
        secret.write_text(lab_domain.users["lookup"].password + "\n")
        account |= {"lookup_username": lab_domain.users["lookup"].upn, "lookup_password_file": str(secret)}
    config = tmp_path / "atp-bot.toml"
    document = {
        "state_dir": str(tmp_path / "state"),
        "lockout_guard": {"max_rejections": max_rejections},
        "accounts": [account],
    }
    config.write_text(tomli_w.dumps(document))
    return config


def wrong_password(config: Path, attempt: int) -> str:
    typed = f"Wrong-Typo-{attempt}\n"
    done = run_cli(config, "test-connection", "--account", "svc", "--password-stdin", stdin=typed)
    assert done.returncode == 1, done
    return done.stdout


def status(config: Path) -> tuple[int, dict[str, Any]]:
    done = run_cli(config, "guard", "status", "--json")
    return done.returncode, json.loads(done.stdout)["accounts"][0]


def guard_rows(config: Path) -> list[tuple[str, str, str | None]]:
    """(actor, outcome, reason) of the lockout guard's audit rows, oldest first."""
    done = run_cli(config, "history", "--account", "svc", "--json")
    rows = reversed(json.loads(done.stdout))
    return [(r["actor"], r["outcome"], r["reason"]) for r in rows if r["action"] == "lockout-guard"]


def test_status_shows_the_count_the_limit_and_when_the_window_frees_up(
    lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path
) -> None:
    config = write_config(tmp_path, lab_domain, fresh_user, max_rejections=2)
    code, svc = status(config)
    assert code == 0
    assert svc == {
        "account": "svc",
        "rejections": 0,
        "pending": 0,
        "limit": 2,
        "refusing": False,
        "refused_until": None,
        "oldest_expires_at": None,
    }
    assert WRONG in wrong_password(config, 1)
    code, svc = status(config)
    assert (code, svc["rejections"], svc["refusing"], svc["refused_until"]) == (0, 1, False, None)
    assert svc["oldest_expires_at"] is not None
    assert WRONG in wrong_password(config, 2)

    code, svc = status(config)
    assert (code, svc["rejections"], svc["refusing"]) == (1, 2, True)
    assert svc["refused_until"] == svc["oldest_expires_at"]
    text = run_cli(config, "guard", "status")
    assert text.returncode == 1
    assert "at most 2 rejected tests per 30 minutes, counted in the state directory" in text.stdout
    assert "svc: 2 of 2 counted: REFUSING tests until " in text.stdout
    assert run_cli(config, "guard", "status", "--account", "nope").returncode == 2


def test_reset_is_audited_and_refused_while_ad_says_the_account_is_near_lockout(
    lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path
) -> None:
    config = write_config(tmp_path, lab_domain, fresh_user, max_rejections=1, lookup=True)
    assert WRONG in wrong_password(config, 1)
    assert "refuses more tests until" in wrong_password(config, 2)

    reset = run_cli(config, "guard", "reset", "--account", "svc")
    assert reset.returncode == 0, reset
    assert "RESET: account svc: 1 counted test(s) forgotten." in reset.stdout
    assert "AD: badPwdCount 1 of lockoutThreshold 3, not locked out" in reset.stdout
    assert WRONG in wrong_password(config, 3)  # AD's count is now 2: one more would lock the account

    for extra in ((), ("--force",)):
        refused = run_cli(config, "guard", "reset", "--account", "svc", *extra)
        assert refused.returncode == 1, refused
        assert "NOT RESET: The account has 2 recent bad password attempts in AD" in refused.stdout
    assert status(config)[1]["refusing"]
    actor = f"cli:{getpass.getuser()}"
    assert guard_rows(config) == [
        (actor, "ok", "reset"),
        (actor, "refused", "near_lockout"),
        (actor, "refused", "near_lockout"),
    ]
    state = lab_domain.dc.user_state(fresh_user.name)
    assert state["badPwdCount"] == 2 and not state["locked"], state


def test_reset_without_a_lookup_account_needs_force(
    lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path
) -> None:
    config = write_config(tmp_path, lab_domain, fresh_user, max_rejections=1)
    assert run_cli(config, "guard", "reset", "--account", "svc").stdout.startswith("Nothing to reset")
    wrong_password(config, 1)

    refused = run_cli(config, "guard", "reset", "--account", "svc")
    assert refused.returncode == 1
    assert "has no lookup account" in refused.stdout and "--force" in refused.stdout
    forced = run_cli(config, "guard", "reset", "--account", "svc", "--force")
    assert forced.returncode == 0, forced
    assert "AD not checked (no lookup account; --force)" in forced.stdout
    code, svc = status(config)
    assert (code, svc["rejections"]) == (0, 0)
    assert [outcome for _, outcome, _ in guard_rows(config)] == ["refused", "ok"]


def test_reset_when_no_dc_answers_the_lookup_account_needs_force(
    lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        lab_domain,
        fresh_user,
        max_rejections=1,
        lookup=True,
        domain_controllers=[closed_port_url()],
    )
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with AccountLocks(state).hold("svc") as lease:  # a test cut short: counted
        assert LockoutGuard.at_path(state / GUARD_FILE, LockoutGuardConfig()).admit(lease).allowed

    refused = run_cli(config, "guard", "reset", "--account", "svc")
    assert refused.returncode == 3, refused
    assert "NOT RESET: AD's lockout state cannot be read: no domain controller answered" in refused.stdout
    forced = run_cli(config, "guard", "reset", "--account", "svc", "--force")
    assert forced.returncode == 0, forced
    assert "AD not checked (no domain controller answered" in forced.stdout
    assert [reason for _, _, reason in guard_rows(config)] == ["dc_unreachable", "reset"]


def test_a_test_cut_short_mid_bind_stays_counted(
    lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path
) -> None:
    """The CLI is killed mid-test (its DC never answers the bind): AD may have counted the password, so
    the guard does."""
    tls = lab_domain.dc.tls
    assert tls is not None
    with silent_tls_server(tls, host=lab_domain.dc.address) as port:
        silent = f"ldaps://{lab_domain.dc.address}:{port}"
        config = write_config(
            tmp_path,
            lab_domain,
            fresh_user,
            max_rejections=1,
            domain_controllers=[silent],
            receive_timeout=60,
        )
        env = {k: v for k, v in os.environ.items() if k != "ATP_BOT_CONFIG"}
        argv = ["test-connection", "--account", "svc", "--password-stdin"]
        cli = subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(config), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        try:
            assert cli.stdin is not None
            cli.stdin.write(fresh_user.password + "\n")
            cli.stdin.close()
            ledger = tmp_path / "state" / GUARD_FILE
            guard = LockoutGuard.at_path(ledger, LockoutGuardConfig())
            wait_for(lambda: ledger.exists() and guard.count("svc").pending == 1, timeout=60)
        finally:
            cli.send_signal(signal.SIGKILL)
            cli.wait(timeout=10)

    code, svc = status(config)
    assert (code, svc["rejections"], svc["pending"], svc["refusing"]) == (1, 1, 1, True)
    assert "never settled" in run_cli(config, "guard", "status").stdout
