"""An emulated WinRM listener per modelled host: HTTP(S), Basic and NTLM (with message encryption).

`WinRMEmulator` runs one listener per `Host` on loopback; the real pywinrm client talks to it. Tests
mutate the hosts (services, logs, latency, faults) while it runs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import queue
import selectors
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import spnego
import spnego.exceptions

from lab.ntlm_users import register as register_ntlm_user
from lab.tlsca import TlsFiles
from lab.winrm import hostile, wsman
from lab.winrm.model import Host
from lab.winrm.powershell import Outcome, run_command

log = logging.getLogger(__name__)

AuthMethod = Literal["ntlm", "basic", "certificate"]
CERTIFICATE_AUTH = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"
BOUNDARY = b"--Encrypted Boundary"
ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
STREAM_CHUNK = 8192
ENVELOPE_OVERHEAD = 4096  # bytes of a ReceiveResponse that are not stream data (generous)
MIN_SHELL_IDLE_TIMEOUT = 60.0  # seconds: Windows uses one minute for any smaller IdleTimeout
ACTION_KINDS = {
    wsman.CREATE: "create",
    wsman.COMMAND: "command",
    wsman.RECEIVE: "receive",
    wsman.SIGNAL: "signal",
    wsman.DELETE: "delete",
}


@dataclass(frozen=True)
class Account:
    domain: str
    user: str
    password: str

    @classmethod
    def parse(cls, username: str, password: str) -> Account:
        domain, _, user = username.rpartition("\\")
        return cls(domain=domain, user=user, password=password)

    def matches(self, username: str, password: str) -> bool:
        domain, _, user = username.rpartition("\\")
        same_domain = not domain or domain.lower() == self.domain.lower()
        return same_domain and user.lower() == self.user.lower() and password == self.password


@dataclass
class _Command:
    """A command's output still to be received: (stream, base64 chunk, end of stream, raw size) in order."""

    chunks: list[tuple[str, str, bool, int]]
    exit_code: int

    @classmethod
    def of(cls, outcome: Outcome) -> _Command:
        chunks = []
        for name, data in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
            pieces = [data[i : i + STREAM_CHUNK] for i in range(0, len(data), STREAM_CHUNK)] or [b""]
            for index, piece in enumerate(pieces):
                encoded = base64.b64encode(piece).decode("ascii")
                chunks.append((name, encoded, index == len(pieces) - 1, len(piece)))
        return cls(chunks, outcome.exit_code)

    def take(self, max_envelope: int) -> tuple[list[tuple[str, str, bool]], int | None]:
        """The next Receive's streams within the client's envelope size, and the exit code once the last
        chunk goes (None: more follows), as WinRM splits a large output over several responses."""
        budget = max(STREAM_CHUNK, (max_envelope - ENVELOPE_OVERHEAD) * 3 // 4)
        streams: list[tuple[str, str, bool]] = []
        while self.chunks and (not streams or self.chunks[0][3] <= budget):
            name, data, end, size = self.chunks.pop(0)
            streams.append((name, data, end))
            budget -= size
        return streams, None if self.chunks else self.exit_code


@dataclass
class _Shell:
    idle_timeout: float
    last_used: float
    commands: dict[str, _Command] = field(default_factory=dict)


class _Listener(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, emulator: WinRMEmulator, host: Host, port: int) -> None:
        self.emulator = emulator
        self.model = host
        self.shells = emulator.shells.setdefault(host.name, {})  # outlive the listener, as on Windows
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        self.stopping = threading.Event()
        super().__init__((emulator.bind, port), _Handler)

    def expire_idle_shells(self, now: float) -> None:
        """Delete the shells idle for longer than their IdleTimeOut, as WinRM does (hold the host's lock)."""
        for shell_id, shell in list(self.shells.items()):
            if now - shell.last_used > shell.idle_timeout:
                del self.shells[shell_id]

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug(
            "winrm emulator %s: connection error from %s", self.model.name, client_address, exc_info=True
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Listener
    timeout = 30

    def setup(self) -> None:
        context = self.server.emulator.tls_context
        if context is not None:
            self.request.settimeout(5)  # bounds a client that never completes the handshake
            self.request = context.wrap_socket(self.request, server_side=True)
        with self.server.conn_lock:
            self.server.connections.add(self.request)
        self.ntlm: Any = None  # the context of a handshake in progress
        self.session: Any = None  # the completed NTLM context of this connection
        self.leg: str | None = None  # the NTLM handshake leg the current request carried, if any
        super().setup()

    def finish(self) -> None:
        with self.server.conn_lock:
            self.server.connections.discard(self.request)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("winrm emulator %s: " + format, self.server.model.name, *args)

    # --- HTTP plumbing ---

    def _send(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> None:
        headers = list(headers or [])
        if not any(name.lower() == "content-type" for name, _ in headers) and body:
            headers.append(("Content-Type", "application/soap+xml;charset=UTF-8"))
        model = self.server.model
        with model.lock:
            fault, interval, flood = model.fault, model.trickle_interval, model.flood_bytes
        if fault == "trickle":
            self.close_connection = True
            sent = hostile.trickle(
                self.wfile, hostile.raw_response(status, headers, body), self.server.stopping, interval
            )
        elif fault == "chunked_flood" and status != 401:  # once authenticated
            self.close_connection = True
            sent = hostile.chunked_flood(self.wfile, status, headers, flood)
        else:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            sent = len(body)
        with model.lock:
            model.counters.wire_out += sent

    def _challenge(self, token: bytes | None = None) -> None:
        """A 401, counted as this request's round trip before it is sent: the client may look at the
        counters as soon as it has read the answer."""
        self._count(self.leg or "unauthenticated")
        methods = self.server.emulator.auth
        headers = []
        if "ntlm" in methods:
            headers.append(
                (
                    "WWW-Authenticate",
                    f"Negotiate {base64.b64encode(token).decode()}" if token else "Negotiate",
                )
            )
        if "basic" in methods and token is None:
            headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        self._send(401, b"", headers)

    def _authenticate(self) -> bool:
        """True when the request may proceed; otherwise a 401 has been sent."""
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        emulator = self.server.emulator
        if header == CERTIFICATE_AUTH and "certificate" in emulator.auth:
            if self._client_certificate_user() == emulator.account.user.lower():
                return True
            self._challenge()
            return False
        if scheme.lower() == "basic" and "basic" in emulator.auth:
            try:
                username, _, password = base64.b64decode(value).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                username, password = "", ""
            if emulator.account.matches(username, password):
                return True
            self._challenge()
            return False
        if scheme.lower() in ("negotiate", "ntlm") and "ntlm" in emulator.auth:
            if self.ntlm is None:
                self.ntlm = spnego.server(protocol="ntlm")
            self.leg = "ntlm_authenticate"
            try:
                out = self.ntlm.step(base64.b64decode(value))
            except (spnego.exceptions.SpnegoError, binascii.Error, ValueError):
                self.ntlm, self.session = None, None
                self._challenge()
                return False
            if not self.ntlm.complete:
                self.leg = "ntlm_negotiate"
                self._challenge(out or b"")
                return False
            self.session, self.ntlm = self.ntlm, None
            return True
        if not header and self.session is not None:
            return True
        self._challenge()
        return False

    def _client_certificate_user(self) -> str | None:
        """The common name of a verified client certificate (Windows maps it to a local account)."""
        if not isinstance(self.request, ssl.SSLSocket):
            return None
        peer = self.request.getpeercert()
        subject: tuple[tuple[tuple[str, str], ...], ...] = peer.get("subject", ()) if peer else ()  # type: ignore[assignment]
        for rdn in subject:
            for key, value in rdn:
                if key == "commonName":
                    return str(value).lower()
        return None

    def _unwrap(self, body: bytes) -> bytes:
        parts = [p for p in body.split(BOUNDARY + b"\r\n") if p]
        message = b""
        for header, payload in zip(parts[0::2], parts[1::2], strict=False):
            length = int(header.split(b"Length=")[1].strip())
            payload = payload.removesuffix(BOUNDARY + b"--\r\n")
            data = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
            size = struct.unpack("<i", data[:4])[0]
            plain = self.session.unwrap_winrm(data[4 : 4 + size], data[4 + size :])
            if len(plain) != length:
                raise ValueError("encrypted length mismatch")
            message += plain
        return message

    def _wrap(self, body: bytes) -> bytes:
        wrapped = self.session.wrap_winrm(body)
        framed: bytes = (
            BOUNDARY + b"\r\n\tContent-Type: " + ENCRYPTED_PROTOCOL.encode() + b"\r\n"
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(body)).encode()
            + b"\r\n"
            + BOUNDARY
            + b"\r\n\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<i", len(wrapped.header))
            + wrapped.header
            + wrapped.data
            + BOUNDARY
            + b"--\r\n"
        )
        return framed

    # --- WS-Management ---

    def _count(self, kind: str) -> None:
        with self.server.model.lock:
            self.server.model.counters.round_trips[kind] += 1

    def do_POST(self) -> None:
        model, stopping = self.server.model, self.server.stopping
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with model.lock:
            model.counters.requests += 1
            model.counters.wire_in += len(body)
            latency, fault = model.latency, model.fault
        if latency:
            stopping.wait(latency)
        if fault == "hang":
            stopping.wait()
            self.close_connection = True
            return
        if fault == "redirect":
            self._count("redirected")
            self._send(hostile.REDIRECT_STATUS, b"", [("Location", model.redirect_to or "/wsman")])
            return
        self.leg = None
        if fault == "http401":
            self._challenge()
            return
        if not self._authenticate():  # its 401 is counted
            return
        encrypted = self.headers.get("Content-Type", "").startswith("multipart/encrypted")
        try:
            message = self._unwrap(body) if encrypted and self.session is not None else body
        except (spnego.exceptions.SpnegoError, ValueError, IndexError, struct.error):
            self._count("other")
            self._send(400)
            return
        if encrypted and message:
            with model.lock:
                model.counters.sealed_messages += 1
        if not message:
            self._count(self.leg or "other")
            self._send(200)
            return
        status, reply = self._dispatch(message)
        if encrypted:
            content_type = (
                f'multipart/encrypted;protocol="{ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"'
            )
            self._send(status, self._wrap(reply), [("Content-Type", content_type)])
        else:
            self._send(status, reply)

    def _idle_timeout(self, request: wsman.Request) -> float:
        """The shell's IdleTimeOut: what the client asked for, within Windows' minute and the host's own."""
        configured = self.server.model.shell_idle_timeout
        asked = request.body.findtext(f".//{{{wsman.SHELL}}}IdleTimeOut")
        wanted = wsman.duration(asked, configured) if asked else configured
        return max(MIN_SHELL_IDLE_TIMEOUT, min(wanted, configured))

    def _fault(self, request_id: str, subcode: str, reason: str, code: int) -> tuple[int, bytes]:
        return 500, wsman.fault(request_id, subcode, reason, code, self.server.model.name)

    def _dispatch(self, message: bytes) -> tuple[int, bytes]:
        server, model = self.server, self.server.model
        try:
            request = wsman.parse(message)
        except wsman.BadRequest as exc:
            self._count("other")
            return self._fault("", "InvalidMessageInformationHeader", str(exc), wsman.INTERNAL_ERROR)
        self._count(ACTION_KINDS.get(request.action, "other"))
        now = server.emulator.clock()
        with model.lock:
            server.expire_idle_shells(now)
        rid = request.message_id
        if model.fault == "access_denied":
            return self._fault(rid, "AccessDenied", "Access is denied. ", wsman.ACCESS_DENIED)
        if model.fault == "http500":
            return self._fault(
                rid,
                "InternalError",
                "The WS-Management service cannot process the request.",
                wsman.INTERNAL_ERROR,
            )
        if request.action == wsman.CREATE:
            with model.lock:
                full = len(server.shells) >= model.max_shells_per_user
                shell_id = str(uuid.uuid4()).upper()
                if not full:
                    server.shells[shell_id] = _Shell(self._idle_timeout(request), now)
            if full:
                reason = (
                    "The WS-Management service cannot process the request. This user is allowed a maximum "
                    f"number of {model.max_shells_per_user} concurrent shells, which has been exceeded. "
                    "Close existing shells or raise the quota for this user."
                )
                return self._fault(rid, "QuotaLimit", reason, wsman.QUOTA_MAX_SHELLS)
            address = f"{self.server.emulator.scheme}://{self.server.emulator.bind}:{server.server_address[1]}/wsman"
            return 200, wsman.shell_created(rid, address, shell_id)
        shell = server.shells.get(request.shell_id or "")
        if shell is None:
            reason = (
                f"The request for the Windows Remote Shell with ShellId {request.shell_id} failed "
                "because the shell was not found on the server."
            )
            return self._fault(rid, "InvalidSelectors", reason, wsman.INVALID_SELECTORS)
        shell.last_used = now
        if request.action == wsman.COMMAND:
            command = request.body.findtext(f".//{{{wsman.SHELL}}}Command") or ""
            arguments = " ".join(a.text or "" for a in request.body.iter(f"{{{wsman.SHELL}}}Arguments"))
            command_id = str(uuid.uuid4()).upper()
            shell.commands[command_id] = _Command.of(run_command(model, command, arguments))
            return 200, wsman.command_started(rid, command_id)
        if request.action == wsman.RECEIVE:
            stream = request.body.find(f".//{{{wsman.SHELL}}}DesiredStream")
            command_id = stream.get("CommandId", "") if stream is not None else ""
            running = shell.commands.get(command_id)
            if running is None or model.fault == "timeout":
                server.stopping.wait(request.operation_timeout)
                reason = (
                    "The WS-Management service cannot complete the operation within the time "
                    "specified in OperationTimeout."
                )
                return self._fault(rid, "TimedOut", reason, wsman.OPERATION_TIMEOUT)
            streams, exit_code = running.take(model.envelope_limit or request.max_envelope)
            return 200, wsman.received(rid, command_id, streams, exit_code)
        if request.action == wsman.SIGNAL:
            command_id = (request.body.find(f"{{{wsman.SHELL}}}Signal") or request.body).get("CommandId", "")
            shell.commands.pop(command_id, None)
            return 200, wsman.signalled(rid)
        if request.action == wsman.DELETE:
            with model.lock:
                server.shells.pop(request.shell_id or "", None)
            return 200, wsman.deleted(rid)
        return self._fault(
            rid, "ActionNotSupported", f"The action {request.action} is not supported.", wsman.INTERNAL_ERROR
        )


class _Acceptor:
    """One thread accepting the connections of every host's listener. A `serve_forever` thread per
    listener polls ten times a second: 2 000 hosts made 20 000 wake-ups a second on 2 cores, and a
    2 000-sensor benchmark measured the emulator instead of the bot. Each connection is still served
    by a thread of its own (`ThreadingHTTPServer.process_request`)."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._changes: queue.SimpleQueue[tuple[_Listener, bool, threading.Event] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="winrm-accept", daemon=True)
        self._thread.start()

    def add(self, listener: _Listener) -> None:
        self._change(listener, True)

    def remove(self, listener: _Listener) -> None:
        """Returns once no connection of `listener` will be accepted any more."""
        self._change(listener, False)

    def close(self) -> None:
        """Stop the thread (the listeners are closed by their owner); once."""
        if not self._thread.is_alive():
            return
        self._changes.put(None)
        self._wake_write.send(b"x")
        self._thread.join()
        self._selector.close()
        self._wake_read.close()
        self._wake_write.close()

    def _change(self, listener: _Listener, add: bool) -> None:
        done = threading.Event()
        self._changes.put((listener, add, done))
        self._wake_write.send(b"x")
        done.wait()

    def _run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:
                    self._wake_read.recv(4096)
                    if not self._apply_changes():
                        return
                else:
                    key.data.handle_request()  # ready: accepts and hands the connection to a thread

    def _apply_changes(self) -> bool:
        """Register and unregister listeners as asked; False once asked to stop."""
        while not self._changes.empty():
            change = self._changes.get()
            if change is None:
                return False
            listener, add, done = change
            if add:
                listener.timeout = 0  # handle_request never waits: the selector said it is ready
                self._selector.register(listener.socket, selectors.EVENT_READ, listener)
            else:
                self._selector.unregister(listener.socket)
            done.set()
        return True


class WinRMEmulator:
    """Emulated WinRM endpoints for a set of modelled hosts (one loopback listener each).

    Use as a context manager or call `start()`/`stop()`. `endpoint(name)` is the URL to configure.
    """

    def __init__(
        self,
        *,
        username: str,
        password: str,
        auth: tuple[AuthMethod, ...] = ("ntlm", "basic"),
        tls: TlsFiles | None = None,
        client_ca: Path | None = None,
        bind: str = "127.0.0.1",
    ) -> None:
        self.account = Account.parse(username, password)
        self.auth = auth
        self.bind = bind
        self.scheme = "https" if tls else "http"
        self.tls_context: ssl.SSLContext | None = None
        if tls:
            self.tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_context.load_cert_chain(tls.cert_file, tls.key_file)
            if client_ca:  # certificate authentication: ask for (and verify) a client certificate
                self.tls_context.verify_mode = ssl.CERT_OPTIONAL
                self.tls_context.load_verify_locations(client_ca)
        if "ntlm" in auth:
            register_ntlm_user(self.account.domain, self.account.user, password)
        self.hosts: dict[str, Host] = {}
        self.shells: dict[str, dict[str, _Shell]] = {}  # per host: its open shells
        self.clock: Callable[[], float] = time.monotonic  # shells' idle time; tests may replace it
        self._ports: dict[str, int] = {}
        self._listeners: dict[str, _Listener] = {}
        self._acceptor = _Acceptor()
        self._lock = threading.Lock()

    def __enter__(self) -> WinRMEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_host(self, host: Host, port: int = 0) -> str:
        """Start serving `host` (on `port`, default ephemeral); returns its endpoint URL."""
        self.hosts[host.name] = host
        self._ports[host.name] = port
        if host.fault == "refused":
            self._ports[host.name] = port or _free_port(self.bind)
        else:
            self._listen(host.name)
        return self.endpoint(host.name)

    def host(self, name: str) -> Host:
        return self.hosts[name]

    def open_shells(self, name: str) -> int:
        """How many shells are open on host `name` (opened, not yet deleted by the client nor expired)."""
        with self.hosts[name].lock:
            shells = self.shells.get(name, {})
            now = self.clock()
            return sum(1 for shell in shells.values() if now - shell.last_used <= shell.idle_timeout)

    def endpoint(self, name: str) -> str:
        return f"{self.scheme}://{self.bind}:{self._ports[name]}/wsman"

    def set_fault(self, name: str, fault: Any) -> None:
        """Set a host's fault; "refused" closes its listener, clearing it listens again on the same port."""
        host = self.hosts[name]
        host.set_fault(fault)
        if fault == "refused":
            self._close(name)
        elif name not in self._listeners:
            self._listen(name)

    def _listen(self, name: str) -> None:
        with self._lock:
            listener = _Listener(self, self.hosts[name], self._ports[name])
            self._ports[name] = listener.server_address[1]
            self._listeners[name] = listener
            self._acceptor.add(listener)

    def _close(self, name: str) -> None:
        with self._lock:
            listener = self._listeners.pop(name, None)
        if listener is None:
            return
        listener.stopping.set()
        self._acceptor.remove(listener)
        with listener.conn_lock:
            for conn in list(listener.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        listener.server_close()  # joins the threads serving its connections

    def start(self) -> WinRMEmulator:
        return self

    def stop(self) -> None:
        """Close every listener (in parallel: each joins the threads still serving its connections)."""
        names = list(self._listeners)
        if names:
            with ThreadPoolExecutor(min(64, len(names)), thread_name_prefix="winrm-stop") as pool:
                list(pool.map(self._close, names))
        self._acceptor.close()


def _free_port(bind: str) -> int:
    with socket.socket() as probe:
        probe.bind((bind, 0))
        return int(probe.getsockname()[1])
