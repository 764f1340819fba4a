"""The baseline an approval checks (bot.change.baseline) where no DC answers and around the store's
`saved_at`: hermetic (a closed loopback port as the DC); the Samba cases are in test_approvals_stale."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from bot.audit import AuditTrail
from bot.change.baseline import Baseline, changed_since, take_baseline
from bot.config import AccountConfig, LockoutGuardConfig
from bot.directory import LookupGuard
from bot.directory.lockout import LockoutGuard
from bot.store import CredentialMetadata, CredentialStore
from tests.conftest import closed_port_url


@dataclass
class Trail:
    """The audit trail's latest save of the account."""

    latest: int | None = 5

    def last_save(self, account: str) -> int | None:
        return self.latest


@dataclass
class Store:
    """The store's metadata of the account."""

    saved_at: datetime | None = None

    def metadata(self, account_id: str) -> CredentialMetadata | None:
        if self.saved_at is None:
            return None
        return CredentialMetadata(account_id, self.saved_at, "cli:root", "embedded")


def account_with_dc_down(tmp_path: Path, *, lookup: bool = True) -> AccountConfig:
    fields: dict[str, object] = {
        "id": "svc",
        "username": "svc@corp.test",
        "domain_controllers": [closed_port_url()],
    }
    if lookup:
        secret = tmp_path / "lookup-password"
        secret.write_text("lookup-Pa55word\n")
        secret.chmod(0o600)
        fields |= {"lookup_username": "ro@corp.test", "lookup_password_file": str(secret)}
    return AccountConfig.model_validate(fields)


def lookups(tmp_path: Path) -> LookupGuard:
    """The lookup accounts' suspensions in a ledger of the test's own."""
    return LockoutGuard.at_path(tmp_path / "lockout-guard.sqlite", LockoutGuardConfig()).lookups


def check(
    account: AccountConfig, baseline: Baseline, trail: Trail, store: Store, tmp_path: Path
) -> str | None:
    return changed_since(
        account, cast(CredentialStore, store), cast(AuditTrail, trail), baseline, lookups(tmp_path)
    )


def test_unread_pwdlastset_is_told_to_the_approver_and_not_checked_again(tmp_path: Path) -> None:
    account = account_with_dc_down(tmp_path)
    baseline = take_baseline(account, cast(AuditTrail, Trail()), lookups(tmp_path))
    assert baseline.password_last_set is None and baseline.last_save == 5
    assert baseline.unchecked is not None
    assert "pwdLastSet could not be read (no domain controller answered" in baseline.unchecked
    assert check(account, baseline, Trail(), Store(), tmp_path) is None

    without = take_baseline(
        account_with_dc_down(tmp_path, lookup=False), cast(AuditTrail, Trail()), lookups(tmp_path)
    )
    assert without.unchecked is not None and "has no lookup account" in without.unchecked


def test_pwdlastset_that_cannot_be_read_at_approval_is_stale(tmp_path: Path) -> None:
    account = account_with_dc_down(tmp_path)
    baseline = Baseline(datetime.now(UTC), 5, 133_000_000_000_000_000)
    why = check(account, baseline, Trail(), Store(), tmp_path)
    assert why is not None and "could not confirm that the password was not changed in AD" in why


def test_only_a_store_save_later_than_the_test_is_stale(tmp_path: Path) -> None:
    """Another replica's ledger may hold an older save than the one seen at the test: that is no newer
    save (the shared audit trail catches saves made elsewhere)."""
    account = account_with_dc_down(tmp_path, lookup=False)
    tested = datetime.now(UTC)
    baseline = Baseline(tested, 5, None, "the account has no lookup account")
    assert check(account, baseline, Trail(), Store(tested - timedelta(days=3)), tmp_path) is None
    later = check(account, baseline, Trail(), Store(tested + timedelta(seconds=1)), tmp_path)
    assert later is not None and "store saved a password at" in later
    newer = check(account, baseline, Trail(latest=6), Store(), tmp_path)
    assert newer == "a newer password was saved meanwhile"
