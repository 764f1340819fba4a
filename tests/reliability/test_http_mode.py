"""HTTP mode against clients that do not play fair: a real `atp-bot run` process on loopback.

200 connections that send nothing and 20 slow-loris clients (headers or a body trickling in) must not
keep signed `/atp status` commands from their acknowledgement within Slack's 3 seconds, nor SIGTERM from
ending the process within 5 seconds; a burst of 50 simultaneous signed commands is answered in full
(wsgiref's listen backlog of 5 reset about half of them). The process never dumps core.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lab.load import WINRM_PASSWORD_ENV, WINRM_USER, BotProcess, load_config, sensor_fleet, status_storm
from lab.slack import SlackEmulator
from lab.winrm.server import WinRMEmulator

SENSORS = 3
WINRM_PASSWORD = "Http-W1nRM-secret"
IDLE_CLIENTS = 200
SLOW_CLIENTS = 20
BURST = 50
SLOW_TICK_SECONDS = 0.5
SLOW_TICKS_MAX = 240  # a slow client gives up after 2 minutes whatever happens
SIGTERM_SECONDS = 5.0


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emulator:
        yield emulator


@pytest.fixture
def bot(slack: SlackEmulator, tmp_path: Path) -> Iterator[BotProcess]:
    with WinRMEmulator(username=WINRM_USER, password=WINRM_PASSWORD) as sensors:
        config = load_config(tmp_path / "state", slack, sensor_fleet(sensors, SENSORS))
        config["slack"]["mode"] = "http"
        env = {WINRM_PASSWORD_ENV: WINRM_PASSWORD}
        # --listen as the container files pass it, on a free port: [slack] listen is left at its default.
        with BotProcess(tmp_path, config, slack, env, run_args=["--listen", "127.0.0.1:0"]) as process:
            yield process


def events_address(slack: SlackEmulator) -> tuple[str, int, str]:
    url = urlsplit(slack.request_url or "")
    assert url.hostname and url.port
    return url.hostname, url.port, url.path


@contextmanager
def idle_clients(address: tuple[str, int], count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that never send a byte."""
    with ExitStack() as stack:
        yield [stack.enter_context(socket.create_connection(address, timeout=5)) for _ in range(count)]


@contextmanager
def slow_clients(address: tuple[str, int], path: str, count: int) -> Iterator[None]:
    """Half trickle their headers, half a body, one line every tick, until the block ends (bounded)."""
    stop = threading.Event()
    with ExitStack() as stack:
        clients = [stack.enter_context(socket.create_connection(address, timeout=5)) for _ in range(count)]
        for n, client in enumerate(clients):
            start = f"POST {path} HTTP/1.1\r\nHost: {address[0]}\r\n"
            if n % 2:
                start += "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n"
            client.sendall(start.encode())

        def trickle() -> None:
            for tick in range(SLOW_TICKS_MAX):
                if stop.wait(SLOW_TICK_SECONDS):
                    return
                for n, client in enumerate(clients):
                    with suppress(OSError):  # the bot closed it: what a stopping bot does
                        client.sendall(b"a=b&" if n % 2 else f"X-Slow-{tick}: 1\r\n".encode())

        sender = threading.Thread(target=trickle, name="slow-loris")
        sender.start()
        try:
            yield
        finally:
            stop.set()
            sender.join()


def test_signed_commands_pass_while_idle_and_slow_clients_hold_connections(
    bot: BotProcess, slack: SlackEmulator
) -> None:
    host, port, path = events_address(slack)
    with idle_clients((host, port), IDLE_CLIENTS), slow_clients((host, port), path, SLOW_CLIENTS):
        for _ in range(2):
            result = status_storm(slack, 5, timeout=60)
            assert [d for d in slack.deliveries[-5:] if d.status != 200] == []
            assert result.late == 0, sorted(result.ack_seconds)
            assert len(result.final_texts) == 5
        started = time.monotonic()
        code = bot.stop()
        stopped_after = time.monotonic() - started
    assert code == 0
    assert stopped_after < SIGTERM_SECONDS
    assert "Traceback" not in bot.log_path.read_text(encoding="utf-8")


def test_a_burst_of_signed_commands_is_answered_in_full(bot: BotProcess, slack: SlackEmulator) -> None:
    result = status_storm(slack, BURST, timeout=60)
    assert [d.status for d in slack.deliveries if d.status != 200] == []  # no reset, no error
    assert result.late == 0, sorted(result.ack_seconds)[-5:]
    assert len(result.final_texts) == BURST
    assert all(f"All {SENSORS} sensor(s) are running" in text for text in result.final_texts.values())
    assert_no_core_dumps(bot)  # here rather than in a test of its own: a bot process takes seconds to start


def assert_no_core_dumps(bot: BotProcess) -> None:
    limits = Path(f"/proc/{bot.pid}/limits").read_text(encoding="ascii")
    (core,) = [line for line in limits.splitlines() if line.startswith("Max core file size")]
    assert core.split()[4:6] == ["0", "0"]  # soft and hard
