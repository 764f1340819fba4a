"""Which Graph sensor and which `[[sensors]]` entry are the same server.

They match on a fully qualified name they share, or on a short name when Graph's domain for the sensor is
a domain of the entry (its own full name's, else its account's). The best match wins; two equally good
ones are ambiguous, never guessed: neither merges and both are told (`Pairing.ambiguous_*`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.config import SensorConfig, Settings
from bot.fleet.names import is_ip_literal, normal_name, plain_host, shown, within
from bot.graph import GraphSensor

FULL, SHORT = 2, 1  # how good a match is


def config_host(sensor: SensorConfig) -> str | None:
    """The DNS name in a `[[sensors]]` endpoint (None for an IP address)."""
    host = normal_name(urlsplit(sensor.endpoint).hostname or "")
    return None if not host or is_ip_literal(host) else host


def config_domain(sensor: SensorConfig) -> str | None:
    """The DNS domain of a `[[sensors]]` endpoint's host name."""
    host = config_host(sensor)
    return host.partition(".")[2] or None if host else None


@dataclass(frozen=True)
class SensorNames:
    """One side's names: full (lower case, no trailing dot), short (first labels) and its DNS domains."""

    full: frozenset[str]
    short: frozenset[str]
    domains: frozenset[str]


@dataclass(frozen=True)
class GraphDomain:
    """The domain a Graph sensor is counted in (None if Graph's domain does not hold its DNS name)."""

    domain: str | None
    problem: str | None


def graph_domain(sensor: GraphSensor) -> GraphDomain:
    """Graph's `domainName` for the sensor, when its DNS name is a plain host name inside it."""
    return claimed_domain(sensor.dns_name, sensor.domain)


def claimed_domain(dns_name: str, domain: str | None) -> GraphDomain:
    """The domain Graph gives a server, when `dns_name` is a plain host name inside it (else the domain
    of its name, when Graph gives none)."""
    host = plain_host(dns_name)
    if not domain:
        return GraphDomain(host.partition(".")[2] or None if host else None, None)
    claimed = normal_name(domain)
    if host is not None and within(host, claimed):
        return GraphDomain(claimed, None)
    return GraphDomain(
        None,
        f"its DNS name {shown(dns_name)} lies outside the domain Graph gives it "
        f"({shown(domain)}): not counted for that domain's accounts",
    )


def graph_names(sensor: GraphSensor) -> SensorNames:
    names = {*sensor.dns_names, sensor.dns_name, sensor.display_name}
    full = frozenset(normal_name(n) for n in names if "." in n)
    plain = [host for n in names if (host := plain_host(n)) is not None]
    domain = graph_domain(sensor).domain
    domains = frozenset() if domain is None else frozenset({domain})
    return SensorNames(full, frozenset(h.split(".")[0] for h in plain), domains)


def config_names(sensor: SensorConfig, settings: Settings) -> SensorNames:
    names = [normal_name(sensor.name), config_host(sensor) or ""]
    full = frozenset(n for n in names if "." in n)
    own = {n.partition(".")[2] for n in full}
    accounts = [a for a in settings.accounts if sensor.account in (None, a.id)]
    domains = own or {d for account in accounts for d in account.dns_domains}
    return SensorNames(full, frozenset(n.split(".")[0] for n in names if n), frozenset(domains))


@dataclass(frozen=True)
class Pairing:
    """Graph's index → the `[[sensors]]` index it merges with; the ambiguous ones, each with its
    candidates on the other side."""

    merged: dict[int, int]
    ambiguous_graph: dict[int, list[int]]
    ambiguous_config: dict[int, list[int]]


def _scores(graphs: Sequence[SensorNames], configs: Sequence[SensorNames]) -> dict[tuple[int, int], int]:
    full: dict[str, list[int]] = {}
    short: dict[tuple[str, str], list[int]] = {}
    for index, config in enumerate(configs):
        for name in config.full:
            full.setdefault(name, []).append(index)
        for label in config.short:
            for domain in config.domains:
                short.setdefault((label, domain), []).append(index)
    scores: dict[tuple[int, int], int] = {}
    for index, graph in enumerate(graphs):
        for name in graph.full:
            scores.update({(index, c): FULL for c in full.get(name, ())})
        for label in graph.short:
            for domain in graph.domains:
                for c in short.get((label, domain), ()):
                    scores.setdefault((index, c), SHORT)
    return scores


def _best(scores: dict[tuple[int, int], int], side: int) -> dict[int, list[int]]:
    """For each index of one side (0: Graph, 1: config), the other side's best matches."""
    top: dict[int, int] = {}
    best: dict[int, list[int]] = {}
    for pair, score in sorted(scores.items()):
        mine, other = pair[side], pair[1 - side]
        if score > top.get(mine, 0):
            top[mine], best[mine] = score, [other]
        elif score == top[mine]:
            best[mine].append(other)
    return best


def pair(graphs: Sequence[SensorNames], configs: Sequence[SensorNames]) -> Pairing:
    """Each Graph sensor with the one entry that best matches it and that it best matches."""
    scores = _scores(graphs, configs)
    graph_best, config_best = _best(scores, 0), _best(scores, 1)
    merged = {
        g: found[0] for g, found in graph_best.items() if len(found) == 1 and config_best.get(found[0]) == [g]
    }
    taken = set(merged.values())
    return Pairing(
        merged,
        {g: found for g, found in graph_best.items() if g not in merged},
        {c: found for c, found in config_best.items() if c not in taken},
    )
