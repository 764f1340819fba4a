"""Shared helpers for the sensor tests: an emulator on loopback and settings pointing at it."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, parse_settings
from lab.tlsca import TlsFiles, issue_ca_and_server_cert
from lab.winrm.server import WinRMEmulator

USERNAME = "CONTOSO\\atp-checker"
PASSWORD_ENV = "ATP_BOT_TEST_WINRM_PASSWORD"
CANARY = "Canary-W1nRM-pa55!"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def settings_toml(
    sensors: list[Mapping[str, Any]],
    *,
    winrm: Mapping[str, Any] | None = None,
    checks: Mapping[str, Any] | None = None,
) -> str:
    lines = [
        "[[accounts]]",
        'id = "contoso"',
        'username = "CONTOSO\\\\svc-atp"',
        'domain_controllers = ["ldaps://dc1.contoso.test"]',
        "",
        "[winrm]",
    ]
    base = {"username": USERNAME, "password_env": PASSWORD_ENV, "transport": "ntlm", **(winrm or {})}
    lines += [f"{k} = {_toml_value(v)}" for k, v in base.items()]
    lines += ["", "[sensor_checks]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in (checks or {}).items()]
    for sensor in sensors:
        lines += ["", "[[sensors]]"] + [f"{k} = {_toml_value(v)}" for k, v in sensor.items()]
    return "\n".join(lines) + "\n"


def make_settings(sensors: list[Mapping[str, Any]], **kwargs: Any) -> Settings:
    return parse_settings(settings_toml(sensors, **kwargs))


@pytest.fixture
def winrm_password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, CANARY)
    return CANARY


@pytest.fixture
def emulator(winrm_password: str) -> Iterator[WinRMEmulator]:
    with WinRMEmulator(username=USERNAME, password=winrm_password) as running:
        yield running


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return issue_ca_and_server_cert(tmp_path_factory.mktemp("tls"), ["localhost"], ["127.0.0.1"])


@pytest.fixture
def tls_emulator(winrm_password: str, tls_files: TlsFiles) -> Iterator[WinRMEmulator]:
    with WinRMEmulator(username=USERNAME, password=winrm_password, tls=tls_files) as running:
        yield running
