"""One canary password through every flow — Slack (invalid input, wrong password, store failure, success)
and the CLI (test-connection, set-password) — then a search of everything atp-bot wrote or said: log
records, every call Slack received, audit rows, metrics, CLI output and every file written. Zero hits,
except the encrypted store, whose bytes must not hold it in clear either."""

from __future__ import annotations

import base64
import html
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from prometheus_client import generate_latest

from bot.infra.metrics import REGISTRY
from commands import MODULES
from commands.password.portal import DONE_ACTION
from lab.ata_center import PROFILE_PATH, AtaCenterEmulator
from lab.domain import LabDomain
from lab.samba import LabUser
from lab.winrm.server import WinRMEmulator
from tests.conftest import CANARY, lab_account, run_cli, sensor_config
from tests.slack_lab import (
    ALICE,
    click_done,
    initialised_changes,
    open_modal,
    running_lab,
    values,
    view_text,
    wait_for,
)

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
        submit("password svc", values(CANARY), "Saved.")  # success, the portal step, then threaded checks
        announced = wait_for(
            lambda: [m for m in lab.emulator.messages() if DONE_ACTION in json.dumps(m.blocks)]
        )
        click_done(lab.emulator, announced[0])
        wait_for(lambda: len(lab.emulator.calls("chat.update")) > 1, timeout=30)
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


# What AD passwords often contain: quotes, a backslash, markup and URL metacharacters, spaces, non-ASCII.
HOSTILE = 'Pä"ss\\wörd &<b>%41 ñ€ 9Z'

# A store command that echoes what it got on stdin in every form, on stdout and stderr; it fails while
# a file named `fail` sits beside it. It holds no password itself (every file written is scanned).
_ECHO_COMMAND = """#!{python}
import base64, html, json, pathlib, sys
from urllib.parse import quote, quote_plus
secret = sys.stdin.readline().rstrip("\\n")
forms = [secret, json.dumps(secret), json.dumps(secret, ensure_ascii=False), json.dumps(json.dumps(secret)),
         repr(secret), quote(secret, safe=""), quote_plus(secret), html.escape(secret),
         base64.b64encode(secret.encode()).decode(), base64.b64encode(secret.encode("utf-16-le")).decode()]
print("saved", *forms)
print("vault said:", *forms, file=sys.stderr)
sys.exit(1 if (pathlib.Path(sys.argv[0]).parent / "fail").exists() else 0)
"""


def encoded_forms(secret: str) -> dict[str, str]:
    """The secret as a peer or a log line may carry it, computed here apart from bot.infra.redaction."""
    return {
        "literal": secret,
        "JSON": json.dumps(secret)[1:-1],
        "JSON, raw non-ASCII": json.dumps(secret, ensure_ascii=False)[1:-1],
        "JSON twice": json.dumps(json.dumps(secret))[1:-1],
        "repr": repr(secret)[1:-1],
        "quote": quote(secret, safe=""),
        "quote_plus": quote_plus(secret),
        "HTML": html.escape(secret),
        "XML text": html.escape(secret, quote=False),
        "base64 UTF-8": base64.b64encode(secret.encode()).decode(),
        "base64 UTF-16-LE": base64.b64encode(secret.encode("utf-16-le")).decode(),
    }


def leaked_forms(text: str, secret: str = HOSTILE) -> list[str]:
    return [name for name, form in encoded_forms(secret).items() if form in text]


def echo_body(secret: str) -> str:
    """A peer's error answer that echoes the password back in every form."""
    return "could not save:\n" + "\n".join(encoded_forms(secret).values())


@dataclass
class Backend:
    """A store backend configured against its echoing peer."""

    config: dict[str, object]
    failures: list[Callable[[], None]]  # each makes the next save fail (the peer echoing the password)
    succeed: Callable[[], None]


@contextmanager
def echoing_backend(name: str, tmp_path: Path, user: LabUser) -> Iterator[Backend]:
    if name == "embedded":
        yield Backend({}, [], lambda: None)
        return
    if name == "command":
        script = tmp_path / "bin" / "save-credential"
        script.parent.mkdir()
        script.write_text(_ECHO_COMMAND.format(python=sys.executable), encoding="utf-8")
        script.chmod(0o700)
        flag = script.parent / "fail"
        yield Backend(
            {"backend": "command", "command": {"argv": [str(script)]}},
            [lambda: flag.write_text("")],
            lambda: flag.unlink(missing_ok=True),
        )
        return
    user_name, _, domain = user.upn.partition("@")
    with AtaCenterEmulator(tmp_path / "center", account_user=user_name, account_domain=domain) as center:
        password_file = tmp_path / "ata-admin.password"
        password_file.write_text(center.password, encoding="utf-8")
        config = {
            "url": center.url,
            "username": center.username,
            "password_file": str(password_file),
            "ca_file": str(center.tls.ca_file),
        }
        elsewhere = center.url.replace("127.0.0.1", "localhost") + PROFILE_PATH
        yield Backend(
            {"backend": "ata-center", "ata_center": config},
            [
                lambda: center.fail_next("POST", 500, echo_body(HOSTILE)),
                lambda: center.redirect_next("POST", 307, elsewhere),  # would save there and succeed
            ],
            lambda: None,
        )
        assert center.stored_password == HOSTILE  # the successful saves did reach the Center


def _toml(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


@pytest.mark.parametrize("backend_name", ["embedded", "ata-center", "command"])
def test_escaped_and_encoded_forms_never_leak_through_any_backend(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    env: None,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    backend_name: str,
) -> None:
    """A password full of `"`, `\\`, `&`, `<`, `%`, spaces and non-ASCII letters, a store peer that
    echoes it back in every encoding, through Slack and the CLI; then a search for every form."""
    caplog.set_level(logging.DEBUG)
    lab_domain.dc.set_password(fresh_user.name, HOSTILE)
    account = lab_account(lab_domain, fresh_user)
    state = tmp_path / "state"
    with echoing_backend(backend_name, tmp_path, fresh_user) as backend:
        config = {"state_dir": str(state), "accounts": [account], "store": backend.config}
        with running_lab("socket", modules=MODULES, config=config, changes=initialised_changes) as lab:

            def change(until: str) -> None:
                view_id = open_modal(lab, "password svc")
                lab.emulator.submit_view(view_id, values(HOSTILE))
                wait_for(lambda: until in view_text(lab, view_id), timeout=30)
                lab.emulator.close_view(view_id)

            for fail in backend.failures:
                fail()
                change("NOT saved.")
            assert not lab.emulator.calls("chat.postMessage")  # nothing was announced
            backend.succeed()
            change("Saved.")
            history = lab.emulator.slash_command("history")
            recorded = [json.dumps(c.args) + c.body for c in lab.emulator.calls()]
            recorded.append(json.dumps(history.ack))
            changes = lab.runtime.services.changes
            assert changes is not None
            audit_rows = [repr(row) for row in changes.audit.recent(limit=500)]

        store_table = "[store]\n" + "".join(
            f"{key} = {_toml(value)}\n"
            for key, value in backend.config.items()
            if not isinstance(value, dict)
        )
        for key, value in backend.config.items():
            if isinstance(value, dict):
                store_table += f"[store.{key}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in value.items())
        config_file = tmp_path / "cli.toml"
        config_file.write_text(
            f'state_dir = {_toml(str(tmp_path / "cli-state"))}\n[[accounts]]\nid = "svc"\n'
            f"username = {_toml(fresh_user.upn)}\ndomain_controllers = [{_toml(lab_domain.dc.ldaps_url)}]\n"
            f"ca_file = {_toml(str(lab_domain.dc.ca_file))}\n{store_table}",
            encoding="utf-8",
        )
        if backend_name == "embedded":
            assert run_cli(config_file, "store", "init").returncode == 0
        outputs = []
        set_password = ("set-password", "--account", "svc", "--password-stdin")
        for fail in backend.failures:
            fail()
            outputs.append(run_cli(config_file, "-v", *set_password, stdin=HOSTILE + "\n"))
            assert outputs[-1].returncode == 1
        backend.succeed()
        outputs.append(run_cli(config_file, "-v", *set_password, stdin=HOSTILE + "\n"))
        outputs.append(run_cli(config_file, "history"))
        assert [o.returncode for o in outputs[-2:]] == [0, 0], outputs[-2].stderr[-2000:]

    leaks = {
        "log records": [
            (r.name, leaked_forms(r.getMessage() + (r.exc_text or "")))
            for r in caplog.records
            if leaked_forms(r.getMessage() + (r.exc_text or ""))
        ],
        "Slack calls": [leaked_forms(text) for text in recorded if leaked_forms(text)],
        "audit rows": [leaked_forms(row) for row in audit_rows if leaked_forms(row)],
        "CLI stdout/stderr": [
            leaked_forms(o.stdout + o.stderr) for o in outputs if leaked_forms(o.stdout + o.stderr)
        ],
        "files": [
            (str(p), name)
            for p in tmp_path.rglob("*")
            if p.is_file()
            for name, form in encoded_forms(HOSTILE).items()
            if form.encode() in p.read_bytes()
        ],
    }
    assert leaks == {key: [] for key in leaks}
    if backend_name != "embedded":  # the peer's echo did arrive, and was logged redacted at DEBUG
        assert any("[REDACTED]" in o.stderr for o in outputs)
