"""`atp-bot lab demo`: play the whole `/atp password` flow against the local lab and print what Slack shows.

The real app runs in Socket Mode against the Slack emulator, with the real change path (connection test
against the lab's Samba AD DC, encrypted store, audit trail, follow-up checks over WinRM on emulated
sensors). The demo acts as alice in the emulator and prints each modal and message as rendered text. It
never prints a password: inputs render as blanks and the lab passwords stay in files.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from bot.infra.exitcodes import ExitCode
from bot.infra.logging_setup import configure_logging
from commands.password.portal import DONE_ACTION, DONE_BLOCK
from commands.password.views import Action, Block
from lab.domain import LOCKOUT_THRESHOLD
from lab.slack.picture import render_picture
from lab.slack.render import render_message, render_view
from lab.slack.workspace import Message
from lab.stack import (
    LAB_PEER_ERRORS,
    SENSOR_ACCOUNT,
    SLACK_CHANNEL,
    SLACK_USER,
    SlackLab,
    cannot_start,
    lab_directory,
    running_slack_lab,
)

T = TypeVar("T")

ACCOUNT = SENSOR_ACCOUNT
LOCKOUT_DEMO_ACCOUNT = "noexpiry"  # another lab account, so the guard's counter starts at 0
BROKEN_SENSOR = "dc02"  # the lab stops its AATPSensor service, so the checks have something to show
SENSOR_LATENCY = {"dc02": 0.2, "dc03": 0.4}  # seconds per WinRM request: results arrive one by one
WAIT_SECONDS = 30.0
# What alice types in the steps that must fail; never a lab password.
MISMATCH = ("Demo-Pa55word-one!", "Demo-Pa55word-two!")
WRONG = "Not-The-Pa55word-42!"


class DemoFailed(Exception):
    """A step did not behave as expected."""


def register(actions: Any) -> None:
    parser = actions.add_parser(
        "demo",
        help="play `/atp password` against the local lab, printing what Slack shows (needs root)",
        description="Start the lab (Samba AD DC, emulated sensors, Slack emulator) and the real atp-bot, "
        "then act as alice in Slack: change the contoso account's password (a typo, a wrong password, "
        "the right one), see the announcement and the threaded sensor checks, /atp history, /atp status.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="keep the lab's files (config, lab passwords, state) in DIR; a previous run's dc/ and state/ "
        "there are replaced (default: a temporary directory, removed at the end unless --keep)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory with the lab's files (config, lab passwords, state, audit trail) "
        "and print where it is",
    )
    parser.add_argument(
        "--picture",
        type=Path,
        metavar="PATH.svg",
        help="also draw what Slack showed (the password modal, its result, the channel thread) as an SVG "
        "picture in PATH.svg, from the calls the Slack emulator recorded",
    )
    parser.set_defaults(handler=run)


def expect(condition: object, what: str) -> None:
    if not condition:
        raise DemoFailed(what)


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = WAIT_SECONDS) -> T:
    """Poll `probe` until it returns something truthy (the bot works on its own threads)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def values(password: str, confirm: str) -> dict[str, dict[str, Any]]:
    return {Block.PASSWORD: {Action.PASSWORD: password}, Block.CONFIRM: {Action.CONFIRM: confirm}}


def show(text: str) -> None:
    print("\n".join("  " + line for line in text.splitlines()), flush=True)


class Demo:
    """The steps, played as alice against a running lab."""

    def __init__(self, lab: SlackLab) -> None:
        self.lab = lab
        self.slack = lab.slack
        self.step = 0

    def heading(self, title: str) -> None:
        self.step += 1
        print(f"\n== {self.step}. {title}", flush=True)

    def view_text(self, view_id: str) -> str:
        return json.dumps(self.slack.view(view_id)["blocks"])

    def show_view(self, view_id: str, errors: Mapping[str, str] | None = None) -> None:
        show(render_view(self.slack.view(view_id), errors))

    def submit(self, view_id: str, password: str, confirm: str) -> dict[str, Any]:
        delivery = self.slack.submit_view(view_id, values(password, confirm))
        if delivery.late or delivery.ack is None:
            raise DemoFailed("the bot did not acknowledge the submission in time")
        return delivery.ack

    def submit_and_wait(self, view_id: str, password: str, outcome: str) -> None:
        """Submit a password: show "Testing…" (the acknowledgement), then the modal once it says `outcome`."""
        ack = self.submit(view_id, password, password)
        expect(ack.get("response_action") == "update", f"expected the Testing modal, got {ack}")
        show(render_view(ack["view"]))
        wait_for(lambda: outcome in self.view_text(view_id), f"the modal to say {outcome!r}")
        print("  … then, when the test is done:")
        self.show_view(view_id)

    def open_modal(self) -> str:
        self.heading(f"alice types `/atp password {ACCOUNT}` in #{SLACK_CHANNEL}")
        delivery = self.slack.slash_command(f"password {ACCOUNT}", user=SLACK_USER, channel=SLACK_CHANNEL)
        expect(not delivery.late, "the bot did not acknowledge /atp password in time")
        view = wait_for(lambda: self.slack.open_views(SLACK_USER), "the password modal")[-1]
        self.show_view(view.id)
        return view.id

    def mismatch(self, view_id: str) -> None:
        self.heading("she types a new password and a different confirmation, and submits")
        ack = self.submit(view_id, *MISMATCH)
        errors = ack.get("errors") or {}
        expect(ack.get("response_action") == "errors", f"expected inline errors, got {ack}")
        self.show_view(view_id, errors)
        print("  (the modal stays open with the error inline; nothing was tested or saved)")

    def wrong_password(self, view_id: str) -> None:
        self.heading("she submits a wrong password")
        self.submit_and_wait(view_id, WRONG, "Not saved.")
        expect("wrong_password" in self.view_text(view_id), "the modal does not give the decoded reason")
        user = self.lab.domain.users[ACCOUNT]
        bad = self.lab.domain.dc.user_state(user.name)["badPwdCount"]
        print(
            f"  (AD now counts badPwdCount {bad} for {user.name}, lockout at {LOCKOUT_THRESHOLD}; atp-bot "
            f"allows {self.lab.settings.lockout_guard.max_rejections} rejected tests per "
            f"{self.lab.settings.lockout_guard.window_minutes} minutes, so it never locks the account out)"
        )

    def try_again(self, view_id: str) -> None:
        self.heading("she clicks [Try again]")
        button = next(
            element
            for block in self.slack.view(view_id)["blocks"]
            for element in block.get("elements", [])
            if element.get("action_id") == Action.RETRY
        )
        self.slack.click(Action.RETRY, user=SLACK_USER, view_id=view_id, value=str(button["value"]))
        wait_for(lambda: Block.PASSWORD in self.view_text(view_id), "the form to come back")
        self.show_view(view_id)

    def right_password(self, view_id: str) -> None:
        self.heading("she submits the right password (the lab account's current one)")
        self.submit_and_wait(view_id, self.lab.domain.users[ACCOUNT].password, "Saved.")

    def announcement(self) -> str:
        self.heading(f"#{SLACK_CHANNEL}: the announcement everyone in the channel sees")
        message = wait_for(
            lambda: [m for m in self.slack.messages(SLACK_CHANNEL) if m.thread_ts is None], "the announcement"
        )[0]
        show(render_message(message.text, message.blocks))
        return message.ts

    def portal_done(self, ts: str) -> None:
        self.heading("she saves it in the Defender portal too, then clicks [Done in the portal]")

        def button() -> dict[str, Any] | None:
            message = next(m for m in self.slack.messages(SLACK_CHANNEL) if m.ts == ts)
            elements = [e for b in message.blocks for e in b.get("elements", [])]
            return next((e for e in elements if e.get("action_id") == DONE_ACTION), None)

        value = str(wait_for(button, "the Done in the portal button")["value"])
        self.slack.click(
            DONE_ACTION,
            user=SLACK_USER,
            block_id=DONE_BLOCK,
            value=value,
            channel=SLACK_CHANNEL,
            message_ts=ts,
        )
        wait_for(lambda: button() is None or None, "the portal step to be confirmed")
        message = next(m for m in self.slack.messages(SLACK_CHANNEL) if m.ts == ts)
        show(render_message(message.text, message.blocks))

    def follow_up_checks(self, thread_ts: str) -> None:
        self.heading("in its thread: the follow-up checks on every sensor, one message updated in place")

        def final() -> Message | None:
            thread = [m for m in self.slack.messages(SLACK_CHANNEL) if m.thread_ts == thread_ts]
            done = thread and ("need attention" in thread[-1].text or "All " in thread[-1].text)
            return thread[-1] if done else None

        report = wait_for(final, "the follow-up checks to finish")
        ts = report.ts
        posted = [c for c in self.slack.calls("chat.postMessage") if c.args.get("thread_ts") == thread_ts]
        updates = [c for c in self.slack.calls("chat.update") if c.args.get("ts") == ts]
        shown = ""
        for number, call in enumerate([*posted, *updates]):
            label = "posted" if number == 0 else f"chat.update #{number}"
            version = render_message(str(call.args.get("text", "")), call.args.get("blocks"), heading=label)
            if version.partition("\n")[2] == shown:
                print(f"  {label}: (the same again: the final update is always sent)")
                continue
            shown = version.partition("\n")[2]
            show(version)
        expect(BROKEN_SENSOR in report.text, f"the checks do not name {BROKEN_SENSOR}")

    def history(self) -> None:
        self.heading(f"alice types `/atp history {ACCOUNT}` (only she sees the answer)")
        delivery = self.slack.slash_command(f"history {ACCOUNT}", user=SLACK_USER, channel=SLACK_CHANNEL)
        ack = delivery.ack or {}
        show(render_message(delivery.text, ack.get("blocks"), heading="atp-bot (only visible to you)"))
        expect(" save " in delivery.text and " test " in delivery.text, "history lacks the test and save")

    def status(self) -> None:
        self.heading("alice types `/atp status` (checks every sensor now)")
        before = len(self.slack.calls("response_url"))
        delivery = self.slack.slash_command("status", user=SLACK_USER, channel=SLACK_CHANNEL)
        show(render_message(delivery.text, heading="atp-bot (only visible to you)"))

        def final() -> dict[str, Any] | None:
            calls = self.slack.calls("response_url")[before:]
            done = [c.args for c in calls if "need attention" in c.args.get("text", "")]
            done += [c.args for c in calls if "All " in c.args.get("text", "")]
            return done[-1] if done else None

        result = wait_for(final, "/atp status to finish")
        print("  … replaced, when every sensor has answered, by:")
        show(
            render_message(
                str(result.get("text", "")), result.get("blocks"), heading="atp-bot (only visible to you)"
            )
        )

    def test_connection(self, account: str, password: str) -> int:
        """Run the real `atp-bot test-connection` in a child process (the password on stdin, never argv)."""
        done = subprocess.run(
            [sys.executable, "-m", "bot", "--config", str(self.lab.config), "test-connection",
             "--password-stdin", "--account", account],
            input=password + "\n",
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )  # fmt: skip
        print(f"  $ atp-bot test-connection --password-stdin --account {account}")
        show((done.stdout + done.stderr).rstrip())
        print(f"  (exit code {done.returncode})")
        return done.returncode

    def cli(self) -> None:
        self.heading(f"the same path from a terminal (passwords on stdin): the right password for {ACCOUNT}")
        expect(self.test_connection(ACCOUNT, self.lab.domain.users[ACCOUNT].password) == 0, "the test failed")

    def lockout_guard(self) -> None:
        other = LOCKOUT_DEMO_ACCOUNT
        guard = self.lab.settings.lockout_guard
        self.heading(f"a wrong password three times for {other}: the lockout guard stops the third")
        codes = [self.test_connection(other, WRONG) for _ in range(guard.max_rejections + 1)]
        user = self.lab.domain.users[other]
        state = self.lab.domain.dc.user_state(user.name)
        print(
            f"  AD's badPwdCount for {user.name}: {state['badPwdCount']} of {LOCKOUT_THRESHOLD} "
            f"(locked out: {'yes' if state['locked'] else 'no'})"
        )
        expect(codes[-1] != 0 and not state["locked"], "the lockout guard did not stop the third attempt")
        expect(
            state["badPwdCount"] == guard.max_rejections, "AD saw the attempt the guard should have stopped"
        )

    def summary(self) -> None:
        self.heading("what happened behind the scenes")
        lab, user = self.lab, self.lab.domain.users[ACCOUNT]
        state = lab.domain.dc.user_state(user.name)
        show(
            f"AD: {user.upn} has badPwdCount {state['badPwdCount']} "
            f"(lockout threshold {LOCKOUT_THRESHOLD}); locked out: {'yes' if state['locked'] else 'no'}"
        )
        expect(state["badPwdCount"] < LOCKOUT_THRESHOLD and not state["locked"], "the account got locked out")
        saved = lab.changes.store.metadata(ACCOUNT)
        if saved is None:
            raise DemoFailed("the store holds no credential for the account")
        stored = lab.changes.store.read(ACCOUNT)
        same = stored is not None and stored.get_secret_value() == user.password
        show(
            f"store: the {saved.backend} store holds the credential of {ACCOUNT}, saved by {saved.saved_by} "
            f"at {saved.saved_at:%H:%M:%S}Z; it is the password AD accepted: {'yes' if same else 'NO'}"
        )
        expect(same, "the stored credential is not the one AD accepted")
        check = lab.changes.audit.verify()
        chain = "verifies" if check.intact else f"BROKEN: {check.problem}"
        show(f"audit: {check.rows} events, hash chain {chain}")
        expect(check.intact, "the audit chain does not verify")
        calls = lab.slack.calls()
        leaked = [c.method for c in calls if user.password in c.body or user.password in json.dumps(c.args)]
        show(f"Slack: {len(calls)} API calls recorded by the emulator, {len(leaked)} carrying the password")
        expect(not leaked, "the password reached Slack")

    def play(self) -> None:
        view_id = self.open_modal()
        self.mismatch(view_id)
        self.wrong_password(view_id)
        self.try_again(view_id)
        self.right_password(view_id)
        announced = self.announcement()
        self.portal_done(announced)
        self.follow_up_checks(announced)
        self.history()
        self.status()
        self.cli()
        self.lockout_guard()
        self.summary()


def _break_sensors(lab: SlackLab) -> None:
    lab.sensors.host(BROKEN_SENSOR).set_service("AATPSensor", "Stopped")
    for name, seconds in SENSOR_LATENCY.items():
        lab.sensors.host(name).set_latency(seconds)


def _lab_summary(lab: SlackLab, *, kept: bool) -> str:
    files = (
        f"{lab.directory} (config {lab.config.name}, lab passwords in lab-passwords.txt)"
        if kept
        else "a temporary directory, removed at the end (--keep keeps it)"
    )
    return "\n".join(
        [
            f"AD DC:    {lab.domain.dc.ldaps_url} (realm {lab.domain.dc.realm})",
            f"sensors:  {', '.join(lab.sensors.hosts)} over WinRM/NTLM "
            f"({BROKEN_SENSOR}'s AATPSensor service stopped on purpose)",
            f"Slack:    emulator at {lab.slack.api_url}; atp-bot connected in Socket Mode",
            f"files:    {files}",
        ]
    )


def _picture_problem(path: Path | None) -> str | None:
    """Why the picture could not be written there: said before the lab starts, not after the demo."""
    if path is None:
        return None
    if path.is_dir():
        return f"--picture {path}: is a directory"
    if not path.parent.is_dir():
        return f"--picture {path}: no directory {path.parent}"
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"--picture {path}: not writable"
    return None


def _draw_picture(lab: SlackLab, path: Path) -> None:
    """The picture of the calls the emulator recorded (the password flow: the only modal and thread)."""
    names = {user.id: user.name for user in lab.slack.workspace.users.values()}
    try:
        path.write_text(render_picture(lab.slack.calls(), names), encoding="utf-8")
    except OSError as exc:
        raise DemoFailed(f"cannot write the picture {path}: {exc.strerror}") from None
    print(f"\nThe picture of what Slack showed (the modal, its result, the thread) is in {path}.")


def _kept_files(directory: Path) -> str:
    return (
        f"The lab's files are kept in {directory}: the config, lab-passwords.txt, and atp-bot's state "
        f"(try: atp-bot --config {directory / 'atp-bot.toml'} history). The lab's peers are stopped."
    )


def run(args: argparse.Namespace) -> int:
    configure_logging("DEBUG" if args.verbose else "WARNING")
    problem = _picture_problem(args.picture)
    if problem:
        print(f"atp-bot lab demo: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    reason = cannot_start()
    if reason:
        print(f"atp-bot lab demo: cannot start the lab: {reason}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    started = time.monotonic()
    print(
        "Starting the lab: a Samba AD DC, emulated MDI sensors, the Slack emulator, and atp-bot…", flush=True
    )
    kept = args.dir is not None or args.keep
    try:
        with lab_directory(args.dir, keep=args.keep) as directory, running_slack_lab(directory) as lab:
            _break_sensors(lab)
            print(f"Lab up in {time.monotonic() - started:.0f} s.")
            show(_lab_summary(lab, kept=kept))
            Demo(lab).play()
            if args.picture:
                _draw_picture(lab, args.picture)
    except LAB_PEER_ERRORS as exc:
        print(f"atp-bot lab demo: cannot start the lab: {exc}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    except DemoFailed as exc:
        print(f"\natp-bot lab demo: FAILED: {exc}", file=sys.stderr)
        return ExitCode.PROBLEM
    except KeyboardInterrupt:
        print("\natp-bot lab demo: interrupted; the lab is stopped", file=sys.stderr)
        return ExitCode.PROBLEM
    print(f"\nDemo complete in {time.monotonic() - started:.0f} s: every step behaved as expected.")
    if kept:
        print(_kept_files(directory))
    return ExitCode.OK
