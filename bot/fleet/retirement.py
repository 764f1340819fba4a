"""Whether each directory service account can be retired: the classic (2.x) sensors that still use it,
the unified (3.x) sensors of its domains, and a verdict.

Only the classic sensor uses a DSA; the unified one runs as LocalSystem. MDI still validates the
workspace's DSA on every sensor while one is configured, so once no classic sensor is left the DSA
should go. The verdict is never guessed: `needed` when a classic sensor uses it, `removable` when every
sensor of its domains is unified (at least one), `unknown` otherwise (Graph unreadable or not used, or a
sensor whose generation Graph does not tell). Without Graph the fleet is `[[sensors]]` only, whose
generation is not known without a WinRM look: `unknown`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bot.config import AccountConfig, Settings
from bot.fleet.inventory import account_members, member_generation
from bot.fleet.merge import FleetMember, merge_fleet
from bot.graph import GraphSensor

RetirementVerdict = Literal["needed", "removable", "unknown"]

# Graph's `sensorType` as the kind of server it runs on; a value Graph adds later is shown as it is.
SERVER_ROLES = {
    "domainControllerIntegrated": "domain controller",
    "domainControllerStandalone": "domain controller",
    "adfsIntegrated": "AD FS server",
    "adcsIntegrated": "AD CS server",
    "adConnectIntegrated": "Entra Connect server",
}
REMOVAL_STEP = (
    "Remove it under Settings > Identities > Directory service accounts in the Defender portal, "
    "then disable the AD account."
)


class DsaStatus(BaseModel):
    """One account's line of `atp-bot dsa status` (and `--json` object) and of `/atp dsa`."""

    model_config = ConfigDict(frozen=True)

    account: str
    domains: list[str]
    classic_sensors: list[str]
    unified_sensors: list[str]
    verdict: RetirementVerdict
    next_step: str


def server_role(member: FleetMember) -> str:
    sensor_type = member.graph.sensor_type if member.graph is not None else None
    if sensor_type is None:
        return "server of unknown type"
    return SERVER_ROLES.get(sensor_type, sensor_type)


def _listing(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _blockers(classic: Sequence[FleetMember]) -> str:
    """ "domain controllers DC1 and DC2, AD FS server ADFS1": the servers grouped by role."""
    roles: dict[str, list[str]] = {}
    for member in classic:
        roles.setdefault(server_role(member), []).append(member.name)
    return ", ".join(
        f"{role}{'s' if len(names) > 1 else ''} {_listing(names)}" for role, names in roles.items()
    )


def _needed_step(classic: Sequence[FleetMember]) -> str:
    return (
        f"The classic sensor (v2) on the {_blockers(classic)} still uses it: migrate domain controllers "
        "on Windows Server 2019 or later to the unified sensor (v3) under Settings > Identities > Sensor "
        "management > Migrate, while Windows Server 2016 domain controllers and AD FS, AD CS and Entra "
        "Connect servers still need v2; remove the account once none is left."
    )


def _unknown_step(graph_error: str | None, graph_used: bool, undetermined: Sequence[str]) -> str:
    if not graph_used:
        return (
            "Set [graph] discover_sensors = true: without Graph the generation of the [[sensors]] is not "
            "known, so whether the account is still used cannot be told."
        )
    if graph_error is not None:
        return f"Graph's sensor list could not be read ({graph_error}); try again once Graph answers."
    if undetermined:
        return (
            f"Graph does not tell the sensor generation of {_listing(undetermined)}; check them before "
            "removing the account."
        )
    return "No sensor was found in the account's domains; check its domains before removing it."


def _unplaced(settings: Settings, account: AccountConfig, graph: Sequence[GraphSensor]) -> list[str]:
    """Graph's sensors that Graph puts in the account's domains while their DNS names lie elsewhere: the
    fleet counts them for no account, so whether they use the account cannot be told."""
    domains = set(account.dns_domains)
    return [
        m.name
        for m in merge_fleet(settings, graph)
        if m.graph is not None and m.domain is None and (m.graph.domain or "").lower().rstrip(".") in domains
    ]


def account_status(
    settings: Settings,
    account: AccountConfig,
    graph: Sequence[GraphSensor],
    graph_error: str | None,
) -> DsaStatus:
    """The account's sensors by generation and its verdict; Graph's sensors as `GraphFleet` read them."""
    graph_used = settings.graph.discover_sensors
    members = account_members(settings, account, graph) if graph_used else []
    classic = [m for m in members if member_generation(m) == "2"]
    unified = [m.name for m in members if member_generation(m) == "3"]
    undetermined = [m.name for m in members if member_generation(m) == "unknown"]
    undetermined += _unplaced(settings, account, graph) if graph_used else []
    verdict: RetirementVerdict = "unknown"
    if graph_used and graph_error is None:
        if classic:
            verdict = "needed"
        elif unified and not undetermined:
            verdict = "removable"
    if verdict == "needed":
        step = _needed_step(classic)
    elif verdict == "removable":
        step = REMOVAL_STEP
    else:
        step = _unknown_step(graph_error, graph_used, undetermined)
    return DsaStatus(
        account=account.id,
        domains=list(account.dns_domains),
        classic_sensors=[m.name for m in classic],
        unified_sensors=unified,
        verdict=verdict,
        next_step=step,
    )


def dsa_statuses(
    settings: Settings,
    graph: Sequence[GraphSensor],
    graph_error: str | None,
    account_id: str | None = None,
) -> list[DsaStatus]:
    """Every account's status (each kind: a user or a gMSA), or one's (`--account`: unknown is a usage
    error)."""
    accounts = [settings.account(account_id)] if account_id is not None else settings.accounts
    return [account_status(settings, a, graph, graph_error) for a in accounts]
