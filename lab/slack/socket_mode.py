"""The emulator's Socket Mode side: a WebSocket server (ws:// on loopback, which slack_sdk's built-in
client accepts for any port but 443) that delivers envelopes and waits for their acknowledgements."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from lab.slack.workspace import APP_ID

log = logging.getLogger(__name__)


class NotConnected(Exception):
    """No app is connected over Socket Mode."""


@dataclass(frozen=True)
class EnvelopeAck:
    envelope_id: str
    payload: dict[str, Any] | None  # None: the app never acknowledged (within the wait)
    latency: float


class SocketModeServer:
    def __init__(self, host: str = "127.0.0.1", *, ping_interval: float = 0.25) -> None:
        """`ping_interval`: the server pings like Slack does, only more often, which also lets the
        client's blocking reads (3 s timeout) return soon, so that a closing client closes quickly."""
        self._lock = threading.Condition()
        self._tickets: set[str] = set()
        self._connections: list[ServerConnection] = []
        self._pending: dict[str, dict[str, Any] | None] = {}
        self._turn = 0
        self._server: Server = serve(
            self._serve_connection, host, 0, process_request=self._check_ticket, ping_interval=ping_interval
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="slack-emulator-ws", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.socket.getsockname()[1])

    def new_url(self) -> str:
        """What `apps.connections.open` answers: a URL with a single-use ticket."""
        ticket = secrets.token_hex(8)
        with self._lock:
            self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={APP_ID}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()

    def _check_ticket(self, connection: ServerConnection, request: Request) -> Response | None:
        ticket = (parse_qs(urlsplit(request.path).query).get("ticket") or [""])[0]
        with self._lock:
            if ticket in self._tickets:
                self._tickets.discard(ticket)
                return None
        return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid ticket\n")

    def _serve_connection(self, connection: ServerConnection) -> None:
        with self._lock:
            self._connections.append(connection)
            count = len(self._connections)
            self._lock.notify_all()
        try:
            connection.send(
                json.dumps({"type": "hello", "num_connections": count, "connection_info": {"app_id": APP_ID}})
            )
            for raw in connection:
                self._on_message(raw)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._connections.remove(connection)
                self._lock.notify_all()

    def _on_message(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("slack emulator: a Socket Mode message that is not JSON")
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        with self._lock:
            if envelope_id in self._pending:
                self._pending[envelope_id] = message.get("payload") or {}
                self._lock.notify_all()

    def wait_connected(self, timeout: float) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: bool(self._connections), timeout):
                raise NotConnected("no app connected over Socket Mode")

    @property
    def connected(self) -> int:
        with self._lock:
            return len(self._connections)

    def deliver(self, kind: str, payload: dict[str, Any], *, timeout: float) -> EnvelopeAck:
        """Send one envelope (`slash_commands`, `interactive`, `events_api`) to the next connection in
        turn and wait for its ack."""
        self.wait_connected(timeout)
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": 0,
            "retry_reason": "",
        }
        with self._lock:
            self._pending[envelope_id] = None
            # Slack spreads envelopes over an app's open connections (replicas, reconnects): round robin.
            connection = self._connections[self._turn % len(self._connections)]
            self._turn += 1
        started = time.monotonic()
        connection.send(json.dumps(envelope))
        with self._lock:
            self._lock.wait_for(lambda: self._pending[envelope_id] is not None, timeout)
            ack = self._pending.pop(envelope_id)
        return EnvelopeAck(envelope_id, ack, time.monotonic() - started)
