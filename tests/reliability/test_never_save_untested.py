"""Property: whatever the connection test answers and whatever the store does, a password is saved only
after a passed test, the outcome says so truthfully, and every step is in the audit trail."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bot.audit import open_audit
from bot.change import ChangeStatus, PasswordChanges
from bot.config import Settings
from bot.directory import ConnectionTestResult, Outcome, Reason
from bot.store import BackendName, CredentialMetadata, StoreError

REASONS = {
    Outcome.PASSED: [None],
    Outcome.REJECTED: [Reason.WRONG_PASSWORD, Reason.ACCOUNT_LOCKED, Reason.ACCOUNT_DISABLED],
    Outcome.REFUSED: [Reason.GUARD_LIMIT, Reason.GUARD_UNAVAILABLE, Reason.NEAR_LOCKOUT],
    Outcome.UNREACHABLE: [Reason.DC_UNREACHABLE, Reason.TLS_ERROR, Reason.NO_ANSWER],
}

results = st.sampled_from(list(Outcome)).flatmap(
    lambda outcome: st.builds(
        ConnectionTestResult,
        account_id=st.just("svc"),
        outcome=st.just(outcome),
        message=st.text(max_size=40),
        reason=st.sampled_from(REASONS[outcome]),
        dc=st.sampled_from([None, "ldaps://dc1:636"]),
    )
)
store_failures = st.sampled_from([None, "unreachable", "auth", "timeout", "io", "exit-status"])


class ScriptedStore:
    """A store that succeeds or fails as the property says, recording what it was asked to save."""

    backend: BackendName = "command"

    def __init__(self, failure: str | None) -> None:
        self.failure = failure
        self.saved: list[str] = []

    def save(self, account_id: str, password: SecretStr, actor: str) -> CredentialMetadata:
        if self.failure:
            raise StoreError(f"scripted failure: {self.failure}", self.failure)  # type: ignore[arg-type]
        self.saved.append(password.get_secret_value())
        return CredentialMetadata(account_id, datetime.now(UTC), actor, self.backend)

    def read(self, account_id: str) -> SecretStr | None:
        return None

    def metadata(self, account_id: str) -> CredentialMetadata | None:
        return None


@settings(max_examples=150, deadline=None)
@given(result=results, failure=store_failures, password=st.text(max_size=30).map(lambda s: "Secret-" + s))
def test_never_save_untested(result: ConnectionTestResult, failure: str | None, password: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Settings.model_validate(
            {
                "state_dir": tmp,
                "accounts": [
                    {"id": "svc", "username": "svc@contoso.test", "domain_controllers": ["ldaps://dc1"]}
                ],
            }
        )
        store = ScriptedStore(failure)
        audit = open_audit(config)
        changes = PasswordChanges(
            config, state_dir=Path(tmp), store=store, audit=audit, tester=lambda *a, **k: result
        )
        outcome = changes.change("svc", SecretStr(password), "cli:property")

        assert (store.saved == [password]) == (result.passed and failure is None)
        if not result.passed:
            assert store.saved == []
            assert outcome.status is ChangeStatus.TEST_FAILED
            assert outcome.saved is None
        elif failure:
            assert outcome.status is ChangeStatus.SAVE_FAILED
            assert outcome.message.startswith("Tested OK but NOT saved")
            assert outcome.error_reason == failure
        else:
            assert outcome.status is ChangeStatus.SAVED
            assert outcome.saved is not None
        rows = [(r.action, r.outcome) for r in reversed(audit.recent("svc"))]
        expected_test = {"passed": "ok", "rejected": "failed", "refused": "refused", "unreachable": "error"}
        assert rows[0] == ("test", expected_test[result.outcome])
        assert rows[1:] == ([] if not result.passed else [("save", "error" if failure else "ok")])
        for row in audit.recent("svc"):
            assert password not in f"{row.actor} {row.reason} {row.detail}"
