"""NTLM over HTTP that starts on the first request, for WinRM's sealed messages.

requests_ntlm (what pywinrm uses for NTLM) sends the first request without credentials and starts NTLM on
the 401 that answers it: one round trip per check that carries nothing. A WinRM service takes NTLM's
Negotiate token on the first request, so this handler sends it there; the challenge, the Authenticate
message and the sealing of every later message (through `session_security`, the interface pywinrm's
`Encryption` reads from `session.auth`) are as requests_ntlm does them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlsplit

import requests
import spnego
from requests.auth import AuthBase

SCHEME = "Negotiate"  # what WinRM offers; it takes a raw NTLM token under it, as requests_ntlm sends


class Sealing:
    """NTLM's sealing in the shape pywinrm's `Encryption` calls: wrap gives (data, signature)."""

    def __init__(self, context: spnego.ContextProxy) -> None:
        self._context = context

    def wrap(self, message: bytes) -> tuple[bytes, bytes]:
        sealed = self._context.wrap(message, encrypt=True).data
        return sealed[16:], sealed[:16]  # NTLM's signature is the first 16 bytes

    def unwrap(self, message: bytes, signature: bytes) -> bytes:
        return self._context.unwrap(signature + message).data


class EagerNtlmAuth(AuthBase):
    """One NTLM context per requests session: WinRM authenticates the connection, not each request."""

    def __init__(self, username: str, password: str) -> None:
        self._username, self._password = username, password
        self._context: spnego.ContextProxy | None = None
        self.session_security: Sealing | None = None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Connection"] = "Keep-Alive"
        if self._context is None:
            self._context = spnego.client(
                self._username,
                self._password,
                hostname=urlsplit(request.url or "").hostname or "unspecified",
                service="http",
                protocol="ntlm",
                options=spnego.NegotiateOptions.use_ntlm,
            )
            request.headers["Authorization"] = _header(self._context.step())
            request.register_hook("response", self._answer_challenge)
        return request

    def _answer_challenge(self, response: requests.Response, **send_options: Any) -> requests.Response:
        challenge = _challenge(response)
        if response.status_code != 401 or challenge is None or self._context is None:
            return response
        _ = response.content  # read to the end, so that the connection carries the next leg
        response.raw.release_conn()
        request = response.request.copy()
        request.headers["Authorization"] = _header(self._context.step(challenge))
        answer: requests.Response = response.connection.send(request, **send_options)
        answer.history.append(response)
        if answer.status_code != 401:
            self.session_security = Sealing(self._context)
        return answer


def _header(token: bytes | None) -> str:
    return f"{SCHEME} {base64.b64encode(token or b'').decode('ascii')}"


def _challenge(response: requests.Response) -> bytes | None:
    """NTLM's challenge from a 401's WWW-Authenticate (None: the service sent none)."""
    for offer in response.headers.get("WWW-Authenticate", "").split(","):
        scheme, _, token = offer.strip().partition(" ")
        if scheme.lower() in ("negotiate", "ntlm") and token:
            try:
                return base64.b64decode(token)
            except binascii.Error:
                return None
    return None
