"""`set-password` when `[approvals]` requires a second person: refused, unless `--break-glass --reason`,
which saves and is audited and announced as a break-glass change (a real child process, Samba, Slack)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.store import open_store
from lab.domain import LabDomain
from lab.samba import LabUser
from lab.slack import SlackEmulator
from tests.conftest import run_cli
from tests.test_cli_change import audit_rows, write_config

pytestmark = pytest.mark.samba

APPROVALS = '[approvals]\nrequired = true\napprovers = ["U0BOB"]\n'


def test_set_password_needs_approval_or_break_glass(
    lab_domain: LabDomain, fresh_user: LabUser, env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SlackEmulator() as slack:
        tables = f'[slack]\napi_url = "{slack.api_url}"\nchannel = "C0OPS"\n{APPROVALS}'
        config = write_config(tmp_path, lab_domain, fresh_user, extra=tables)
        monkeypatch.setenv("SLACK_BOT_TOKEN", slack.bot_token)
        assert run_cli(config, "store", "init").returncode == 0
        args = ("set-password", "--account", "svc", "--password-stdin", "--no-checks")
        stdin = fresh_user.password + "\n"

        refused = run_cli(config, *args, stdin=stdin)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "needs a second person's approval" in refused.stderr
        assert "--break-glass" in refused.stderr
        no_reason = run_cli(config, *args, "--break-glass", stdin=stdin)
        assert no_reason.returncode == 2
        assert "--break-glass needs --reason" in no_reason.stderr
        assert open_store(load_settings(config)).metadata("svc") is None

        done = run_cli(
            config, *args, "--break-glass", "--reason", "approvers unreachable, P1 INC-42", stdin=stdin
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SAVED: account svc" in done.stdout
        (posted,) = slack.messages("C0OPS")
        assert "Break-glass change (no approval): approvers unreachable, P1 INC-42." in posted.text
    assert open_store(load_settings(config)).metadata("svc") is not None
    rows = audit_rows(config)
    assert rows[0] == ("break-glass", "refused", "approval")
    assert ("break-glass", "ok", None) in rows
    assert rows.index(("break-glass", "ok", None)) < rows.index(("save", "ok", None))
