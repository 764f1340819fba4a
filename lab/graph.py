"""An emulator of the Microsoft identity platform token endpoint and Graph's Defender for Identity
health issues (`/v1.0/security/identities/healthIssues`) and sensors (`/v1.0/security/identities/sensors`),
for tests and for trying atp-bot locally.

HTTPS with a throwaway test CA (lab.tlsca). The token endpoint implements the client credentials grant
with a client secret or a certificate's client assertion, checked as Entra ID does (lab.graph_assertion)
(OpenID discovery document included, as MSAL reads it first); the health issues list supports
`$filter=status eq '…'`, the sensors list `$select`; both page with `@odata.nextLink`. Failures,
redirects, throttling with `Retry-After` and hostile answers (lab.graph_hostile) can be injected per
path, an application permission can be withheld (403 like Graph), and every request's method, path and
status are recorded (never a body or a header value).
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lab.graph_assertion import CLIENT_ASSERTION_TYPE, assertion_refusal, issue_app_certificate
from lab.graph_hostile import HostileAnswer, hostile_body, write_huge_chunked
from lab.serving import BackgroundServer
from lab.tlsca import TlsFiles, issue_ca_and_server_cert

HEALTH_ISSUES_PATH = "/v1.0/security/identities/healthIssues"
SENSORS_PATH = "/v1.0/security/identities/sensors"
SENSORS_PERMISSION = "SecurityIdentitiesSensors.Read.All"
HEALTH_PERMISSION = "SecurityIdentitiesHealth.Read.All"
CREDENTIALS_ISSUE = "Directory services user credentials are incorrect"


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str  # without the query
    status: int


@dataclass(frozen=True)
class _Injected:
    path_prefix: str
    status: int
    location: str | None = None
    retry_after: int | None = None
    hostile: HostileAnswer | None = None


@dataclass
class _State:
    tenant_id: str
    client_id: str
    client_secret: str
    page_size: int
    client_certificate: bytes | None = None  # the PEM certificate registered for the app
    issues: list[dict[str, Any]] = field(default_factory=list)
    sensors: list[dict[str, Any]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    injected: deque[_Injected] = field(default_factory=deque)
    withheld: set[str] = field(default_factory=set)
    records: list[RequestRecord] = field(default_factory=list)
    hostile_bytes_sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _open_issue_hosts(issues: list[dict[str, Any]]) -> list[set[str]]:
    """The sensor DNS names of each open issue (lower case)."""
    return [{n.lower() for n in i["sensorDNSNames"]} for i in issues if i["status"] == "open"]


def _with_open_issues(sensor: dict[str, Any], open_issue_hosts: list[set[str]]) -> dict[str, Any]:
    """`openHealthIssuesCount` as Graph reports it: the open issues naming the sensor (at least the set
    count), so issues that open and close over time show on the sensor too."""
    names = {n.lower() for n in sensor["settings"]["domainControllerDnsNames"]}
    naming = sum(1 for hosts in open_issue_hosts if names & hosts)
    return {**sensor, "openHealthIssuesCount": max(sensor["openHealthIssuesCount"], naming)}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    state: _State
    base_url: str


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the recorded requests are the emulator's log."""

    def _reply(
        self,
        status: int,
        payload: dict[str, Any] | None = None,
        location: str | None = None,
        *,
        retry_after: int | None = None,
    ) -> None:
        body = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        if location is not None:
            self.send_header("Location", location)
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        if body:
            self.send_header("Content-Type", "application/json; odata.metadata=minimal")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:  # the client sent `Connection: close`: answer it as HTTP/1.1 servers do,
            self.send_header("Connection", "close")  # or its pool may reuse a socket being closed
        self.end_headers()
        self.wfile.write(body)
        with self.server.state.lock:
            self.server.state.records.append(RequestRecord(self.command, urlsplit(self.path).path, status))

    def _reply_hostile(self, answer: HostileAnswer) -> None:
        """200 with a hostile body: chunked without Content-Length for `huge_body`, else sized."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json; odata.metadata=minimal")
        self.close_connection = True
        self.send_header("Connection", "close")
        if answer == "huge_body":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = write_huge_chunked(self.wfile)
        else:
            body = hostile_body(answer)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            sent = len(body)
        with self.server.state.lock:
            self.server.state.hostile_bytes_sent += sent
            self.server.state.records.append(RequestRecord(self.command, urlsplit(self.path).path, 200))

    def _injected(self, path: str) -> _Injected | None:
        state = self.server.state
        with state.lock:
            for item in state.injected:
                if path.startswith(item.path_prefix):
                    state.injected.remove(item)
                    return item
        return None

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        state = self.server.state
        injected = self._injected(parts.path)
        if injected is not None and injected.hostile is not None:
            self._reply_hostile(injected.hostile)
        elif injected is not None:
            status = injected.status
            error = {"error": {"code": "injected", "message": f"injected HTTP {status}"}}
            self._reply(status, error, injected.location, retry_after=injected.retry_after)
        elif parts.path == f"/{state.tenant_id}/v2.0/.well-known/openid-configuration":
            self._reply(200, self._openid_configuration())
        elif parts.path == HEALTH_ISSUES_PATH:
            self._health_issues(parse_qs(parts.query))
        elif parts.path == SENSORS_PATH:
            self._sensors(parse_qs(parts.query))
        else:
            self._reply(404, {"error": {"code": "ResourceNotFound", "message": "not found"}})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode("utf-8")) if length else {}
        injected = self._injected(parts.path)
        if injected is not None and injected.hostile is not None:
            self._reply_hostile(injected.hostile)
        elif injected is not None:
            error = {"error": "temporarily_unavailable", "error_description": "injected"}
            self._reply(injected.status, error, injected.location, retry_after=injected.retry_after)
        elif parts.path == f"/{self.server.state.tenant_id}/oauth2/v2.0/token":
            self._token({k: v[0] for k, v in form.items()})
        else:
            self._reply(404, {"error": "not_found"})

    def _openid_configuration(self) -> dict[str, Any]:
        base = f"{self.server.base_url}/{self.server.state.tenant_id}"
        return {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
        }

    def _token(self, form: dict[str, str]) -> None:
        state = self.server.state
        if form.get("grant_type") != "client_credentials" or not form.get("scope", "").endswith("/.default"):
            self._reply(400, {"error": "invalid_request", "error_description": "AADSTS900144: bad request"})
            return
        refusal = self._client_refusal(form)
        if refusal is not None:
            self._reply(401, {"error": "invalid_client", "error_description": refusal})
            return
        token = secrets.token_urlsafe(32)
        with state.lock:
            state.tokens.add(token)
        self._reply(
            200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        )

    def _client_refusal(self, form: dict[str, str]) -> str | None:
        """Entra's description of why it does not accept the client's credential: its secret, or a client
        assertion signed with the key of its registered certificate."""
        state = self.server.state
        if form.get("client_id") != state.client_id:
            return f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not found."
        if "client_assertion" in form:
            if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
                return "AADSTS50027: JWT token is invalid or malformed."
            endpoint = f"{self.server.base_url}/{state.tenant_id}/oauth2/v2.0/token"
            return assertion_refusal(
                form["client_assertion"], state.client_certificate, state.client_id, endpoint
            )
        if "client_secret" not in form:
            return (
                "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'."
            )
        if form["client_secret"] != state.client_secret:
            return "AADSTS7000215: Invalid client secret provided."
        return None

    def _authorized(self, permission: str) -> bool:
        """Graph's answers without a valid token (401) or without the application permission (403)."""
        state = self.server.state
        header = self.headers.get("Authorization", "")
        with state.lock:
            valid = header.startswith("Bearer ") and header[7:] in state.tokens
            granted = permission not in state.withheld
        if not valid:
            self._reply(
                401, {"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty."}}
            )
        elif not granted:
            message = "Missing application permissions"  # Graph names no permission in its answer
            self._reply(403, {"error": {"code": "Forbidden", "message": message}})
        return valid and granted

    def _health_issues(self, query: dict[str, list[str]]) -> None:
        state = self.server.state
        if not self._authorized(HEALTH_PERMISSION):
            return
        with state.lock:
            issues = list(state.issues)
        wanted = (query.get("$filter") or [""])[0]
        if wanted:
            status = wanted.removeprefix("status eq ").strip("'")
            issues = [i for i in issues if i["status"] == status]
        self._reply_page(HEALTH_ISSUES_PATH, issues, query, f"&$filter={wanted}" if wanted else "")

    def _reply_page(
        self,
        path: str,
        items: list[dict[str, Any]],
        query: dict[str, list[str]],
        kept_query: str,
        shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """One page of `items` (`$skiptoken` = how many came before), linking to the next like Graph;
        `shape` makes each item of the page what is sent (only the page's: 2 000 sensors stay cheap)."""
        size = self.server.state.page_size
        skip = int((query.get("$skiptoken") or ["0"])[0])
        page = items[skip : skip + size]
        payload: dict[str, Any] = {
            "@odata.context": f"{self.server.base_url}/v1.0/$metadata#{path.removeprefix('/v1.0/')}",
            "value": [shape(item) for item in page] if shape else page,
        }
        if skip + size < len(items):
            payload["@odata.nextLink"] = f"{self.server.base_url}{path}?$skiptoken={skip + size}{kept_query}"
        self._reply(200, payload)

    def _sensors(self, query: dict[str, list[str]]) -> None:
        state = self.server.state
        if not self._authorized(SENSORS_PERMISSION):
            return
        with state.lock:
            sensors, open_issue_hosts = [dict(s) for s in state.sensors], _open_issue_hosts(state.issues)
        select = (query.get("$select") or [""])[0]
        fields = [f for f in select.split(",") if f]

        def shape(sensor: dict[str, Any]) -> dict[str, Any]:
            counted = _with_open_issues(sensor, open_issue_hosts)
            return {k: v for k, v in counted.items() if not fields or k in fields or k == "id"}

        self._reply_page(SENSORS_PATH, sensors, query, f"&$select={select}" if select else "", shape)


class GraphEmulator(BackgroundServer[_Server]):
    """Start with `start()`, stop with `stop()` (or use as a context manager)."""

    thread_name = "graph"

    def __init__(
        self,
        directory: Path,
        *,
        tenant_id: str = "contoso.onmicrosoft.test",
        client_id: str = "11111111-2222-3333-4444-555555555555",
        client_secret: str | None = None,
        client_certificate: bytes | None = None,
        page_size: int = 2,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.tls: TlsFiles = issue_ca_and_server_cert(directory, ["localhost"], [host])
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self._state = _State(tenant_id, client_id, self.client_secret, page_size, client_certificate)
        self._server = _Server((host, port), _Handler)
        self._server.state = self._state
        self._server.base_url = f"https://{host}:{self._server.server_address[1]}"
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)

    @property
    def tenant_id(self) -> str:
        return self._state.tenant_id

    @property
    def client_id(self) -> str:
        return self._state.client_id

    @property
    def authority_url(self) -> str:
        return self._server.base_url

    @property
    def graph_url(self) -> str:
        return f"{self._server.base_url}/v1.0"

    # --- what tests set up, inject and inspect ---

    def add_issue(
        self,
        display_name: str = CREDENTIALS_ISSUE,
        *,
        status: str = "open",
        domains: tuple[str, ...] = ("contoso.test",),
        sensors: tuple[str, ...] = ("dc1.contoso.test",),
        severity: str = "high",
    ) -> str:
        """Add a health issue shaped like Graph's healthIssue resource; returns its id."""
        issue_id = secrets.token_hex(16)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        with self._state.lock:
            self._state.issues.append(
                {
                    "id": issue_id,
                    "displayName": display_name,
                    "description": f"{display_name} (lab)",
                    "healthIssueType": "sensor" if sensors else "global",
                    "issueTypeId": "1011",
                    "severity": severity,
                    "status": status,
                    "createdDateTime": now,
                    "lastModifiedDateTime": now,
                    "domainNames": list(domains),
                    "sensorDNSNames": list(sensors),
                    "additionalInformation": [],
                    "recommendations": ["Update the directory services account credentials."],
                    "recommendedActionCommands": [],
                }
            )
        return issue_id

    def set_status(self, issue_id: str, status: str, *, at: datetime | None = None) -> None:
        """Open or close an issue as MDI does, at `at` (default now): its lastModifiedDateTime changes."""
        when = (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
        with self._state.lock:
            for issue in self._state.issues:
                if issue["id"] == issue_id:
                    issue["status"] = status
                    issue["lastModifiedDateTime"] = when

    @property
    def issue_ids(self) -> list[str]:
        with self._state.lock:
            return [issue["id"] for issue in self._state.issues]

    def add_sensor(
        self,
        name: str,
        *,
        domain: str = "contoso.test",
        sensor_type: str = "domainControllerIntegrated",
        version: str = "2.250.18972.56743",
        health_status: str = "healthy",
        deployment_status: str = "upToDate",
        open_issues: int = 0,
        dns_names: tuple[str, ...] | None = None,
    ) -> str:
        """Add a sensor shaped like Graph's sensor resource (`displayName` is the short name); its id."""
        sensor_id = secrets.token_hex(16)
        fqdn = f"{name}.{domain}".lower()
        with self._state.lock:
            self._state.sensors.append(
                {
                    "id": sensor_id,
                    "displayName": name,
                    "domainName": domain,
                    "sensorType": sensor_type,
                    "version": version,
                    "healthStatus": health_status,
                    "deploymentStatus": deployment_status,
                    "openHealthIssuesCount": open_issues,
                    "createdDateTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                    "settings": {
                        "description": None,
                        "domainControllerDnsNames": list(dns_names if dns_names is not None else (fqdn,)),
                        "isDelayedDeploymentEnabled": False,
                    },
                }
            )
        return sensor_id

    def update_sensor(self, sensor_id: str, **fields: Any) -> None:
        """Change a sensor's Graph fields, e.g. `healthStatus="notHealthyHigh"`."""
        with self._state.lock:
            for sensor in self._state.sensors:
                if sensor["id"] == sensor_id:
                    sensor.update(fields)

    def withhold_permission(self, permission: str) -> None:
        """Answer requests that need this application permission with 403 (it was never granted)."""
        with self._state.lock:
            self._state.withheld.add(permission)

    def fail_next(self, path_prefix: str, status: int, *, retry_after: int | None = None) -> None:
        """Answer the next request whose path starts with `path_prefix` with `status` (and `Retry-After`)."""
        with self._state.lock:
            self._state.injected.append(_Injected(path_prefix, status, retry_after=retry_after))

    def answer_next(self, path_prefix: str, answer: HostileAnswer) -> None:
        """Answer the next request whose path starts with `path_prefix` with a hostile 200
        (lab.graph_hostile)."""
        with self._state.lock:
            self._state.injected.append(_Injected(path_prefix, 200, hostile=answer))

    @property
    def hostile_bytes_sent(self) -> int:
        """Body bytes the hostile answers wrote before they ended or the client hung up."""
        with self._state.lock:
            return self._state.hostile_bytes_sent

    def redirect_next(self, path_prefix: str, status: int, location: str) -> None:
        """Answer the next request whose path starts with `path_prefix` with a redirect to `location`."""
        with self._state.lock:
            self._state.injected.append(_Injected(path_prefix, status, location))

    @property
    def issued_tokens(self) -> list[str]:
        """The access tokens handed out (for tests proving they never leak)."""
        with self._state.lock:
            return list(self._state.tokens)

    @property
    def token_path(self) -> str:
        return f"/{self._state.tenant_id}/oauth2/v2.0/token"

    @property
    def records(self) -> list[RequestRecord]:
        with self._state.lock:
            return list(self._state.records)


def add_mixed_fleet(emulator: GraphEmulator, count: int) -> None:
    """`count` sensors dc1…: every third unified (3.x), every fifth with a failing deployment."""
    statuses = ("startFailure", "disconnected", "outdated")
    for i in range(1, count + 1):
        failing = i % 5 == 0
        emulator.add_sensor(
            f"dc{i}",
            version="3.0.1234.0" if i % 3 == 0 else "2.250.18972.56743",
            health_status="notHealthyHigh" if failing else "healthy",
            deployment_status=statuses[i % 3] if failing else "upToDate",
        )


def register_cli(actions: Any) -> None:
    """`atp-bot lab graph`: run the emulator in the foreground until Ctrl-C."""
    parser = actions.add_parser(
        "graph", help="run a Microsoft Graph health issues emulator (with its token endpoint)"
    )
    parser.add_argument("--port", type=int, default=8444, help="port on 127.0.0.1 (default 8444; 0 = any)")
    parser.add_argument("--dir", type=Path, default=Path(".lab/graph"), help="where the test CA and files go")
    parser.add_argument("--issues", type=int, default=1, help="open credential health issues to start with")
    parser.add_argument(
        "--sensors", type=int, default=0, help="sensors to list (a mixed fleet: classic, unified, unhealthy)"
    )
    parser.add_argument(
        "--certificate",
        action="store_true",
        help="register an app certificate (written to --dir) and print the certificate sign-in instead",
    )
    parser.set_defaults(handler=_run_cli)


def _run_cli(args: Any) -> int:
    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    app = issue_app_certificate(directory) if args.certificate else None
    emulator = GraphEmulator(directory, port=args.port, client_certificate=app.pem if app else None)
    secret_file = directory / "client.secret"
    secret_file.touch(mode=0o600)
    secret_file.write_text(emulator.client_secret + "\n", encoding="utf-8")
    if app is None:
        sign_in = f'client_secret_file = "{secret_file.resolve()}"'
    else:
        sign_in = (
            f'client_certificate_file = "{app.cert_file.resolve()}"\n'
            f'client_certificate_key_file = "{app.key_file.resolve()}"'
        )
    for _ in range(args.issues):
        emulator.add_issue()
    add_mixed_fleet(emulator, args.sensors)
    with emulator:
        print(f"Graph emulator at {emulator.graph_url}{HEALTH_ISSUES_PATH.removeprefix('/v1.0')}")
        print("configuration for atp-bot:\n")
        print(
            f'[graph]\nenabled = true\ntenant_id = "{emulator.tenant_id}"\nclient_id = "{emulator.client_id}"'
        )
        if args.sensors:
            print("discover_sensors = true")
        print(sign_in)
        print(f'authority_url = "{emulator.authority_url}"\ngraph_url = "{emulator.graph_url}"')
        print(f'ca_file = "{emulator.tls.ca_file.resolve()}"\n')
        print("Ctrl-C stops the emulator")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print(f"\nstopped after {len(emulator.records)} request(s)")
    return 0
