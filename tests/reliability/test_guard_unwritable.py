"""Lockout with a ledger the guard can read but no longer write (a read-only or full disk), against a real
Samba DC whose lockout threshold is 3. The guard fails closed: a test it cannot count is refused before
the password leaves, so AD's badPwdCount never goes above what the guard counted, through the CLI
(`atp-bot test-connection` as a process) and through the bot's change path."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w
from pydantic import SecretStr

from bot.audit import AuditOutcome
from bot.change import ChangeStatus
from bot.config import load_settings
from bot.directory.lockout import GUARD_FILE
from lab.domain import LabDomain
from lab.faults import read_only_sqlite
from lab.samba import LabUser
from tests.conftest import lab_account, run_cli
from tests.slack_lab import initialised_changes

pytestmark = pytest.mark.samba

ATTEMPTS = 5  # more wrong passwords than the DC's lockout threshold
WRONG = "The password is wrong"
CANNOT_RECORD = "cannot record the attempt: the state directory cannot be written"
NOT_SENT = "nothing was sent to AD"


def write_config(tmp_path: Path, lab_domain: LabDomain, user: LabUser) -> Path:
    config = tmp_path / "atp-bot.toml"
    account = lab_account(lab_domain, user)
    config.write_text(tomli_w.dumps({"state_dir": str(tmp_path / "state"), "accounts": [account]}))
    return config


def test_the_cli_refuses_tests_it_cannot_count(
    lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path
) -> None:
    config = write_config(tmp_path, lab_domain, fresh_user)

    def test_connection(attempt: int) -> str:
        typed = f"Wrong-From-Cli-{attempt}\n"
        done = run_cli(config, "test-connection", "--account", "svc", "--password-stdin", stdin=typed)
        assert done.returncode == 1, done
        return done.stdout

    assert WRONG in test_connection(0)
    read_only_sqlite(tmp_path / "state" / GUARD_FILE)  # the disk turns read-only
    told = [test_connection(attempt) for attempt in range(1, ATTEMPTS)]

    assert all(CANNOT_RECORD in text and NOT_SENT in text for text in told), told
    state = lab_domain.dc.user_state(fresh_user.name)
    assert state["badPwdCount"] == 1 and not state["locked"], state


def test_the_change_path_refuses_tests_it_cannot_count(
    lab_domain: LabDomain, fresh_user: LabUser, env: None, tmp_path: Path
) -> None:
    changes = initialised_changes(load_settings(write_config(tmp_path, lab_domain, fresh_user)))

    first = changes.change("svc", SecretStr("Wrong-From-Slack-0"), "slack:U1")
    assert first.status is ChangeStatus.TEST_FAILED and WRONG in first.message, first
    read_only_sqlite(tmp_path / "state" / GUARD_FILE)
    outcomes = [
        changes.change("svc", SecretStr(f"Wrong-From-Slack-{attempt}"), "slack:U1")
        for attempt in range(1, ATTEMPTS)
    ]

    assert all(o.status is ChangeStatus.TEST_FAILED for o in outcomes), outcomes
    assert all(CANNOT_RECORD in o.message and NOT_SENT in o.message for o in outcomes), outcomes
    refused = [r for r in changes.audit.recent("svc") if r.outcome == AuditOutcome.REFUSED]
    assert [r.reason for r in refused] == ["guard_unavailable"] * (ATTEMPTS - 1)
    state = lab_domain.dc.user_state(fresh_user.name)
    assert state["badPwdCount"] == 1 and not state["locked"], state
