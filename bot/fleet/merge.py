"""Graph's sensors merged with `[[sensors]]`: which Graph sensor and which entry are the same server."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

from bot.config import SensorConfig, Settings
from bot.graph import GraphSensor

log = logging.getLogger(__name__)

Source = Literal["graph", "config", "both"]


@dataclass(frozen=True)
class FleetMember:
    """A sensor before its verdict: what Graph says, its `[[sensors]]` entry, or both."""

    graph: GraphSensor | None
    config: SensorConfig | None
    winrm: bool

    @property
    def name(self) -> str:
        if self.config is not None:
            return self.config.name
        assert self.graph is not None
        return self.graph.display_name

    @property
    def dns_name(self) -> str | None:
        if self.graph is not None:
            return self.graph.dns_name
        assert self.config is not None
        return config_host(self.config)

    @property
    def domain(self) -> str | None:
        if self.graph is not None and self.graph.domain:
            return self.graph.domain.lower()
        dns = self.dns_name
        return dns.partition(".")[2] or None if dns else None

    @property
    def source(self) -> Source:
        if self.graph is not None and self.config is not None:
            return "both"
        return "graph" if self.graph is not None else "config"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def config_host(sensor: SensorConfig) -> str | None:
    """The DNS name in a `[[sensors]]` endpoint (None for an IP address)."""
    host = (urlsplit(sensor.endpoint).hostname or "").lower()
    return None if not host or _is_ip(host) else host


def same_host(a: str, b: str) -> bool:
    """Equal DNS names, or a short name equal to the other's first label."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if a == b:
        return True
    if "." not in a and "." in b:
        return b.split(".")[0] == a
    if "." not in b and "." in a:
        return a.split(".")[0] == b
    return False


def _graph_names(sensor: GraphSensor) -> list[str]:
    names = [*sensor.dns_names, sensor.display_name]
    if sensor.domain:
        names.append(f"{sensor.display_name}.{sensor.domain}")
    return names


def _config_names(sensor: SensorConfig) -> list[str]:
    host = config_host(sensor)
    return [sensor.name, host] if host else [sensor.name]


def _matches(graph: GraphSensor, sensor: SensorConfig) -> bool:
    return any(same_host(g, c) for g in _graph_names(graph) for c in _config_names(sensor))


def merge_fleet(settings: Settings, graph_sensors: Sequence[GraphSensor]) -> list[FleetMember]:
    """Graph's sensors (each with its `[[sensors]]` entry, if one names it), then the config-only ones."""
    template = settings.winrm.endpoint_template is not None
    unclaimed = list(settings.sensors)
    members = []
    for graph in graph_sensors:
        config = next((s for s in unclaimed if _matches(graph, s)), None)
        if config is not None:
            unclaimed.remove(config)
        members.append(FleetMember(graph=graph, config=config, winrm=config is not None or template))
    members += [FleetMember(graph=None, config=s, winrm=True) for s in unclaimed]
    return members


def discovered_sensor_config(settings: Settings, member: FleetMember) -> SensorConfig | None:
    """A `[[sensors]]`-like entry for a Graph-only sensor from `[winrm] endpoint_template`."""
    template = settings.winrm.endpoint_template
    if member.config is not None:
        return member.config
    if template is None or member.graph is None:
        return None
    endpoint = template.replace("{dns_name}", member.graph.dns_name)
    try:
        return SensorConfig(name=member.name, endpoint=endpoint)
    except ValidationError:  # a name or DNS name Graph reports that cannot address a host
        log.warning("sensor %r: no WinRM endpoint can be made from its Graph name; Graph-only", member.name)
        return None
