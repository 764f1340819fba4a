"""A wrong lookup password never locks the lookup account out.

Against the real Samba AD DC (lockoutThreshold 3), with the DC listed twice (LDAPS and StartTLS): a
refused lookup bind ends the read on every DC and suspends the lookup account's binds, for every process
sharing the state directory or the replicas' database, until its password file changes, the observation
window passes, or `guard reset --lookup`; the channel is told once.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from pydantic import SecretStr

from bot.config import parse_settings
from bot.directory import (
    ExpiryUnavailable,
    LockoutGuard,
    LookupBlocked,
    lockout_precheck,
    read_password_expiry,
)
from bot.directory.lookup_guard import KEY_FILE, WRONG_PASSWORD
from bot.monitor.drift_watch import run_drift_check
from bot.monitor.expiry import run_expiry_check
from bot.monitor.render import render_lookup_suspension
from commands.alerts import lookup_suspension_message
from lab.domain import LOCKOUT_THRESHOLD, LabDomain, new_password
from lab.postgres import PostgresCluster
from lab.samba import LabUser
from tests.conftest import CANARY, run_cli
from tests.monitor_tools import Clock, RecordingNotifier, make_runtime, monitor_settings
from tests.peers import postgres_cluster
from tests.replicas import replica_tables

DB_PASSWORD = "Lookup-Replicas-Pa55!"
DB_PASSWORD_ENV = "ATP_BOT_TEST_LOOKUP_DB"


@pytest.fixture
def lookup(lab_domain: LabDomain) -> LabUser:
    """A lookup account of this test's own (its badPwdCount is this test's alone)."""
    lab_domain.dc.set_lockout_policy(LOCKOUT_THRESHOLD)
    return lab_domain.dc.create_user(
        f"lkp-{new_password()[4:12].lower()}", new_password(), never_expires=True
    )


def lookup_file(tmp_path: Path, password: str) -> Path:
    secret = tmp_path / "lookup-password"
    secret.write_text(password + "\n")
    os.chmod(secret, 0o600)
    return secret


def account_table(lab: LabDomain, user: LabUser, lookup: LabUser, secret: Path) -> dict[str, object]:
    return {
        "id": "acct",
        "username": user.upn,
        "domain_controllers": [lab.dc.ldaps_url, lab.dc.ldap_url],  # one DC, listed twice
        "ca_file": str(lab.dc.ca_file),
        "lookup_username": lookup.upn,
        "lookup_password_file": str(secret),
    }


def write_config(path: Path, state: Path, account: dict[str, object], **tables: Any) -> Path:
    path.write_text(tomli_w.dumps({"state_dir": str(state), "accounts": [account], **tables}))
    return path


def verify(config: Path) -> dict[str, Any]:
    done = run_cli(config, "verify", "--json")
    assert done.stdout.startswith("["), done.stdout + done.stderr
    [report] = json.loads(done.stdout)
    return dict(report)


def guard_status(config: Path) -> tuple[int, dict[str, Any]]:
    done = run_cli(config, "guard", "status", "--json")
    return done.returncode, json.loads(done.stdout)


def bad_count(lab: LabDomain, user: LabUser) -> int:
    state = lab.dc.user_state(user.name)
    assert not state["locked"], f"{user.name} is locked out"
    return state["badPwdCount"]


def test_four_verify_runs_with_a_wrong_lookup_password_never_lock_it(
    lab_domain: LabDomain, fresh_user: LabUser, lookup: LabUser, tmp_path: Path, env: None
) -> None:
    secret = lookup_file(tmp_path, "Not-The-Lookup-Pa55!")
    account = account_table(lab_domain, fresh_user, lookup, secret)
    config = write_config(tmp_path / "atp-bot.toml", tmp_path / "state", account)
    assert run_cli(config, "store", "init").returncode == 0

    reports = [verify(config) for _ in range(4)]  # four processes, one state directory

    assert bad_count(lab_domain, lookup) == 1, "one refused bind in all: no second DC, no later run"
    assert all(r["in_sync"] is None for r in reports)
    assert all(any(WRONG_PASSWORD in f for f in r["findings"]) for r in reports), reports
    code, document = guard_status(config)
    assert code == 1
    [suspension] = document["lookup_suspensions"]
    assert suspension["lookup_account"] == lookup.upn.lower() and suspension["accounts"] == ["acct"]
    assert suspension["until_password_source_changes"] is True
    assert WRONG_PASSWORD in suspension["message"] and suspension["dc"] == lab_domain.dc.ldaps_url
    since, until = (datetime.fromisoformat(suspension[k]) for k in ("since", "until"))
    assert until - since == timedelta(minutes=30), "the lab domain's lockOutObservationWindow"
    text = run_cli(config, "guard", "status")
    assert text.returncode == 1 and "SUSPENDED" in text.stdout and WRONG_PASSWORD in text.stdout

    # The connection test's lockout pre-check is suspended too; the account's own test goes on.
    done = run_cli(
        config, "test-connection", "--account", "acct", "--password-stdin", stdin=fresh_user.password
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert bad_count(lab_domain, lookup) == 1

    lookup_file(tmp_path, lookup.password)  # the operator fixes the password file
    report = verify(config)
    assert report["bad_password_count"] == 0 and report["lockout_threshold"] == LOCKOUT_THRESHOLD, report
    assert bad_count(lab_domain, lookup) == 0, "the good bind cleared AD's count"
    code, document = guard_status(config)
    assert code == 0 and document["lookup_suspensions"] == []


def test_guard_reset_lookup_lifts_the_suspension_and_is_audited(
    lab_domain: LabDomain, fresh_user: LabUser, lookup: LabUser, tmp_path: Path, env: None
) -> None:
    secret = lookup_file(tmp_path, "Not-The-Lookup-Pa55!")
    account = account_table(lab_domain, fresh_user, lookup, secret)
    config = write_config(tmp_path / "atp-bot.toml", tmp_path / "state", account)
    assert run_cli(config, "store", "init").returncode == 0
    verify(config)
    assert guard_status(config)[0] == 1

    done = run_cli(config, "guard", "reset", "--account", "acct", "--lookup")

    assert done.returncode == 0 and "RESET" in done.stdout, done.stdout + done.stderr
    code, document = guard_status(config)
    assert code == 0 and document["lookup_suspensions"] == []
    history = json.loads(run_cli(config, "history", "--account", "acct", "--json").stdout)
    [row] = [r for r in history if r["action"] == "lockout-guard"]
    assert (row["outcome"], row["reason"]) == ("ok", "lookup_reset")
    assert lookup.upn.lower() in row["detail"]
    verify(config)  # the same wrong password: one more refused bind, suspended again
    assert bad_count(lab_domain, lookup) == 2 and guard_status(config)[0] == 1


def test_every_lookup_read_waits_while_suspended(
    lab_domain: LabDomain, fresh_user: LabUser, lookup: LabUser, tmp_path: Path
) -> None:
    secret = lookup_file(tmp_path, "Not-The-Lookup-Pa55!")
    account = account_table(lab_domain, fresh_user, lookup, secret)
    settings = parse_settings(tomli_w.dumps({"state_dir": str(tmp_path / "state"), "accounts": [account]}))
    lookups = LockoutGuard.for_settings(settings).lookups
    target = settings.account("acct")

    view = lockout_precheck(target, lookups=lookups)
    assert view.threshold is None and WRONG_PASSWORD in view.describe()
    with pytest.raises(ExpiryUnavailable, match=WRONG_PASSWORD):
        read_password_expiry(target, lookups=lookups)
    for _ in range(3):
        assert lockout_precheck(target, lookups=lookups).threshold is None
    assert bad_count(lab_domain, lookup) == 1


def test_the_channel_is_told_once_across_monitor_cycles(
    lab_domain: LabDomain, fresh_user: LabUser, lookup: LabUser, tmp_path: Path, env: None
) -> None:
    secret = lookup_file(tmp_path, "Not-The-Lookup-Pa55!")
    account = account_table(lab_domain, fresh_user, lookup, secret)
    notifier = RecordingNotifier()
    settings = monitor_settings(tmp_path, None, account=tomli_w.dumps({"accounts": [account]}))
    runtime = make_runtime(settings, notifier, Clock(datetime.now(UTC)))
    try:
        for _ in range(3):
            run_drift_check(runtime)
            run_expiry_check(runtime)
            runtime.memory.forget_expiry("acct")
    finally:
        runtime.memory.close()

    [notice] = notifier.of("post_lookup_suspension")
    assert notice.lookup_account == lookup.upn.lower() and notice.accounts == ("acct",)
    assert WRONG_PASSWORD in render_lookup_suspension(notice)
    assert WRONG_PASSWORD in lookup_suspension_message(notice)
    assert bad_count(lab_domain, lookup) == 1


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from postgres_cluster(DB_PASSWORD)


def test_a_second_replica_sees_the_suspension(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    lookup: LabUser,
    cluster: PostgresCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DB_PASSWORD_ENV, DB_PASSWORD)
    db_url = cluster.create_database(f"lookup_{new_password()[4:10].lower().replace('-', '_')}")
    tables = replica_tables(db_url, DB_PASSWORD_ENV, 2.0)
    configs = []
    for host in ("a", "b"):  # two hosts: a state directory and a password file each
        (tmp_path / host).mkdir()
        account = account_table(lab_domain, fresh_user, lookup, lookup_file(tmp_path / host, "Wrong-Pa55!"))
        configs.append(write_config(tmp_path / f"{host}.toml", tmp_path / host / "state", account, **tables))
    replica_a, replica_b = configs

    verify(replica_a)
    reports = [verify(replica_b) for _ in range(3)]

    assert bad_count(lab_domain, lookup) == 1
    assert all(any(WRONG_PASSWORD in f for f in r["findings"]) for r in reports), reports
    code, document = guard_status(replica_b)
    assert code == 1 and document["ledger"] == "shared_database"
    assert [s["lookup_account"] for s in document["lookup_suspensions"]] == [lookup.upn.lower()]


def test_the_window_ends_the_suspension_and_the_ledger_holds_no_password(tmp_path: Path) -> None:
    settings = parse_settings(
        tomli_w.dumps(
            {
                "state_dir": str(tmp_path / "state"),
                "accounts": [
                    {
                        "id": "acct",
                        "username": "svc@contoso.test",
                        "domain_controllers": ["ldaps://127.0.0.1:1"],
                        "lookup_username": "Lookup@contoso.test",
                        "lookup_password_file": str(lookup_file(tmp_path, CANARY)),
                    }
                ],
            }
        )
    )
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    (tmp_path / "state").mkdir(mode=0o700)
    clock = Clock(now)
    guard = LockoutGuard.at_path(tmp_path / "state" / "guard.sqlite", settings.lockout_guard, clock)
    lookups, account, password = guard.lookups, settings.account("acct"), SecretStr(CANARY)
    lookups.note_window(account, -45 * 60 * 10_000_000)  # a domain whose window is 45 minutes

    blocked = lookups.refused(account, password, "ldaps://dc1", "The password is wrong")
    assert blocked.suspension is not None and blocked.suspension.until == now + timedelta(minutes=45)
    clock.advance(minutes=44)
    with pytest.raises(LookupBlocked, match=WRONG_PASSWORD):
        lookups.check(account, password)
    clock.advance(minutes=2)
    lookups.check(account, password)  # the window has passed
    assert lookups.active() == []

    key = tmp_path / "state" / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ledger = (tmp_path / "state" / "guard.sqlite").read_bytes()
    assert CANARY.encode() not in ledger and CANARY.encode("utf-16-le") not in ledger


def test_a_host_that_learns_of_the_suspension_is_lifted_when_its_own_password_changes(
    tmp_path: Path,
) -> None:
    """A state directory with another fingerprint key (another replica's host) cannot compare with the
    refused password: it takes its current one as refused, and is lifted once that one changes."""
    secret = lookup_file(tmp_path, "Wrong-Lookup-Pa55!")
    settings = parse_settings(
        tomli_w.dumps(
            {
                "state_dir": str(tmp_path / "state"),
                "accounts": [
                    {
                        "id": "acct",
                        "username": "svc@contoso.test",
                        "domain_controllers": ["ldaps://127.0.0.1:1"],
                        "lookup_username": "lookup@contoso.test",
                        "lookup_password_file": str(secret),
                    }
                ],
            }
        )
    )
    lookups, account = LockoutGuard.for_settings(settings).lookups, settings.account("acct")
    lookups.refused(account, account.lookup_password(), "ldaps://dc1", "The password is wrong")
    (tmp_path / "state" / KEY_FILE).unlink()  # from here on, another host's key

    for _ in range(2):
        with pytest.raises(LookupBlocked, match=WRONG_PASSWORD):
            lookups.check(account, account.lookup_password())
    lookup_file(tmp_path, "The-Fixed-Lookup-Pa55!")
    lookups.check(account, account.lookup_password())
    assert lookups.active() == []
