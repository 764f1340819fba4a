"""HTTP for Graph and its sign-in: what Graph sends is untrusted, so nothing it says steers the client.

No call follows a redirect (bot.infra.redirects): the token request carries the client secret, the
others the bearer token. Every body is read as it arrives and refused past `MAX_BODY_BYTES` (counted
after any content decoding, so a compressed body cannot expand past it either). Every answer that is not
the JSON object expected (malformed, nested too deep for the parser, of another shape) is a `GraphError`
with a plain message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict

from bot.infra.redirects import describe_redirect, redirect_target

# The largest body read from Graph or the sign-in endpoints. Graph's pages are far smaller (a page of 100
# sensors with the fields atp-bot selects is under 50 KiB, a health issue about 1 KiB); a body past this
# is not Graph's and is refused, its connection closed, without being read further.
MAX_BODY_BYTES = 4 * 1024 * 1024
READ_CHUNK_BYTES = 64 * 1024


class GraphError(Exception):
    """Graph could not answer; the message is safe to log and show."""


class RedirectRefused(requests.RequestException):
    """A 3xx answer to a call that carries the client secret or the token; it was not followed."""


class BodyTooLarge(requests.RequestException):
    """A body longer than MAX_BODY_BYTES; it was not read further."""


@dataclass(frozen=True)
class CappedResponse:
    """An answer read to its end within MAX_BODY_BYTES, in the shape MSAL's `http_client` expects
    (`status_code`, `text`, `headers`, `raise_for_status`)."""

    status_code: int
    headers: CaseInsensitiveDict[str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise requests.HTTPError(f"HTTP Error: {self.status_code}")


def _mib(size: int) -> str:
    return f"{size / 2**20:g} MiB"


def read_capped(response: requests.Response, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body of a streamed response, refused (`BodyTooLarge`) as soon as it would pass `limit` bytes;
    the connection is released either way (closed when the body was not read to its end)."""
    try:
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            raise BodyTooLarge(f"a body of {int(length)} bytes (more than {_mib(limit)} are never read)")
        body = bytearray()
        for chunk in response.iter_content(READ_CHUNK_BYTES):
            body += chunk
            if len(body) > limit:
                raise BodyTooLarge(f"a body longer than {_mib(limit)}; not read further")
        return bytes(body)
    finally:
        response.close()


class Http:
    """requests with the CA bundle and timeout passed on every call, redirects refused, bodies capped.

    A session's own `verify` loses to $REQUESTS_CA_BUNDLE (requests reads the environment per request),
    so a configured `ca_file` is given per call. MSAL uses this object as its `http_client`.
    """

    def __init__(self, session: requests.Session, verify: str | bool, timeout: float) -> None:
        self._session = session
        self._verify = verify
        self._timeout = timeout

    def get(self, url: str, **kwargs: Any) -> CappedResponse:
        return self._request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> CappedResponse:
        return self._request("POST", url, **kwargs)

    def _request(self, method: str, url: str, **kwargs: Any) -> CappedResponse:
        kwargs.setdefault("timeout", self._timeout)
        kwargs.update(allow_redirects=False, stream=True)
        response = self._session.request(method, url, verify=self._verify, **kwargs)
        target = redirect_target(response.status_code, url, response.headers.get("Location"))
        if target is not None:
            response.close()
            raise RedirectRefused(describe_redirect(response.status_code, target))
        return CappedResponse(response.status_code, response.headers, read_capped(response))

    def close(self) -> None:
        self._session.close()


def json_page(body: bytes, path: str) -> dict[str, Any]:
    """A page of a Graph list (a JSON object with a `value` list) from `body`; anything else, however it
    fails to parse, is a GraphError naming `path`."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise GraphError(f"Graph's answer for {path} is JSON nested too deeply to read") from None
    except ValueError:
        raise GraphError(f"Graph returned something that is not JSON for {path}") from None
    if not isinstance(data, dict) or not isinstance(data.get("value"), list):
        raise GraphError(f"Graph returned an unexpected answer for {path} (no `value` list)")
    return data
