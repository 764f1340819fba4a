"""Unexpected failures at each step of the change path, injected through its own seams (the tester,
store, auditor, checker and progress objects it is given): the person is told truthfully whether the
password was saved, the failure is audited and logged with its traceback, redacted, and nothing is left
behind (the account's lock, the change journal). Real Samba DC, embedded or command store, audit trail."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.audit import AuditEvent, open_audit
from bot.change import ChangeProgress, ChangeStatus, PasswordChanges
from bot.config import AccountConfig, Settings, load_settings
from bot.directory import AccountLocks, run_connection_test
from bot.infra.redaction import install_record_redaction
from bot.infra.state_dir import state_dir
from bot.store import open_store
from bot.store.embedded import init_embedded_store
from lab.domain import LabDomain
from lab.samba import LabUser
from lab.winrm.server import WinRMEmulator
from tests.conftest import CANARY, assert_no_canary
from tests.test_change import write_config

pytestmark = pytest.mark.samba


class Injected(RuntimeError):
    """The failure a test injects; its message carelessly holds the password."""


def injected(where: str) -> Injected:
    return Injected(f"injected at {where}; the password was {CANARY}")


def failing(where: str, failure: Injected | None = None) -> Callable[..., Any]:
    def fail(*args: object, **kwargs: object) -> Any:
        raise failure or injected(where)

    return fail


class FailingWhenTesting(ChangeProgress):
    def testing(self, account: AccountConfig) -> None:
        raise injected("progress")


def changes_with(settings: Settings, monkeypatch: pytest.MonkeyPatch, step: str) -> PasswordChanges:
    """The real change path with `step` replaced by one that fails."""
    store, audit = open_store(settings), open_audit(settings)
    tester = failing("tester") if step == "tester" else run_connection_test
    if step == "store-before-save":
        monkeypatch.setattr(store, "save", failing(step))
    if step == "store-after-save":
        real_save = store.save

        def save_then_fail(*args: Any) -> Any:
            real_save(*args)
            raise injected(step)

        monkeypatch.setattr(store, "save", save_then_fail)
    if step in ("test-audit", "save-audit"):
        real_record = audit.record
        failing_action = step.removesuffix("-audit")

        def record(event: AuditEvent) -> Any:
            if event.action == failing_action:
                raise injected(step)
            return real_record(event)

        monkeypatch.setattr(audit, "record", record)
    return PasswordChanges(settings, state_dir=state_dir(settings), store=store, audit=audit, tester=tester)


@pytest.fixture
def settings(
    lab_domain: LabDomain, fresh_user: LabUser, sensors: WinRMEmulator, env: None, tmp_path: Path
) -> Settings:
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    loaded = load_settings(write_config(tmp_path, lab_domain, fresh_user, sensors))
    init_embedded_store(loaded)
    install_record_redaction()  # as every face does at start
    return loaded


@pytest.mark.parametrize(
    ("step", "saved"),
    [
        ("progress", False),
        ("tester", False),
        ("test-audit", False),
        ("store-before-save", False),
        ("store-after-save", True),
        ("save-audit", True),
    ],
)
def test_an_unexpected_failure_at_each_step_is_told_truthfully(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    canary_logs: pytest.LogCaptureFixture,
    step: str,
    saved: bool,
) -> None:
    changes = changes_with(settings, monkeypatch, step)
    progress = FailingWhenTesting() if step == "progress" else ChangeProgress()
    outcome = changes.change("svc", SecretStr(CANARY), "cli:test", progress)

    assert outcome.problem == f"Injected: injected at {step}; the password was [REDACTED]"
    stored = open_store(settings).read("svc")
    if saved:
        assert outcome.status is ChangeStatus.SAVED
        assert outcome.message.startswith("Saved (in the embedded store), but then something went wrong: ")
        assert stored is not None
        assert stored.get_secret_value() == CANARY
    else:
        assert outcome.status is ChangeStatus.FAILED
        assert outcome.message == f"Something went wrong: {outcome.problem}. Nothing was saved."
        assert stored is None
    (change_row,) = [r for r in open_audit(settings).recent("svc") if r.action == "change"]
    assert (change_row.outcome, change_row.reason) == ("error", "internal-error")
    assert change_row.detail is not None
    assert change_row.detail.endswith(
        "the new password was saved in the embedded store" if saved else "nothing was saved"
    )
    errors = [
        r for r in canary_logs.records if r.name == "bot.change.failures" and r.levelno == logging.ERROR
    ]
    assert errors
    assert errors[0].exc_text
    assert "Traceback" in errors[0].exc_text
    assert_no_canary(canary_logs, outcome.message, change_row.detail)
    assert changes.journal.entries() == []
    with AccountLocks(state_dir(settings)).hold("svc"):  # the account's lock was released
        pass


def test_a_command_store_failing_mid_save_is_unconfirmed(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    sensors: WinRMEmulator,
    env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    script = tmp_path / "vault-put"
    script.write_text("#!/bin/sh\ncat >/dev/null\n")
    script.chmod(0o700)
    store = f'[store]\nbackend = "command"\n[store.command]\nargv = ["{script}"]\n'
    settings = load_settings(write_config(tmp_path, lab_domain, fresh_user, sensors, store))
    changes = changes_with(settings, monkeypatch, "store-before-save")
    outcome = changes.change("svc", SecretStr(CANARY), "cli:test")
    assert outcome.status is ChangeStatus.FAILED
    assert "Something went wrong while the command store was saving" in outcome.message
    assert "check whether it holds the new password" in outcome.message
    (row,) = [r for r in changes.audit.recent("svc") if r.action == "change"]
    assert row.detail is not None
    assert row.detail.endswith("the command store did not confirm the save")


class ShowsFailures(ChangeProgress):
    def __init__(self) -> None:
        self.problems: list[str] = []

    def checks_failed(self, problem: str) -> bool:
        self.problems.append(problem)
        return True


def test_follow_up_checks_that_fail_unexpectedly_are_shown_and_audited(
    settings: Settings, canary_logs: pytest.LogCaptureFixture
) -> None:
    changes = PasswordChanges(
        settings,
        state_dir=state_dir(settings),
        store=open_store(settings),
        audit=open_audit(settings),
        checker=failing("checker", Injected("WinRM went away")),
    )
    shown = ShowsFailures()
    with pytest.raises(Injected):  # by default (the monitor's re-check job) it goes on to the caller
        changes.follow_up_checks("svc", None, "cli:test")
    assert changes.follow_up_checks("svc", None, "cli:test", shown) == []
    assert shown.problems == ["Injected: WinRM went away"]
    rows = [(r.action, r.outcome, r.reason) for r in changes.audit.recent("svc")]
    assert rows == [("check", "error", "internal-error")] * 2
