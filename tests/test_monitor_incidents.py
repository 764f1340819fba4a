"""The incident rules as pure functions: what one cycle's observation does to an account's incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.config import parse_settings
from bot.graph import HealthIssue
from bot.monitor.cycle import AccountObservation, alert_groups, assign_health, next_incident
from bot.monitor.models import Incident, SensorIssue, ServiceState
from bot.monitor.render import incident_story

T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
ORDER = ["s1", "s2"]


def seen(
    issues: dict[str, SensorIssue] | None = None,
    clean: set[str] | None = None,
    *,
    answered: bool = True,
    health: tuple[HealthIssue, ...] | None = (),
) -> AccountObservation:
    return AccountObservation(issues or {}, frozenset(clean or set()), answered, health)


def errors(sensor: str, count: int, at: datetime, sample: str = "line") -> SensorIssue:
    return SensorIssue(sensor=sensor, credential_errors=count, first_error=at, last_error=at, sample=sample)


def test_errors_accumulate_and_a_restarted_service_is_dropped() -> None:
    stopped = (ServiceState(name="AATPSensor", state="Stopped"),)
    first = next_incident(
        "svc",
        None,
        seen({"s1": errors("s1", 2, T0), "s2": SensorIssue(sensor="s2", stopped_services=stopped)}),
        T0,
        ORDER,
    )
    assert first is not None and first.first_seen == T0
    later = T0 + timedelta(minutes=5)
    second = next_incident("svc", first, seen({"s1": errors("s1", 1, later, "new")}, {"s2"}), later, ORDER)
    assert second is not None and second.id == first.id and not second.closed
    s1, s2 = second.sensors
    assert (s1.credential_errors, s1.first_error, s1.last_error, s1.sample) == (3, T0, later, "new")
    assert s2.stopped_services == ()
    assert second.updated_at == later and second.opened_at == T0


def test_an_unchanged_incident_is_returned_as_is() -> None:
    stopped = SensorIssue(sensor="s1", stopped_services=(ServiceState(name="AATPSensor", state="Stopped"),))
    first = next_incident("svc", None, seen({"s1": stopped}, {"s2"}), T0, ORDER)
    assert (
        next_incident("svc", first, seen({"s1": stopped}, {"s2"}), T0 + timedelta(minutes=5), ORDER) is first
    )


def test_a_closed_incident_still_waiting_for_delivery_reopens_on_new_errors() -> None:
    first = next_incident("svc", None, seen({"s1": errors("s1", 1, T0)}), T0, ORDER)
    assert first is not None
    closed = next_incident("svc", first, seen(clean={"s1", "s2"}), T0 + timedelta(minutes=5), ORDER)
    assert closed is not None and closed.closed
    assert next_incident("svc", closed, seen(clean={"s1", "s2"}), T0 + timedelta(minutes=10), ORDER) is closed
    reopened = next_incident(
        "svc", closed, seen({"s2": errors("s2", 4, T0)}), T0 + timedelta(minutes=15), ORDER
    )
    assert reopened is not None and reopened.id == first.id and not reopened.closed
    assert [s.credential_errors for s in reopened.sensors] == [1, 4]


def test_no_close_without_a_full_answer() -> None:
    first = next_incident("svc", None, seen({"s1": errors("s1", 1, T0)}), T0, ORDER)
    assert first is not None
    assert next_incident("svc", first, seen(clean={"s1"}, answered=False), T0, ORDER) is first
    assert next_incident("svc", first, seen(clean={"s1", "s2"}, health=None), T0, ORDER) is first
    assert next_incident("svc", None, seen(clean={"s1", "s2"}), T0, ORDER) is None


def test_health_issues_go_to_the_account_of_their_domain() -> None:
    settings = parse_settings(
        '[[accounts]]\nid = "corp"\nusername = "svc@corp.test"\ndomain_controllers = ["ldaps://dc"]\n'
        '[[accounts]]\nid = "lab"\nusername = "LAB\\\\svc"\ndomain_controllers = ["ldaps://dc"]\n'
    )
    ours = HealthIssue(id="b", display_name="x", status="open", sensors=("dc1.corp.test",))
    nobody = HealthIssue(id="a", display_name="y", status="open", domains=("elsewhere.test",))
    found = assign_health(settings.accounts, [ours, nobody])
    assert found == {"corp": (nobody, ours), "lab": (nobody,)}
    incident = Incident(id="i", account_id="corp", opened_at=T0, updated_at=T0, health_issues=found["corp"])
    assert incident.first_seen == T0 and incident.sample is None


def accounts_toml(*ids: str) -> str:
    return "".join(
        f'[[accounts]]\nid = "{i}"\nusername = "svc@{i}.test"\ndomain_controllers = ["ldaps://dc"]\n'
        for i in ids
    )


SENSORS = (
    '[[sensors]]\nname = "s1"\nendpoint = "http://s1"\n[[sensors]]\nname = "s2"\nendpoint = "http://s2"\n'
)


def test_each_sensor_is_in_exactly_one_incident() -> None:
    """A sensor without `account` belongs to every account: with one account it is that account's; with
    several it has one incident of its own (None), never one identical incident per account."""
    one = parse_settings(accounts_toml("svc") + SENSORS + 'account = "svc"\n')
    assert alert_groups(one) == {"svc": ["s1", "s2"]}
    several = parse_settings(accounts_toml("a1", "a2", "a3") + SENSORS + 'account = "a2"\n')
    assert alert_groups(several) == {"a1": [], "a2": ["s2"], "a3": [], None: ["s1"]}
    assigned = parse_settings(
        accounts_toml("a1", "a2")
        + SENSORS.replace('"http://s1"\n', '"http://s1"\naccount = "a1"\n')
        + 'account = "a2"\n'
    )
    assert alert_groups(assigned, [None, "a1"]) == {"a1": ["s1"], "a2": ["s2"], None: []}  # left to close


def test_a_closed_incident_tells_its_whole_story() -> None:
    """Its one message when it closed before its alert could be posted: what, how many, when, clean since."""
    errors_a = errors("s1", 2, T0).model_copy(update={"last_error": T0 + timedelta(minutes=4)})
    service = SensorIssue(sensor="s2", stopped_services=(ServiceState(name="AATPSensor", state="Stopped"),))
    opened = Incident(id="i", account_id="svc", opened_at=T0, updated_at=T0, sensors=(errors_a, service))
    closed = next_incident("svc", opened, seen(clean={"s1", "s2"}), T0 + timedelta(minutes=5), ORDER)
    assert closed is not None and closed.closed
    assert incident_story(closed) == (
        "2 credential error(s) on s1 from 2026-11-25 06:00 UTC to 2026-11-25 06:04 UTC, "
        "a service not running on s2; clean since 2026-11-25 06:05 UTC"
    )
    health_only = Incident(id="h", account_id="svc", opened_at=T0, updated_at=T0, closed_at=T0)
    assert (
        incident_story(health_only)
        == "problems first seen 2026-11-25 06:00 UTC; clean since 2026-11-25 06:00 UTC"
    )
