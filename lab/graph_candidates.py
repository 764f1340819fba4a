"""The Graph emulator's sensor candidates (`/v1.0/security/identities/sensorCandidates`): servers eligible
for a Defender for Identity sensor that run none, shaped like Graph's sensorCandidate resource (`id`,
`computerDnsName`, `domainName`, `lastSeenDateTime`, `senseClientVersion`).

The list needs the sensors' permission (`SecurityIdentitiesSensors.Read.All`), pages with
`@odata.nextLink`, and takes `$select` and `$top` (the page size; Graph answers 400 to one that is not a
positive integer).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

CANDIDATES_PATH = "/v1.0/security/identities/sensorCandidates"


def candidate_resource(
    dns_name: str, domain: str, last_seen: datetime | None, sense_client_version: str
) -> dict[str, Any]:
    """One sensorCandidate as Graph sends it (all its fields)."""
    seen = last_seen or datetime.now(UTC)
    return {
        "id": secrets.token_hex(16),
        "computerDnsName": dns_name,
        "domainName": domain,
        "lastSeenDateTime": seen.isoformat().replace("+00:00", "Z"),
        "senseClientVersion": sense_client_version,
    }


def page_size(query: dict[str, list[str]], default: int) -> int | None:
    """`$top` as the page size (`default` without one); None for a value Graph refuses."""
    top = (query.get("$top") or [""])[0]
    if not top:
        return default
    return int(top) if top.isdigit() and int(top) > 0 else None


def selected(candidate: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
    """The fields `$select` names (`id` always), or every field."""
    fields = [f for f in (query.get("$select") or [""])[0].split(",") if f]
    return {k: v for k, v in candidate.items() if not fields or k in fields or k == "id"}


def kept_query(query: dict[str, list[str]]) -> str:
    """What a next link repeats of the request's query (`$select`, `$top`)."""
    return "".join(f"&{key}={query[key][0]}" for key in ("$select", "$top") if query.get(key))
