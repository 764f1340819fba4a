"""Requests as Slack sends them in HTTP mode: signed with the signing secret (v0 HMAC-SHA256), and the
forged and stale variants a verifier must reject."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from enum import StrEnum

from slack_sdk.signature import SignatureVerifier

STALE_SECONDS = 10 * 60  # Slack's verifiers reject timestamps older than 5 minutes


class Signing(StrEnum):
    VALID = "valid"
    FORGED = "forged"  # signed with the wrong secret
    STALE = "stale"  # correctly signed, but with an old timestamp (a replay)
    UNSIGNED = "unsigned"


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: str
    latency: float


def signed_headers(secret: str, body: str, signing: Signing = Signing.VALID) -> dict[str, str]:
    timestamp = int(time.time()) - (STALE_SECONDS if signing is Signing.STALE else 0)
    if signing is Signing.UNSIGNED:
        return {}
    key = "not-the-signing-secret" if signing is Signing.FORGED else secret
    signature = SignatureVerifier(key).generate_signature(timestamp=str(timestamp), body=body) or ""
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}


def post(url: str, body: str, headers: dict[str, str], *, timeout: float = 10.0) -> HttpAnswer:
    request = urllib.request.Request(  # noqa: S310 - the app's loopback URL
        url,
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return HttpAnswer(response.status, response.read().decode(), time.monotonic() - started)
    except urllib.error.HTTPError as exc:
        return HttpAnswer(exc.code, exc.read().decode(), time.monotonic() - started)
