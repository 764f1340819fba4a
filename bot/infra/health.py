"""`/healthz`, `/livez` and `/metrics` of `atp-bot run`, on a local port (`[observability] listen`).

`/healthz` (ready) answers 200 when every probe passes (Slack connected, scheduler running, store
reachable) and 503 otherwise, with the probes' results as JSON, so a container runtime or a load balancer
can act on it. `/livez` (alive) passes while the process and its threads work, whatever Slack or the
store do: restarting the process would not bring Slack back, so a liveness probe must not ask for it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import make_wsgi_app

from bot.infra.metrics import REGISTRY
from bot.infra.wsgi import BackgroundWsgiServer, ServerLimits

log = logging.getLogger(__name__)

Probe = Callable[[], bool]
Info = Callable[[], Mapping[str, str]]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]

# Probes and a metrics scraper: a few small GETs at a time.
HEALTH_LIMITS = ServerLimits(threads=2, connection_limit=32, idle_seconds=10, max_body_bytes=64 * 1024)


def _run_probe(probe: Probe) -> bool:
    try:
        return bool(probe())
    except Exception:  # a probe that fails is a failed probe, never a crash
        log.warning("health probe failed", exc_info=True)
        return False


def health_app(
    probes: Mapping[str, Probe], info: Info | None = None, live: Mapping[str, Probe] | None = None
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """`probes` answer `/healthz`, `live` answer `/livez`; `info` adds facts to `/healthz` that are not
    pass/fail (such as a replica's role)."""
    metrics = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return _answer(start_response, probes, info)
        if path == "/livez":
            return _answer(start_response, live or {}, None)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


def _answer(start_response: StartResponse, probes: Mapping[str, Probe], info: Info | None) -> list[bytes]:
    checks = {name: _run_probe(probe) for name, probe in probes.items()}
    healthy = all(checks.values())
    answer: dict[str, Any] = {"status": "ok" if healthy else "unhealthy", "checks": checks}
    if info is not None:
        answer.update(info())
    body = json.dumps(answer).encode()
    status = "200 OK" if healthy else "503 Service Unavailable"
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class HealthServer:
    """The endpoint on a background thread; `url` is its base URL once started."""

    def __init__(
        self,
        host: str,
        port: int,
        probes: Mapping[str, Probe],
        info: Info | None = None,
        live: Mapping[str, Probe] | None = None,
    ) -> None:
        self._server = BackgroundWsgiServer(
            health_app(probes, info, live), host, port, HEALTH_LIMITS, name="atp-bot-health"
        )

    @property
    def url(self) -> str:
        host = self._server.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self._server.port}"

    def start(self) -> None:
        self._server.start()
        log.info("health and metrics on %s/healthz, /livez and /metrics", self.url)

    def stop(self) -> None:
        self._server.stop()
