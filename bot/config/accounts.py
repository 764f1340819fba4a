"""`[[accounts]]` (the directory service accounts and their domain controllers) and `[lockout_guard]`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from bot.config.base import SecretSource, StrictModel

ACCOUNT_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
GMSA_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\$"  # sAMAccountName: at most 15 characters + `$`
GMSA_DOMAIN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]*(\.[A-Za-z0-9][A-Za-z0-9-]*)+$"


@dataclass(frozen=True)
class AccountName:
    """A directory account name as an operator writes it: `user@domain` (UPN) or `DOMAIN\\user`."""

    raw: str
    user: str
    domain: str
    style: Literal["upn", "down-level"]

    @classmethod
    def parse(cls, raw: str) -> AccountName:
        if raw != raw.strip() or not raw:
            raise ValueError("must not be empty or have leading/trailing spaces")
        if "\\" in raw:
            domain, _, user = raw.partition("\\")
            style: Literal["upn", "down-level"] = "down-level"
        elif "@" in raw:
            user, _, domain = raw.rpartition("@")
            style = "upn"
        else:
            raise ValueError("must be a UPN (user@domain) or a down-level name (DOMAIN\\user)")
        if not user or not domain or "\\" in user or "@" in domain or any(c.isspace() for c in raw):
            raise ValueError("must be a UPN (user@domain) or a down-level name (DOMAIN\\user)")
        return cls(raw=raw, user=user, domain=domain, style=style)


@dataclass(frozen=True)
class DomainController:
    """One LDAP endpoint: `ldaps://host[:636]`, or `ldap://host[:389]` upgraded with StartTLS."""

    url: str
    host: str
    port: int
    use_ssl: bool

    @classmethod
    def parse(cls, url: str) -> DomainController:
        parts = urlsplit(url)
        if parts.scheme not in ("ldaps", "ldap"):
            raise ValueError(f"{url!r}: scheme must be ldaps:// or ldap:// (with StartTLS)")
        if not parts.hostname:
            raise ValueError(f"{url!r}: no host name")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError(f"{url!r}: only scheme, host and port are allowed")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{url!r}: invalid port") from None
        use_ssl = parts.scheme == "ldaps"
        return cls(url=url, host=parts.hostname, port=port or (636 if use_ssl else 389), use_ssl=use_ssl)


class AccountConfig(StrictModel):
    """One directory service account (one domain or forest) that sensors use to read AD."""

    id: Annotated[str, Field(pattern=ACCOUNT_ID_PATTERN)]
    # "gmsa": a group managed service account (AD rotates its password; atp-bot only checks it, see
    # docs/gmsa.md); `username` is then its sAMAccountName ending in `$` and `domain` its DNS domain.
    kind: Literal["user", "gmsa"] = "user"
    username: str
    domain: Annotated[str, Field(pattern=GMSA_DOMAIN_PATTERN)] | None = None
    domain_controllers: Annotated[list[str], Field(min_length=1)]
    ca_file: Path | None = None
    tls_verify: bool = True
    connect_timeout: Annotated[float, Field(gt=0, le=120)] = 5.0
    receive_timeout: Annotated[int, Field(gt=0, le=300)] = 15  # whole seconds (ldap3 needs an int)
    base_dn: str | None = None
    # Optional read-only account used to read badPwdCount/lockoutThreshold before a test.
    lookup_username: str | None = None
    lookup_password_env: str | None = None
    lookup_password_file: Path | None = None
    # Two-person approval for this account: overrides `[approvals] required` (None: follow it).
    approval: bool | None = None
    # DNS domains whose sensors use this account (their follow-up checks count for its changes);
    # default: the account's own domain (UPN suffix, else base_dn, else its domain controllers' domain).
    domains: (
        Annotated[
            list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")]], Field(min_length=1)
        ]
        | None
    ) = None
    # After a save waiting for the portal step (bot.change.portal): minutes before the one reminder.
    portal_reminder_minutes: Annotated[int, Field(ge=1, le=10080)] = 15
    # KDCs that confirm a passed bind is the current password (`host` or `host:port`); default: the DCs.
    kdc: Annotated[list[str], Field(min_length=1)] | None = None
    # "required": a password that no KDC confirmed (none answered, or none offered AES) fails the test;
    # "best_effort": it passes with a warning.
    kerberos_check: Literal["best_effort", "required"] = "best_effort"

    @field_validator("kdc")
    @classmethod
    def _valid_kdcs(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or []:
            host, _, port = entry.rpartition(":") if ":" in entry else (entry, "", "88")
            if not host or any(c in host for c in "/@ []") or not port.isdigit():
                raise ValueError(f"{entry!r}: a KDC is `host` or `host:port` (port 88 by default)")
        return value

    @field_validator("username", "lookup_username")
    @classmethod
    def _valid_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if info.field_name == "username" and info.data.get("kind") == "gmsa":
            if not re.fullmatch(GMSA_NAME_PATTERN, value):
                raise ValueError(
                    'a gMSA is named by its sAMAccountName ending in `$` (e.g. "mdisvc$"), as in the portal'
                )
            return value
        AccountName.parse(value)
        return value

    @field_validator("domain_controllers")
    @classmethod
    def _valid_dcs(cls, value: list[str]) -> list[str]:
        for url in value:
            DomainController.parse(url)
        if len(set(value)) != len(value):
            raise ValueError("a domain controller is listed twice")
        return value

    @model_validator(mode="after")
    def _lookup_complete(self) -> AccountConfig:
        source = self.lookup_password_source
        if bool(self.lookup_username) != source.configured:
            raise ValueError("lookup_username and lookup_password_env/lookup_password_file go together")
        source.check()
        return self

    @model_validator(mode="after")
    def _gmsa_complete(self) -> AccountConfig:
        if self.kind != "gmsa":
            return self
        if self.domain is None:
            raise ValueError('kind = "gmsa" needs domain (the gMSA\'s DNS domain, e.g. "corp.contoso.com")')
        if self.lookup_username is None:
            raise ValueError('kind = "gmsa" needs lookup_username: the read-only account reads the gMSA')
        return self

    @property
    def lookup_password_source(self) -> SecretSource:
        return SecretSource(
            f"account {self.id}: lookup_password",
            "lookup_password",
            self.lookup_password_env,
            self.lookup_password_file,
        )

    def lookup_password(self) -> SecretStr:
        return self.lookup_password_source.read()

    @property
    def name(self) -> AccountName:
        if self.kind == "gmsa":
            return AccountName(self.username, self.username, self.domain or "", "down-level")
        return AccountName.parse(self.username)

    @property
    def dcs(self) -> list[DomainController]:
        return [DomainController.parse(url) for url in self.domain_controllers]

    @property
    def dns_domains(self) -> tuple[str, ...]:
        """`domains`, else the account's own DNS domain; empty when none can be told."""
        if self.domains:
            return tuple(d.lower().rstrip(".") for d in self.domains)
        if self.kind == "gmsa" and self.domain:
            return (self.domain.lower(),)
        name = self.name
        if name.style == "upn":
            return (name.domain.lower(),)
        rdns = [part.strip().partition("=") for part in (self.base_dn or "").split(",")]
        labels = [value.strip().lower() for key, _, value in rdns if key.strip().lower() == "dc"]
        if labels:
            return (".".join(labels),)
        hosts = [dc.host.lower() for dc in self.dcs if not dc.host.replace(".", "").isdigit()]
        return tuple(sorted({h.partition(".")[2] for h in hosts if h.count(".") >= 2}))


GMSA_CHANGE_REFUSAL = (
    "Account {id} is a group managed service account ({name}): Active Directory rotates its password "
    "and nobody types it, so atp-bot does not change it; run `atp-bot gmsa check --account {id}` "
    "(or `/atp gmsa {id}`) to check it instead."
)


def password_refusal(account: AccountConfig) -> str | None:
    """Why atp-bot refuses to change this account's password (one sentence), or None."""
    if account.kind != "gmsa":
        return None
    return GMSA_CHANGE_REFUSAL.format(id=account.id, name=account.username)


class LockoutGuardConfig(StrictModel):
    """How many rejected tests per account atp-bot allows within a window before it refuses more."""

    max_rejections: Annotated[int, Field(ge=1, le=100)] = 2
    window_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 30
