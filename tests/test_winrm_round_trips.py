"""Issue 17 item 3: the WinRM round trips of one sensor check, counted by the emulator (not timed).

Before: the anonymous probe and NTLM's two legs, Create, Command, Receive, Signal, Delete (8 round
trips, the result waiting for all of them). Now at most 6, and the result does not wait for the Delete.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from bot.sensors.checks import FailureKind, check_sensors
from bot.sensors.winrm_runner import wait_for_shell_closes
from lab.tlsca import TlsFiles
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from lab.winrm.wsman import DEFAULT_MAX_ENVELOPE
from tests.winrm_lab import USERNAME, make_settings

MAX_ROUND_TRIPS = 6  # issue 17's bound for one check of one sensor


def checked(emulator: WinRMEmulator, host: Host, healthy: bool = True, **winrm: object) -> Counter[str]:
    """The round trips, by kind, of one check of `host`, its shell's Delete included."""
    endpoint = emulator.add_host(host)
    (result,) = check_sensors(make_settings([{"name": host.name, "endpoint": endpoint}], winrm=winrm))
    assert result.healthy is healthy, result.failure
    wait_for_shell_closes()
    assert emulator.open_shells(host.name) == 0
    return host.counters.round_trips


def test_ntlm_over_http_one_session_sealed(emulator: WinRMEmulator) -> None:
    """NTLM's Negotiate goes with the first request (no anonymous probe), the one authenticated session
    carries every later request, every WS-Management message is sealed, and no Signal precedes the
    Delete (deleting the shell ends its command)."""
    host = Host.sensor("s1")
    trips = checked(emulator, host)
    assert trips == {
        "ntlm_negotiate": 1,
        "ntlm_authenticate": 1,
        "create": 1,
        "command": 1,
        "receive": 1,
        "delete": 1,
    }
    assert sum(trips.values()) <= MAX_ROUND_TRIPS
    assert host.counters.sealed_messages == 4  # Create, Command, Receive, Delete


@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_https(tls_emulator: WinRMEmulator, tls_files: TlsFiles, transport: str) -> None:
    """Over HTTPS nothing is sealed: requests_ntlm's handshake carries the Create itself."""
    trips = checked(tls_emulator, Host.sensor("s1"), transport=transport, ca_file=tls_files.ca_file)
    assert trips["signal"] == 0
    assert trips["create"] == trips["command"] == trips["receive"] == trips["delete"] == 1
    assert sum(trips.values()) <= MAX_ROUND_TRIPS


def test_a_large_output_takes_one_receive_per_envelope(emulator: WinRMEmulator) -> None:
    """The Receive loop asks again only while the command runs; a 1 MiB answer within pywinrm's
    150 KiB envelopes takes as many Receives as envelopes, and nothing else changes (the padding makes
    the check's answer unreadable, which does not matter here)."""
    host = Host.sensor("s1")
    host.output_padding = 900 * 1024
    trips = checked(emulator, host, healthy=False)
    assert 900 * 1024 // DEFAULT_MAX_ENVELOPE < trips["receive"] <= 10
    assert sum(trips.values()) - trips["receive"] == MAX_ROUND_TRIPS - 1


def test_wrong_password_is_still_access_denied(emulator: WinRMEmulator) -> None:
    """The eager NTLM handshake fails like requests_ntlm's on a wrong password, and sends nothing else."""
    host = Host.sensor("s1")
    endpoint = emulator.add_host(host)
    settings = make_settings([{"name": "s1", "endpoint": endpoint}], winrm={"password_env": "WRONG_PW"})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WRONG_PW", "not-the-password")
        (result,) = check_sensors(settings)
    assert result.failure is not None and result.failure.kind is FailureKind.ACCESS_DENIED
    assert host.counters.round_trips == {"ntlm_negotiate": 1, "ntlm_authenticate": 1}


def test_a_service_without_ntlm_refuses_the_eager_handshake(winrm_password: str) -> None:
    """A WinRM service that offers Basic only answers the Negotiate token with a 401 and no challenge:
    credentials rejected, as with requests_ntlm, after one round trip."""
    with WinRMEmulator(username=USERNAME, password=winrm_password, auth=("basic",)) as basic_only:
        host = Host.sensor("s1")
        endpoint = basic_only.add_host(host)
        (result,) = check_sensors(make_settings([{"name": "s1", "endpoint": endpoint}]))
    assert result.failure is not None and result.failure.kind is FailureKind.ACCESS_DENIED
    assert host.counters.round_trips == {"unauthenticated": 1}


def test_each_shell_asks_for_a_short_idle_timeout(emulator: WinRMEmulator) -> None:
    """A shell whose Delete never arrives (the bot killed after the result) is dropped by WinRM after the
    operation timeout (20 s by default) + 60 s without a request, not after the service's 2 hours. The
    emulator's clock, read at every request, sees the shells open then."""
    asked: set[float] = set()

    def clock() -> float:
        asked.update(shell.idle_timeout for shell in emulator.shells.get("s1", {}).values())
        return time.monotonic()

    emulator.clock = clock
    checked(emulator, Host.sensor("s1"))
    assert asked == {20 + 60}
