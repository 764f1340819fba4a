"""Hostile WinRM peers (lab/winrm/hostile.py) against the real pywinrm/requests client: a sensor that
trickles, floods or redirects ends by its deadline, within the body limit, and sends us nowhere else."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.gmsa.core import Check
from bot.gmsa.hosts import probe_hosts
from bot.sensors import CheckWorkers, ThreadScripts, check_sensors
from bot.sensors.http_guard import MAX_RESPONSE_BYTES
from bot.sensors.scripts import GmsaHostOutput
from bot.sensors.winrm_runner import FailureKind
from bot.sensors.workers import LogSetup
from lab.tlsca import TlsFiles
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.winrm_lab import make_settings

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 2  # seconds: host_timeout
LONG_BEFORE = 15  # seconds: "ended well before the trickle would have" (it would take minutes)


def trickling(emulator: WinRMEmulator, name: str = "trickles") -> str:
    host = Host.sensor(name)
    host.fault = "trickle"  # one byte a second: an answer of a few hundred bytes takes minutes
    return emulator.add_host(host)


def test_a_trickling_sensor_ends_by_its_deadline_in_the_fan_out(emulator: WinRMEmulator) -> None:
    settings = make_settings(
        [
            {"name": "trickles", "endpoint": trickling(emulator)},
            {"name": "fine", "endpoint": emulator.add_host(Host.sensor("fine"))},
        ],
        checks={"host_timeout": DEADLINE},
    )
    started = time.monotonic()
    slow, fine = check_sensors(settings)
    assert time.monotonic() - started < LONG_BEFORE
    assert slow.failure is not None and slow.failure.kind is FailureKind.TIMEOUT
    assert fine.healthy


def test_a_trickling_sensor_ends_by_its_deadline_in_the_workers(emulator: WinRMEmulator) -> None:
    settings = make_settings(
        [
            {"name": "trickles", "endpoint": trickling(emulator)},
            {"name": "fine", "endpoint": emulator.add_host(Host.sensor("fine"))},
        ],
        checks={"host_timeout": DEADLINE},
    )
    with CheckWorkers(processes=1, threads=2, log_setup=LogSetup(logging.INFO, "text")) as workers:
        started = time.monotonic()
        slow, fine = workers.check_sensors(settings)
        assert time.monotonic() - started < LONG_BEFORE
    assert slow.failure is not None and slow.failure.kind is FailureKind.TIMEOUT
    assert fine.healthy


def threads_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def test_forty_cycles_against_a_trickling_sensor_still_check_a_healthy_one(emulator: WinRMEmulator) -> None:
    """Driven as `atp-bot run` drives its monitor: one worker process, its threads shared by every cycle.
    No cycle leaves a thread behind, so the healthy sensor is checked every time."""
    settings = make_settings(
        [
            {"name": "trickles", "endpoint": trickling(emulator)},
            {"name": "fine", "endpoint": emulator.add_host(Host.sensor("fine"))},
        ],
        checks={"host_timeout": 1},
    )
    with CheckWorkers(processes=1, threads=2, log_setup=LogSetup(logging.WARNING, "text")) as workers:
        (pid,) = workers.pids
        workers.check_sensors(settings)
        threads = threads_of(pid)
        for _ in range(40):
            slow, fine = workers.check_sensors(settings)
            assert fine.healthy, fine.failure
            assert slow.failure is not None and slow.failure.kind is FailureKind.TIMEOUT
        assert workers.pids == [pid]  # never stuck, so never recycled
        assert threads_of(pid) <= threads + 2  # a shell's Delete may still be on its way


FLOOD_CHILD = """
import json, sys
from pathlib import Path

import pytest
from bot.sensors import check_sensors
from tests.winrm_lab import make_settings

def peak() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(l.split()[1] for l in status.splitlines() if l.startswith("VmHWM:")))

(warm,) = check_sensors(make_settings([{"name": "fine", "endpoint": sys.argv[2]}]))
before = peak()
(flooded,) = check_sensors(make_settings([{"name": "floods", "endpoint": sys.argv[1]}]))
failure = flooded.failure
print(json.dumps({"before": before, "after": peak(), "warm": warm.healthy,
                  "kind": failure and failure.kind, "detail": failure and failure.detail}))
"""


def test_a_chunked_flood_is_cut_at_the_limit(emulator: WinRMEmulator) -> None:
    """A 64 MiB chunked answer (no Content-Length) is counted as it is read and cut at the limit: the
    peak memory of the process checking it grows by far less than the answer."""
    flooding = Host.sensor("floods")
    flooding.fault, flooding.flood_bytes = "chunked_flood", 64 << 20
    flood, fine = emulator.add_host(flooding), emulator.add_host(Host.sensor("fine"))
    child = subprocess.run(
        [sys.executable, "-c", FLOOD_CHILD, flood, fine],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    seen = json.loads(child.stdout.splitlines()[-1])
    assert seen["warm"]
    assert seen["kind"] == FailureKind.SCRIPT_ERROR
    assert f"more than {MAX_RESPONSE_BYTES // 1024} KiB in one response" in seen["detail"]
    assert seen["after"] - seen["before"] < 24 * 1024  # kB
    assert flooding.counters.wire_out < 64 << 20


def test_a_redirect_is_never_followed(emulator: WinRMEmulator) -> None:
    elsewhere = Host.sensor("elsewhere")
    redirecting = Host.sensor("redirects")
    redirecting.fault, redirecting.redirect_to = "redirect", emulator.add_host(elsewhere)
    settings = make_settings([{"name": "redirects", "endpoint": emulator.add_host(redirecting)}])
    (result,) = check_sensors(settings)
    assert result.failure is not None and result.failure.kind is FailureKind.WINRM_FAULT
    assert "HTTP 307 redirect to 127.0.0.1:" in result.failure.detail
    assert "never followed" in result.failure.detail
    assert redirecting.counters.requests >= 1
    assert elsewhere.counters.requests == 0


def test_a_worker_holding_a_check_past_its_deadline_is_replaced(
    emulator: WinRMEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bot stops waiting (here before the trickling check can end) and replaces the worker holding it,
    so a thread that hangs is abandoned with its process instead of taking a worker thread for good."""
    monkeypatch.setattr("bot.sensors.workers.GRACE_SECONDS", -0.5)
    settings = make_settings(
        [
            {"name": "trickles", "endpoint": trickling(emulator)},
            {"name": "fine", "endpoint": emulator.add_host(Host.sensor("fine"))},
        ],
        checks={"host_timeout": DEADLINE},
    )
    with CheckWorkers(processes=1, threads=1, log_setup=LogSetup(logging.INFO, "text")) as workers:
        (first,) = workers.pids
        (late,) = workers.check_sensors(settings, ["trickles"])
        assert late.failure is not None and "did not answer in time" in late.failure.detail
        deadline = time.monotonic() + 30
        while workers.pids in ([first], []) and time.monotonic() < deadline:
            time.sleep(0.1)
        (second,) = workers.pids
        assert second != first and not Path(f"/proc/{first}").exists()
        monkeypatch.setattr("bot.sensors.workers.GRACE_SECONDS", 30.0)
        (fine,) = workers.check_sensors(settings, ["fine"])
        assert fine.healthy


def test_gmsa_host_checks_run_in_the_workers_and_end_by_their_deadline(emulator: WinRMEmulator) -> None:
    """The gMSA host script goes to the check workers as the checks do (`/atp gmsa`, the monitor's gMSA
    verdicts), with the same outcome as in threads, and a trickling host ends by its deadline."""
    settings = make_settings(
        [
            {"name": "trickles", "endpoint": trickling(emulator)},
            {"name": "fine", "endpoint": emulator.add_host(Host.sensor("fine"))},
        ],
        checks={"host_timeout": DEADLINE},
    )
    account = settings.accounts[0]
    with CheckWorkers(processes=1, threads=2, log_setup=LogSetup(logging.INFO, "text")) as workers:
        started = time.monotonic()
        in_workers = probe_hosts(settings, account, settings.sensors, workers)
        assert time.monotonic() - started < LONG_BEFORE
    assert in_workers == probe_hosts(settings, account, settings.sensors, ThreadScripts(2))
    assert isinstance(in_workers["fine"], GmsaHostOutput)
    slow = in_workers["trickles"]
    assert isinstance(slow, Check) and slow.unreachable and "host timeout" in slow.detail


def test_a_trickling_sensor_over_https_ends_by_its_deadline(
    tls_emulator: WinRMEmulator, tls_files: TlsFiles
) -> None:
    """The watched socket is the TLS one: shutting it down ends the run there too."""
    endpoint = trickling(tls_emulator)
    settings = make_settings(
        [{"name": "trickles", "endpoint": endpoint, "ca_file": tls_files.ca_file}],
        checks={"host_timeout": DEADLINE},
    )
    started = time.monotonic()
    (slow,) = check_sensors(settings)
    assert time.monotonic() - started < LONG_BEFORE
    assert slow.failure is not None and slow.failure.kind is FailureKind.TIMEOUT
