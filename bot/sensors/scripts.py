"""The PowerShell sent to sensors: fixed templates plus one base64 JSON parameter block.

Configuration values never become code: they are serialised to JSON, base64-encoded (an alphabet that
cannot leave a single-quoted PowerShell string) and decoded by the script itself. What the scripts print
is parsed strictly; anything else is a fault.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

PARAMS_MARK = "__ATP_BOT_PARAMS__"
# CreateProcess limits a command line to 32767 characters; pywinrm sends the script as
# `powershell -encodedcommand <base64 of UTF-16LE>`, 8/3 characters per script character.
MAX_COMMAND_LINE = 32767
_SCRIPTS = Path(__file__).with_name("ps1")


@dataclass(frozen=True)
class Template:
    name: str
    text: str

    def render(self, params: BaseModel) -> str:
        block = base64.b64encode(params.model_dump_json().encode("utf-8")).decode("ascii")
        return self.text.replace(PARAMS_MARK, block)


def _load(name: str) -> Template:
    text = (_SCRIPTS / f"{name}.ps1").read_text(encoding="utf-8")
    if text.count(PARAMS_MARK) != 1:
        raise RuntimeError(f"template {name} must contain {PARAMS_MARK} exactly once")
    return Template(name=name, text=text)


CHECK_SENSOR = _load("check_sensor")
START_SERVICE = _load("start_service")
GMSA_HOST = _load("gmsa_host")
TEMPLATES = (CHECK_SENSOR, START_SERVICE, GMSA_HOST)


def command_line_length(script: str) -> int:
    """Length of the command line pywinrm's `run_ps` builds for `script`."""
    encoded = len(script.encode("utf-16-le"))
    return len("powershell -encodedcommand ") + 4 * ((encoded + 2) // 3)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- parameters (bot → script) ---


class PositionParam(_Strict):
    path: str
    file_id: str
    offset: Annotated[int, Field(ge=0)]


class CheckParams(_Strict):
    services: list[str]
    log_dir: str
    error_log: str
    binary_service: str | None = None  # find the log folder from this service's binary (classic sensor)
    patterns: list[str]
    position: PositionParam | None = None
    since: str | None = None  # ISO 8601 UTC, used when there is no position
    max_bytes: Annotated[int, Field(ge=1)]
    chunk: Annotated[int, Field(ge=1024)] = 1 << 16  # bytes per read; a backward scan reads whole chunks
    head: Annotated[int, Field(ge=16)] = 1024


class StartParams(_Strict):
    service: str
    wait_seconds: Annotated[int, Field(ge=0, le=600)] = 30


class GmsaHostParams(_Strict):
    identity: str  # the gMSA's name, for Test-ADServiceAccount


# --- output (script → bot) ---


class ServiceOut(_Strict):
    name: str
    state: str | None  # None: not installed


class LogOut(_Strict):
    path: str
    file_id: str
    offset: Annotated[int, Field(ge=0)]
    size: Annotated[int, Field(ge=0)]
    bytes_read: Annotated[int, Field(ge=0)]
    matches: Annotated[int, Field(ge=0)]
    first: str | None
    last: str | None
    sample: str | None
    rotated: bool
    reset: bool
    complete: bool


class CheckOutput(_Strict):
    services: list[ServiceOut]
    sense_identity: bool  # the unified sensor's process runs
    log: LogOut | None
    log_error: str | None


class StartOutput(_Strict):
    name: str
    before: str | None
    after: str | None
    error: str | None


class GmsaHostOutput(_Strict):
    test_ad_service_account: bool | None
    test_error: str | None
    service_logon: list[str] | None  # SeServiceLogonRight entries ("*S-1-5-80-0", "CONTOSO\\svc")
    policy_error: str | None
    classic_sensor: bool  # the classic sensor's service (AATPSensor) is installed
    unified_sensor: bool  # the unified sensor's process (SenseIdentity) runs


def decode_params(block: str) -> dict[str, Any]:
    """The parameter block as the script sees it (used by the lab's emulator)."""
    value = json.loads(base64.b64decode(block, validate=True).decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("parameter block is not a JSON object")
    return value
