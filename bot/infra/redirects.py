"""Calls that carry a secret or a token never follow an HTTP redirect.

A 307/308 re-sends the whole request (a profile with a plaintext password, a client secret) to the
`Location` host, and a 301/302/303 re-sends the Authorization header with it; a success from there
would be taken for the peer's. So a 3xx answer is an error that names the status and the target host.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit


def redirect_target(status: int, request_url: str, location: str | None) -> str | None:
    """For a 3xx answer, the host (and port) its `Location` points to; None for any other status."""
    if not 300 <= status < 400:
        return None
    if not location:
        return "nowhere (no Location header)"
    try:
        parts = urlsplit(urljoin(request_url, location))
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an unparsable Location"
    return f"{parts.hostname}{port}" if parts.hostname else "an unparsable Location"


def describe_redirect(status: int, target: str) -> str:
    return f"HTTP {status} redirect to {target}; redirects are never followed with a secret or a token"
