"""An emulator of the ATA Center's configuration endpoint, for tests and for trying atp-bot locally.

HTTPS with a throwaway test CA, Windows authentication as NTLM (pyspnego's acceptor, with channel
binding to the server certificate as IIS's extended protection does), and
`/api/management/systemProfiles/center`: GET returns the Center's profile, POST of the whole modified
profile replaces it. Like the real Center it never returns a password in clear. Failures can be
injected (HTTP status, unexpected JSON, a redirect elsewhere), and every request's metadata is recorded.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import spnego
import spnego.channel_bindings
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from lab.ntlm_users import register as register_ntlm_user
from lab.serving import BackgroundServer
from lab.tlsca import TlsFiles, issue_ca_and_server_cert

PROFILE_PATH = "/api/management/systemProfiles/center"
SECTION = "GatewayCommonConfiguration"
PASSWORD_FIELD = "DirectoryServicesClientAccountPasswordEncrypted"


def sample_profile(account_user: str, account_domain: str) -> dict[str, Any]:
    """A trimmed Center system profile, shaped like the one ATA 1.9 serves (see docs/store.md)."""
    return {
        "Configuration": {
            "LocalizerConfiguration": {"LocaleId": "en-us"},
            "SyslogClientConfiguration": {"IsEnabled": False, "ServerEndpoint": None},
            "SecretManagerConfiguration": {"CertificateThumbprint": "0" * 40},
        },
        SECTION: {
            "DirectoryServicesClientAccountDomainName": account_domain,
            "DirectoryServicesClientAccountName": account_user,
            PASSWORD_FIELD: base64.b64encode(secrets.token_bytes(48)).decode(),
            "IsRadiusEventListenerEnabled": False,
            "IsSyslogEventListenerEnabled": False,
            "IsWindowsEventLogReaderEnabled": True,
            "RadiusEventListenerSharedSecretEncrypted": None,
        },
        "SoftwareUpdates": [],
        "NetbiosName": "ATACENTER",
        "Version": "1.9.7312.32791",
        "Id": secrets.token_hex(12),
        "UpdateTime": datetime.now(UTC).isoformat(),
        "Type": "CenterSystemProfile",
    }


@dataclass(frozen=True)
class RequestRecord:
    """What the emulator saw of one request: never the body."""

    method: str
    path: str
    user: str | None
    status: int
    headers: dict[str, str]


@dataclass
class _Injected:
    method: str
    status: int
    body: bytes
    delay: float
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _State:
    profile: dict[str, Any]
    stored_password: str | None = None
    saves: int = 0
    injected: deque[_Injected] = field(default_factory=deque)
    records: list[RequestRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _channel_bindings(cert_file: Path) -> spnego.channel_bindings.GssChannelBindings:
    """tls-server-end-point bindings (RFC 5929) of our certificate, as requests-ntlm computes them."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    algorithm = cert.signature_hash_algorithm
    digest = hashes.Hash(
        algorithm if algorithm and algorithm.name not in ("md5", "sha1") else hashes.SHA256()
    )
    digest.update(cert.public_bytes(serialization.Encoding.DER))
    return spnego.channel_bindings.GssChannelBindings(
        application_data=b"tls-server-end-point:" + digest.finalize()
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    state: _State
    bindings: spnego.channel_bindings.GssChannelBindings


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self._ntlm: Any = None
        self._user: str | None = None

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the recorded requests are the emulator's log."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        state = self.server.state
        with state.lock:
            state.records.append(
                RequestRecord(self.command, self.path, self._user, status, dict(self.headers.items()))
            )

    def _authenticate(self) -> bool:
        """Connection-based NTLM, like IIS: once a connection has authenticated it stays so."""
        header = self.headers.get("Authorization", "")
        if not header.startswith("NTLM "):
            if self._user is not None:
                return True
            self._reply(401, headers={"WWW-Authenticate": "NTLM"})
            return False
        token = base64.b64decode(header[5:])
        if self._ntlm is None or token[8:9] == b"\x01":  # NEGOTIATE_MESSAGE starts a new handshake
            self._user = None
            self._ntlm = spnego.server(protocol="ntlm", channel_bindings=self.server.bindings)
        try:
            answer = self._ntlm.step(token)
        except spnego.exceptions.SpnegoError:
            self._ntlm = None
            self._reply(401, headers={"WWW-Authenticate": "NTLM"})
            return False
        if not self._ntlm.complete:
            self._reply(401, headers={"WWW-Authenticate": "NTLM " + base64.b64encode(answer or b"").decode()})
            return False
        self._user = str(self._ntlm.client_principal)
        return True

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if not self._authenticate():
            return
        state = self.server.state
        with state.lock:
            injected = next((i for i in state.injected if i.method == method), None)
            if injected is not None:
                state.injected.remove(injected)
        if injected is not None:
            time.sleep(injected.delay)
            self._reply(injected.status, injected.body, injected.headers)
        elif self.path != PROFILE_PATH:
            self._reply(404, b'{"Message":"No HTTP resource was found that matches the request URI."}')
        elif method == "GET":
            with state.lock:
                payload = json.dumps(state.profile).encode()
            self._reply(200, payload)
        else:
            self._post_profile(body)

    def _post_profile(self, body: bytes) -> None:
        state = self.server.state
        try:
            posted = json.loads(body)
        except ValueError:
            self._reply(400, b'{"Message":"The request is invalid."}')
            return
        with state.lock:
            if not isinstance(posted, dict) or set(posted) != set(state.profile):
                self._reply(400, b'{"Message":"The profile is incomplete."}')
                return
            password = posted.get(SECTION, {}).get(PASSWORD_FIELD)
            if isinstance(password, dict) and isinstance(password.get("Password"), str):
                state.stored_password = password["Password"]
                digest = hashlib.sha256(secrets.token_bytes(16) + password["Password"].encode()).digest()
                posted[SECTION][PASSWORD_FIELD] = base64.b64encode(digest).decode()
            posted["UpdateTime"] = datetime.now(UTC).isoformat()
            state.profile = posted
            state.saves += 1
        self._reply(200)


class AtaCenterEmulator(BackgroundServer[_Server]):
    """Start with `start()`, stop with `stop()` (or use as a context manager)."""

    thread_name = "ata-center"

    def __init__(
        self,
        directory: Path,
        *,
        username: str = "CONTOSO\\ata-admin",
        password: str | None = None,
        account_user: str = "svc-atp",
        account_domain: str = "contoso.test",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.directory = directory
        self.username = username
        self.password = password or secrets.token_urlsafe(18)
        self.tls: TlsFiles = issue_ca_and_server_cert(directory / "tls", ["localhost"], ["127.0.0.1"])
        domain, _, user = username.partition("\\")
        register_ntlm_user(domain, user, self.password)
        self._state = _State(profile=sample_profile(account_user, account_domain))
        self._server = _Server((host, port), _Handler)
        self._server.state = self._state
        self._server.bindings = _channel_bindings(self.tls.cert_file)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"https://{host!s}:{port}"

    # --- what tests inspect and inject ---
    @property
    def stored_password(self) -> str | None:
        return self._state.stored_password

    @property
    def saves(self) -> int:
        return self._state.saves

    @property
    def records(self) -> list[RequestRecord]:
        with self._state.lock:
            return list(self._state.records)

    @property
    def profile(self) -> dict[str, Any]:
        with self._state.lock:
            return copy.deepcopy(self._state.profile)

    def fail_next(self, method: str, status: int, body: bytes | str = b"", delay: float = 0.0) -> None:
        """Answer the next `method` request (once authenticated) with `status` and `body`, `delay` s late."""
        raw = body.encode() if isinstance(body, str) else body
        with self._state.lock:
            self._state.injected.append(_Injected(method, status, raw, delay))

    def redirect_next(self, method: str, status: int, location: str) -> None:
        """Answer the next `method` request (once authenticated) with a `status` redirect to `location`."""
        with self._state.lock:
            self._state.injected.append(_Injected(method, status, b"", 0.0, {"Location": location}))


def register_cli(actions: Any) -> None:
    """`atp-bot lab ata-center`: run the emulator in the foreground until Ctrl-C."""
    parser = actions.add_parser("ata-center", help="run an ATA Center configuration endpoint emulator")
    parser.add_argument("--port", type=int, default=8443, help="port on 127.0.0.1 (default 8443; 0 = any)")
    parser.add_argument(
        "--dir", type=Path, default=Path(".lab/ata-center"), help="where the test CA and files go"
    )
    parser.add_argument("--user", default="CONTOSO\\ata-admin", help="Windows sign-in (DOMAIN\\user)")
    parser.add_argument("--account", default="svc-atp@contoso.test", help="directory services account (UPN)")
    parser.set_defaults(handler=_run_cli)


def _run_cli(args: Any) -> int:
    user, _, domain = str(args.account).partition("@")
    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    emulator = AtaCenterEmulator(
        directory, username=args.user, account_user=user, account_domain=domain, port=args.port
    )
    password_file = directory / "ata-admin.password"
    password_file.touch(mode=0o600)
    password_file.write_text(emulator.password + "\n", encoding="utf-8")
    with emulator:
        escaped_user = str(args.user).replace("\\", "\\\\")
        print(f"ATA Center emulator at {emulator.url}{PROFILE_PATH}")
        print("configuration for atp-bot:\n")
        print('[store]\nbackend = "ata-center"\n\n[store.ata_center]')
        print(f'url = "{emulator.url}"\nusername = "{escaped_user}"')
        print(f'password_file = "{password_file.resolve()}"\nca_file = "{emulator.tls.ca_file.resolve()}"\n')
        print(f"the account in [[accounts]] must be {args.account}; Ctrl-C stops the emulator")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print(f"\nstopped after {emulator.saves} save(s)")
    return 0
