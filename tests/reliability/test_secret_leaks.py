"""One canary password through every flow — Slack (invalid input, wrong password, store failure, success)
and the CLI (test-connection, set-password) — then a search of everything atp-bot wrote or said: log
records, every call Slack received, audit rows, metrics, CLI output and every file written. Zero hits,
except the encrypted store, whose bytes must not hold it in clear either."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from bot.infra.metrics import REGISTRY
from commands import MODULES
from lab.domain import LabDomain
from lab.samba import LabUser
from lab.winrm.server import WinRMEmulator
from tests.conftest import CANARY, lab_account, run_cli, sensor_config
from tests.slack_lab import ALICE, initialised_changes, running_lab, values, wait_for

pytestmark = pytest.mark.samba


def files_with(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_canary_never_leaks(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    sensors: WinRMEmulator,
    env: None,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    failing = tmp_path / "failing-store"
    failing.write_text("#!/bin/sh\ncat >/dev/null\necho 'sealed' >&2\nexit 1\n")
    failing.chmod(0o700)
    account = lab_account(lab_domain, fresh_user)
    broken = {**account, "id": "broken", "domain_controllers": ["ldaps://127.0.0.1:1"]}
    state = tmp_path / "state"
    config = {"state_dir": str(state), "accounts": [account, broken], **sensor_config(sensors, "svc")}
    recorded: list[str] = []

    with running_lab("socket", modules=MODULES, config=config, changes=initialised_changes) as lab:

        def submit(text: str, typed: dict[str, dict[str, str]], until: str) -> None:
            lab.emulator.slash_command(text)
            view_id = wait_for(lambda: lab.emulator.open_views(ALICE))[-1].id
            lab.emulator.submit_view(view_id, typed)
            wait_for(lambda: until in json.dumps(lab.emulator.view(view_id)["blocks"]), timeout=20)
            lab.emulator.close_view(view_id)

        lab.emulator.slash_command("password svc")
        view_id = wait_for(lambda: lab.emulator.open_views(ALICE))[-1].id
        errors = lab.emulator.submit_view(view_id, values(CANARY, CANARY + "x"))  # mismatch: inline error
        assert errors.ack is not None
        assert errors.ack["response_action"] == "errors"
        lab.emulator.close_view(view_id)
        submit("password broken", values(CANARY), "Not saved.")  # DC unreachable
        submit("password svc", values(CANARY + "-wrong"), "Not saved.")  # wrong password
        submit("password svc", values(CANARY), "Saved.")  # success, then threaded checks
        wait_for(lambda: lab.emulator.calls("chat.update"), timeout=30)
        lab.emulator.slash_command("history")
        lab.emulator.slash_command("status")
        wait_for(lambda: lab.emulator.calls("response_url"), timeout=30)
        recorded = [json.dumps(c.args) + c.body for c in lab.emulator.calls()]
        changes = lab.runtime.services.changes
        assert changes is not None
        audit_rows = [repr(row) for row in changes.audit.recent(limit=500)]

    # The CLI faces, including a store failure after a passed test.
    config_file = tmp_path / "cli.toml"
    config_file.write_text(
        f'state_dir = "{tmp_path / "cli-state"}"\n[[accounts]]\nid = "svc"\nusername = "{fresh_user.upn}"\n'
        f'domain_controllers = ["{lab_domain.dc.ldaps_url}"]\nca_file = "{lab_domain.dc.ca_file}"\n'
        f'[store]\nbackend = "command"\n[store.command]\nargv = ["{failing}"]\n'
    )
    outputs = [
        run_cli(
            config_file, "-v", "test-connection", "--account", "svc", "--password-stdin", stdin=CANARY + "\n"
        ),
        run_cli(
            config_file, "-v", "set-password", "--account", "svc", "--password-stdin", stdin=CANARY + "\n"
        ),
    ]
    assert [o.returncode for o in outputs] == [0, 1]
    assert "Tested OK but NOT saved" in outputs[1].stdout

    leaks = {
        "log records": [
            r.name for r in caplog.records if CANARY in r.getMessage() or CANARY in (r.exc_text or "")
        ],
        "Slack calls": [text[:80] for text in recorded if CANARY in text],
        "audit rows": [row for row in audit_rows if CANARY in row],
        "metrics": [CANARY] if CANARY in generate_latest(REGISTRY).decode() else [],
        "CLI output": [o.args for o in outputs if CANARY in o.stdout + o.stderr],
        "files": [str(p) for p in files_with(tmp_path, CANARY.encode())],
    }
    assert leaks == {key: [] for key in leaks}
    assert recorded, "no Slack traffic was recorded"
    assert (state / "credentials.sqlite").exists()  # the encrypted store was written, and holds no clear text
