"""Graph's sensors merged with `[[sensors]]` (`bot.fleet.match` pairs them), each with the domain it is
counted in and, for one only Graph knows, the WinRM endpoint `[winrm] endpoint_template` gives it.

What Graph says never steers a credential: a Graph name becomes an endpoint only through
`bot.fleet.names.endpoint_host`, and Graph's domain for a sensor counts only when it holds the sensor's
DNS name. A `[[sensors]]` entry keeps its own endpoint. Each refusal is a problem of the sensor's row,
logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from bot.config import SensorConfig, Settings
from bot.fleet.match import (
    config_domain,
    config_host,
    config_names,
    graph_domain,
    graph_names,
    pair,
)
from bot.fleet.names import endpoint_host, own_domains, plain_host, shown
from bot.graph import GraphSensor

log = logging.getLogger(__name__)

Source = Literal["graph", "config", "both"]

_LOGGED_LIMIT = 4096
_logged: set[str] = set()


@dataclass(frozen=True)
class FleetMember:
    """A sensor before its verdict: what Graph says, its `[[sensors]]` entry, or both."""

    graph: GraphSensor | None
    config: SensorConfig | None
    name: str  # unique in the fleet (case-insensitive)
    dns_name: str | None
    domain: str | None  # the DNS domain whose accounts it serves
    discovered: SensorConfig | None = None  # only in Graph: its entry from `endpoint_template`
    problems: tuple[str, ...] = ()  # a Graph name or domain not used, an ambiguous match

    @property
    def winrm_config(self) -> SensorConfig | None:
        """How it is checked over WinRM: its `[[sensors]]` entry, else the discovered one, else not."""
        return self.config if self.config is not None else self.discovered

    @property
    def winrm(self) -> bool:
        return self.winrm_config is not None

    @property
    def source(self) -> Source:
        if self.graph is not None and self.config is not None:
            return "both"
        return "graph" if self.graph is not None else "config"


def _log_once(name: str, problems: Sequence[str]) -> None:
    """Each problem once per process (the monitor merges the fleet every cycle), in bounded memory."""
    for problem in problems:
        line = f"sensor {shown(name)}: {problem}"
        if line in _logged:
            continue
        if len(_logged) >= _LOGGED_LIMIT:
            _logged.clear()
        _logged.add(line)
        log.warning("fleet: %s", line)


def _discovered(
    template: str | None, domains: Sequence[str], name: str, sensor: GraphSensor
) -> tuple[SensorConfig | None, list[str]]:
    """The entry `endpoint_template` gives a sensor only Graph knows, or why it gets none."""
    if template is None:
        return None, []
    target = endpoint_host(sensor.dns_name, domains)
    if target.host is None:
        return None, [f"not checked over WinRM: {target.refusal}"]
    try:
        return SensorConfig(name=name, endpoint=template.replace("{dns_name}", target.host)), []
    except ValidationError:
        return None, [f"not checked over WinRM: {shown(name)} cannot name a sensor"]


def _unique_name(sensor: GraphSensor, taken: set[str]) -> str:
    """Graph's display name, else (taken by another sensor) its DNS name, else both with Graph's id."""
    for name in (sensor.display_name, plain_host(sensor.dns_name)):
        if name is not None and name.lower() not in taken:
            return name
    return f"{sensor.display_name} ({sensor.id})"


def _graph_only(
    template: str | None, domains: Sequence[str], sensor: GraphSensor, name: str, problems: list[str]
) -> FleetMember:
    found = graph_domain(sensor)
    discovered, refused = _discovered(template, domains, name, sensor)
    problems += [p for p in (found.problem, *refused) if p is not None]
    return FleetMember(sensor, None, name, sensor.dns_name, found.domain, discovered, tuple(problems))


def _both(sensor: GraphSensor, config: SensorConfig) -> FleetMember:
    found = graph_domain(sensor)
    dns = plain_host(sensor.dns_name) or config_host(config)
    problems = () if found.problem is None else (found.problem,)
    return FleetMember(
        sensor, config, config.name, dns, config_domain(config) or found.domain, None, problems
    )


def _ambiguous(names: Sequence[str], side: str) -> str:
    return (
        f"ambiguous match with {side} {', '.join(names)}: not merged (never guessed); "
        "give [[sensors]] entries their full DNS names"
    )


def merge_fleet(settings: Settings, graph_sensors: Sequence[GraphSensor]) -> list[FleetMember]:
    """Graph's sensors (each with its `[[sensors]]` entry, if one is the same server), then the
    config-only ones."""
    configs = settings.sensors
    pairing = pair([graph_names(g) for g in graph_sensors], [config_names(c, settings) for c in configs])
    taken = {c.name.lower() for c in configs}
    template, domains = settings.winrm.endpoint_template, own_domains(settings)
    members = []
    for index, sensor in enumerate(graph_sensors):
        if index in pairing.merged:
            members.append(_both(sensor, configs[pairing.merged[index]]))
            continue
        name = _unique_name(sensor, taken)
        taken.add(name.lower())
        named = [configs[c].name for c in pairing.ambiguous_graph.get(index, [])]
        members.append(
            _graph_only(template, domains, sensor, name, [_ambiguous(named, "[[sensors]]")] if named else [])
        )
    merged = set(pairing.merged.values())
    for index, config in enumerate(configs):
        if index in merged:
            continue
        names = [shown(graph_sensors[g].dns_name) for g in pairing.ambiguous_config.get(index, [])]
        problems = (_ambiguous(names, "Graph's"),) if names else ()
        members.append(
            FleetMember(None, config, config.name, config_host(config), config_domain(config), None, problems)
        )
    for member in members:
        _log_once(member.name, member.problems)
    return members
