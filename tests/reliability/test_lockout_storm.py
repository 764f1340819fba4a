"""Lockout: a storm of wrong passwords for one account, from Slack and from the command line at once,
against a real Samba DC whose lockout threshold is 3. The account is never locked: AD counts at most the
lockout guard's two rejections, and every other attempt is told why it was not even sent."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tomli_w

from commands import MODULES
from lab.domain import LabDomain
from lab.samba import LabUser
from tests.conftest import lab_account, run_cli
from tests.slack_lab import initialised_changes, open_modal, running_lab, values, view_text, wait_for

pytestmark = pytest.mark.samba

SLACK_SUBMISSIONS = 6
CLI_ATTEMPTS = 3
WRONG = "The password is wrong"
GUARD = "atp-bot refuses more tests until"
# What a person may be told instead of a test: the guard's limit, or another test of the account running.
NOT_SENT = (GUARD, "is in progress; try again when it ends")


def outcome(view: str) -> str | None:
    """The modal's final word, once the submission is answered."""
    return view if "saved." in view.lower() else None


def test_wrong_passwords_from_everywhere_never_lock_the_account(
    lab_domain: LabDomain, fresh_user: LabUser, env: None, tmp_path: Path
) -> None:
    config = {"state_dir": str(tmp_path / "state"), "accounts": [lab_account(lab_domain, fresh_user)]}
    config_file = tmp_path / "atp-bot.toml"
    config_file.write_text(tomli_w.dumps(config), encoding="utf-8")
    with running_lab("socket", modules=MODULES, config=config, changes=initialised_changes) as lab:

        def from_slack(attempt: int, view_id: str) -> str:
            lab.emulator.submit_view(view_id, values(f"Wrong-From-Slack-{attempt}"))
            return wait_for(lambda: outcome(view_text(lab, view_id)), timeout=30)

        def from_cli(attempt: int) -> str:
            typed = f"Wrong-From-Cli-{attempt}\n"
            done = run_cli(config_file, "set-password", "--account", "svc", "--password-stdin", stdin=typed)
            assert done.returncode == 1 and "NOT SAVED" in done.stdout, done
            return done.stdout

        modals = [open_modal(lab) for _ in range(SLACK_SUBMISSIONS + 2)]
        with ThreadPoolExecutor(SLACK_SUBMISSIONS + CLI_ATTEMPTS) as pool:
            storm = [pool.submit(from_slack, i, modals[i]) for i in range(SLACK_SUBMISSIONS)]
            storm += [pool.submit(from_cli, i) for i in range(CLI_ATTEMPTS)]
            first_wave = [f.result(timeout=120) for f in storm]
        later = [from_slack(-1, modals[-1]), from_cli(CLI_ATTEMPTS), from_slack(-2, modals[-2])]

    rejected = sum(WRONG in told for told in first_wave + later)
    assert all(any(reason in told for reason in (WRONG, *NOT_SENT)) for told in first_wave)
    assert all(GUARD in told for told in later), later  # the guard's limit is reached: nothing is sent
    state = lab_domain.dc.user_state(fresh_user.name)
    assert 1 <= rejected <= 2 and state["badPwdCount"] == rejected, (state, first_wave + later)
    assert not state["locked"]
