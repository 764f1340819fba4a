"""Defender for Identity sensors from Microsoft Graph (`GET /security/identities/sensors`).

The same app registration as the health issues (`[graph]`), with one more application permission,
`SecurityIdentitiesSensors.Read.All`. Graph is asked only for the fields atp-bot uses (`$select`),
page by page; throttling (429/503 with `Retry-After`) is waited out within a bounded total, and the
answer is kept for a short time so a burst of `/atp status` calls makes one Graph call. Redirects are
never followed (the bearer token would go with them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import requests

from bot.config import GraphConfig
from bot.graph.client import GraphHealthSource
from bot.graph.http import BodyTooLarge, CappedResponse, GraphError, RedirectRefused, json_page

log = logging.getLogger(__name__)

SENSORS_PATH = "/security/identities/sensors"
HEALTH_ISSUES_PATH = "/security/identities/healthIssues"
SENSORS_PERMISSION = "SecurityIdentitiesSensors.Read.All"
HEALTH_PERMISSION = "SecurityIdentitiesHealth.Read.All"
SENSOR_FIELDS = (
    "id",
    "displayName",
    "domainName",
    "sensorType",
    "version",
    "healthStatus",
    "deploymentStatus",
    "openHealthIssuesCount",
    "settings",
)
MAX_PAGES = 500
THROTTLE_STATUSES = (429, 503)
DEFAULT_RETRY_AFTER = 5.0  # seconds, when a throttled answer carries no usable Retry-After


@dataclass(frozen=True)
class GraphSensor:
    """One sensor as Defender for Identity reports it; enum values are kept as Graph spells them."""

    id: str
    display_name: str
    domain: str | None
    sensor_type: str | None
    version: str | None
    health_status: str | None
    deployment_status: str | None
    open_issues_count: int
    dns_names: tuple[str, ...]
    open_health_issues: tuple[str, ...] = ()

    @property
    def dns_name(self) -> str:
        """The sensor's DNS name: the first of `settings.domainControllerDnsNames`, else name.domain."""
        if self.dns_names:
            return self.dns_names[0]
        return f"{self.display_name}.{self.domain}".lower() if self.domain else self.display_name.lower()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _count(value: Any) -> int:
    """A positive JSON integer (not `true`, which Python counts as an int), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def parse_sensor(item: dict[str, Any]) -> GraphSensor | None:
    """A sensor resource as a GraphSensor; None when it lacks an id or a display name."""
    sensor_id, name = _text(item.get("id")), _text(item.get("displayName"))
    if sensor_id is None or name is None:
        return None
    settings = item.get("settings") if isinstance(item.get("settings"), dict) else {}
    names = settings.get("domainControllerDnsNames") if isinstance(settings, dict) else None
    dns_names = [n.lower() for n in names if isinstance(n, str) and n] if isinstance(names, list) else []
    return GraphSensor(
        id=sensor_id,
        display_name=name,
        domain=_text(item.get("domainName")),
        sensor_type=_text(item.get("sensorType")),
        version=_text(item.get("version")),
        health_status=_text(item.get("healthStatus")),
        deployment_status=_text(item.get("deploymentStatus")),
        open_issues_count=_count(item.get("openHealthIssuesCount")),
        dns_names=tuple(dns_names),
    )


def _retry_after(response: CappedResponse) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return DEFAULT_RETRY_AFTER


class GraphSensorSource(GraphHealthSource):
    """Lists the sensors (with their open health issues' names); one Graph round per `cache_seconds`."""

    def __init__(
        self,
        config: GraphConfig,
        *,
        session: requests.Session | None = None,
        cache_seconds: float = 60.0,
        max_throttle_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(config, session=session)
        self._cache_seconds = cache_seconds
        self._max_throttle_wait = max_throttle_wait
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, tuple[GraphSensor, ...]] | None = None

    def sensors(self) -> tuple[GraphSensor, ...]:
        """Every sensor; a list fetched less than `cache_seconds` ago is reused (also by other threads)."""
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._cache_seconds:
                return self._cached[1]
            try:
                sensors = self._fetch()
            finally:
                self._http.close()  # idle until the cache expires: hold no connection meanwhile
            self._cached = (self._clock(), sensors)
            return sensors

    def _fetch(self) -> tuple[GraphSensor, ...]:
        token = self._token()
        waited = [0.0]
        url = f"{self.config.graph_url}{SENSORS_PATH}?$select={','.join(SENSOR_FIELDS)}"
        parsed = [parse_sensor(i) for i in self._pages(url, token, SENSORS_PERMISSION, waited)]
        sensors = [s for s in parsed if s is not None]
        issues = self._open_issue_names(sensors, token, waited)
        log.info("graph: %d sensor(s)", len(sensors))
        return tuple(replace(s, open_health_issues=issues.get(s.id, ())) for s in sensors)

    def _open_issue_names(
        self, sensors: list[GraphSensor], token: str, waited: list[float]
    ) -> dict[str, tuple[str, ...]]:
        """Display names of the open health issues per sensor id, matched by the sensors' DNS names."""
        if not any(s.open_issues_count for s in sensors):
            return {}
        url = f"{self.config.graph_url}{HEALTH_ISSUES_PATH}?$filter=status eq 'open'"
        by_dns: dict[str, list[str]] = {}
        for item in self._pages(url, token, HEALTH_PERMISSION, waited):
            name = _text(item.get("displayName"))
            dns_names = item.get("sensorDNSNames")
            if name is None or not isinstance(dns_names, list):
                continue
            for dns in dns_names:
                if isinstance(dns, str):
                    by_dns.setdefault(dns.lower(), []).append(name)
        found: dict[str, tuple[str, ...]] = {}
        for sensor in sensors:
            names = [n for dns in sensor.dns_names or (sensor.dns_name,) for n in by_dns.get(dns, [])]
            if names:
                found[sensor.id] = tuple(dict.fromkeys(names))
        return found

    def _pages(self, url: str, token: str, permission: str, waited: list[float]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        next_url: str | None = url
        for _ in range(MAX_PAGES):
            if next_url is None:
                return items
            page = self._get_page(next_url, token, permission, waited)
            items += [i for i in page["value"] if isinstance(i, dict)]
            link = page.get("@odata.nextLink")
            if link is not None and (
                not isinstance(link, str) or not link.startswith(f"{self.config.graph_url}/")
            ):
                raise GraphError("Graph's next page link points elsewhere; not following it")
            next_url = link
        raise GraphError(f"more than {MAX_PAGES} pages from Graph; stopped")

    def _get_page(self, url: str, token: str, permission: str, waited: list[float]) -> dict[str, Any]:
        """One page; throttled answers are retried after `Retry-After` while the total wait allows."""
        path = url.removeprefix(self.config.graph_url).split("?")[0]
        while True:
            response = self._request(url, token, path)
            if response.status_code not in THROTTLE_STATUSES:
                return self._page_of(response, path, permission)
            delay = _retry_after(response)
            if waited[0] + delay > self._max_throttle_wait:
                raise GraphError(
                    f"Graph throttled: {path} answered HTTP {response.status_code} and asked to wait "
                    f"{delay:g} s more after {waited[0]:g} s of waiting (limit {self._max_throttle_wait:g} s)"
                )
            log.info("graph: %s throttled (HTTP %d); retrying in %g s", path, response.status_code, delay)
            self._sleep(delay)
            waited[0] += delay

    def _request(self, url: str, token: str, path: str) -> CappedResponse:
        """One GET, read to its end, on a connection closed after it: nothing lingers between rounds."""
        try:
            return self._http.get(url, headers={"Authorization": f"Bearer {token}", "Connection": "close"})
        except (RedirectRefused, BodyTooLarge) as exc:
            raise GraphError(f"Graph answered {path} with {exc}") from None
        except requests.RequestException as exc:
            raise GraphError(f"cannot reach Graph at {self.config.graph_url}: {type(exc).__name__}") from None

    def _page_of(self, response: CappedResponse, path: str, permission: str) -> dict[str, Any]:
        if response.status_code in (401, 403):
            raise GraphError(
                f"Graph refused {path} (HTTP {response.status_code}): grant the app the {permission} "
                "application permission (with admin consent)"
            )
        if response.status_code != 200:
            raise GraphError(f"Graph answered HTTP {response.status_code} for {path}")
        return json_page(response.content, path)
