"""The WinRM emulator itself, driven by the real pywinrm client."""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import threading
import time
from pathlib import Path

import pytest
import requests
import winrm
from winrm.exceptions import InvalidCredentialsError, WSManFaultError

from bot.sensors.scripts import CHECK_SENSOR, MAX_COMMAND_LINE, CheckParams, command_line_length
from lab.tlsca import TlsFiles
from lab.winrm import wsman
from lab.winrm.hostfile import build_host, load_host_file
from lab.winrm.model import Host, LogFile
from lab.winrm.powershell import match_template
from lab.winrm.server import WinRMEmulator
from tests.winrm_lab import CANARY, USERNAME


def session(
    endpoint: str, transport: str = "ntlm", password: str = CANARY, **kwargs: object
) -> winrm.Session:
    options: dict[str, object] = {"ca_trust_path": None, "proxy": None, **kwargs}
    return winrm.Session(endpoint, auth=(USERNAME, password), transport=transport, **options)


@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_unknown_commands_fail_like_windows(emulator: WinRMEmulator, transport: str) -> None:
    host = Host.sensor("h")
    client = session(emulator.add_host(host), transport)
    result = client.run_cmd("ipconfig", ["/all"])
    assert result.status_code == 1
    assert b"is not recognized" in result.std_err
    ps = client.run_ps("Get-Process | Stop-Process")
    assert ps.status_code == 1
    assert ps.std_out == b""
    assert ps.std_err.startswith(b"The term 'Get-Process' is not recognized")
    assert host.counters.unknown_scripts == 1


def test_ntlm_over_http_is_encrypted(emulator: WinRMEmulator) -> None:
    client = session(emulator.add_host(Host.sensor("h")))
    client.run_ps("nothing")
    assert client.protocol.transport.encryption is not None  # pywinrm sealed every message


@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_wrong_password_is_rejected(emulator: WinRMEmulator, transport: str) -> None:
    client = session(emulator.add_host(Host.sensor("h")), transport, password="wrong")
    with pytest.raises(InvalidCredentialsError):
        client.run_cmd("hostname")


def test_shells_are_counted_and_limited_per_user(emulator: WinRMEmulator) -> None:
    """Like WinRM's MaxShellsPerUser: past the quota a new shell is refused until one is closed."""
    host = Host.sensor("h")
    host.max_shells_per_user = 2
    protocol = session(emulator.add_host(host)).protocol
    first, _second = protocol.open_shell(), protocol.open_shell()
    assert emulator.open_shells("h") == 2
    with pytest.raises(WSManFaultError) as refused:
        protocol.open_shell()
    assert refused.value.wsman_fault_code == wsman.QUOTA_MAX_SHELLS
    assert "maximum number of 2 concurrent shells" in refused.value.reason
    protocol.close_shell(first)
    assert emulator.open_shells("h") == 1
    protocol.open_shell()
    assert emulator.open_shells("h") == 2


def test_large_output_comes_in_envelope_sized_parts(emulator: WinRMEmulator) -> None:
    host = Host.sensor("h")
    host.output_padding = 1 << 20
    client = session(emulator.add_host(host))
    script = CHECK_SENSOR.render(
        CheckParams(
            services=[], log_dir="C:\\", error_log="e.log", patterns=["p"], since=None, max_bytes=4096
        )
    )
    before = host.counters.requests
    result = client.run_ps(script)
    receives = host.counters.requests - before - 4  # open, command, signal, delete
    assert result.status_code == 0
    assert len(result.std_out) > 1 << 20 and result.std_out.rstrip().endswith(b"}")
    assert receives >= (1 << 20) // wsman.DEFAULT_MAX_ENVELOPE  # never one response over pywinrm's size


def test_templates_with_a_changed_body_are_not_run(emulator: WinRMEmulator) -> None:
    host = Host.sensor("h")
    client = session(emulator.add_host(host))
    script = CHECK_SENSOR.render(
        CheckParams(
            services=["x"],
            log_dir="C:\\",
            error_log="e.log",
            patterns=["p"],
            since="2026-01-01T00:00:00Z",
            max_bytes=4096,
        )
    )
    good = client.run_ps(script)
    assert good.status_code == 0
    assert json.loads(good.std_out)["services"] == [{"name": "x", "state": None}]
    tampered = client.run_ps(script.replace("$ErrorActionPreference = 'Stop'", "Remove-Item C:\\ -Recurse"))
    assert tampered.status_code == 1
    injected = script.replace("'", "''", 1)
    assert match_template(injected) is None


def test_rendered_script_fits_a_windows_command_line() -> None:
    params = CheckParams(
        services=[f"Service{i}" for i in range(20)],
        log_dir="C:\\Program Files\\Azure Advanced Threat Protection Sensor\\*\\Logs",
        error_log="Microsoft.Tri.Sensor-Errors.log",
        patterns=["The supplied credential is invalid."] * 10,
        since="2026-01-01T00:00:00+00:00",
        max_bytes=1 << 26,
    )
    script = CHECK_SENSOR.render(params)
    assert command_line_length(script) < MAX_COMMAND_LINE
    block = script.split("FromBase64String('")[1].split("'")[0]
    assert json.loads(base64.b64decode(block))["patterns"][0] == "The supplied credential is invalid."


def test_https_with_the_test_ca(tls_emulator: WinRMEmulator, tls_files: TlsFiles) -> None:
    endpoint = tls_emulator.add_host(Host.sensor("h"))
    assert endpoint.startswith("https://")
    ok = session(endpoint, "ntlm", ca_trust_path=str(tls_files.ca_file)).run_cmd("hostname")
    assert ok.status_code == 1  # reached the shell: `hostname` is not an emulated command
    with pytest.raises(requests.exceptions.SSLError):
        session(endpoint, "basic", ca_trust_path=None).run_cmd("hostname")


def test_tls_files_are_a_valid_chain(tls_files: TlsFiles) -> None:
    context = ssl.create_default_context(cafile=str(tls_files.ca_file))
    context.load_cert_chain(tls_files.cert_file, tls_files.key_file)
    assert tls_files.key_file.stat().st_mode & 0o077 == 0


def test_virtual_log_reads_match_a_real_file() -> None:
    log = LogFile(filler_bytes=10_000)
    log.append("tail line\r\n")
    whole = log.read(0, log.size)
    assert len(whole) == log.size
    assert whole.endswith(b"tail line\r\n")
    for start, count in [(0, 1), (100, 300), (9_900, 500), (127, 129), (log.size - 3, 10)]:
        assert log.read(start, count) == whole[start : start + count]


def test_faults_can_be_set_and_cleared(emulator: WinRMEmulator) -> None:
    endpoint = emulator.add_host(Host.sensor("h"))
    emulator.set_fault("h", "refused")
    with pytest.raises(requests.exceptions.ConnectionError):
        session(endpoint).run_cmd("hostname")
    emulator.set_fault("h", None)
    assert session(endpoint).run_cmd("hostname").status_code == 1


def test_host_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts.toml"
    path.write_text(
        'username = "CONTOSO\\\\atp-checker"\npassword = "lab"\n'
        '[[hosts]]\nname = "s1"\nkind = "ata"\ncredential_errors = 2\nservices = { ATAGateway = "Stopped" }\n'
        '[[hosts]]\nname = "s2"\nfault = "hang"\n',
        encoding="utf-8",
    )
    spec = load_host_file(path)
    first = build_host(spec.hosts[0])
    assert first.service_state("ATAGateway") == "Stopped"
    log = first.find(first.error_log_path)
    assert log is not None
    assert log.data.count(b"The supplied credential is invalid.") == 2
    assert build_host(spec.hosts[1]).fault == "hang"
    path.write_text('username = "x"\n[[hosts]]\nname = "s1"\nfault = "sometimes"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"hosts\[0\]\.fault"):
        load_host_file(path)


def test_stop_leaves_no_threads_behind(winrm_password: str) -> None:
    before = set(threading.enumerate())
    with WinRMEmulator(username=USERNAME, password=winrm_password) as lab:
        hung = Host.sensor("hung")
        hung.fault = "hang"
        endpoint = lab.add_host(Host.sensor("h"))
        session(endpoint).run_cmd("hostname")  # leaves a keep-alive connection open
        hung_endpoint = lab.add_host(hung)
        caller = threading.Thread(target=lambda: _ignore_errors(session(hung_endpoint, read_timeout_sec=30)))
        caller.start()
        time.sleep(0.3)
    caller.join(timeout=10)
    assert not caller.is_alive()
    assert set(threading.enumerate()) - before == set()


def _ignore_errors(client: winrm.Session) -> None:
    with contextlib.suppress(Exception):
        client.run_cmd("hostname")


def test_round_trips_are_counted_per_operation_kind(emulator: WinRMEmulator) -> None:
    """pywinrm's own run_cmd over NTLM and HTTP: the anonymous probe, the two legs of NTLM (the last one
    empty, before sealing), then one request per Windows Remote Shell operation."""
    host = Host.sensor("h")
    session(emulator.add_host(host)).run_cmd("hostname")
    assert host.counters.round_trips == {
        "unauthenticated": 1,
        "ntlm_negotiate": 1,
        "ntlm_authenticate": 1,
        "create": 1,
        "command": 1,
        "receive": 1,
        "signal": 1,
        "delete": 1,
    }
    assert sum(host.counters.round_trips.values()) == host.counters.requests


def test_a_shell_left_open_counts_until_its_idle_timeout(emulator: WinRMEmulator) -> None:
    """Like WinRM: an undeleted shell holds a place in MaxShellsPerUser until it has been idle for its
    IdleTimeOut (the client's, never under a minute nor over the host's winrs IdleTimeout)."""
    now = [1000.0]
    emulator.clock = lambda: now[0]
    host = Host.sensor("h")
    host.max_shells_per_user, host.shell_idle_timeout = 2, 600.0
    protocol = session(emulator.add_host(host)).protocol
    protocol.open_shell(idle_timeout="PT5S")  # asks for less than Windows' minute
    protocol.open_shell(idle_timeout="PT9000S")  # asks for more than the host allows
    with pytest.raises(WSManFaultError):
        protocol.open_shell()
    now[0] += 61
    assert emulator.open_shells("h") == 1
    kept = protocol.open_shell()
    now[0] += 540
    assert emulator.open_shells("h") == 1  # the long one expired at the host's 600 s
    protocol.run_command(kept, "hostname")  # use keeps a shell alive
    now[0] += 599
    assert emulator.open_shells("h") == 1
    now[0] += 2
    assert emulator.open_shells("h") == 0
    with pytest.raises(WSManFaultError) as expired:
        protocol.run_command(kept, "hostname")
    assert expired.value.wsman_fault_code == wsman.INVALID_SELECTORS
