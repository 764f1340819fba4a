"""The host file of the standalone WinRM lab: which hosts to emulate, on which ports, in which state."""

from __future__ import annotations

import os
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.config import SensorKind, format_validation_error
from lab.winrm.model import Fault, Host, log_line

# One logged exception: a timestamped line, then the inner exception on a continuation line.
CREDENTIAL_ERROR = (
    "Microsoft.Tri.Infrastructure.ExtendedException: Failed to communicate with the domain controllers",
    "   ---> System.DirectoryServices.Protocols.LdapException: The supplied credential is invalid.",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostSpec(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    kind: SensorKind = "mdi"
    # Service name -> state ("Running", "Stopped", …); "" uninstalls a default service.
    services: dict[str, str] = {}
    # Credential errors to write into the error log, `credential_errors_minutes_ago` minutes ago.
    credential_errors: Annotated[int, Field(ge=0)] = 0
    credential_errors_minutes_ago: Annotated[int, Field(ge=0)] = 5
    # Size of old filler lines at the start of the log (virtual, not stored).
    log_filler_bytes: Annotated[int, Field(ge=0)] = 0
    latency_ms: Annotated[int, Field(ge=0, le=60_000)] = 0
    fault: Fault | None = None


class HostFile(_Model):
    username: str
    password: str | None = None
    password_env: str | None = None
    auth: list[Literal["ntlm", "basic"]] = ["ntlm", "basic"]
    tls: bool = False
    bind: str = "127.0.0.1"
    hosts: Annotated[list[HostSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _one_password(self) -> HostFile:
        if bool(self.password) == bool(self.password_env):
            raise ValueError("set password or password_env (one of them)")
        return self

    def secret(self) -> str:
        if self.password:
            return self.password
        value = os.environ.get(self.password_env or "")
        if not value:
            raise ValueError(f"environment variable {self.password_env} is not set")
        return value


def load_host_file(path: Path) -> HostFile:
    try:
        return HostFile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        raise ValueError("; ".join(format_validation_error(exc))) from None


def build_host(spec: HostSpec) -> Host:
    host = Host.sensor(spec.name, spec.kind, filler_bytes=spec.log_filler_bytes)
    for service, state in spec.services.items():
        host.set_service(service, state or None)
    when = datetime.now(UTC) - timedelta(minutes=spec.credential_errors_minutes_ago)
    for _ in range(spec.credential_errors):
        host.append_log(log_line(when, CREDENTIAL_ERROR[0]), CREDENTIAL_ERROR[1])
    host.latency = spec.latency_ms / 1000
    host.fault = spec.fault
    return host
