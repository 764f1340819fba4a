"""The sensors whose computers must retrieve a gMSA's password: the fleet's (Graph's when
`discover_sensors` is on, merged with `[[sensors]]`) that serve the account, each with the DNS names its
computer account's `dNSHostName` may hold and its generation (a unified 3.x sensor uses no DSA)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from bot.config import AccountConfig, SensorConfig, Settings
from bot.fleet import (
    FleetMember,
    GraphFleet,
    account_members,
    member_generation,
)
from bot.gmsa.core import GmsaSensor, SensorScope
from bot.graph import GraphSensor


def config_host_names(sensor: SensorConfig, domain: str) -> list[str]:
    """The DNS names of a `[[sensors]]` entry: its name (`<name>.<domain>` when short), its endpoint's."""
    names = [sensor.name if "." in sensor.name else f"{sensor.name}.{domain}"]
    host = urlsplit(sensor.endpoint).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host and host != "localhost":
            names.append(host)
    return names


def graph_host_names(sensor: GraphSensor, domain: str) -> list[str]:
    """Graph's DNS names of a sensor, and its display name in its domain (else the account's)."""
    name = sensor.display_name
    full = name if "." in name else f"{name}.{sensor.domain or domain}"
    return [*sensor.dns_names, full]


def host_names(member: FleetMember, domain: str) -> tuple[str, ...]:
    """Graph's names of the sensor, then its `[[sensors]]` entry's, each once."""
    names = graph_host_names(member.graph, domain) if member.graph is not None else []
    if member.config is not None:
        names += config_host_names(member.config, domain)
    return tuple(dict.fromkeys(n.lower() for n in names))


def sensor_scope(settings: Settings, account: AccountConfig, fleet: GraphFleet | None = None) -> SensorScope:
    """The account's sensors, each with Graph's generation. Graph unreachable: the `[[sensors]]` only, and
    why."""
    graph, graph_error = (fleet or GraphFleet(settings)).sensors()
    domain = account.domain or account.name.domain
    sensors = tuple(
        GmsaSensor(
            name=member.name,
            host_names=host_names(member, domain),
            generation=member_generation(member),
            winrm=member.winrm_config,
            gateway=member.config is not None and member.config.kind == "ata",
        )
        for member in account_members(settings, account, graph)
    )
    return SensorScope(sensors, graph_error)
