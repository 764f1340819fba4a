"""The modelled Windows host behind one emulated WinRM endpoint: services, log files, latency, faults."""

from __future__ import annotations

import fnmatch
import ntpath
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, get_args

from bot.config import SensorKind
from bot.sensors.targets import KIND_DEFAULTS

Fault = Literal[
    "timeout",
    "hang",
    "http401",
    "http500",
    "access_denied",
    "refused",
    "bad_output",
    "trickle",
    "chunked_flood",
    "redirect",
]
StartBehaviour = Literal["start", "fail", "pending"]
FAULTS: tuple[str, ...] = get_args(Fault)

FILLER_LINE_LENGTH = 128
DEFAULT_VERSION = "2.250.18972.18405"


def log_line(when: datetime, text: str, level: str = "Error") -> str:
    """A line as the sensors write it: `2026-11-25 04:00:00.1234 Error <text>` (UTC)."""
    stamp = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-2]
    return f"{stamp} {level} {text}"


class LogFile:
    """A log file: an optional virtual prefix of old filler lines (never stored), then real bytes.

    The filler lets a benchmark model a 1 GB log without allocating it: its bytes are computed on
    demand from one 128-byte line carrying a per-file token (so file identities differ).
    """

    def __init__(self, filler_bytes: int = 0) -> None:
        token = uuid.uuid4().hex[:12]
        line = f"2020-01-01 00:00:00.0000 Info [Filler] {token} old entry "
        self._filler_line = (line + "." * (FILLER_LINE_LENGTH - len(line) - 1) + "\n").encode()
        self.filler = filler_bytes - filler_bytes % FILLER_LINE_LENGTH
        self.data = bytearray()
        self.mtime = time.time()

    @property
    def size(self) -> int:
        return self.filler + len(self.data)

    def read(self, start: int, count: int) -> bytes:
        start, end = max(0, start), min(self.size, start + count)
        if start >= end:
            return b""
        out = bytearray()
        if start < self.filler:
            stop = min(end, self.filler)
            first, last = start // FILLER_LINE_LENGTH, (stop - 1) // FILLER_LINE_LENGTH
            block = self._filler_line * (last - first + 1)
            base = first * FILLER_LINE_LENGTH
            out += block[start - base : stop - base]
        if end > self.filler:
            out += self.data[max(start, self.filler) - self.filler : end - self.filler]
        return bytes(out)

    def append(self, text: str) -> None:
        self.data += text.encode("utf-8")
        self.mtime = time.time()


@dataclass
class Counters:
    requests: int = 0
    wire_in: int = 0
    wire_out: int = 0
    log_bytes_read: int = 0
    scripts: int = 0
    unknown_scripts: int = 0
    # Every request is one round trip, counted once under what it did: "unauthenticated" (a 401 with no
    # handshake under way), "ntlm_negotiate" (answered with NTLM's challenge), "ntlm_authenticate" (the
    # handshake's last leg with an empty body, as pywinrm sends it before sealing), or the WS-Management
    # action it carried: "create", "command", "receive", "signal", "delete" ("other" for anything else).
    round_trips: Counter[str] = field(default_factory=Counter)
    sealed_messages: int = 0  # WS-Management messages that came sealed (NTLM over http://)


@dataclass
class Host:
    """One modelled sensor server. Mutate it through the methods (they take the lock)."""

    name: str
    kind: SensorKind = "mdi"
    version: str = DEFAULT_VERSION
    services: dict[str, str] = field(default_factory=dict)
    processes: set[str] = field(default_factory=set)
    # SensorCustomLogLocation in SensorConfiguration.json beside the sensor's binary (None: not set).
    custom_log_location: str | None = None
    start_behaviour: dict[str, StartBehaviour] = field(default_factory=dict)
    files: dict[str, LogFile] = field(default_factory=dict)
    latency: float = 0.0
    fault: Fault | None = None
    # The hostile faults (lab/winrm/hostile.py): seconds between two bytes of a trickled answer, the body
    # size of a chunked flood, and where a redirect points (another listener's endpoint).
    trickle_interval: float = 1.0
    flood_bytes: int = 64 << 20
    redirect_to: str | None = None
    # winrm/config/winrs MaxShellsPerUser (Windows' default): WinRM refuses to open more shells than this.
    max_shells_per_user: int = 30
    # winrm/config/winrs IdleTimeout in seconds (Windows' default, 2 hours): a shell nobody deletes stays
    # open, counting against MaxShellsPerUser, until it has been idle this long. A client may ask for a
    # shorter one in Create (`rsp:IdleTimeOut`), never under 60 s (Windows uses 60 s for smaller values).
    shell_idle_timeout: float = 7200.0
    # Bytes of warnings the check script prints before its result (a sensor that floods its output).
    output_padding: int = 0
    # None: each Receive answer stays within the client's MaxEnvelopeSize, as on Windows; a number of bytes
    # replaces that limit (an endpoint that ignores it and sends everything at once).
    envelope_limit: int | None = None
    # gMSA host checks: the gMSAs (by name, lower case) Test-ADServiceAccount accepts here, and the
    # SeServiceLogonRight entries (Windows' default includes NT SERVICE\ALL SERVICES).
    gmsa_usable: set[str] = field(default_factory=set)
    service_logon: list[str] = field(default_factory=lambda: ["*S-1-5-80-0", "*S-1-5-20"])
    counters: Counters = field(default_factory=Counters)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @classmethod
    def sensor(cls, name: str, kind: SensorKind = "mdi", *, filler_bytes: int = 0) -> Host:
        """A healthy sensor of `kind`: its services Running and an error log without credential errors."""
        host = cls(name=name, kind=kind)
        host.services = {s: "Running" for s in KIND_DEFAULTS[kind].services}
        host.files[host.error_log_path] = LogFile(filler_bytes)
        return host

    @classmethod
    def unified(cls, name: str) -> Host:
        """A unified sensor (3.x): the `SenseIdentity` process, no AATP service, no sensor log folder."""
        host = cls(name=name, version="3.0.1234.0")
        host.processes = {"SenseIdentity"}
        return host

    @property
    def log_dir(self) -> str:
        return KIND_DEFAULTS[self.kind].log_dir.replace("*", self.version)

    @property
    def error_log_path(self) -> str:
        return ntpath.join(self.log_dir, KIND_DEFAULTS[self.kind].error_log)

    # --- lookups used by the script executor ---

    def find(self, path: str) -> LogFile | None:
        with self.lock:
            for name, file in self.files.items():
                if name.lower() == path.lower():
                    return file
            return None

    def glob(self, pattern: str) -> list[str]:
        with self.lock:
            return [p for p in self.files if fnmatch.fnmatch(p.lower(), pattern.lower())]

    def read(self, path: str, start: int, count: int) -> bytes:
        file = self.find(path)
        data = file.read(start, count) if file else b""
        with self.lock:
            self.counters.log_bytes_read += len(data)
        return data

    def service_binary(self, name: str) -> str | None:
        """Win32_Service.PathName: the classic sensor runs from its current version folder (quoted)."""
        binary = KIND_DEFAULTS[self.kind].binary_service
        if binary is None or binary.lower() != name.lower() or self.service_state(binary) is None:
            return None
        return f'"{ntpath.dirname(self.log_dir)}\\Microsoft.Tri.Sensor.exe"'

    def process_running(self, name: str) -> bool:
        with self.lock:
            return any(p.lower() == name.lower() for p in self.processes)

    def service_state(self, name: str) -> str | None:
        with self.lock:
            for service, state in self.services.items():
                if service.lower() == name.lower():
                    return state
            return None

    # --- mutations for tests and the standalone lab ---

    def set_service(self, name: str, state: str | None) -> None:
        """Set a service's state; None uninstalls it."""
        with self.lock:
            if state is None:
                self.services.pop(name, None)
            else:
                self.services[name] = state

    def append_log(self, *lines: str, path: str | None = None) -> None:
        with self.lock:
            target = path or self.error_log_path
            file = self.find(target) or self.files.setdefault(target, LogFile())
            file.append("".join(line + "\r\n" for line in lines))

    def rotate_log(self, path: str | None = None) -> str:
        """Rename the log to `<stem>-Archived-NNNNN<ext>` (as the sensor does) and start an empty one."""
        with self.lock:
            target = path or self.error_log_path
            stem, ext = ntpath.splitext(target)
            number = sum(1 for p in self.files if p.lower().startswith(f"{stem}-Archived-".lower()))
            archived = f"{stem}-Archived-{number:05d}{ext}"
            self.files[archived] = self.files.pop(target)
            self.files[target] = LogFile()
            return archived

    def truncate_log(self, path: str | None = None) -> None:
        with self.lock:
            self.files[path or self.error_log_path] = LogFile()

    def upgrade(self, version: str) -> None:
        """A sensor update: a new versioned folder with a fresh error log."""
        with self.lock:
            self.version = version
            self.files.setdefault(self.error_log_path, LogFile())

    def set_latency(self, seconds: float) -> None:
        with self.lock:
            self.latency = seconds

    def set_fault(self, fault: Fault | None) -> None:
        with self.lock:
            self.fault = fault
