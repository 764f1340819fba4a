"""`[winrm]`, `[[sensors]]` and `[sensor_checks]`: how the sensors are reached over WinRM and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from bot.config.base import SecretSource, StrictModel

SensorKind = Literal["mdi", "ata"]
WinRMTransport = Literal["ntlm", "kerberos", "basic", "certificate", "credssp"]

# What a sensor logs when it cannot retrieve its gMSA's password (the monitor then runs `gmsa check`).
GMSA_LOG_SIGNATURES = (
    "failed to retrieve group managed service account password",
    "GMSA password could not be retrieved",
)
_ENDPOINT_HINT = "use https://host:5986/wsman (or http://host:5985/wsman)"
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A DNS domain: letters, digits and hyphens in dot-separated labels (one trailing dot allowed).
DNS_DOMAIN_PATTERN = rf"^{_DNS_LABEL}(?:\.{_DNS_LABEL})*\.?$"


def parse_winrm_endpoint(value: str) -> str:
    """A sensor address: a bare host name (HTTPS on 5986) or a full `http(s)://host[:port]/wsman` URL."""
    if "://" not in value:
        if not value or any(c in value for c in "/:@ \\"):
            raise ValueError(f"{value!r}: not a host name; {_ENDPOINT_HINT}")
        return f"https://{value}:5986/wsman"
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r}: {_ENDPOINT_HINT}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{value!r}: only scheme, host, port and path are allowed")
    try:
        port = parts.port or (5986 if parts.scheme == "https" else 5985)
    except ValueError:
        raise ValueError(f"{value!r}: invalid port") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}{parts.path or '/wsman'}"


class _WinRMSettings(StrictModel):
    """Connection settings that `[winrm]` sets for every sensor and a `[[sensors]]` entry may override."""

    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    transport: WinRMTransport | None = None
    # CA bundle (PEM) that signs the sensors' WinRM HTTPS certificates; default: the system trust store.
    ca_file: Path | None = None
    # false turns certificate validation off (a warning is logged on every check).
    cert_validation: bool | None = None
    # For transport = "certificate": client certificate and key (PEM files).
    cert_pem: Path | None = None
    cert_key_pem: Path | None = None

    @model_validator(mode="after")
    def _one_secret_source(self) -> _WinRMSettings:
        SecretSource("winrm", "password", self.password_env, self.password_file).check()
        if bool(self.cert_pem) != bool(self.cert_key_pem):
            raise ValueError("cert_pem and cert_key_pem go together")
        return self


class WinRMConfig(_WinRMSettings):
    """`[winrm]`: defaults for every sensor."""

    transport: WinRMTransport | None = "ntlm"
    cert_validation: bool | None = True
    # WS-Management operation timeout; the HTTP read timeout is derived from it (pywinrm needs read > op).
    operation_timeout: Annotated[int, Field(ge=1, le=600)] = 20
    # Endpoint of a sensor found in Graph ([graph] discover_sensors) but not in [[sensors]], from its DNS
    # name, e.g. "https://{dns_name}:5986/wsman"; unset: such sensors get Graph-only checks.
    endpoint_template: str | None = None
    # DNS domains, besides the accounts' own, whose hosts a Graph name may address through the template.
    allowed_domains: list[Annotated[str, Field(max_length=254, pattern=DNS_DOMAIN_PATTERN)]] = []

    @field_validator("endpoint_template")
    @classmethod
    def _valid_template(cls, value: str | None) -> str | None:
        if value is not None:
            if value.count("{dns_name}") != 1 or value.replace("{dns_name}", "").count("{"):
                raise ValueError("must contain {dns_name} once and no other placeholder")
            parse_winrm_endpoint(value.replace("{dns_name}", "sensor.example"))
        return value

    @field_validator("allowed_domains")
    @classmethod
    def _domains_not_addresses(cls, value: list[str]) -> list[str]:
        for domain in value:
            if domain.rstrip(".").rpartition(".")[2].isdigit():
                raise ValueError(f"{domain!r} is an IP address; list DNS domains (e.g. corp.contoso.com)")
        return value

    @property
    def template_sensor(self) -> SensorConfig | None:
        """What `endpoint_template` makes of a sensor only Graph knows (for the checks that apply to
        every `[[sensors]]` endpoint), None without a template."""
        if self.endpoint_template is None:
            return None
        return SensorConfig(
            name="template", endpoint=self.endpoint_template.replace("{dns_name}", "sensor.example")
        )


class SensorConfig(_WinRMSettings):
    """`[[sensors]]`: one sensor server reached over WinRM. Unset values come from `[winrm]` and `kind`."""

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    endpoint: str
    kind: SensorKind = "mdi"
    account: str | None = None
    # Windows service names to check; default per kind (see docs/sensors.md).
    services: (
        Annotated[list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.$ -]{1,256}$")]], Field(min_length=1)]
        | None
    ) = None
    # Folder of the error log; one `*` may stand for the versioned folder (the newest log wins).
    log_dir: Annotated[str, Field(min_length=3, max_length=260)] | None = None
    error_log: Annotated[str, Field(pattern=r"^[^\\/:*?\"<>|]{1,255}$")] | None = None
    credential_error_patterns: (
        Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | None
    ) = None

    @field_validator("endpoint")
    @classmethod
    def _valid_endpoint(cls, value: str) -> str:
        return parse_winrm_endpoint(value)

    @field_validator("log_dir")
    @classmethod
    def _valid_log_dir(cls, value: str | None) -> str | None:
        if value is not None and value.count("*") > 1:
            raise ValueError("at most one `*` (the versioned folder) is allowed")
        return value

    def effective_transport(self, winrm: WinRMConfig) -> WinRMTransport:
        return self.transport or winrm.transport or "ntlm"

    def effective_cert_validation(self, winrm: WinRMConfig) -> bool:
        return (
            self.cert_validation if self.cert_validation is not None else winrm.cert_validation is not False
        )

    @property
    def over_http(self) -> bool:
        return self.endpoint.startswith("http://")


# WinRM transports that must not run over plain http://, and why.
NEEDS_HTTPS: dict[WinRMTransport, str] = {
    "basic": "sends the WinRM password in clear text before the host can refuse it",
    "certificate": "presents the client certificate in the TLS handshake, which http:// does not have",
}


class SensorChecksConfig(StrictModel):
    """`[sensor_checks]`: how `atp-bot check` and the follow-up checks fan out."""

    pool_size: Annotated[int, Field(ge=1, le=1024)] = 32
    # `atp-bot run` checks sensors in this many worker processes (sharing pool_size), so that the checks'
    # CPU work never delays Slack's acknowledgements; 0 checks them in the bot's own threads.
    worker_processes: Annotated[int, Field(ge=0, le=64)] = 1
    # Wall-clock limit for one sensor (connect, authenticate, run, read output).
    host_timeout: Annotated[float, Field(gt=0, le=3600)] = 60.0
    credential_error_patterns: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = [
        "The supplied credential is invalid."
    ]
    # Sensor log lines of a gMSA whose password the sensor may not retrieve (counted as credential errors,
    # reported apart from a wrong password, and the monitor runs `gmsa check`); an empty list turns them off.
    gmsa_error_patterns: list[Annotated[str, Field(min_length=1)]] = list(GMSA_LOG_SIGNATURES)
    # Without `since` or a saved position, look this far back in the error log.
    default_window_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 60
    # Upper bound of log bytes one check reads on a sensor (the sensor reads, only results travel).
    max_scan_bytes: Annotated[int, Field(ge=4096, le=1 << 34)] = 64 * 1024 * 1024
