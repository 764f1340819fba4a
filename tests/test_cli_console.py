"""What a one-shot command prints on stderr, as a person reads it (the real CLI, as processes): the
sensors' transport warning only from commands that contact sensors, once (a summary for many); log lines
without module names; one failure printed once."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import closed_port_url, run_cli
from tests.winrm_lab import settings_toml

MODULE_NAME = re.compile(r"\b(bot|commands|lab)\.[a-z_]+(\.[a-z_]+)*\b")
TRANSPORT = "NTLM over http://"


def write_config(tmp_path: Path, sensors: int) -> tuple[Path, str]:
    """Sensors on closed http:// ports (NTLM over http: the warning), and a domain controller that is down."""
    dc = closed_port_url()
    endpoints = [
        {"name": f"s{n}", "endpoint": f"http://127.0.0.1:1/wsman/{n}"} for n in range(1, sensors + 1)
    ]
    text = settings_toml(endpoints).replace('["ldaps://dc1.contoso.test"]', f'["{dc}"]')
    config = tmp_path / "atp-bot.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n' + text, encoding="utf-8")
    return config, dc


def test_commands_that_contact_no_sensor_print_no_transport_warning(
    tmp_path: Path, winrm_password: str
) -> None:
    config, _ = write_config(tmp_path, sensors=2)
    for args in (("history",), ("guard", "status")):
        done = run_cli(config, *args)
        assert done.returncode == 0, done.stdout + done.stderr
        assert TRANSPORT not in done.stderr, args
    tested = run_cli(
        config, "test-connection", "--account", "contoso", "--password-stdin", stdin="Xx-9pass!\n"
    )
    assert tested.returncode == 3, tested.stdout + tested.stderr
    assert TRANSPORT not in tested.stderr


def test_check_prints_the_transport_warning_once_a_summary_for_many(
    tmp_path: Path, winrm_password: str
) -> None:
    config, _ = write_config(tmp_path, sensors=5)
    done = run_cli(config, "check")
    assert done.returncode == 3, done.stdout + done.stderr
    (warning,) = [line for line in done.stderr.splitlines() if TRANSPORT in line]
    assert warning == (
        "atp-bot: warning: 5 sensors (s1, s2, s3 and 2 more): NTLM over http://; messages are sealed, "
        "but the hosts are not authenticated: prefer https://"
    )
    one, _ = write_config(tmp_path, sensors=1)
    done = run_cli(one, "check")
    assert [line for line in done.stderr.splitlines() if TRANSPORT in line] == [
        "atp-bot: warning: sensor s1: NTLM over http:// (http://127.0.0.1:1/wsman/1); messages are sealed, "
        "but the host is not authenticated: prefer https://"
    ]


def test_a_failure_is_printed_once_and_no_line_names_a_module(tmp_path: Path, winrm_password: str) -> None:
    config, dc = write_config(tmp_path, sensors=1)
    tested = run_cli(
        config, "test-connection", "--account", "contoso", "--password-stdin", stdin="Xx-9pass!\n"
    )
    assert tested.returncode == 3
    printed = tested.stdout + tested.stderr
    assert printed.count(dc) == 1, printed  # the unreachable DC, told once (not again by a log line)
    for args in (("check",), ("history",)):
        done = run_cli(config, *args)
        printed += done.stdout + done.stderr
    assert not MODULE_NAME.search(printed), printed
    assert all(line.startswith("atp-bot: ") for line in done.stderr.splitlines())
