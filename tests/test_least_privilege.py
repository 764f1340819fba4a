"""docs/operations.md's "Least privilege" section stays true of the code: the lookup account's table
names every attribute atp-bot reads with it, the Graph permissions are the two atp-bot asks for, and
every PowerShell block an administrator pastes parses (tree-sitter-powershell, an independent grammar)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_powershell

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
