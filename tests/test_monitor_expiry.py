"""Password expiry warnings against the real Samba AD DC (lab passwords expire 42 days after being set)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.directory import AccountLocks, read_password_expiry
from bot.monitor.context import MonitorContext
from bot.monitor.expiry import due_warning, run_expiry_check
from bot.monitor.models import ExpiryWarning
from lab.domain import LabDomain, new_password
from lab.samba import LabUser
from tests.conftest import CANARY, assert_no_canary
from tests.monitor_tools import (
    Clock,
    RecordingNotifier,
    alert_rows,
    day_edge_now,
    make_runtime,
    monitor_settings,
    toml_str,
)

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def test_due_warning_fires_each_threshold_once() -> None:
    expires = NOW + timedelta(days=10, hours=3)
    warning, crossed = due_warning("svc", expires, NOW, [14, 7, 3, 1], set())
    assert warning == ExpiryWarning(account_id="svc", expires_at=expires, days_left=10, threshold=14)
    assert crossed == {14}
    assert due_warning("svc", expires, NOW, [14, 7, 3, 1], {14}) == (None, {14})
    late, crossed = due_warning("svc", expires, NOW + timedelta(days=9), [14, 7, 3, 1], {14})
    assert late is not None and (late.threshold, late.days_left) == (3, 1)  # 7 was slept through: one warning
    assert crossed == {14, 7, 3}
    expired, _ = due_warning("svc", expires, expires + timedelta(hours=1), [14], set())
    assert expired is not None and expired.days_left == -1


def expiry_runtime(
    tmp_path: Path,
    lab: LabDomain,
    user: LabUser,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    *,
    lookup: bool,
) -> tuple[MonitorContext, RecordingNotifier]:
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    account = (
        f'[[accounts]]\nid = "svc"\nusername = "{user.upn}"\n'
        f"domain_controllers = [{toml_str(lab.dc.ldaps_url)}]\nca_file = {toml_str(lab.dc.ca_file)}\n"
    )
    if lookup:
        secret = tmp_path / "lookup.password"
        secret.write_text(lab.users["lookup"].password)
        account += (
            f'lookup_username = "{lab.users["lookup"].upn}"\nlookup_password_file = {toml_str(secret)}\n'
        )
    notifier = RecordingNotifier()
    return make_runtime(monitor_settings(tmp_path, None, account=account), notifier, clock), notifier


@pytest.mark.samba
def test_lookup_account_warnings_fire_once_per_threshold_and_reset_after_a_change(
    lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    runtime, notifier = expiry_runtime(tmp_path, lab_domain, fresh_user, clock, monkeypatch, lookup=True)
    expires = read_password_expiry(runtime.settings.account("svc"), lookups=runtime.changes.guard.lookups).at
    assert expires is not None
    assert timedelta(days=41) < expires - datetime.now(UTC) <= timedelta(days=42)

    clock.now = expires - timedelta(days=20)
    assert run_expiry_check(runtime) == []
    clock.now = expires - timedelta(days=13, hours=12)
    (first,) = run_expiry_check(runtime)
    assert (first.threshold, first.days_left, first.expires_at) == (14, 13, expires)
    clock.now += timedelta(days=1)
    assert run_expiry_check(runtime) == []  # 14 fired already, 7 not reached
    clock.now = expires - timedelta(days=2, hours=12)
    (second,) = run_expiry_check(runtime)
    assert (second.threshold, second.days_left) == (3, 2)

    lab_domain.dc.set_password(fresh_user.name, new_password())  # changed in AD: a new expiry date
    clock.now += timedelta(days=1)
    (third,) = run_expiry_check(runtime)
    assert third.expires_at > expires and third.threshold == 3  # thresholds start over for the new date
    assert notifier.of("post_expiry_warning") == [first, second, third]
    assert [r[1] for r in alert_rows(runtime)] == ["password_expiry"] * 3
    assert lab_domain.dc.user_state(fresh_user.name)["badPwdCount"] == 0
    assert not [r for r in runtime.changes.audit.recent() if r.action == "test"]  # never bound as the account


@pytest.mark.samba
def test_a_password_that_never_expires_gives_no_warning(
    lab_domain: LabDomain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    user = lab_domain.users["noexpiry"]
    runtime, notifier = expiry_runtime(tmp_path, lab_domain, user, clock, monkeypatch, lookup=True)
    assert read_password_expiry(runtime.settings.account("svc"), lookups=runtime.changes.guard.lookups).never
    assert run_expiry_check(runtime) == []
    assert notifier.calls == []


@pytest.mark.samba
@pytest.mark.clock
def test_without_a_lookup_account_the_saved_credential_binds_once_a_day(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    canary_logs: pytest.LogCaptureFixture,
) -> None:
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    clock = Clock(day_edge_now() + timedelta(days=30))
    runtime, notifier = expiry_runtime(tmp_path, lab_domain, fresh_user, clock, monkeypatch, lookup=False)
    runtime.changes.store.save("svc", SecretStr(CANARY), "cli:test")

    with AccountLocks(runtime.changes.state_dir).hold("svc"):  # a change in flight: postponed, nothing sent
        assert run_expiry_check(runtime) == []
    (warning,) = run_expiry_check(runtime)
    assert (warning.threshold, warning.days_left) == (14, 11)
    clock.now = clock.now.replace(hour=23, minute=59, second=59)  # later the same UTC day, at any hour
    assert run_expiry_check(runtime) == []
    tests = [r for r in runtime.changes.audit.recent() if r.action == "test"]
    assert [(r.actor, r.outcome) for r in tests] == [("atp-bot:monitor", "ok")]  # one bind that day
    assert notifier.names() == ["post_expiry_warning"]
    assert_no_canary(canary_logs, repr(notifier.calls))
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file() and path.name != "credentials.sqlite":
            assert CANARY.encode() not in path.read_bytes(), path
