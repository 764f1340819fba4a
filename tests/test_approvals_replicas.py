"""Two `atp-bot run` replicas sharing PostgreSQL: a request held by one is approved by a click that the
emulator's round robin hands to either replica (so to the standby too), and saved once."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bot.infra.redaction import secret_forms
from commands.password.approval import Action
from lab.domain import LabDomain
from lab.postgres import PostgresCluster
from lab.samba import LabUser
from lab.slack import SlackEmulator
from tests.conftest import CANARY, lab_account
from tests.peers import postgres_cluster
from tests.replicas import replica_tables
from tests.slack_lab import ALICE, BOB, OPS, values, wait_for
from tests.test_approvals import Asked, click, current

pytestmark = pytest.mark.samba

PASSWORD = "pg-approvals-replicas-31"
DB_PASSWORD_ENV = "ATP_TEST_REPLICA_DB_PASSWORD"
KEY_ENV = "ATP_TEST_APPROVALS_KEY"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from postgres_cluster(PASSWORD)


def replica_config(tmp_path: Path, name: str, db_url: str, api_url: str, account: dict[str, object]) -> Path:
    tables = replica_tables(db_url, DB_PASSWORD_ENV, 0.2)
    saved = tmp_path / "saved-by-store"  # the command store's target, shared like a vault
    tables["store"]["command"]["argv"] = ["/bin/sh", "-c", f"cat > '{saved}'"]
    tables |= {
        "state_dir": str(tmp_path / name),
        "accounts": [account],
        "slack": {"api_url": api_url, "channel": OPS, "allowed_users": [ALICE]},
        "approvals": {"required": True, "approvers": [BOB], "key_env": KEY_ENV},
    }
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(tables), encoding="utf-8")
    return path


def modal_text(emulator: SlackEmulator, view_id: str) -> str:
    return json.dumps(emulator.view(view_id)["blocks"])


def ask(emulator: SlackEmulator) -> Asked:
    """ALICE asks (the command and the submission go to the two replicas in turn)."""
    emulator.slash_command("password", user=ALICE)
    (view_id,) = wait_for(lambda: [v.id for v in emulator.open_views(ALICE)])
    emulator.submit_view(view_id, values(CANARY))
    wait_for(lambda: "Waiting for approval" in modal_text(emulator, view_id), timeout=20)
    (message,) = wait_for(
        lambda: [
            m for m in emulator.messages(OPS) if "asks to save" in m.text and m.blocks[-1].get("elements")
        ]
    )
    return Asked(view_id, message.ts, message.blocks[-1]["elements"][0]["value"])


def approve_twice(emulator: SlackEmulator, asked: Asked, shift: int) -> None:
    """BOB's click after `shift` other envelopes, so that it lands on one replica or the other; a second
    click (on the other replica) comes too late."""
    for _ in range(shift):
        emulator.slash_command("help")
    click(emulator, asked, Action.APPROVE, BOB)
    click(emulator, asked, Action.APPROVE, BOB)
    wait_for(lambda: "Approved by" in current(emulator, asked), timeout=20)
    wait_for(lambda: "Saved." in modal_text(emulator, asked.view_id), timeout=20)
    emulator.close_view(asked.view_id)


def test_a_click_on_either_replica_approves_once(
    cluster: PostgresCluster, lab_domain: LabDomain, fresh_user: LabUser, tmp_path: Path
) -> None:
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    db_url = cluster.create_database("approval_replicas")
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    env = {**os.environ, DB_PASSWORD_ENV: PASSWORD, KEY_ENV: key}
    with SlackEmulator() as emulator:
        env |= {"SLACK_BOT_TOKEN": emulator.bot_token, "SLACK_APP_TOKEN": emulator.app_token}
        account = lab_account(lab_domain, fresh_user)
        configs = [replica_config(tmp_path, name, db_url, emulator.api_url, account) for name in ("a", "b")]
        bots = [
            subprocess.Popen(
                [sys.executable, "-m", "bot", "--config", str(path), "run"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for path in configs
        ]
        try:
            wait_for(lambda: emulator.connected_apps == 2 or None, timeout=30)
            for shift in (0, 1):  # the second click goes to the other replica
                approve_twice(emulator, ask(emulator), shift)
            wait_for(
                lambda: len([m for m in emulator.messages(OPS) if "changed the directory" in m.text]) == 2
            )
            calls = str([c.args for c in emulator.calls()]) + str([c.body for c in emulator.calls()])
        finally:
            for bot in bots:
                if bot.poll() is None:
                    bot.send_signal(signal.SIGTERM)
            outputs = [bot.communicate(timeout=30) for bot in bots]
    assert (tmp_path / "saved-by-store").read_text().strip() == CANARY
    engine = create_engine(make_url(db_url).set(password=PASSWORD), poolclass=NullPool)
    with engine.connect() as db:
        saves = db.execute(
            text("SELECT actor FROM audit_events WHERE action = 'save' AND outcome = 'ok'")
        ).all()
        approvals = db.execute(
            text("SELECT count(*) FROM audit_events WHERE action = 'approve' AND outcome = 'ok'")
        ).scalar()
        held = " ".join(
            str(v) for row in db.execute(text("SELECT * FROM approval_requests")).all() for v in row
        )
        trail = " ".join(str(v) for row in db.execute(text("SELECT * FROM audit_events")).all() for v in row)
    engine.dispose()
    assert len(saves) == 2 and approvals == 2
    for form in secret_forms(CANARY):
        assert form not in held + trail + calls
        for out, err in outputs:
            assert form not in out + err
