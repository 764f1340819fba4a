"""Shared helpers for the store and audit tests: a configuration in a temp dir, and file scanning."""

from __future__ import annotations

from pathlib import Path

from bot.audit import AuditAction, AuditEvent, AuditOutcome
from bot.config import Settings, parse_settings

CANARY = "Canary-Secret-7f3a9!"


def toml_str(value: object) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(tmp_path: Path, extra: str = "") -> str:
    return (
        f"state_dir = {toml_str(tmp_path / 'state')}\n"
        "[[accounts]]\n"
        'id = "corp"\n'
        'username = "CONTOSO\\\\svc-atp"\n'
        'domain_controllers = ["ldaps://dc1.contoso.test"]\n'
        "[[accounts]]\n"
        'id = "lab"\n'
        'username = "svc-lab@lab.test"\n'
        'domain_controllers = ["ldaps://dc1.lab.test"]\n' + extra
    )


def make_settings(tmp_path: Path, extra: str = "") -> Settings:
    return parse_settings(config_text(tmp_path, extra))


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "atp-bot.toml"
    path.write_text(config_text(tmp_path, extra), encoding="utf-8")
    return path


def files_containing(directory: Path, needle: str) -> list[Path]:
    """Every file under `directory` whose bytes contain `needle` (UTF-8)."""
    raw = needle.encode("utf-8")
    return [p for p in directory.rglob("*") if p.is_file() and raw in p.read_bytes()]


def check_event(actor: str = "cli:alice", *, detail: str | None = None, account: str = "corp") -> AuditEvent:
    """A routine sensor check to fill an audit trail with."""
    return AuditEvent(
        actor=actor, action=AuditAction.CHECK, account=account, outcome=AuditOutcome.OK, detail=detail
    )
