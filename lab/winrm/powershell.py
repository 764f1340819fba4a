"""What `powershell -encodedcommand …` does on a modelled host.

Only atp-bot's own templates are understood: the script must be exactly a template with a base64
parameter block in its slot. The emulator then carries out the template's meaning against the model,
following the PowerShell line by line (same chunking, same byte accounting). Anything else fails the
way PowerShell fails: a CLIXML error record on stderr and exit code 1.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import ntpath
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from bot.sensors.scripts import (
    CHECK_SENSOR,
    GMSA_HOST,
    PARAMS_MARK,
    START_SERVICE,
    TEMPLATES,
    Template,
    decode_params,
)
from lab.winrm.model import Host

_COMMAND = re.compile(r"^powershell(?:\.exe)?\s+-(?:encodedcommand|enc|e)\s+(\S+)\s*$", re.IGNORECASE)
_BLOCK = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
PADDING_LINE = b"WARNING: the sensor repeats itself.\r\n"
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?")


@dataclass(frozen=True)
class Outcome:
    stdout: bytes
    stderr: bytes
    exit_code: int


def clixml_error(message: str) -> bytes:
    text = escape(message).replace("\n", "_x000D__x000A_")
    return (
        '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        f'<S S="Error">{text}_x000D__x000A_</S></Objs>'
    ).encode()


def _fail(message: str) -> Outcome:
    return Outcome(b"", clixml_error(message), 1)


def match_template(script: str) -> tuple[Template, dict[str, Any]] | None:
    for template in TEMPLATES:
        prefix, suffix = template.text.split(PARAMS_MARK)
        if script.startswith(prefix) and script.endswith(suffix):
            block = script[len(prefix) : len(script) - len(suffix)]
            if _BLOCK.match(block):
                try:
                    return template, decode_params(block)
                except (ValueError, binascii.Error):
                    return None
    return None


def run_command(host: Host, command: str, arguments: str = "") -> Outcome:
    """Execute a WinRS command line on `host`."""
    line = f"{command} {arguments}".strip()
    found = _COMMAND.match(line)
    if not found:
        name = line.split(" ", 1)[0]
        message = f"'{name}' is not recognized as an internal or external command,\r\n"
        message += "operable program or batch file."
        return Outcome(b"", message.encode(), 1)
    try:
        script = base64.b64decode(found.group(1), validate=True).decode("utf-16-le")
    except (binascii.Error, UnicodeDecodeError):
        return _fail(
            "Cannot process the command because the value specified with -EncodedCommand "
            "is not properly encoded."
        )
    with host.lock:
        host.counters.scripts += 1
    matched = match_template(script)
    if matched is None:
        with host.lock:
            host.counters.unknown_scripts += 1
        first = script.strip().split(None, 1)[0] if script.strip() else ""
        return _fail(
            f"The term '{first}' is not recognized as the name of a cmdlet, function, script file, "
            "or operable "
            "program. (The atp-bot WinRM emulator only runs atp-bot's own script templates.)"
        )
    template, params = matched
    if host.fault == "bad_output":
        return Outcome(b"WARNING: something unexpected\r\n", b"", 0)
    padding = b""
    if template is CHECK_SENSOR:
        out: dict[str, Any] = CheckRun(host, params).run()
        padding = (PADDING_LINE * (host.output_padding // len(PADDING_LINE) + 1))[: host.output_padding]
    elif template is START_SERVICE:
        out = start_service(host, params)
    elif template is GMSA_HOST:
        out = gmsa_host(host, params)
    else:  # pragma: no cover - every template has a branch
        return _fail("template without an emulation")
    return Outcome(padding + json.dumps(out, separators=(",", ":")).encode() + b"\r\n", b"", 0)


def gmsa_host(host: Host, params: dict[str, Any]) -> dict[str, Any]:
    """Test-ADServiceAccount, the exported SeServiceLogonRight and which sensor runs, from the model."""
    with host.lock:
        return {
            "test_ad_service_account": str(params["identity"]).lower() in host.gmsa_usable,
            "test_error": None,
            "service_logon": list(host.service_logon),
            "policy_error": None,
            "classic_sensor": host.service_state("AATPSensor") is not None,
            "unified_sensor": host.process_running("SenseIdentity"),
        }


def start_service(host: Host, params: dict[str, Any]) -> dict[str, Any]:
    name = str(params["service"])
    out: dict[str, Any] = {"name": name, "before": None, "after": None, "error": None}
    with host.lock:
        state = host.service_state(name)
        if state is None:
            out["error"] = "not installed"
            return out
        out["before"] = state
        key = next(s for s in host.services if s.lower() == name.lower())
        if state != "Running":
            behaviour = host.start_behaviour.get(key, "start")
            if behaviour == "fail":
                out["error"] = (
                    f"Service '{key} ({key})' cannot be started due to the following error: "
                    f"Cannot start service {key} on computer '.'."
                )
            else:
                host.services[key] = "Running" if behaviour == "start" else "StartPending"
        out["after"] = host.services[key]
    return out


class CheckRun:
    """One run of the check template (mirrors check_sensor.ps1 step by step)."""

    def __init__(self, host: Host, params: dict[str, Any]) -> None:
        self.host = host
        self.p = params
        self.read = 0
        self.budget = int(params["max_bytes"])
        self.chunk = int(params["chunk"])
        self.complete = True
        self.count = 0
        self.first: str | None = None
        self.last: str | None = None
        self.sample: str | None = None
        self.pending = 0
        self.pending_sample: str | None = None
        self.stop = False

    def size(self, path: str) -> int:
        file = self.host.find(path)
        return file.size if file else 0

    def read_bytes(self, path: str, start: int, count: int) -> bytes:
        data = self.host.read(path, start, count)
        self.read += len(data)
        return data

    def file_id(self, path: str, n: int) -> str:
        n = min(n, self.size(path))
        return f"{n}:{hashlib.sha256(self.read_bytes(path, 0, n)).hexdigest()[:32]}"

    def hit(self, line: str) -> bool:
        return any(pattern in line for pattern in self.p["patterns"])

    def add_hit(self, stamp: str | None, line: str | None, forward: bool) -> None:
        self.count += 1
        if forward:
            if self.count == 1:
                self.first = stamp
            self.last, self.sample = stamp, line
        else:
            if self.count == 1:
                self.last, self.sample = stamp, line
            self.first = stamp

    @staticmethod
    def lines(data: bytes) -> list[str]:
        return [line.rstrip("\r") for line in data.decode("utf-8", errors="replace").split("\n")]

    def scan_forward(self, path: str, start: int) -> int:
        size = self.size(path)
        if size - start > self.budget:
            start, self.complete = size - self.budget, False
        pos, carry, stamp = start, b"", None
        while pos < size:
            n = min(self.chunk, size - pos)
            buf = carry + self.read_bytes(path, pos, n)
            pos += n
            self.budget -= n
            cut = buf.rfind(b"\n")
            if cut < 0:
                carry = buf
                continue
            carry = buf[cut + 1 :]
            for line in self.lines(buf[:cut]):
                found = _STAMP.match(line)
                if found:
                    stamp = found.group(0)
                if self.hit(line):
                    self.add_hit(stamp, line, True)
        return size - len(carry)

    def scan_back(self, path: str, since: datetime) -> int:
        size = self.size(path)
        pos, carry, end = size, b"", -1
        while pos > 0 and not self.stop:
            if self.budget <= 0:
                self.complete = False
                break
            n = min(self.chunk, pos, self.budget)
            pos -= n
            buf = self.read_bytes(path, pos, n) + carry
            self.budget -= n
            carry = b""
            if end < 0:
                cut = buf.rfind(b"\n")
                if cut < 0:
                    carry = buf
                    continue
                end, buf = pos + cut + 1, buf[:cut]
            if pos > 0:
                nl = buf.find(b"\n")
                if nl < 0:
                    carry = buf
                    continue
                carry, buf = buf[:nl], buf[nl + 1 :]
            for line in reversed(self.lines(buf)):
                found = _STAMP.match(line)
                hit = self.hit(line)
                if not found:
                    if hit:
                        self.pending += 1
                        self.pending_sample = self.pending_sample or line
                    continue
                stamp = found.group(0)
                if datetime.fromisoformat(stamp.replace(" ", "T", 1)) < since:
                    self.stop, self.pending = True, 0
                    break
                if hit or self.pending:
                    self.add_hit(
                        stamp, self.pending_sample if self.pending_sample is not None else line, False
                    )
                    self.count += self.pending + int(hit) - 1
                self.pending, self.pending_sample = 0, None
        return end if end >= 0 else size - len(carry)

    def archives(self, current: str, stem: str) -> list[str]:
        folder = ntpath.dirname(current)
        return [
            p
            for p in self.host.glob(ntpath.join(folder, stem + "*"))
            if ntpath.dirname(p).lower() == folder.lower() and p.lower() != current.lower()
        ]

    def log_dir(self) -> str:
        """As the script: the binary's folder (or SensorCustomLogLocation), else the configured folder."""
        service = self.p.get("binary_service")
        path = self.host.service_binary(service) if service else None
        if not path:
            return str(self.p["log_dir"])
        exe = path.strip()
        if exe.startswith('"'):
            exe = exe[1 : exe.index('"', 1)]
        return self.host.custom_log_location or ntpath.join(ntpath.dirname(exe), "Logs")

    def archives_after(self, current: str, stem: str, old: str) -> list[str]:
        """The archives written after `old`, oldest first (the log rolled over more than once)."""
        old_time = self.host.find(old).mtime  # type: ignore[union-attr]
        newer = [a for a in self.archives(current, stem) if a.lower() != old.lower()]
        newer = [a for a in newer if self.host.find(a).mtime > old_time]  # type: ignore[union-attr]
        return sorted(newer, key=lambda a: self.host.find(a).mtime)  # type: ignore[union-attr]

    def run(self) -> dict[str, Any]:
        p = self.p
        out: dict[str, Any] = {"services": [], "sense_identity": False, "log": None, "log_error": None}
        for name in p["services"]:
            out["services"].append({"name": name, "state": self.host.service_state(name)})
        out["sense_identity"] = self.host.process_running("SenseIdentity")
        log_dir = self.log_dir()
        candidates = self.host.glob(ntpath.join(log_dir, p["error_log"]))
        if not candidates:
            out["log_error"] = "error log not found: " + ntpath.join(log_dir, p["error_log"])
            return out
        current = max(candidates, key=lambda c: self.host.find(c).mtime)  # type: ignore[union-attr]
        stem = ntpath.splitext(p["error_log"])[0]
        rotated = reset = False
        position = p.get("position")
        if position is not None:
            want, offset = str(position["file_id"]), int(position["offset"])
            n = int(want.split(":")[0])
            if self.file_id(current, n) == want and self.size(current) >= offset:
                end = self.scan_forward(current, offset)
            else:
                old = None
                for candidate in [str(position["path"]), *self.archives(current, stem)]:
                    exists = candidate.lower() != current.lower() and self.host.find(candidate) is not None
                    if exists and self.file_id(candidate, n) == want:
                        old = candidate
                        break
                if old:
                    rotated = True
                    self.scan_forward(old, offset)
                    for newer in self.archives_after(current, stem, old):
                        self.scan_forward(newer, 0)
                else:
                    reset = True
                end = self.scan_forward(current, 0)
        else:
            since = datetime.fromisoformat(str(p["since"])).astimezone(UTC).replace(tzinfo=None)
            end = self.scan_back(current, since)
            if not self.stop and self.complete:
                archives = self.archives(current, stem)
                if archives:
                    newest = max(archives, key=lambda a: self.host.find(a).mtime)  # type: ignore[union-attr]
                    self.scan_back(newest, since)
            if self.pending:
                self.add_hit(None, self.pending_sample, False)
                self.count += self.pending - 1
        out["log"] = {
            "path": current,
            "file_id": self.file_id(current, int(p["head"])),
            "offset": end,
            "size": self.size(current),
            "bytes_read": self.read,
            "matches": self.count,
            "first": self.first,
            "last": self.last,
            "sample": self.sample,
            "rotated": rotated,
            "reset": reset,
            "complete": self.complete,
        }
        return out
