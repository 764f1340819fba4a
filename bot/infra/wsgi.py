"""A WSGI app served in the background by waitress: HTTP mode's `/slack/events` and the `/healthz` port.

Why waitress: one I/O thread reads every connection without blocking and hands a request to a bounded
pool of threads only once it has fully arrived, so idle or slow clients hold a socket, never a thread;
inactive connections are closed; a body over the limit is refused with 413 from its Content-Length,
before it is read; uncaught errors are logged through `logging` (so redacted), never printed.
On top of that, a request whose headers and body have not all arrived within `request_seconds` is cut
off (a slow-loris client that sends a byte now and then is never idle, so waitress alone keeps it).
Stopping closes every connection at once, whatever the clients are doing.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger(__name__)
# waitress warns once per request that waits for a thread: a burst of 50 commands, each waiting a few
# milliseconds, would write dozens of WARNING lines. What matters (the acknowledgement in time) is
# tested; the queue itself is not worth a warning.
logging.getLogger("waitress.queue").setLevel(logging.ERROR)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

LOOP_SECONDS = 1.0  # the I/O loop wakes up at least this often (stop() wakes it at once)
DISPATCH_SHUTDOWN_SECONDS = 3.0  # a request still running after this is abandoned on stop()


@dataclass(frozen=True)
class ServerLimits:
    """What one client may take. `connection_limit` bounds open connections (then new ones wait in the
    listen backlog); `idle_seconds` closes a connection on which nothing arrived for that long;
    `request_seconds` closes one whose request (headers and body) takes longer than that to arrive."""

    threads: int
    connection_limit: int
    idle_seconds: int
    max_body_bytes: int
    request_seconds: float = 10.0  # Slack gives up after 3 s: a request still arriving is no use
    max_header_bytes: int = 64 * 1024
    backlog: int = 1024


class BackgroundWsgiServer:
    """`app` on `host:port` (port 0: a free one), served on thread `name` from start() to stop()."""

    def __init__(self, app: WsgiApp, host: str, port: int, limits: ServerLimits, *, name: str) -> None:
        self._name = name
        self._map: dict[int, Any] = {}
        self._stopping = threading.Event()
        self._closing = threading.Lock()  # the trigger is never pulled once the I/O thread closed it
        self._closed = False
        self._request_seconds = limits.request_seconds
        self._arriving: dict[object, float] = {}  # a request still arriving → when it was first seen
        self._server = create_server(
            app,
            map=self._map,
            sockets=[_bound_socket(host, port)],
            threads=limits.threads,
            connection_limit=limits.connection_limit,
            channel_timeout=limits.idle_seconds,
            cleanup_interval=max(1, limits.idle_seconds // 2),
            max_request_body_size=limits.max_body_bytes,
            max_request_header_size=limits.max_header_bytes,
            backlog=limits.backlog,
            expose_tracebacks=False,
            ident="atp-bot",
            asyncore_use_poll=True,
        )
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    @property
    def host(self) -> str:
        return str(self._server.effective_host)

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def alive(self) -> bool:
        """The I/O thread runs (for liveness probes)."""
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Close the listener and every connection, then give running requests a moment to finish."""
        with self._closing:
            self._stopping.set()
            if self._thread.is_alive() and not self._closed:
                self._server.pull_trigger()  # wakes the I/O loop now
        if self._thread.is_alive():
            self._thread.join()
        self._close_all()
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=DISPATCH_SHUTDOWN_SECONDS)

    def _serve(self) -> None:
        """waitress's loop, one poll at a time so that stop() is seen; every socket of the map is touched
        by this thread only."""
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=LOOP_SECONDS, use_poll=True, map=self._map, count=1)
                self._cut_off_slow_requests(time.monotonic())
        except Exception:  # the loop itself failing is a bug: logged (redacted), the probes then fail
            log.exception("%s: the HTTP server stopped", self._name)
        finally:
            self._close_all()

    def _cut_off_slow_requests(self, now: float) -> None:
        """Close the connections whose request has been arriving for longer than `request_seconds`
        (the channel's `request` is the one being received; `requests` are complete ones being served:
        the attributes waitress's own idle sweep reads). Runs on the I/O thread, like the sweep."""
        arriving: dict[object, float] = {}
        for channel in list(self._server.active_channels.values()):
            request = channel.request
            if request is None or channel.requests or channel.will_close:
                continue
            first_seen = self._arriving.get(request, now)
            if now - first_seen > self._request_seconds:
                channel.will_close = True  # waitress closes it on its next pass
            else:
                arriving[request] = first_seen
        self._arriving = arriving

    def _close_all(self) -> None:
        with self._closing:
            if not self._closed:
                self._closed = True
                wasyncore.close_all(self._map, ignore_all=True)


def _bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` (IPv6 when the host is), not yet listening: binding ourselves
    gives exactly one listener, and an OSError that names the address."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
