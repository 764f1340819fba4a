"""Names Graph reports, as untrusted input: which one may become a WinRM endpoint, and in which domain.

A WinRM endpoint receives the WinRM account's login (NTLM's answer can be cracked or relayed), so a name
only Graph gives becomes one only when it is a plain DNS host name inside a domain of ours. Names are
compared in lower case, one trailing dot ignored.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Collection
from dataclasses import dataclass

from bot.config import AccountConfig, AccountName, Settings

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_SHOWN_LENGTH = 80


def normal_name(name: str) -> str:
    """How names are compared: lower case, one trailing dot dropped."""
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


def shown(name: str) -> str:
    """An untrusted name in a message: quoted, control characters escaped, cut to a bounded length."""
    return repr(name[:_SHOWN_LENGTH] + ("…" if len(name) > _SHOWN_LENGTH else ""))


def within(name: str, domain: str) -> bool:
    """`name` is `domain` or ends in it on a label boundary (both normalised)."""
    return name == domain or name.endswith(f".{domain}")


def is_ip_literal(host: str) -> bool:
    """An IP address in any form a resolver accepts (`127.1` and `0x7f000001` included)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return True
    try:
        socket.inet_aton(host)
    except (OSError, ValueError):
        return False
    return True


def _not_plain_host(name: str) -> str | None:
    """Why `name` is not a plain DNS host name (letters, digits, hyphens, dots), or None when it is."""
    if is_ip_literal(name):
        return "is an IP address, not a DNS name"
    for marks, what in (("/\\?#", "has a path"), ("@", "has a user part"), (":", "has a port")):
        if any(c in name for c in marks):
            return what
    host = normal_name(name) if name.isascii() else ""
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in host.split(".")):
        return "is not a DNS host name (letters, digits, hyphens and dots only)"
    return None


def plain_host(name: str) -> str | None:
    """`name` normalised when it is a plain DNS host name, else None."""
    return None if _not_plain_host(name) else normal_name(name)


@dataclass(frozen=True)
class EndpointHost:
    """Whether a name Graph reported may address a WinRM endpoint: the host to use, or why not."""

    host: str | None
    refusal: str | None


def endpoint_host(name: str, domains: Collection[str]) -> EndpointHost:
    """The one rule for a Graph name becoming an endpoint: a plain DNS host name in one of `domains`."""
    problem = _not_plain_host(name)
    if problem is not None:
        return EndpointHost(None, f"its DNS name {shown(name)} {problem}")
    host = normal_name(name)
    if not any(within(host, domain) for domain in domains):
        ours = ", ".join(domains) or "none configured"
        return EndpointHost(
            None,
            f"its DNS name {shown(name)} is in none of our domains ({ours}); "
            "[winrm] allowed_domains may list more",
        )
    return EndpointHost(host, None)


def _account_domains(account: AccountConfig) -> list[str]:
    name = account.name
    upn = [name.domain] if name.style == "upn" else []
    return [*account.dns_domains, *upn, *([account.domain] if account.domain else [])]


def _upn_domain(username: str | None) -> list[str]:
    try:
        name = AccountName.parse(username or "")
    except ValueError:
        return []
    return [name.domain] if name.style == "upn" else []


def own_domains(settings: Settings) -> tuple[str, ...]:
    """The DNS domains a Graph name may address a host in: the accounts' (and the WinRM account's UPN
    suffix), and `[winrm] allowed_domains`."""
    found = [d for account in settings.accounts for d in _account_domains(account)]
    found += [*_upn_domain(settings.winrm.username), *settings.winrm.allowed_domains]
    return tuple(dict.fromkeys(normal_name(d) for d in found if d))
