"""`atp-bot lab demo`: play atp-bot's main job against the local lab and show what the operator sees."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from lab.dc_cmd import write_lab_files
from lab.domain import LAB_ACCOUNTS, running_lab_domain
from lab.loopback import LoopbackUnavailable
from lab.samba import SambaUnavailable


def register(actions: Any) -> None:
    parser = actions.add_parser(
        "demo",
        help="start the lab and run atp-bot against it, printing what an operator sees (needs root)",
    )
    parser.set_defaults(handler=run)


def _atp_bot(config: Path, *args: str, stdin: str) -> tuple[int, str]:
    """Run the real `atp-bot` CLI as an operator would (the password goes on stdin, never argv)."""
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).rstrip()


def _show(title: str, command: str, result: tuple[int, str]) -> None:
    code, output = result
    print(f"\n== {title}\n$ {command}")
    print(output)
    print(f"(exit code {code})")


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="atp-bot-demo-") as tmp:
        directory = Path(tmp)
        print("Starting the lab: a Samba AD DC on loopback with one account of every kind…", flush=True)
        try:
            with running_lab_domain(directory) as domain:
                config = write_lab_files(domain, directory)
                base = "atp-bot test-connection --password-stdin --account"
                for spec in LAB_ACCOUNTS:
                    password = domain.users[spec.account_id].password
                    _show(
                        f"{spec.description}: test the right password",
                        f"{base} {spec.account_id}",
                        _atp_bot(config, "test-connection", "--password-stdin", "--account", spec.account_id,
                                 stdin=password + "\n"),
                    )  # fmt: skip
                for attempt in (1, 2, 3):
                    _show(
                        f"a wrong password, attempt {attempt} (the lockout guard allows 2 per 30 minutes)",
                        f"{base} noexpiry",
                        _atp_bot(config, "test-connection", "--password-stdin", "--account", "noexpiry",
                                 stdin="a-wrong-password\n"),
                    )  # fmt: skip
                state = domain.dc.user_state(domain.users["noexpiry"].name)
                locked = bool(state["locked"])
                print(f"\nAD's badPwdCount for svc-atp-noexpiry: {state['badPwdCount']} (locked: {locked})")
        except (SambaUnavailable, LoopbackUnavailable) as exc:
            print(f"atp-bot lab demo: cannot start the lab: {exc}")
            return 3
    return 0
