"""Servers eligible for a Defender for Identity sensor that have none (`GET
/security/identities/sensorCandidates`, the sensor list's permission `SecurityIdentitiesSensors.Read.All`).

Every field is Graph's untrusted text: a candidate is listed, never contacted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.graph.http import json_text

CANDIDATES_PATH = "/security/identities/sensorCandidates"
CANDIDATE_FIELDS = ("id", "computerDnsName", "domainName", "lastSeenDateTime", "senseClientVersion")


@dataclass(frozen=True)
class SensorCandidate:
    """One server Graph says could run a sensor and runs none."""

    id: str
    computer_dns_name: str
    domain: str | None
    last_seen: datetime | None
    sense_client_version: str | None


def _timestamp(value: Any) -> datetime | None:
    """An ISO 8601 `DateTimeOffset` with its offset; anything else is read as not reported."""
    text = json_text(value)
    try:
        found = datetime.fromisoformat(text) if text is not None else None
    except ValueError:
        return None
    return found if found is not None and found.tzinfo is not None else None


def parse_candidate(item: dict[str, Any]) -> SensorCandidate | None:
    """A sensorCandidate resource; None when it lacks an id or a computer DNS name."""
    candidate_id, dns_name = json_text(item.get("id")), json_text(item.get("computerDnsName"))
    if candidate_id is None or dns_name is None:
        return None
    return SensorCandidate(
        id=candidate_id,
        computer_dns_name=dns_name,
        domain=json_text(item.get("domainName")),
        last_seen=_timestamp(item.get("lastSeenDateTime")),
        sense_client_version=json_text(item.get("senseClientVersion")),
    )
