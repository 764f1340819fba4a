"""Servers Graph lists as sensor candidates (eligible for a sensor, running none) as rows of the fleet's
listing: `source` "candidate", verdict `attention`, never contacted.

A candidate's DNS name is Graph's untrusted text. The rows are not fleet members, so no WinRM check
reaches them whatever `endpoint_template` says; a name that is not a plain DNS host name is shown quoted
and escaped (`bot.fleet.names.shown`). A server Graph also lists as a sensor (the same DNS name) is a
sensor, not a candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC

from bot.fleet.inventory import GraphFleet, SensorRow, in_domain
from bot.fleet.match import claimed_domain
from bot.fleet.names import normal_name, plain_host, shown
from bot.graph import GraphSensor, SensorCandidate

NO_SENSOR = "no Defender for Identity sensor is active on this server (Graph lists it as a sensor candidate)"


@dataclass(frozen=True)
class CandidateRows:
    """The candidate rows of one listing, or why Graph's candidates could not be read."""

    rows: tuple[SensorRow, ...]
    error: str | None


def candidate_row(candidate: SensorCandidate) -> SensorRow:
    """A server without a sensor: it needs attention, and (running no sensor) uses no DSA."""
    host = plain_host(candidate.computer_dns_name)
    found = claimed_domain(candidate.computer_dns_name, candidate.domain)
    seen = candidate.last_seen
    problem = NO_SENSOR + (f"; last seen {seen.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if seen else "")
    return SensorRow(
        name=host or shown(candidate.computer_dns_name),
        dns_name=host,
        domain=found.domain,
        source="candidate",
        sensor_type=None,
        version=None,
        generation="unknown",
        uses_dsa=False,
        health_status=None,
        deployment_status=None,
        open_health_issues=[],
        winrm=False,
        verdict="attention",
        problems=[problem, *([found.problem] if found.problem else [])],
    )


def candidate_rows(
    candidates: Sequence[SensorCandidate], sensors: Sequence[GraphSensor], domain: str | None = None
) -> list[SensorRow]:
    """One row per candidate that is not one of Graph's sensors (by DNS name), of `domain` if given."""
    listed = {normal_name(name) for s in sensors for name in (*s.dns_names, s.dns_name)}
    rows = []
    for candidate in candidates:
        name = normal_name(candidate.computer_dns_name)
        if name not in listed:  # a sensor, or a candidate Graph listed twice
            listed.add(name)
            rows.append(candidate_row(candidate))
    return [r for r in rows if domain is None or in_domain(r, domain)]


def listed_candidates(
    fleet: GraphFleet, sensors: Sequence[GraphSensor], graph_error: str | None, domain: str | None
) -> CandidateRows:
    """The candidate rows of a listing; none when Graph's sensor list could not be read (a candidate
    could not be told from a sensor then, and that failure is told already)."""
    if graph_error is not None:
        return CandidateRows((), None)
    candidates, error = fleet.candidates()
    return CandidateRows(tuple(candidate_rows(candidates, sensors, domain)), error)


def candidates_unread(error: str) -> str:
    """The line each face shows when the candidates could not be read: the sensors are listed all the same."""
    return f"Graph's sensor candidates could not be read ({error}); servers without a sensor are not listed"
