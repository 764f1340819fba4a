"""The change journal, the resolution of a change a crash cut short, and the Slack wording of it (pure).

The process-level proofs (SIGKILL of `atp-bot run` and `set-password`) are in
tests/reliability/test_killed_mid_change.py; these are the fast rules underneath.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.audit import open_audit
from bot.change import ChangeProgress, PasswordChanges
from bot.change.journal import ChangeJournal, InFlight, Phase
from bot.change.recovery import Recovery, Verdict, verdict
from bot.config import Settings, StoreConfig
from bot.directory import AccountLocks, ConnectionTestResult, Outcome
from bot.store import CredentialMetadata, open_store
from bot.store.embedded import init_embedded_store
from commands.password.views import interrupted_notice
from lab.slack.render import render_message
from tests.conftest import CANARY

STARTED = datetime(2026, 11, 25, 7, 10, 3, tzinfo=UTC)
ALICE = "slack:U0ALICE (alice)"


def entry(phase: Phase = Phase.TESTING, backend: str = "embedded") -> InFlight:
    return InFlight("e1", "svc", ALICE, backend, STARTED, phase, 1234, {"slack_user": "U0ALICE"})


def saved(delta: timedelta, by: str = ALICE, backend: str = "embedded") -> CredentialMetadata:
    return CredentialMetadata("svc", STARTED + delta, by, backend)  # type: ignore[arg-type]


def test_the_journal_keeps_entries_private_atomic_and_secret_free(tmp_path: Path) -> None:
    journal = ChangeJournal(tmp_path)
    first = journal.begin("svc", ALICE, "embedded", {"slack_user": "U0ALICE", "slack_channel": "C0OPS"})
    journal.begin("other", "cli:bob", "command")
    moved = journal.advance(first, Phase.SAVING)

    assert [e.phase for e in journal.entries("svc")] == [Phase.SAVING]
    assert journal.entries("svc") == [moved]
    assert {e.account_id for e in journal.entries()} == {"svc", "other"}
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o700
    files = list(journal.path.iterdir())
    assert len(files) == 2  # no temporary file left behind
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    journal.finish(moved)
    assert [e.account_id for e in journal.entries()] == ["other"]


def test_an_unreadable_entry_is_skipped_and_a_stray_temporary_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = ChangeJournal(tmp_path)
    journal.begin("svc", ALICE, "embedded")
    (journal.path / "torn.json").write_text('{"id": "x", "acc')
    (journal.path / ".tmp-svc.json").write_text("{")
    assert [e.account_id for e in journal.entries()] == ["svc"]
    assert "cannot read" in caplog.text
    journal.remove_stray_temporary("svc")
    assert not (journal.path / ".tmp-svc.json").exists()


@pytest.mark.parametrize(
    ("phase", "backend", "store", "expected"),
    [
        (Phase.TESTING, "embedded", None, Verdict.NOT_SAVED),
        (Phase.SAVING, "embedded", None, Verdict.NOT_SAVED),  # one SQLite transaction: certain
        (Phase.SAVING, "embedded", saved(-timedelta(days=1)), Verdict.NOT_SAVED),  # an older save
        (Phase.SAVING, "embedded", saved(timedelta(seconds=2)), Verdict.SAVED),
        (Phase.SAVING, "embedded", saved(timedelta(seconds=2), by="cli:bob"), Verdict.NOT_SAVED),
        (Phase.TESTING, "command", None, Verdict.NOT_SAVED),  # the store was never called
        (Phase.SAVING, "command", None, Verdict.UNCONFIRMED),  # the command may have applied it
        (Phase.SAVING, "command", saved(timedelta(seconds=2), backend="command"), Verdict.SAVED),
        (Phase.SAVING, "command", saved(timedelta(seconds=2)), Verdict.UNCONFIRMED),  # another backend
    ],
)
def test_verdict(phase: Phase, backend: str, store: CredentialMetadata | None, expected: Verdict) -> None:
    assert verdict(entry(phase, backend), store) is expected


def _changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PasswordChanges:
    monkeypatch.setenv("ATP_BOT_STORE_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    settings = Settings.model_validate(
        {
            "state_dir": str(tmp_path),
            "accounts": [{"id": "svc", "username": "svc@corp.test", "domain_controllers": ["ldaps://dc1"]}],
        }
    )
    init_embedded_store(settings)

    def passes(*_args: object, **_kwargs: object) -> ConnectionTestResult:
        return ConnectionTestResult("svc", Outcome.PASSED, "accepted", dc="ldaps://dc1")

    return PasswordChanges(
        settings, state_dir=tmp_path, store=open_store(settings), audit=open_audit(settings), tester=passes
    )


def test_a_leftover_is_resolved_once_and_audited_and_a_busy_account_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes = _changes(tmp_path, monkeypatch)
    leftover = changes.journal.advance(changes.journal.begin("svc", ALICE, "embedded"), Phase.SAVING)

    with AccountLocks(tmp_path).hold("svc"):  # a change of the account is running in another process
        assert changes.recover_interrupted() == []
    assert changes.journal.entries() == [leftover]

    (recovery,) = changes.recover_interrupted()
    assert (recovery.verdict, recovery.saved, recovery.save_audited) == (Verdict.NOT_SAVED, None, False)
    assert changes.journal.entries() == []
    assert changes.recover_interrupted() == []
    (row,) = changes.audit.recent("svc")
    assert (row.actor, row.action, row.outcome, row.reason) == (ALICE, "interrupted", "error", "not-saved")
    assert "interrupted while saving; nothing was saved" in (row.detail or "")


def test_a_leftover_already_audited_by_a_process_killed_before_removing_it_gets_no_second_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes = _changes(tmp_path, monkeypatch)
    leftover = changes.journal.begin("svc", ALICE, "embedded")
    (first,) = changes.recover_interrupted()
    changes.journal.advance(leftover, Phase.TESTING)  # as if killed between the audit row and the removal
    (again,) = changes.recover_interrupted()
    assert again.verdict is first.verdict
    assert changes.journal.entries() == []
    (row,) = changes.audit.recent("svc")
    assert f"change {leftover.id}" in (row.detail or "")


def test_a_checking_entry_is_left_alone_while_its_process_runs_and_resolved_as_saved_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes = _changes(tmp_path, monkeypatch)
    changes.journal.advance(changes.journal.begin("svc", ALICE, "embedded"), Phase.CHECKING)
    assert changes.recover_interrupted() == []  # this process is still checking the sensors
    changes.journal.end_checks("svc")
    assert changes.journal.entries() == []

    gone = replace(changes.journal.begin("svc", ALICE, "embedded"), phase=Phase.CHECKING, pid=_dead_pid())
    changes.journal.advance(gone, Phase.CHECKING)
    (recovery,) = changes.recover_interrupted()
    assert recovery.verdict is Verdict.SAVED
    (row,) = changes.audit.recent("svc")
    assert (row.outcome, row.reason) == ("ok", "saved")
    assert "interrupted while checking; the new password had been saved" in (row.detail or "")


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_the_next_change_of_the_account_resolves_a_leftover_whose_save_landed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes = _changes(tmp_path, monkeypatch)
    leftover = changes.journal.begin("svc", ALICE, "embedded")
    changes.store.save("svc", SecretStr(CANARY), ALICE)  # the save landed; the process died before auditing

    seen: list[Recovery] = []

    class Recorder(ChangeProgress):
        def recovered(self, recovery: Recovery) -> None:
            seen.append(recovery)

    outcome = changes.change("svc", SecretStr(CANARY), "cli:bob", Recorder())
    assert outcome.saved_ok
    (recovery,) = seen
    assert recovery.entry == leftover
    assert (recovery.verdict, recovery.save_audited) == (Verdict.SAVED, False)
    rows = [(r.actor, r.action, r.outcome, r.reason) for r in reversed(changes.audit.recent("svc"))]
    assert rows == [
        (ALICE, "interrupted", "ok", "saved"),
        ("cli:bob", "test", "ok", None),
        ("cli:bob", "save", "ok", None),
    ]
    assert "the save itself had not been audited" in (changes.audit.recent("svc")[-1].detail or "")
    assert changes.journal.entries() == []
    assert changes.audit.verify().intact


SETTINGS = Settings.model_validate(
    {"accounts": [{"id": "svc", "username": "svc-atp@contoso.test", "domain_controllers": ["ldaps://dc1"]}]}
)
ATA_STORE = StoreConfig.model_validate(
    {
        "backend": "ata-center",
        "ata_center": {"url": "https://ata.contoso.test", "username": "CONTOSO\\atp", "password_env": "X"},
    }
)


def test_interrupted_notice_wording() -> None:
    not_saved = Recovery(entry(Phase.SAVING), Verdict.NOT_SAVED, None, False)
    text, blocks = interrupted_notice(not_saved, "U0ALICE", SETTINGS)
    assert render_message(text, blocks).splitlines()[1:] == [
        "| :warning: The password change of *svc* (`svc-atp@contoso.test`) started by <@U0ALICE> at "
        "07:10 UTC was interrupted by a restart before it was saved. The previous password is still in "
        "use: run `/atp password svc` again.",
        "| » Recorded in the audit trail (`/atp history`).",
    ]

    unconfirmed = Recovery(entry(Phase.SAVING, "command"), Verdict.UNCONFIRMED, None, False)
    assert interrupted_notice(unconfirmed, None, SETTINGS)[0] == (
        ":warning: The password change of *svc* (`svc-atp@contoso.test`) started by `slack:U0ALICE (alice)` "
        "at 07:10 UTC was interrupted by a restart while the command store was saving it, and the store "
        "never confirmed the save. The previous password may still be in use: check the store, or run "
        "`/atp password svc` again. Recorded in the audit trail (`/atp history`)."
    )

    landed = Recovery(entry(Phase.SAVING), Verdict.SAVED, saved(timedelta(minutes=1)), False)
    text, blocks = interrupted_notice(landed, "U0ALICE", SETTINGS)
    assert text == (
        ":key: The password change of *svc* (`svc-atp@contoso.test`) started by <@U0ALICE> at 07:10 UTC "
        "was interrupted by a restart, but the new password had been saved (embedded store, 07:11 UTC). "
        "Defender for Identity gets it when it is saved in the portal too; the follow-up checks run once "
        "that is done. Recorded in the audit trail (`/atp history`)."
    )
    assert "[Done in the portal]" in render_message(text, blocks)
    ata = SETTINGS.model_copy(update={"store": ATA_STORE})
    assert interrupted_notice(landed, "U0ALICE", ata)[0].endswith(
        "(embedded store, 07:11 UTC). The follow-up checks run now. Recorded in the audit trail "
        "(`/atp history`)."
    )

    removed = Settings.model_validate(
        {"accounts": [{"id": "other", "username": "o@contoso.test", "domain_controllers": ["ldaps://dc1"]}]}
    )
    assert "change of *svc* started by" in interrupted_notice(not_saved, "U0ALICE", removed)[0]
