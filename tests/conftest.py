"""Shared fixtures: the real Samba AD DC peer (session scope) and helpers for configs and state."""

from __future__ import annotations

import base64
import itertools
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config.secret_env import forget_taken
from lab.domain import LabDomain, new_password, running_lab_domain
from lab.loopback import can_claim
from lab.samba import LabUser, SambaUnavailable, missing_binaries
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.peers import peer_missing

pytest_plugins = ["tests.winrm_lab"]

CANARY = "Canary-Pa55word-7f3a9c!"


@pytest.fixture(scope="session")
def lab_domain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabDomain]:
    """A real Samba AD DC on a private loopback address, with the lab accounts."""
    reason = missing_binaries() or can_claim()
    if reason:
        peer_missing(f"Samba AD DC: {reason}")
    try:
        with running_lab_domain(tmp_path_factory.mktemp("samba")) as domain:
            yield domain
    except SambaUnavailable as exc:
        peer_missing(f"Samba AD DC did not start: {exc}")


_user_numbers = itertools.count(1)


@pytest.fixture
def fresh_user(lab_domain: LabDomain) -> LabUser:
    """A new healthy account for a test that changes its state (bad passwords, lockout)."""
    return lab_domain.dc.create_user(f"svc-t{next(_user_numbers)}", new_password())


@pytest.fixture
def canary_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture every log record at DEBUG, including ldap3's own logging at its most detailed."""
    from ldap3.utils.log import EXTENDED, set_library_log_detail_level

    caplog.set_level(logging.DEBUG)
    set_library_log_detail_level(EXTENDED)
    try:
        yield caplog
    finally:
        set_library_log_detail_level(0)


def assert_no_canary(caplog: pytest.LogCaptureFixture, *texts: str, canary: str = CANARY) -> None:
    for record in caplog.records:
        assert canary not in record.getMessage(), f"canary in log record from {record.name}"
        assert canary not in str(record.exc_text or "")
    for text in texts:
        assert canary not in text


def run_cli(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run the real `atp-bot` as an operator would, in a child process (secrets on stdin, never argv)."""
    env = {k: v for k, v in os.environ.items() if k != "ATP_BOT_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )


@pytest.fixture(autouse=True)
def _forget_taken_secrets() -> Iterator[None]:
    """In-process CLI runs take the configured secrets out of the environment into memory (see
    bot.config.secret_env); forget them so that they never answer a later test's read."""
    yield
    forget_taken()


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """In-process CLI runs install atp-bot's log handler; remove it so it never outlives the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


SENSOR_WINRM_USER = "CONTOSO\\atp-checker"
SENSOR_WINRM_PASSWORD = "WinRM-Checker-Pa55!"
SENSOR_WINRM_PASSWORD_ENV = "ATP_BOT_TEST_WINRM"


@pytest.fixture
def sensors() -> Iterator[WinRMEmulator]:
    """Two emulated MDI sensors (healthy) reached over WinRM/NTLM on loopback."""
    with WinRMEmulator(username=SENSOR_WINRM_USER, password=SENSOR_WINRM_PASSWORD) as emulator:
        emulator.add_host(Host.sensor("sensor01"))
        emulator.add_host(Host.sensor("sensor02"))
        yield emulator


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh embedded-store key and the sensors' WinRM password, in the environment."""
    monkeypatch.setenv("ATP_BOT_STORE_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    monkeypatch.setenv(SENSOR_WINRM_PASSWORD_ENV, SENSOR_WINRM_PASSWORD)


def sensor_config(sensors: WinRMEmulator, account: str) -> dict[str, object]:
    """The [winrm] table and [[sensors]] of a config for the emulated sensors."""
    return {
        "winrm": {
            "username": SENSOR_WINRM_USER,
            "password_env": SENSOR_WINRM_PASSWORD_ENV,
            "transport": "ntlm",
        },
        "sensors": [{"name": n, "endpoint": sensors.endpoint(n), "account": account} for n in sensors.hosts],
    }


def lab_account(lab: LabDomain, user: LabUser, account_id: str = "svc") -> dict[str, object]:
    """An [[accounts]] table for a lab user, verified against the lab DC's CA."""
    return {
        "id": account_id,
        "username": user.upn,
        "domain_controllers": [lab.dc.ldaps_url],
        "ca_file": str(lab.dc.ca_file),
    }


def closed_port_url() -> str:
    """An LDAPS URL on loopback where nothing listens: a domain controller that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"ldaps://127.0.0.1:{probe.getsockname()[1]}"
