"""Issue 17 item 1: the command line starts without its heavy dependencies. The real console script and
`python -m bot` run in a child process with Python's import log (`PYTHONPROFILEIMPORTTIME`), which names
every module the process imported. Not timed: `bench/bench_startup.py` measures the time and memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
from bot.gmsa import DEFAULT_GROUP
from bot.infra.exitcodes import ExitCode

# What `atp-bot --help` must not import (each costs tens of milliseconds and megabytes at every start).
HEAVY = {
    "sqlalchemy",
    "slack_bolt",
    "slack_sdk",
    "winrm",
    "msal",
    "prometheus_client",
    "cryptography",
    "waitress",
    "krb5",
    "winacl",
}
# `atp-bot health`, the container's probe, builds no settings model and opens no directory connection.
HEAVY_FOR_HEALTH = HEAVY | {"pydantic", "ldap3", "apscheduler", "requests"}
ACCOUNT = '[[accounts]]\nid = "contoso"\nusername = "CONTOSO\\\\svc"\ndomain_controllers = ["ldaps://dc1"]\n'
CONSOLE_SCRIPT = str(Path(sys.executable).with_name("atp-bot"))


def imported_packages(argv: list[str], expected_exit: int) -> set[str]:
    """The top-level packages the process imported, from its import log on stderr."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == expected_exit, done.stdout + done.stderr[-2000:]
    names = {
        line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")
    }
    return {name.split(".")[0] for name in names}


def health_config(tmp_path: Path, listen: str | None) -> Path:
    """A configuration the full validation accepts, with or without a listen address."""
    config = tmp_path / "atp-bot.toml"
    observability = f'[observability]\nlisten = "{listen}"\n' if listen else ""
    config.write_text(ACCOUNT + observability, encoding="utf-8")
    return config


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "launcher", [[CONSOLE_SCRIPT], [sys.executable, "-m", "bot"]], ids=["script", "module"]
)
def test_help_imports_no_heavy_dependency(launcher: list[str]) -> None:
    loaded = imported_packages([*launcher, "--help"], ExitCode.OK)
    assert "bot" in loaded  # the log is read
    assert loaded & HEAVY == set()


def test_health_imports_neither_the_models_nor_the_clients(tmp_path: Path) -> None:
    config = health_config(tmp_path, f"127.0.0.1:{unused_port()}")
    loaded = imported_packages([CONSOLE_SCRIPT, "--config", str(config), "health"], ExitCode.UNREACHABLE)
    assert loaded & HEAVY_FOR_HEALTH == set()


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        (None, "observability.listen is not set, so atp-bot run serves no /healthz"),
        ("nonsense", "observability.listen: 'nonsense': expected host:port, e.g. 0.0.0.0:3000 ("),
    ],
)
def test_health_names_a_missing_or_bad_listen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], listen: str | None, message: str
) -> None:
    config = health_config(tmp_path, listen)
    assert main(["--config", str(config), "health"]) == ExitCode.USAGE
    assert f"atp-bot: configuration error: {message}" in capsys.readouterr().err


def test_health_names_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "none.toml"), "health"]) == ExitCode.USAGE
    assert "none.toml: no such configuration file" in capsys.readouterr().err


def test_the_lab_still_lists_its_actions() -> None:
    """`atp-bot lab` registers its actions only when it runs: its help and its usage error are unchanged."""
    shown = subprocess.run([CONSOLE_SCRIPT, "lab", "--help"], capture_output=True, text=True, timeout=120)
    assert (shown.returncode, "usage: atp-bot lab [-h] ACTION ...") == (0, shown.stdout.splitlines()[0])
    assert "demo" in shown.stdout
    bare = subprocess.run([CONSOLE_SCRIPT, "lab"], capture_output=True, text=True, timeout=120)
    assert (bare.returncode, "the following arguments are required: ACTION" in bare.stderr) == (2, True)


def test_gmsa_plan_help_names_the_default_group(capsys: pytest.CaptureFixture[str]) -> None:
    """`--group` gets its default when the plan runs (bot.gmsa is not imported to register it): the help
    text, written out, must still name the plan's default."""
    with pytest.raises(SystemExit):
        main(["gmsa", "plan", "--help"])
    assert f"default: the plan's, {DEFAULT_GROUP}" in " ".join(capsys.readouterr().out.split())
