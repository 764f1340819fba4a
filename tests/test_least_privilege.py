"""docs/operations.md's "Least privilege" section stays true of the code: the lookup account's table
names every attribute atp-bot reads with it, the Graph permissions are the two atp-bot asks for, every
PowerShell block an administrator pastes parses (tree-sitter-powershell, an independent grammar), and the
KDS root key grant it gives works, and keeps the key material hidden, on the real Samba AD DC."""

from __future__ import annotations

import ast
import re
import ssl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_powershell
from ldap3 import BASE, LEVEL, MODIFY_REPLACE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPNoSuchObjectResult

from bot.config import parse_settings
from bot.gmsa.directory import read_kds_keys
from lab.domain import LabDomain, new_password
from lab.gmsa import LabGmsa, security_descriptor
from lab.samba import LabUser, SambaDC

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.md"
# Every module that reads AD with the lookup account (bot/directory/kerberos_check.py reads as the DSA).
LOOKUP_READERS = (
    "bot/directory/lookup.py",
    "bot/monitor/drift.py",
    "bot/gmsa/directory.py",
    "bot/gmsa/groups.py",
)
ATTRIBUTE = re.compile(r"[a-zA-Z][a-zA-Z0-9]*(-[a-zA-Z0-9]+)*")


def section(title: str) -> str:
    text = OPERATIONS.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def least_privilege() -> str:
    return section("Least privilege: the accounts atp-bot uses")


def attribute_lists(path: Path) -> set[str]:
    """The strings of each list or tuple in `path` made only of LDAP attribute names (what it asks for)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.List | ast.Tuple):
            continue
        items = [e for e in node.elts if not isinstance(e, ast.Starred)]
        names = [e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        if names and len(names) == len(items) and all(ATTRIBUTE.fullmatch(n) for n in names):
            found.update(names)
    return found


def test_the_lookup_table_names_every_attribute_the_lookup_account_reads() -> None:
    text = least_privilege()
    table = text[text.index("| Object | Attributes | For |") : text.index("Under AD's default")]
    documented = set(re.findall(r"`([^`]+)`", table))
    read = set().union(*(attribute_lists(ROOT / path) for path in LOOKUP_READERS))
    assert {"badPwdCount", "msDS-GroupMSAMembership", "msKds-UseStartTime"} <= read  # the scan finds them
    assert read - documented == set()


def test_the_graph_permissions_are_the_two_read_only_ones_atp_bot_names() -> None:
    text = least_privilege()
    asked = set(re.findall(r"SecurityIdentities\w+\.\w+\.All", text))
    assert asked == {"SecurityIdentitiesSensors.Read.All", "SecurityIdentitiesHealth.Read.All"}
    graph_code = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "bot" / "graph").glob("*.py"))
    assert asked <= set(re.findall(r"SecurityIdentities\w+\.\w+\.All", graph_code))


GRAPH_ONLY = """
[[accounts]]
id = "contoso"
username = "svc-atp@contoso.local"
domain_controllers = ["ldaps://dc1.contoso.local"]

[graph]
enabled = true
discover_sensors = true
tenant_id = "contoso.onmicrosoft.com"
client_id = "00000000-0000-0000-0000-000000000000"
client_secret_env = "ATP_BOT_GRAPH_SECRET"
"""


def test_graph_only_operation_needs_no_winrm_account() -> None:
    """Alternative 1 of the WinRM account: a configuration without [winrm] or [[sensors]] is valid."""
    assert "Leave out `[winrm]` and `[[sensors]]`" in least_privilege()
    settings = parse_settings(GRAPH_ONLY, "graph-only.toml")
    assert settings.graph is not None and settings.graph.discover_sensors and settings.graph.enabled
    assert settings.sensors == [] and settings.winrm.username is None


def powershell_blocks() -> list[str]:
    return re.findall(r"^```powershell\n(.*?)^```", OPERATIONS.read_text(encoding="utf-8"), re.M | re.S)


def parses(source: str) -> bool:
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    return not parser.parse(source.encode("utf-8")).root_node.has_error


def test_the_grammar_catches_a_broken_block() -> None:
    """The control: the parser must reject what PowerShell would."""
    block = powershell_blocks()[0]
    assert parses(block)
    assert not parses(block + "\nif ($x -eq 1) {\n")
    assert not parses("$acl.AddAccessRule((New-Object Foo($a, 'b'))\n")


@pytest.mark.parametrize("index", range(len(powershell_blocks())))
def test_every_powershell_block_parses(index: int) -> None:
    assert len(powershell_blocks()) >= 4
    assert parses(powershell_blocks()[index]), powershell_blocks()[index]


# --- the KDS root key grant, made on the real Samba AD DC ------------------------------------------


def schema_guid(conn: Connection, dc: SambaDC, name: str) -> str:
    schema = f"CN=Schema,CN=Configuration,{dc.base_dn}"
    conn.search(schema, f"(lDAPDisplayName={name})", LEVEL, attributes=["schemaIDGUID"])
    return str(uuid.UUID(bytes_le=conn.response[0]["raw_attributes"]["schemaIDGUID"][0]))


@contextmanager
def bound_as(dc: SambaDC, user: LabUser) -> Iterator[Connection]:
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(dc.ca_file), version=ssl.PROTOCOL_TLS_CLIENT)
    server = Server(dc.address, port=636, use_ssl=True, tls=tls, get_info="NO_INFO", connect_timeout=5)
    conn = Connection(server, user=user.upn, password=user.password, check_names=False, receive_timeout=15)
    assert conn.bind()
    try:
        yield conn
    finally:
        conn.unbind()


def root_key_data(conn: Connection, key_dn: str) -> object:
    conn.search(key_dn, "(objectClass=*)", BASE, attributes=["msKds-RootKeyData"])
    entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
    return entries[0]["raw_attributes"].get("msKds-RootKeyData") if entries else None


def exists(conn: Connection, dn: str) -> bool:
    try:
        return bool(conn.search(dn, "(objectClass=*)", BASE))
    except LDAPNoSuchObjectResult:
        return False


@contextmanager
def kds_root_key(objects: LabGmsa, effective: datetime) -> Iterator[str]:
    """A KDS root key readable by admins only (AD's default); it, and the containers it needed, are
    removed afterwards: other tests expect the lab's forest without one."""
    container = objects.kds_container()
    parents = [container.split(",", 1)[1], container]
    with objects.dc.admin() as conn:
        existed = {dn for dn in parents if exists(conn, dn)}
    key_dn = objects.add_kds_root_key(effective)
    try:
        yield key_dn
    finally:
        with objects.dc.admin() as conn:
            for dn in [key_dn, *reversed([p for p in parents if p not in existed])]:
                conn.delete(dn)


def set_dacl(objects: LabGmsa, dn: str, aces: str) -> None:
    sddl = f"O:DAD:(A;;FA;;;DA)(A;;FA;;;EA)(A;;FA;;;SY){aces}"
    descriptor = security_descriptor(sddl, objects.domain_sid)
    with objects.dc.admin() as conn:
        conn.modify(dn, {"nTSecurityDescriptor": [(MODIFY_REPLACE, [descriptor])]})


@pytest.mark.samba
def test_the_documented_kds_grant_shows_the_start_time_and_never_the_key(lab_domain: LabDomain) -> None:
    """The grant of docs/operations.md (read of objectClass; read and control access on
    msKds-UseStartTime alone) lets a plain user see when the key is effective, as `gmsa check` needs, and
    still not its key material; the broad grant the section forbids would give that away."""
    dc, objects = lab_domain.dc, LabGmsa(lab_domain.dc)
    lookup = dc.create_user(f"kds-lookup-{uuid.uuid4().hex[:6]}", new_password(), never_expires=True)
    sid = objects.sid_of(lookup.dn)
    effective = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=20)
    with kds_root_key(objects, effective) as key_dn:
        with dc.admin() as conn:
            object_class, use_start = (
                schema_guid(conn, dc, n) for n in ("objectClass", "msKds-UseStartTime")
            )
        with bound_as(dc, lookup) as conn:
            assert effective not in read_kds_keys(conn).effective  # AD's default: admins only
        set_dacl(objects, key_dn, f"(OA;;RP;{object_class};;{sid})(OA;;RPCR;{use_start};;{sid})")
        with bound_as(dc, lookup) as conn:
            assert effective in read_kds_keys(conn).effective
            assert not root_key_data(conn, key_dn)
        set_dacl(objects, key_dn, f"(A;;RPCR;;;{sid})")  # Read all properties, All extended rights
        with bound_as(dc, lookup) as conn:
            assert root_key_data(conn, key_dn)
