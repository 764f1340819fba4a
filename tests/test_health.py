"""`/healthz` and `/metrics` of `atp-bot run` (a real process), and the health endpoint's rules."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from bot.infra.health import HealthServer
from lab.slack import SlackEmulator
from lab.winrm.server import WinRMEmulator
from tests.conftest import SENSOR_WINRM_PASSWORD_ENV, SENSOR_WINRM_USER
from tests.slack_lab import wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback test URL
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except urllib.error.URLError as error:  # not listening yet: the bot connects to Slack first
        return 0, str(error.reason)


def test_a_failing_probe_makes_healthz_503() -> None:
    def broken() -> bool:
        raise RuntimeError("store exploded")

    server = HealthServer("127.0.0.1", 0, {"slack": lambda: True, "store": broken})
    server.start()
    try:
        status, body = get(f"{server.url}/healthz")
        assert status == 503
        assert json.loads(body) == {"status": "unhealthy", "checks": {"slack": True, "store": False}}
        assert get(f"{server.url}/nope")[0] == 404
    finally:
        server.stop()


def test_livez_passes_while_the_process_works_whatever_slack_does() -> None:
    server = HealthServer("127.0.0.1", 0, {"slack": lambda: False}, live={"slack_runtime": lambda: True})
    server.start()
    try:
        assert get(f"{server.url}/healthz")[0] == 503
        status, body = get(f"{server.url}/livez")
        assert (status, json.loads(body)) == (200, {"status": "ok", "checks": {"slack_runtime": True}})
    finally:
        server.stop()


def test_run_serves_health_and_metrics(sensors: WinRMEmulator, env: None, tmp_path: Path) -> None:
    port = free_port()
    emulator = SlackEmulator().start()
    slack_stopped = False
    try:
        config = tmp_path / "atp-bot.toml"
        user = SENSOR_WINRM_USER.replace("\\", "\\\\")
        config.write_text(
            f'state_dir = "{tmp_path / "state"}"\n'
            '[[accounts]]\nid = "svc"\nusername = "svc@contoso.test"\ndomain_controllers = ["ldaps://dc1"]\n'
            f'[slack]\napi_url = "{emulator.api_url}"\nchannel = "C0OPS"\nallowed_users = ["U0ALICE"]\n'
            f'[observability]\nlisten = "127.0.0.1:{port}"\n'
            f'[winrm]\nusername = "{user}"\npassword_env = "{SENSOR_WINRM_PASSWORD_ENV}"\n'
            + "".join(
                f'[[sensors]]\nname = "{n}"\nendpoint = "{sensors.endpoint(n)}"\naccount = "svc"\n'
                for n in sensors.hosts
            )
        )
        subprocess.run([sys.executable, "-m", "bot", "--config", str(config), "store", "init"], check=True)
        env = {**os.environ, "SLACK_BOT_TOKEN": emulator.bot_token, "SLACK_APP_TOKEN": emulator.app_token}
        bot = subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(config), "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: emulator.connected_apps, timeout=20)
            healthy = wait_for(lambda: get(f"{base}/healthz")[0] == 200 or None, timeout=10)
            assert healthy
            assert json.loads(get(f"{base}/healthz")[1])["checks"] == {
                "slack": True,
                "scheduler": True,
                "store": True,
            }

            emulator.slash_command("status")
            wait_for(
                lambda: (
                    'atp_bot_sensor_checks_total{failure="none",result="healthy"} 2.0'
                    in get(f"{base}/metrics")[1]
                ),
                timeout=30,
            )
            health = atp_bot(config, "health")
            assert health.returncode == 0, health.stdout + health.stderr
            assert '"status": "ok"' in health.stdout
            metrics = get(f"{base}/metrics")[1]
            assert "atp_bot_sensor_check_seconds_count 2.0" in metrics
            assert "atp_bot_alerts_open 0.0" in metrics  # read from the state, before any cycle
            assert json.loads(get(f"{base}/livez")[1]) == {
                "status": "ok",
                "checks": {"slack_runtime": True, "scheduler": True},
            }

            emulator.stop()  # a Slack outage: no longer ready, still alive (a restart would not help)
            slack_stopped = True
            assert wait_for(lambda: get(f"{base}/healthz")[0] == 503 or None, timeout=20)
            live = atp_bot(config, "health", "--live")
            assert live.returncode == 0, live.stdout + live.stderr
        finally:
            bot.send_signal(signal.SIGTERM)
            _out, err = bot.communicate(timeout=30)
        assert bot.returncode == 0, err
        stopped = atp_bot(config, "health")
        assert stopped.returncode == 3
        assert "not answering" in stopped.stdout
    finally:
        if not slack_stopped:
            emulator.stop()


def atp_bot(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), *args], capture_output=True, text=True
    )
