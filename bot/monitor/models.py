"""What the monitor tells the operator: incidents, notices and reports, as JSON-serialisable values.

These are the boundary between the core and a notifier (Slack renders them as Block Kit, the plain-text
renderer for logs). They carry facts only, never text meant for display and never a secret.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bot.infra.messages import MessageRef as MessageRef  # part of the monitor's values
from bot.sensors import NOT_INSTALLED, SensorResult
from bot.sensors.credential_signatures import ErrorReason


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServiceState(_Value):
    name: str
    state: str  # Stopped, StartPending, … or "not installed"


class SensorIssue(_Value):
    """What one sensor contributes to an incident: credential errors seen so far, services not running."""

    sensor: str
    credential_errors: int = 0
    first_error: datetime | None = None
    last_error: datetime | None = None
    sample: str | None = None
    stopped_services: tuple[ServiceState, ...] = ()
    reason: ErrorReason = "password"  # of the latest credential errors


ActionKind = Literal["update_password", "recheck", "start_service"]


class IncidentAction(_Value):
    """A button the notifier offers; authorization is the notifier's job."""

    kind: ActionKind
    account_id: str | None  # None: the incident of sensors that name no account (the operator picks one)
    sensor: str | None = None
    service: str | None = None


class Incident(_Value):
    """Credential trouble of one account: one alert, updated while it lasts, closed when a cycle is clean.
    Defender for Identity's credential health issues have alerts of their own (CredentialIssueAlert)."""

    # A stored incident is read back by whichever version runs next: a field it does not know is ignored.
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    # None: sensors that name no account while several are configured; they get one incident of their
    # own rather than one identical incident per account.
    account_id: str | None
    opened_at: datetime
    updated_at: datetime
    sensors: tuple[SensorIssue, ...] = ()
    closed_at: datetime | None = None
    # For a gMSA account whose sensors log gMSA failures: what `gmsa check` says about them.
    gmsa_verdict: str | None = None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    @property
    def first_seen(self) -> datetime:
        firsts = [s.first_error for s in self.sensors if s.first_error is not None]
        return min([*firsts, self.opened_at])

    @property
    def credential_errors(self) -> int:
        return sum(s.credential_errors for s in self.sensors)

    @property
    def sample(self) -> str | None:
        return next((s.sample for s in self.sensors if s.sample), None)

    @property
    def about_credentials(self) -> bool:
        """Something points at the credential (errors, a gMSA verdict); False when the only trouble is
        sensor services not running."""
        return bool(self.credential_errors or self.gmsa_verdict)

    @property
    def actions(self) -> tuple[IncidentAction, ...]:
        actions = [IncidentAction(kind="recheck", account_id=self.account_id)]
        if self.gmsa_verdict is None:  # a gMSA's password is AD's to change
            actions.insert(0, IncidentAction(kind="update_password", account_id=self.account_id))
        actions += [
            IncidentAction(
                kind="start_service", account_id=self.account_id, sensor=s.sensor, service=svc.name
            )
            for s in self.sensors
            for svc in s.stopped_services
            if svc.state != NOT_INSTALLED
        ]
        return tuple(actions)


class ReachabilityNotice(_Value):
    """A sensor could not be reached for `failures` cycles in a row (or, `reachable`, is back)."""

    sensor: str
    account_id: str | None
    reachable: bool
    failures: int
    since: datetime
    at: datetime
    detail: str | None = None
    access_denied: bool = False  # it answered, and refused atp-bot's WinRM credential


class SensorHealthNotice(_Value):
    """A sensor's own health, as Defender for Identity (Graph) and, for a unified sensor, its host report
    it: new `problems` (each alerted once), or `recovered` when none is left."""

    sensor: str
    account_id: str | None
    problems: tuple[str, ...]  # Graph's values as Graph spells them, e.g. "deploymentStatus startFailure"
    recovered: bool = False
    at: datetime


class DsaRemovableNotice(_Value):
    """A directory service account became removable: every sensor of its domains is unified (sent once)."""

    account_id: str
    domains: tuple[str, ...]
    unified_sensors: tuple[str, ...]
    at: datetime


class SensorSummary(_Value):
    """One sensor's answer to a check, as facts."""

    name: str
    reachable: bool
    healthy: bool
    problems: tuple[str, ...] = ()
    credential_errors: int | None = None
    services: dict[str, str] = {}
    error: str | None = None

    @classmethod
    def of(cls, result: SensorResult) -> SensorSummary:
        errors = result.credential_errors
        return cls(
            name=result.name,
            reachable=result.reachable,
            healthy=result.healthy,
            problems=tuple(result.problems),
            credential_errors=errors.count if errors else None,
            services={s.name: s.state for s in result.services},
            error=f"{result.failure.kind}: {result.failure.detail}" if result.failure else None,
        )


class RecheckReport(_Value):
    """A scheduled follow-up check of an account's sensors, `delay_minutes` after a password change."""

    account_id: str
    changed_at: datetime
    delay_minutes: int
    checked_at: datetime
    sensors: tuple[SensorSummary, ...]

    @property
    def healthy(self) -> bool:
        return all(s.healthy for s in self.sensors)


class HealthIssueNotice(_Value):
    """What became of a DSA health issue after a change: closed by MDI at `closed_at`, or still open."""

    account_id: str
    display_name: str
    changed_at: datetime
    closed_at: datetime | None = None
    still_open_minutes: int | None = None

    @classmethod
    def closed(cls, account_id: str, name: str, changed_at: datetime, at: datetime) -> HealthIssueNotice:
        return cls(account_id=account_id, display_name=name, changed_at=changed_at, closed_at=at)

    @classmethod
    def still_open(
        cls, account_id: str, name: str, changed_at: datetime, after: timedelta
    ) -> HealthIssueNotice:
        minutes = int(after.total_seconds() // 60)
        return cls(
            account_id=account_id, display_name=name, changed_at=changed_at, still_open_minutes=minutes
        )

    def text(self) -> str:
        """E.g. "MDI closed 'Directory services user credentials are incorrect' at 14:32, 9 min after the
        change" (times in UTC)."""
        if self.closed_at is not None:
            minutes = max(0, int((self.closed_at - self.changed_at).total_seconds() // 60))
            at = f"{self.closed_at:%H:%M} UTC"
            return f"MDI closed '{self.display_name}' at {at}, {minutes} min after the change"
        return f"'{self.display_name}' is still open {self.still_open_minutes} min after the change"


class PortalNotice(_Value):
    """A saved password's portal step (bot.change.portal): still pending after the reminder delay, or
    Defender for Identity seen using the new password (`confirmed_at`, with what showed it)."""

    account_id: str
    username: str
    saved_at: datetime
    confirmed_at: datetime | None = None
    evidence: str | None = None  # Graph's words (untrusted text: renderers escape it)


class ExpiryWarning(_Value):
    account_id: str
    expires_at: datetime
    days_left: int
    threshold: int  # the smallest warning threshold (days) this warning crossed


class DriftNotice(_Value):
    """The account's password drifted in AD (new findings, sent once each), or it is in sync again."""

    account_id: str
    findings: tuple[str, ...]
    recovered: bool = False


class LookupSuspensionNotice(_Value):
    """AD refused a lookup account's password: atp-bot binds with it no more until `until` or until its
    password source changes (sent once per suspension)."""

    lookup_account: str
    accounts: tuple[str, ...]  # the accounts read with it
    dc: str
    detail: str  # AD's reason, decoded
    until: datetime


class AuditHeadNotice(_Value):
    """The audit chain as verified at `verified_at`: its head is an anchor kept outside the database."""

    verified_at: datetime
    intact: bool
    rows: int
    head: str | None = None  # "ID:HASH", for `atp-bot audit verify --anchor`
    keyed: bool = False
    problem: str | None = None  # why it did not verify: the broken row or head, or why it could not be read
    anchor_problem: str | None = None  # [audit] anchor_command failing: heads that have not reached it


class ServiceStartReport(_Value):
    """The outcome of the *Start service* action."""

    sensor: str
    service: str
    actor: str
    ok: bool
    before: str | None = None
    after: str | None = None
    message: str


class CredentialIssueAlert(_Value):
    """One open Defender for Identity credential health issue (by its Graph id): one alert for the directory
    service accounts of the domains it names, whichever sensors it names (unified ones included)."""

    issue_id: str
    display_name: str
    issue_type: str | None = None  # healthIssueType: "global" or "sensor"
    domains: tuple[str, ...] = ()
    sensors: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()  # user accounts: their password can be updated
    gmsa_accounts: tuple[str, ...] = ()  # AD rotates their password: `atp-bot gmsa check` instead
    opened_at: datetime
    closed_at: datetime | None = None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    @property
    def actions(self) -> tuple[IncidentAction, ...]:
        return tuple(IncidentAction(kind="update_password", account_id=a) for a in self.accounts)
