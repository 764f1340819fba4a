"""The emulator's HTTP side: Slack's Web API (`/api/<method>`) and response URLs (`/response/<id>`).

Every call is recorded as Slack would see it (method, arguments, body), without headers: the token
travels in the Authorization header and is checked, never stored.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from lab.slack.workspace import ApiError, Workspace

log = logging.getLogger(__name__)

RESPONSE_URL_METHOD = "response_url"  # how posts to a response URL appear in the recording
# Slack accepts a response URL "up to 5 times within 30 minutes"; later posts are refused (HTTP 404).
RESPONSE_URL_USES = 5
RESPONSE_URL_SECONDS = 30 * 60
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})


@dataclass(frozen=True)
class Call:
    """One request Slack received: `args` merges query, form and JSON arguments."""

    method: str
    args: dict[str, Any]
    body: str
    status: int
    error: str | None
    at: float
    response_id: str | None = None  # for a post to a response URL: whose (the trigger id of the request)
    answer: dict[str, Any] | None = None  # what the Web API answered (e.g. a posted message's ts)


@dataclass
class Fault:
    """A scripted failure for the next `times` calls of a method."""

    status: int  # 429 (with Retry-After), 5xx, 3xx (to `location`), or 200 with `error`
    retry_after: int | None = None
    error: str | None = None
    times: int = 1
    location: str | None = None


@dataclass(frozen=True)
class Outage:
    """Slack down until `until` (the workspace's clock): every Web API call answers `status`."""

    status: int
    until: float
    retry_after: int | None = None


@dataclass
class WebApi:
    workspace: Workspace
    bot_token: str
    app_token: str
    socket_url: Callable[[], str]  # a fresh Socket Mode URL (with a single-use ticket)
    calls: list[Call] = field(default_factory=list)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    response_uses: dict[str, int] = field(default_factory=dict)  # response id -> posts it accepted
    outage: Outage | None = None

    def fail(self, method: str, fault: Fault) -> None:
        with self.lock:
            self.faults.setdefault(method, []).append(fault)

    def _take_fault(self, method: str) -> Fault | None:
        with self.lock:
            outage = self.outage
            if outage is not None and self.workspace.clock() < outage.until:
                return Fault(outage.status, outage.retry_after)
            queue = self.faults.get(method) or []
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault

    def respond(self, response_id: str, args: dict[str, Any], body: str) -> tuple[int, dict[str, str], bytes]:
        """A post to a response URL: accepted up to `RESPONSE_URL_USES` times within 30 minutes of the
        request that issued it, refused after that as Slack does (404, `used_url` / `expired_url`)."""
        trigger = self.workspace.triggers.get(response_id)
        with self.lock:
            uses = self.response_uses.get(response_id, 0)
            if trigger is None:
                error: str | None = "no_such_url"
            elif self.workspace.clock() - trigger.issued > RESPONSE_URL_SECONDS:
                error = "expired_url"
            elif uses >= RESPONSE_URL_USES:
                error = "used_url"
            else:
                error = None
                self.response_uses[response_id] = uses + 1
        status = 404 if error else 200
        self.record(Call(RESPONSE_URL_METHOD, args, body, status, error, time.monotonic(), response_id))
        if error:
            return status, {"Content-Type": "text/plain"}, error.encode()
        return status, {"Content-Type": "application/json"}, b'{"ok": true}'

    def record(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def handle(
        self, method: str, args: dict[str, Any], body: str, token: str | None
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one Web API call: (HTTP status, headers, body)."""
        status, headers, error = 200, {"Content-Type": "application/json; charset=utf-8"}, None
        fault = self._take_fault(method)
        if fault is not None and fault.status != 200:
            status, error = fault.status, "ratelimited" if fault.status == 429 else "internal_error"
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            if fault.location is not None:
                headers["Location"] = fault.location
            answer: dict[str, Any] = {"ok": False, "error": error}
        elif fault is not None:
            error = fault.error or "fatal_error"
            answer = {"ok": False, "error": error}
        else:
            answer = self._answer(method, args, token)
            error = answer.get("error")
        self.record(Call(method, args, body, status, error, time.monotonic(), answer=answer))
        return status, headers, json.dumps(answer).encode()

    def _answer(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        expected = self.app_token if method in APP_TOKEN_METHODS else self.bot_token
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token != expected:
            return {"ok": False, "error": "invalid_auth"}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.socket_url()}
        try:
            return self.workspace.call(method, args)
        except ApiError as exc:
            return {"ok": False, "error": exc.error}


def parse_arguments(query: str, content_type: str, body: str) -> dict[str, Any]:
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if body and content_type.startswith("application/json"):
        decoded = json.loads(body)
        if isinstance(decoded, dict):
            args.update(decoded)
    elif body:
        args.update(parse_qsl(body, keep_blank_values=True))
    return args


class WebApiServer:
    """`ThreadingHTTPServer` on 127.0.0.1 (ephemeral port) serving a `WebApi`."""

    def __init__(self, api: WebApi, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api = api
        handler = _handler_class(api)
        self._server = _Server((host, port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="slack-emulator-api", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the request threads
    block_on_close = True


def _handler_class(api: WebApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("slack emulator: " + format, *args)

        def do_GET(self) -> None:
            self._serve("")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._serve(self.rfile.read(length).decode("utf-8", "replace"))

        def _serve(self, body: str) -> None:
            parts = urlsplit(self.path)
            content_type = self.headers.get("Content-Type") or ""
            try:
                args = parse_arguments(parts.query, content_type, body)
            except ValueError:
                self._send(400, {"Content-Type": "text/plain"}, b"invalid_json")
                return
            if parts.path.startswith("/response/"):
                self._send(*api.respond(parts.path.removeprefix("/response/"), args, body))
                return
            if not parts.path.startswith("/api/"):
                self._send(404, {"Content-Type": "text/plain"}, b"not found")
                return
            method = parts.path.removeprefix("/api/")
            authorization = self.headers.get("Authorization") or ""
            token = authorization.removeprefix("Bearer ").strip() or args.pop("token", None)
            self._send(*api.handle(method, args, body, token))

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
