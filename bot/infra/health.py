"""`/healthz` and `/metrics` of `atp-bot run`, on a local port (`[observability] listen`).

`/healthz` answers 200 when every probe passes (Slack connected, scheduler running, store reachable) and
503 otherwise, with the probes' results as JSON, so a container runtime or a load balancer can act on it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from bot.infra.metrics import REGISTRY

log = logging.getLogger(__name__)

Probe = Callable[[], bool]
Info = Callable[[], Mapping[str, str]]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def _run_probe(probe: Probe) -> bool:
    try:
        return bool(probe())
    except Exception:  # a probe that fails is a failed probe, never a crash
        log.warning("health probe failed", exc_info=True)
        return False


def health_app(
    probes: Mapping[str, Probe], info: Info | None = None
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """`info` adds facts to the body that are not pass/fail (such as a replica's role)."""
    metrics = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path != "/healthz":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        checks = {name: _run_probe(probe) for name, probe in probes.items()}
        healthy = all(checks.values())
        answer: dict[str, Any] = {"status": "ok" if healthy else "unhealthy", "checks": checks}
        if info is not None:
            answer.update(info())
        body = json.dumps(answer).encode()
        status = "200 OK" if healthy else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("health: " + format, *args)


class HealthServer:
    """The endpoint on a background thread; `url` is its base URL once started."""

    def __init__(self, host: str, port: int, probes: Mapping[str, Probe], info: Info | None = None) -> None:
        self._server: WSGIServer = make_server(host, port, health_app(probes, info), handler_class=_Quiet)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="atp-bot-health", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()
        log.info("health and metrics on %s/healthz and /metrics", self.url)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
