"""The HTTP under one WinRM run: a total deadline, bodies counted as they are read, no redirect.

A read timeout bounds each wait for a byte, not a run: a sensor that sends one byte a second keeps a
request alive as long as it likes. So every connection a run uses is watched: when the run's deadline
passes, one watchdog thread shuts its sockets down, and whatever was waiting on them fails at once.

A body is refused past MAX_RESPONSE_BYTES whatever its framing says: one without a Content-Length
(chunked, or up to the connection's end) is read here, counted as it comes, and cut at the limit. A 3xx
is refused: WinRM never redirects, and following one would send the sealed message, and the handshake,
to another host (bot/infra/redirects.py).
"""

from __future__ import annotations

import contextlib
import heapq
import io
import socket
import threading
import time
from collections.abc import Iterator
from itertools import count
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPResponse
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError, ReadTimeoutError

from bot.infra.redirects import describe_redirect, redirect_target
from bot.sensors.failures import FailureKind, RemoteFailure

# One WS-Management response: WinRM keeps each within the MaxEnvelopeSize pywinrm asks for (150 KiB);
# an endpoint that sends more is cut off here, with room to spare for sealing and the output limit.
MAX_RESPONSE_BYTES = 2 << 20
READ_CHUNK = 64 * 1024


class RunWatch:
    """The connections one run (or one shell's Delete) uses, shut down when its deadline passes."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._connections: set[HTTPConnection] = set()
        self._lock = threading.Lock()

    def adopt(self, connection: HTTPConnection) -> None:
        with self._lock:
            if not self.expired:
                self._connections.add(connection)
                return
        raise RemoteFailure(FailureKind.TIMEOUT, "the sensor did not finish within the host timeout")

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            connections, self._connections = self._connections, set()
        for connection in connections:
            if connection.sock is not None:
                with contextlib.suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        """The run is over: its connections (pooled for a shell's Delete) are no longer watched."""
        with self._lock:
            self._connections.clear()


class _Watchdog:
    """One thread that expires each watch at its deadline (not a timer thread per run); it runs while
    some run is watched, and ends when none is."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, RunWatch]] = []
        self._order = count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, watch: RunWatch) -> None:
        with self._wake:
            heapq.heappush(self._due, (watch.deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="winrm-deadlines", daemon=True)
                self._thread.start()
            self._wake.notify()

    def discard(self, watch: RunWatch) -> None:
        with self._wake:
            self._due = [due for due in self._due if due[2] is not watch]
            heapq.heapify(self._due)
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._due and self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic())
                if not self._due:
                    self._thread = None
                    return
                _, _, watch = heapq.heappop(self._due)
            watch.expire()


_watchdog = _Watchdog()
_current = threading.local()


@contextlib.contextmanager
def watched(deadline: float) -> Iterator[RunWatch]:
    """The HTTP this thread does meanwhile ends at `deadline` (a `time.monotonic()` value)."""
    watch = RunWatch(deadline)
    previous: RunWatch | None = getattr(_current, "watch", None)
    _current.watch = watch
    _watchdog.add(watch)
    try:
        yield watch
    finally:
        _current.watch = previous
        _watchdog.discard(watch)
        watch.release()


def _adopt(connection: HTTPConnection) -> None:
    watch: RunWatch | None = getattr(_current, "watch", None)
    if watch is not None:
        watch.adopt(connection)


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        _adopt(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _adopt(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """Watched as above; the TLS connection's own connect and request run next in the MRO."""


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _ReadBody(io.BytesIO):
    """A body already read and counted: what requests reads `Response.content` from."""

    def __init__(self, data: bytes, original: HTTPResponse) -> None:
        super().__init__(data)
        self._original = original

    def release_conn(self) -> None:
        self._original.release_conn()


class GuardedAdapter(HTTPAdapter):
    """requests' adapter over watched connections, reading each body itself (see the module docstring)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}

    def build_response(self, req: requests.PreparedRequest, resp: HTTPResponse) -> requests.Response:
        """A body with a Content-Length (within the limit) is read by requests, which never reads past
        it, from the connection itself (requests_ntlm takes the server's certificate from there for
        channel binding); any other body is read here, counted."""
        try:
            _refuse_unexpected(resp, req.url or "")
            if resp.length_remaining is not None:
                return super().build_response(req, resp)
            if resp.status == 401:  # would leave requests_ntlm without the certificate to bind to
                raise RemoteFailure(FailureKind.WINRM_FAULT, "the sensor sent a challenge without a length")
            body = _read_body(resp)
        except BaseException:
            resp.close()
            raise
        response = super().build_response(req, resp)
        response.raw = _ReadBody(body, resp)
        return response


def _refuse_unexpected(resp: HTTPResponse, url: str) -> None:
    """A redirect, an encoded body or an announced oversized one ends the run before any body is read."""
    target = redirect_target(resp.status, url, resp.headers.get("Location"))
    if target is not None:
        raise RemoteFailure(FailureKind.WINRM_FAULT, describe_redirect(resp.status, target))
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        raise RemoteFailure(
            FailureKind.WINRM_FAULT, f"the sensor sent an encoded answer ({encoding[:40]}); WinRM sends none"
        )
    length = resp.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > MAX_RESPONSE_BYTES:
        raise _oversized(f"a {int(length) // 1024} KiB response")


def _read_body(resp: HTTPResponse) -> bytes:
    body = bytearray()
    try:
        while chunk := resp.read(READ_CHUNK, decode_content=False):
            body += chunk
            if len(body) > MAX_RESPONSE_BYTES:
                raise _oversized(f"more than {MAX_RESPONSE_BYTES // 1024} KiB in one response")
    except ReadTimeoutError:
        raise RemoteFailure(FailureKind.TIMEOUT, "no answer within the read timeout") from None
    except (HTTPError, OSError):
        raise RemoteFailure(
            FailureKind.UNREACHABLE, "the connection broke while the answer was read"
        ) from None
    return bytes(body)


def _oversized(what: str) -> RemoteFailure:
    return RemoteFailure(
        FailureKind.SCRIPT_ERROR,
        f"the sensor sent {what} (WinRM sends at most {MAX_RESPONSE_BYTES // 1024} KiB at once); "
        "the check was stopped",
    )


def guard(session: requests.Session) -> None:
    """Every request of `session` over watched connections, its body counted, no redirect followed."""
    adapter = GuardedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
