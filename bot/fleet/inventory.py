"""The sensor fleet: Graph's sensors merged with `[[sensors]]` (`bot.fleet.merge`), each with its
generation and a verdict.

The generation comes from Graph's `version` (2.x: the classic sensor, which uses the directory service
account; 3.x: the unified sensor, which does not), else from what the host showed over WinRM, else it
is `unknown`: never guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bot.config import AccountConfig, SensorConfig, Settings
from bot.fleet.merge import FleetMember, Source, merge_fleet
from bot.graph import GraphError, GraphSensor, GraphSensorSource
from bot.infra.exitcodes import ExitCode
from bot.sensors import SensorChecker, SensorResult, check_sensors

log = logging.getLogger(__name__)

Generation = Literal["2", "3", "unknown"]
Verdict = Literal["healthy", "attention", "unknown"]

HEALTHY_DEPLOYMENT = frozenset({"upToDate", "updating", "syncing"})
VERDICT_ORDER: dict[str, int] = {"attention": 0, "unknown": 1, "healthy": 2}


class SensorRow(BaseModel):
    """One line of `atp-bot sensors` (and `--json` object); Graph's enum values as Graph spells them."""

    model_config = ConfigDict(frozen=True)

    name: str
    dns_name: str | None
    domain: str | None
    source: Source
    sensor_type: str | None
    version: str | None
    generation: Generation
    uses_dsa: bool | None
    health_status: str | None
    deployment_status: str | None
    open_health_issues: list[str]
    winrm: bool
    verdict: Verdict
    problems: list[str]


@dataclass(frozen=True)
class HostView:
    """What a WinRM check of the sensor's host showed, reduced to what the inventory needs."""

    unreachable: str | None  # why the host could not be checked; None when it was
    generation: Generation
    problems: tuple[str, ...]


def generation_of(version: str | None) -> Generation:
    """2.x is the classic sensor, 3.x the unified one; anything else is not guessed."""
    major = (version or "").split(".")[0]
    if major == "2":
        return "2"
    return "3" if major == "3" else "unknown"


def uses_dsa(generation: Generation) -> bool | None:
    """The classic sensor uses the directory service account; the unified one runs as LocalSystem."""
    return {"2": True, "3": False}.get(generation)


def graph_problems(sensor: GraphSensor) -> list[str]:
    """What Graph says is wrong with a sensor (its enum values as Graph spells them)."""
    found = []
    if sensor.health_status != "healthy":
        found.append(f"health {sensor.health_status or 'not reported'}")
    if sensor.deployment_status not in HEALTHY_DEPLOYMENT:
        found.append(f"deployment {sensor.deployment_status or 'not reported'}")
    found += [f"open health issue: {name}" for name in sensor.open_health_issues]
    if sensor.open_issues_count and not sensor.open_health_issues:
        found.append(f"{sensor.open_issues_count} open health issue(s)")
    return found


def _verdict(member: FleetMember, host: HostView | None, problems: Sequence[str]) -> Verdict:
    if problems:
        return "attention"
    if host is not None and host.unreachable is not None:
        return "unknown"
    return "unknown" if member.graph is None and host is None else "healthy"


def member_generation(member: FleetMember, host: Generation = "unknown") -> Generation:
    """Graph's version tells the generation; else what the host showed over WinRM."""
    generation = generation_of(member.graph.version if member.graph else None)
    return host if generation == "unknown" else generation


def build_row(member: FleetMember, host: HostView | None = None) -> SensorRow:
    """The row of one sensor: generation, whether it uses the DSA, and its verdict."""
    graph = member.graph
    generation = member_generation(member, host.generation if host else "unknown")
    problems = [*(graph_problems(graph) if graph is not None else []), *member.problems]
    if host is not None:
        problems += host.problems
    notes = []
    if host is not None and host.unreachable is not None:
        notes.append(f"WinRM check failed: {host.unreachable}")
    elif graph is None and host is None:
        notes.append("not in Graph and not checked over WinRM")
    return SensorRow(
        name=member.name,
        dns_name=member.dns_name,
        domain=member.domain,
        source=member.source,
        sensor_type=graph.sensor_type if graph else None,
        version=graph.version if graph else None,
        generation=generation,
        uses_dsa=uses_dsa(generation),
        health_status=graph.health_status if graph else None,
        deployment_status=graph.deployment_status if graph else None,
        open_health_issues=list(graph.open_health_issues) if graph else [],
        winrm=member.winrm,
        verdict=_verdict(member, host, problems),
        problems=[*problems, *notes],
    )


def host_view(result: SensorResult, graph: GraphSensor | None) -> HostView:
    """A WinRM result seen in the light of Graph: a unified sensor is checked for its process only."""
    if result.access_denied and result.failure is not None:  # it answered: a problem, not an outage
        return HostView(
            None, "unknown", (f"the host refused atp-bot's WinRM credential: {result.failure.detail}",)
        )
    if result.failure is not None:
        return HostView(f"{result.failure.kind}: {result.failure.detail}", "unknown", ())
    if generation_of(graph.version if graph else None) == "3":
        missing = () if result.sense_identity else ("the SenseIdentity process is not running",)
        return HostView(None, "3", missing)
    return HostView(None, result.generation, tuple(result.problems))


def winrm_sensors(settings: Settings, members: Sequence[FleetMember]) -> list[SensorConfig]:
    """The members checked over WinRM: those with a `[[sensors]]` entry (in its order), then each
    Graph-only one that `endpoint_template` gives an endpoint. `check`, `sensors` and the monitor check
    these."""
    configured = {m.config.name for m in members if m.config is not None}  # `[[sensors]]` names are unique
    discovered = [m.discovered for m in members if m.discovered is not None]
    return [*(s for s in settings.sensors if s.name in configured), *discovered]


def checked_fleet(settings: Settings, members: Sequence[FleetMember]) -> Settings:
    """`settings` whose `sensors` are the fleet's WinRM-checked sensors (`winrm_sensors`)."""
    return settings.model_copy(update={"sensors": winrm_sensors(settings, members)})


def check_hosts(
    settings: Settings, members: Sequence[FleetMember], checker: SensorChecker = check_sensors
) -> dict[str, HostView]:
    """WinRM checks of every member that has them (a `[[sensors]]` entry or `endpoint_template`), by
    `checker` (the bot's: its check worker processes)."""
    checked = checked_fleet(settings, members)
    if not checked.sensors:
        return {}
    graph_of = {m.name: m.graph for m in members}
    results = checker(checked)
    return {r.name: host_view(r, graph_of.get(r.name)) for r in results}


def rows_for_results(
    settings: Settings, results: Sequence[SensorResult], graph: Sequence[GraphSensor]
) -> list[SensorRow]:
    """`atp-bot check` with Graph: each WinRM result beside what Graph says of the same sensor."""
    members = {m.name: m for m in merge_fleet(settings, graph) if m.winrm}
    return [build_row(members[r.name], host_view(r, members[r.name].graph)) for r in results]


def unchecked_rows(settings: Settings, graph: Sequence[GraphSensor]) -> list[SensorRow]:
    """The fleet's sensors that no WinRM check reaches (Graph's, without an endpoint), on Graph's word:
    `check` counts them as `sensors` does, so that both give one exit code for one fleet."""
    return [build_row(m) for m in merge_fleet(settings, graph) if not m.winrm]


def graph_notes(settings: Settings, names: Sequence[str], graph: Sequence[GraphSensor]) -> list[str]:
    """`/atp status` with Graph: one line per checked sensor that Graph reports a problem for, or knows as
    a unified sensor."""
    wanted = set(names)
    notes = []
    for member in merge_fleet(settings, graph):
        if member.graph is None or member.name not in wanted:
            continue
        if generation_of(member.graph.version) == "3":
            notes.append(f"{member.name}: unified sensor (Graph): does not use the directory service account")
        if problems := graph_problems(member.graph):
            notes.append(f"{member.name}: Graph: {'; '.join(problems)}")
    return notes


def build_rows(
    members: Sequence[FleetMember], hosts: Mapping[str, HostView] | None = None
) -> list[SensorRow]:
    hosts = hosts or {}
    return [build_row(m, hosts.get(m.name)) for m in members]


class GraphFleet:
    """Graph's sensors when `[graph] discover_sensors` is on (one cached source per configuration)."""

    def __init__(self, settings: Settings, *, cache_seconds: float = 60.0) -> None:
        self._source = (
            GraphSensorSource(settings.graph, cache_seconds=cache_seconds)
            if settings.graph.discover_sensors
            else None
        )

    def sensors(self) -> tuple[tuple[GraphSensor, ...], str | None]:
        """The sensors, or none and why Graph could not be used (the caller still has `[[sensors]]`)."""
        if self._source is None:
            return (), None
        try:
            return self._source.sensors(), None
        except GraphError as exc:
            log.warning("graph: sensor inventory unavailable: %s", exc)
            return (), str(exc)


@dataclass(frozen=True)
class AccountSensors:
    """The sensors a change of one account concerns."""

    settings: Settings  # its `sensors` are the ones to check over WinRM (discovered ones included)
    names: tuple[str, ...]
    not_using_dsa: tuple[str, ...]  # unified sensors in the account's domains: listed, never counted


def _serves(member: FleetMember, account: AccountConfig) -> bool:
    """A sensor naming an account serves it; one naming none serves the accounts of its domain (every
    account when its domain cannot be told, as before discovery)."""
    if member.config is not None and member.config.account is not None:
        return member.config.account == account.id
    domains = account.dns_domains
    if member.domain is not None and domains:
        return member.domain in domains
    return member.config is not None


def account_members(
    settings: Settings, account: AccountConfig, graph: Sequence[GraphSensor]
) -> list[FleetMember]:
    """The fleet's sensors that serve the account: Graph's (of its domains) and its `[[sensors]]`."""
    return [m for m in merge_fleet(settings, graph) if _serves(m, account)]


def account_sensors(settings: Settings, account_id: str, graph: Sequence[GraphSensor]) -> AccountSensors:
    account = settings.account(account_id)
    to_check: list[SensorConfig] = []
    unified: list[str] = []
    for member in account_members(settings, account, graph):
        if member.graph is not None and generation_of(member.graph.version) == "3":
            unified.append(member.name)
        elif (config := member.winrm_config) is not None:
            to_check.append(config)
    return AccountSensors(
        settings.model_copy(update={"sensors": to_check}), tuple(c.name for c in to_check), tuple(unified)
    )


def fleet_exit_code(rows: Sequence[SensorRow], graph_error: str | None) -> ExitCode:
    """1 if a sensor needs attention (even if Graph or another sensor could not be used: a script looking
    for 1 must not miss a problem), else 3 if Graph or a sensor could not be used, else 0."""
    if any(r.verdict == "attention" for r in rows):
        return ExitCode.PROBLEM
    if graph_error is not None or any(r.verdict == "unknown" for r in rows):
        return ExitCode.UNREACHABLE
    return ExitCode.OK


def graph_unread(graph_error: str) -> str:
    """The line each face shows when Graph's sensor list could not be read: the configured `[[sensors]]`
    are checked all the same."""
    return f"Graph's sensor list could not be read ({graph_error}); the configured [[sensors]] are checked"


def in_domain(member: FleetMember, domain: str) -> bool:
    """`--domain D`: the sensor's domain is D (case-insensitive)."""
    return (member.domain or "").rstrip(".") == domain.lower().rstrip(".")


def unhealthy_first(rows: Sequence[SensorRow]) -> list[SensorRow]:
    return sorted(rows, key=lambda r: (VERDICT_ORDER[r.verdict], r.name.lower()))
