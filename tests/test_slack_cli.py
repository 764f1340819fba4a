"""`atp-bot run` and `atp-bot lab slack` as processes."""

from __future__ import annotations

import codecs
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lab.loopback import can_claim
from lab.samba import missing_binaries
from lab.slack import SlackEmulator
from lab.slack.console import SlackConsole
from lab.winrm.server import WinRMEmulator
from tests.conftest import CANARY
from tests.peers import peer_missing
from tests.slack_lab import ALICE, OPS, Lab, wait_for
from tests.test_lab_demo import lab_passwords, lab_secrets
from tests.test_slack_alerts import alerts_lab

WRONG = "Not-The-Pa55word-42!"
BOT_TOKEN = "xoxb-5555-CANARYRUN"
APP_TOKEN = "xapp-1-A0-6666-CANARYRUN"


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    with SlackEmulator(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as running:
        yield running


def write_config(tmp_path: Path, api_url: str, *, init_store: bool = True) -> Path:
    path = tmp_path / "atp-bot.toml"
    path.write_text(
        f"""state_dir = "{tmp_path / "state"}"
[[accounts]]
id = "corp"
username = "svc@corp.test"
domain_controllers = ["ldaps://dc1.corp.test"]
[slack]
api_url = "{api_url}"
allowed_users = ["U0ALICE"]
""",
        encoding="utf-8",
    )
    if init_store:
        subprocess.run([sys.executable, "-m", "bot", "--config", str(path), "store", "init"], check=True)
    return path


def start_bot(config: Path, bot_token: str, app_token: str = APP_TOKEN) -> subprocess.Popen[str]:
    env = {**os.environ, "SLACK_BOT_TOKEN": bot_token, "SLACK_APP_TOKEN": app_token}
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_run_serves_until_sigterm(emulator: SlackEmulator, tmp_path: Path) -> None:
    bot = start_bot(write_config(tmp_path, emulator.api_url), BOT_TOKEN)
    try:
        wait_for(lambda: emulator.connected_apps, timeout=20)
        assert "`/atp help`" in emulator.slash_command("help").text
        bot.send_signal(signal.SIGTERM)
        out, err = bot.communicate(timeout=20)
    finally:
        bot.kill()
    assert bot.returncode == 0
    assert "atp-bot is running in socket mode" in err
    assert "CANARYRUN" not in out + err


@pytest.mark.parametrize(("bot_token", "app_token"), [("xoxb-wrong", APP_TOKEN), (BOT_TOKEN, "xapp-wrong")])
def test_run_with_a_rejected_token_is_a_usage_error(
    emulator: SlackEmulator, tmp_path: Path, bot_token: str, app_token: str
) -> None:
    bot = start_bot(write_config(tmp_path, emulator.api_url), bot_token, app_token)
    _out, err = bot.communicate(timeout=20)
    assert bot.returncode == 2
    assert "Slack refused to start the bot: invalid_auth" in err or "`token` is invalid" in err
    assert "invalid_auth" in err
    assert "CANARYRUN" not in err


def test_run_with_slack_unreachable(tmp_path: Path) -> None:
    bot = start_bot(write_config(tmp_path, "http://127.0.0.1:9/api/"), BOT_TOKEN)
    _out, err = bot.communicate(timeout=30)
    assert bot.returncode == 3
    assert "cannot reach Slack" in err


def lab_slack(*args: str, typed: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "lab", "slack", *args],
        input=typed,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_lab_slack_prints_its_urls_and_says_when_no_app_answers() -> None:
    done = lab_slack(typed="/atp help\nclick 1\nsubmit\n")
    assert done.returncode == 0
    assert "Slack Web API:      http://127.0.0.1:" in done.stdout
    assert "Socket Mode server: ws://127.0.0.1:" in done.stdout
    assert "no app is connected over Socket Mode yet" in done.stdout
    assert "no button '1' on screen" in done.stdout
    assert "no open modal to submit" in done.stdout
    assert done.stderr == ""

    http = lab_slack("--request-url", "http://127.0.0.1:9/slack/events", typed="/atp help\n")
    assert http.returncode == 0
    assert "the app at the request URL did not answer: <urlopen error [Errno 111]" in http.stdout
    assert http.stderr == ""

    both = lab_slack("--bot", "--port", "8900")
    assert both.returncode == 2
    assert both.stderr == "atp-bot lab slack: --port and --request-url do not go with --bot\n"
    alone = lab_slack("--dir", "lab")
    assert alone.returncode == 2
    assert alone.stderr == "atp-bot lab slack: --dir goes with --bot (the lab's files)\n"


def test_run_without_a_store_says_how_to_create_it(emulator: SlackEmulator, tmp_path: Path) -> None:
    bot = start_bot(write_config(tmp_path, emulator.api_url, init_store=False), BOT_TOKEN)
    _out, err = bot.communicate(timeout=20)
    assert bot.returncode == 2
    assert "create it with `atp-bot store init`" in err
    assert "Traceback" not in err
    assert emulator.connected_apps == 0


class Transcript:
    """The console's standard output, as a person reads it: `expect` waits until a text shows up."""

    def __init__(self) -> None:
        self.text = ""
        self.seen = 0
        self.changed = threading.Condition()

    def write(self, text: str) -> int:
        with self.changed:
            self.text += text
            self.changed.notify_all()
        return len(text)

    def flush(self) -> None:
        pass

    def expect(self, wanted: str, timeout: float = 20) -> str:
        """Wait for `wanted` after what was already read; return the text up to and including it."""
        with self.changed:
            found = self.changed.wait_for(lambda: wanted in self.text[self.seen :], timeout)
            assert found, f"{wanted!r} not shown; the console shows:\n{self.text[self.seen :]}"
            end = self.text.index(wanted, self.seen) + len(wanted)
            shown, self.seen = self.text[self.seen : end], end
            return shown


@contextmanager
def console(lab: Lab) -> Iterator[tuple[Callable[[str], object], Transcript]]:
    """The prompt of `atp-bot lab slack` on the lab's emulator, typed into through a pipe as its stdin."""
    read_end, write_end = os.pipe()
    transcript = Transcript()

    def type_line(line: str) -> None:
        os.write(write_end, (line + "\n").encode())

    with open(read_end, encoding="utf-8") as stdin:
        prompt = SlackConsole(lab.emulator, user=ALICE, channel=OPS, stdin=stdin, stdout=transcript)
        loop = threading.Thread(target=prompt.run)
        loop.start()
        try:
            yield type_line, transcript
        finally:
            os.close(write_end)  # end of input: the prompt returns
            loop.join(timeout=10)
    assert not loop.is_alive()


def test_lab_slack_prompt_shows_modals_and_messages_and_clicks_buttons(
    sensors: WinRMEmulator, env: None, tmp_path: Path
) -> None:
    sensors.host("sensor02").set_service("AATPSensor", "Stopped")
    with alerts_lab(sensors, tmp_path) as lab, console(lab) as (type_line, shown):
        scheduler = lab.runtime.services.scheduler
        assert scheduler is not None
        scheduler.run_cycle_now()
        alert = shown.expect("click: ")
        assert "atp-bot in #C0OPS [" in alert
        assert "*Sensor service problem* on account *svc*" in alert
        buttons = shown.expect("\n")
        assert "[Update password]" in buttons
        recheck = re.search(r"(\d+) \[Re-check now\]", buttons)
        assert recheck is not None

        type_line("/atp help")
        assert "atp-bot (only visible to you):" in shown.expect("`/atp password")

        type_line("click Update password")
        modal = shown.expect("└─ [Cancel] [Test and save]")
        assert "Account *svc*" in modal
        assert "[ New password: ________ ]" in modal

        type_line("submit")
        shown.expect("New password: ")
        type_line(CANARY)
        shown.expect("Confirm the new password: ")
        type_line(CANARY + "-other")
        assert "⚠ The two passwords do not match." in shown.expect("[Test and save]")

        type_line("submit")
        shown.expect("New password: ")
        type_line(CANARY)
        shown.expect("Confirm the new password: ")
        type_line(CANARY)
        assert "Not saved." in shown.expect("[Try again]")

        type_line("close")
        shown.expect(" closed)")

        type_line("Start AATPSensor on sensor02")
        assert "Start `AATPSensor` on *sensor02*?" in shown.expect("[y/N] ")
        type_line("y")
        assert ", thread of " in shown.expect("started `AATPSensor` on *sensor02*")
        assert sensors.host("sensor02").service_state("AATPSensor") == "Running"

        type_line(recheck.group(1))
        assert "(updated)" in shown.expect("*Resolved*")
        shown.expect("Re-check done")

        type_line("click Nope")
        shown.expect("no button 'Nope' on screen")

        type_line("/atp password svc")
        shown.expect("[Test and save]")
        type_line("submit")
        shown.expect("New password: ")
        submissions = len([d for d in lab.emulator.deliveries if d.kind == "view_submission"])
    # Input ends at the prompt (Ctrl-D): nothing is submitted, and the prompt returns.
    assert "(input ended: nothing was submitted)" in shown.text
    assert len([d for d in lab.emulator.deliveries if d.kind == "view_submission"]) == submissions
    assert CANARY not in shown.text


class Terminal:
    """A child process on a pseudo-terminal, read as a person at a keyboard sees it (echo included). A
    session of its own: no controlling terminal, so a no-echo prompt uses this one and never the tester's."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.screen = Transcript()
        self.reader = threading.Thread(target=self._read)
        self.reader.start()

    def _read(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            self.screen.write(decoder.decode(chunk))

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def close(self) -> int:
        os.write(self.master, b"\x04")  # Ctrl-D: end of input
        try:
            return self.process.wait(timeout=60)
        finally:
            self.process.kill()
            self.reader.join(timeout=10)
            os.close(self.master)


@pytest.mark.samba
def test_lab_slack_with_the_bot_on_a_terminal(tmp_path: Path) -> None:
    reason = missing_binaries() or can_claim()
    if reason:
        peer_missing(f"Samba AD DC: {reason}")
    directory = tmp_path / "lab"
    env = {k: v for k, v in os.environ.items() if k not in ("ATP_BOT_CONFIG", "ATP_BOT_STORE_KEY")}
    terminal = Terminal([sys.executable, "-m", "bot", "lab", "slack", "--bot", "--dir", str(directory)], env)
    shown = terminal.screen
    try:
        shown.expect("Ctrl-D quits", timeout=90)
        assert "*Sensor service problem* on account *contoso*" in shown.expect("[Start AATPSensor on dc02]")
        terminal.type("Start AATPSensor on dc02")  # a message's button, by its label
        shown.expect("Start `AATPSensor` on *dc02*? [y/N] ")
        terminal.type("y")
        shown.expect("started `AATPSensor` on *dc02*")

        terminal.type("/atp password")  # no account: the modal has a select of the lab's accounts
        assert "[ Directory service account: ( contoso (svc-atp@contoso.test) |" in shown.expect(
            "[Test and save]"
        )

        terminal.type("submit")
        shown.expect("Directory service account (1 contoso (svc-atp@contoso.test)  2 ")
        terminal.type("contoso")
        for prompt in ("New password: ", "Confirm the new password: "):
            shown.expect(prompt)
            terminal.type(WRONG)
        assert "Testing the connection for *contoso*" in shown.expect("Not saved.")
        assert "(`wrong_password`)" in shown.expect("[Try again]")

        terminal.type("Try again")
        assert "Account *contoso*" in shown.expect("[Test and save]")
        terminal.type("submit")
        right = lab_passwords(directory)["contoso"]
        for prompt in ("New password: ", "Confirm the new password: "):
            shown.expect(prompt)
            terminal.type(right)
        shown.expect("*Saved.*")
        shown.expect("changed the directory service account password for *contoso*")
        shown.expect("[Done in the portal]")
        terminal.type("Done in the portal")  # the console clicks the button named so
        assert "atp-bot in #C0OPS, thread of " in shown.expect("*Follow-up checks*")
        shown.expect("All 3 sensor(s) are running")
    finally:
        code = terminal.close()
    assert code == 0, shown.text
    assert "/atp password\r\n" in shown.text  # what is typed is echoed, except the passwords
    for secret in (WRONG, *lab_secrets(directory)):
        assert secret not in shown.text
