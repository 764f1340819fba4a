"""The whole lab behind `/atp password`: the Samba AD DC, emulated sensors, the Slack emulator, and the
real atp-bot Slack runtime (Socket Mode, the real change path) wired to them by a generated config file.

`running_slack_lab(directory)` starts everything and stops everything at exit; the directory keeps the
config, the lab passwords (files only, mode 0600) and atp-bot's state (store, audit trail, counters).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from ldap3.core.exceptions import LDAPException
from pydantic import SecretStr

from bot.change import PasswordChanges, open_changes
from bot.config import Settings, load_settings
from bot.monitor.context import MonitorContext
from bot.monitor.scheduler import Scheduler, start_scheduler
from bot.slack.client import build_client
from bot.slack.runtime import SlackRuntime, SlackUnreachable
from bot.slack.secrets import SlackSecrets
from bot.store.embedded import init_embedded_store
from commands import MODULES
from commands.alerts import SlackNotifier
from lab.dc_cmd import write_lab_files, write_private
from lab.domain import LabDomain, running_lab_domain
from lab.loopback import LoopbackUnavailable, can_claim
from lab.samba import SambaUnavailable, missing_binaries
from lab.slack import SlackEmulator
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator

SENSOR_NAMES = ("dc01", "dc02", "dc03")
SENSOR_ACCOUNT = "contoso"  # the lab account whose sensors these are
WINRM_USER = "atp-checker"
SLACK_USER = "U0ALICE"  # the emulated workspace's alice, the one allowed user
SLACK_CHANNEL = "C0OPS"
STATE = "state"
# What a lab peer that cannot start or stops answering raises (the DC administered over LDAP included).
LAB_PEER_ERRORS = (SambaUnavailable, LoopbackUnavailable, SlackUnreachable, LDAPException)


@dataclass
class SlackLab:
    directory: Path
    config: Path
    settings: Settings
    domain: LabDomain
    sensors: WinRMEmulator
    slack: SlackEmulator
    runtime: SlackRuntime
    changes: PasswordChanges
    scheduler: Scheduler | None = None  # the monitor's, when the lab runs it


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def slack_lab_toml(domain: LabDomain, directory: Path, sensors: WinRMEmulator, slack: SlackEmulator) -> str:
    """The [winrm], [[sensors]] and [slack] tables that go after the lab domain's accounts."""
    lines = [
        "",
        "# The emulated sensors (`atp-bot lab` WinRM emulator).",
        "[winrm]",
        f"username = {_toml(sensors.account.domain + chr(92) + sensors.account.user)}",
        f"password_file = {_toml(str(directory / 'winrm-password'))}",
        'transport = "ntlm"',
    ]
    for name in sensors.hosts:
        lines += [
            "",
            "[[sensors]]",
            f"name = {_toml(name)}",
            f"endpoint = {_toml(sensors.endpoint(name))}",
            f"account = {_toml(SENSOR_ACCOUNT)}",
        ]
    lines += [
        "",
        "# The Slack emulator; its lab tokens are SLACK_BOT_TOKEN / SLACK_APP_TOKEN for `atp-bot run`.",
        "[slack]",
        'mode = "socket"',
        f"api_url = {_toml(slack.api_url)}",
        f"channel = {_toml(SLACK_CHANNEL)}",
        f"allowed_users = [{_toml(SLACK_USER)}]",
        'listen = "127.0.0.1:0"',
        "",
    ]
    return "\n".join(lines)


def cannot_start() -> str | None:
    """None when the whole lab can start here, else why not (the Samba AD DC needs root and Samba)."""
    reason = missing_binaries() or can_claim()
    if reason and os.geteuid() != 0:
        return f"{reason} (run it as root, e.g. with sudo)"
    return reason


@contextmanager
def lab_directory(chosen: Path | None, *, keep: bool) -> Iterator[Path]:
    """`chosen` (kept), else a new temporary directory: kept with `keep`, else removed at the end."""
    if chosen is not None:
        yield chosen.resolve()
    elif keep:
        yield Path(tempfile.mkdtemp(prefix="atp-bot-lab-"))
    else:
        with tempfile.TemporaryDirectory(prefix="atp-bot-lab-") as tmp:
            yield Path(tmp)


def reset(directory: Path) -> None:
    """Make `directory` ready for a fresh lab: drop a previous run's DC and state (nothing else)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("dc", STATE):
        shutil.rmtree(directory / name, ignore_errors=True)


@contextmanager
def _monitoring(settings: Settings, slack: SlackEmulator, changes: PasswordChanges) -> Iterator[Scheduler]:
    """The monitor's scheduler, posting alerts to the lab channel as `atp-bot run` does; shut down at exit."""
    notifier = SlackNotifier(build_client(slack.api_url, SecretStr(slack.bot_token)), SLACK_CHANNEL)
    scheduler = start_scheduler(MonitorContext.create(settings, notifier, changes))
    try:
        yield scheduler
    finally:
        scheduler.shutdown()


@contextmanager
def running_slack_lab(
    directory: Path, sensor_names: Sequence[str] = SENSOR_NAMES, *, monitor: bool = False
) -> Iterator[SlackLab]:
    """Start the DC, the sensors (healthy; change them through `lab.sensors.host(name)`), the Slack
    emulator and the bot (with `monitor`, its scheduler too: alerts, re-checks after a change); on exit stop
    them in reverse order."""
    reset(directory)
    winrm_password = f"WinRM-{secrets.token_urlsafe(12)}"
    with (
        running_lab_domain(directory) as domain,
        WinRMEmulator(username=f"{domain.dc.netbios}\\{WINRM_USER}", password=winrm_password) as sensors,
        SlackEmulator() as slack,
    ):
        for name in sensor_names:
            sensors.add_host(Host.sensor(name))
        write_private(directory / "winrm-password", winrm_password + "\n")
        config = write_lab_files(domain, directory)
        with config.open("a", encoding="utf-8") as out:
            out.write(slack_lab_toml(domain, directory, sensors, slack))
        settings = load_settings(config)
        init_embedded_store(settings)
        changes = open_changes(settings)
        bot_secrets = SlackSecrets(bot_token=SecretStr(slack.bot_token), app_token=SecretStr(slack.app_token))
        with (
            _monitoring(settings, slack, changes) if monitor else nullcontext() as scheduler,
            SlackRuntime(
                settings,
                secrets=bot_secrets,
                audit=changes.audit,
                modules=MODULES,
                changes=changes,
                scheduler=scheduler,
            ) as runtime,
        ):
            slack.wait_connected()
            yield SlackLab(directory, config, settings, domain, sensors, slack, runtime, changes, scheduler)
