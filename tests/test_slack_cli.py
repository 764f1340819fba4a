"""`atp-bot run` and `atp-bot lab slack` as processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.slack import SlackEmulator
from tests.slack_lab import wait_for

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


def test_lab_slack_prints_its_urls() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "lab", "slack"], input="", capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    assert "Slack Web API:      http://127.0.0.1:" in done.stdout
    assert "Socket Mode server: ws://127.0.0.1:" in done.stdout


def test_run_without_a_store_says_how_to_create_it(emulator: SlackEmulator, tmp_path: Path) -> None:
    bot = start_bot(write_config(tmp_path, emulator.api_url, init_store=False), BOT_TOKEN)
    _out, err = bot.communicate(timeout=20)
    assert bot.returncode == 2
    assert "create it with `atp-bot store init`" in err
    assert "Traceback" not in err
    assert emulator.connected_apps == 0
