"""A load scenario: many people typing `/atp status` at once, against a real `atp-bot run` process, a large
emulated sensor fleet and the Slack emulator. Used by the reliability test and by `bench/bench_load.py`.

`BotProcess` runs the bot as its own process (Socket Mode, or HTTP mode when the configuration says so)
so that its memory and limits can be read from /proc;
`status_storm` sends the slash commands concurrently and waits until each requester has the final report.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import tomli_w

from lab.slack import SlackEmulator
from lab.slack.webapi import RESPONSE_URL_METHOD, Call
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator

LISTENING = re.compile(r"listening for Slack on (\S+)")
SLACK_USER = "U0ALICE"
SLACK_CHANNEL = "C0OPS"
ACCOUNT = "contoso"
WINRM_USER = "CONTOSO\\atp-checker"
WINRM_PASSWORD_ENV = "ATP_BOT_LOAD_WINRM_PASSWORD"
MODAL_SETTLE_SECONDS = 3.5  # a trigger id is valid for 3 s: a modal not open by then never will be


def sensor_fleet(sensors: WinRMEmulator, count: int, latency: float = 0.0) -> list[dict[str, str]]:
    """Add `count` healthy MDI sensors (`sensor000`…) to the emulator; their `[[sensors]]` tables."""
    tables = []
    for i in range(count):
        host = Host.sensor(f"sensor{i:03d}")
        host.latency = latency
        tables.append({"name": host.name, "endpoint": sensors.add_host(host), "account": ACCOUNT})
    return tables


def load_config(state_dir: Path, slack: SlackEmulator, sensors: list[dict[str, str]]) -> dict[str, Any]:
    """A configuration for the bot: one account, the fleet, Slack in Socket Mode, no scheduler."""
    return {
        "state_dir": str(state_dir),
        "accounts": [
            {"id": ACCOUNT, "username": "svc-atp@contoso.test", "domain_controllers": ["ldaps://dc1"]}
        ],
        "winrm": {"username": WINRM_USER, "password_env": WINRM_PASSWORD_ENV, "transport": "ntlm"},
        "sensors": sensors,
        "slack": {
            "mode": "socket",
            "api_url": slack.api_url,
            "channel": SLACK_CHANNEL,
            "allowed_users": [SLACK_USER],
            # The storms are one person's requests: the load is what is measured, not the per-person limit.
            "user_rate_per_minute": 1_000_000,
        },
        "scheduler": {"enabled": False},
    }


@dataclass(frozen=True)
class Memory:
    """A process's resident memory from /proc (KiB): now, and the peak since it started."""

    rss_kib: int
    peak_kib: int


class BotProcess:
    """`atp-bot run [run_args…]` as a child process on a config written to `directory`; stopped with
    SIGTERM on exit."""

    def __init__(
        self,
        directory: Path,
        config: Mapping[str, Any],
        slack: SlackEmulator,
        env: Mapping[str, str],
        run_args: Sequence[str] = (),
    ) -> None:
        self.config_path = directory / "atp-bot.toml"
        self._run_args = tuple(run_args)
        self.config_path.write_text(tomli_w.dumps(dict(config)), encoding="utf-8")
        self._slack = slack
        self._env = {
            **os.environ,
            **env,
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_APP_TOKEN": slack.app_token,
            "SLACK_SIGNING_SECRET": slack.signing_secret,
        }
        self._http = config["slack"].get("mode") == "http"
        self.log_path = directory / "atp-bot.log"  # a file, not a pipe: a full pipe would stall the bot
        self._process: subprocess.Popen[bytes] | None = None

    def _atp_bot(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "bot", "--config", str(self.config_path), *argv]

    def start(self, timeout: float = 30.0) -> BotProcess:
        subprocess.run(self._atp_bot("store", "init"), env=self._env, check=True, capture_output=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self._atp_bot("run", *self._run_args), env=self._env, stderr=log)
        try:
            if self._http:
                self._slack.request_url = self._wait_for_http_url(timeout)
            else:
                self._slack.wait_connected(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_http_url(self, timeout: float) -> str:
        """HTTP mode: the URL the bot logs once it listens (it may have picked a free port)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log_path.read_text(encoding="utf-8", errors="replace"))
            if found:
                return found.group(1)
            if self._process is not None and self._process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"atp-bot did not start listening; see {self.log_path}")

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("not started")
        return self._process.pid

    def check_workers(self) -> list[int]:
        """The ids of the bot's sensor check worker processes (not multiprocessing's resource tracker)."""
        return [p for p in descendants(self.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]

    def _proc_files(self, name: str) -> Iterator[str]:
        """`/proc/PID/<name>` of the bot and of each process it started that is still running."""
        for pid in (self.pid, *descendants(self.pid)):
            try:
                yield Path(f"/proc/{pid}/{name}").read_text(encoding="ascii")
            except FileNotFoundError:  # a worker that just ended
                continue

    def memory(self) -> Memory:
        """The bot's memory with its worker processes' (each peak counted as if at once: an upper bound)."""
        rss = peak = 0
        for status in self._proc_files("status"):
            fields = {}
            for line in status.splitlines():
                name, _, value = line.partition(":")
                fields[name] = value.split()[0] if value.split() else ""
            rss, peak = rss + int(fields["VmRSS"]), peak + int(fields["VmHWM"])
        return Memory(rss, peak)

    def cpu_seconds(self) -> float:
        """CPU time used so far by the bot and its worker processes (user and system)."""
        ticks = 0
        for stat in self._proc_files("stat"):
            fields = stat.rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int | None:
        """Stop the bot with SIGTERM, killed after 30 s (its log stays in `log_path`); its exit code."""
        if self._process is None:
            return None
        process, self._process = self._process, None
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def __enter__(self) -> BotProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def descendants(pid: int) -> list[int]:
    """Every process started (transitively) by `pid`, from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text(encoding="ascii").split()
        except FileNotFoundError:
            continue
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found


@dataclass(frozen=True)
class StormResult:
    ack_seconds: list[float]  # each request's acknowledgement latency as Slack saw it
    late: int  # requests not acknowledged within Slack's 3 s
    final_texts: dict[str, str]  # trigger id → the last report that requester got, as text and sections
    seconds_to_last_report: float  # from the first request to the last requester's final report


def _final(text: str) -> bool:
    return "answered." not in text  # the summary of a report still in progress ends with "N of M answered."


def _shown(call: Call) -> str:
    """A report as the person sees it: its text, then each section's (where every sensor's line is)."""
    sections = [str(b.get("text", {}).get("text", "")) for b in call.args.get("blocks") or []]
    return "\n".join([str(call.args.get("text", "")), *sections])


def status_storm(slack: SlackEmulator, requests: int, *, timeout: float = 120.0) -> StormResult:
    """Send `requests` concurrent `/atp status` commands; wait until every requester has a final report."""
    started = time.monotonic()
    with ThreadPoolExecutor(requests) as senders:
        deliveries = list(
            senders.map(lambda _: slack.slash_command("status", user=SLACK_USER), range(requests))
        )
    triggers = {d.trigger_id for d in deliveries}
    finals: dict[str, Call] = {}
    deadline = time.monotonic() + timeout
    while len(finals) < len(triggers) and time.monotonic() < deadline:
        for call in slack.calls(RESPONSE_URL_METHOD):
            shown = call.status == 200  # Slack refuses a response URL's sixth post
            if shown and call.response_id in triggers and _final(str(call.args.get("text", ""))):
                finals[call.response_id] = call
        time.sleep(0.05)
    return StormResult(
        ack_seconds=[d.latency for d in deliveries],
        late=sum(d.late for d in deliveries),
        final_texts={trigger: _shown(call) for trigger, call in finals.items()},
        seconds_to_last_report=max((c.at for c in finals.values()), default=time.monotonic()) - started,
    )


@dataclass(frozen=True)
class ProbeResult:
    """Interactive commands sent while something else loads the bot: how long each waited."""

    help_acks: list[float]  # `/atp help`: until Slack had the acknowledgement
    password_opens: list[float]  # `/atp password`: until Slack had the modal's `views.open`
    password_failures: int  # `/atp password` whose modal was never opened (e.g. an expired trigger)


class AckProbe:
    """While running, sends `/atp help` and `/atp password` in turn every `interval` seconds (one at a
    time, as a person would) and records how long each waited; see `ProbeResult`."""

    def __init__(self, slack: SlackEmulator, interval: float = 0.1) -> None:
        self._slack = slack
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ack-probe", daemon=True)
        self._help: list[float] = []
        self._sent: dict[str, float] = {}  # password trigger id -> when it was sent

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._help.append(self._slack.slash_command("help", user=SLACK_USER).latency)
            sent = time.monotonic()
            self._sent[self._slack.slash_command("password", user=SLACK_USER).trigger_id] = sent

    def __enter__(self) -> AckProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def result(self) -> ProbeResult:
        """What the probe measured, once every modal is open or could no longer be (Slack's trigger ids
        are valid for 3 s)."""
        deadline = time.monotonic() + MODAL_SETTLE_SECONDS
        while True:
            opened = {
                c.args.get("trigger_id"): c.at for c in self._slack.calls("views.open") if c.error is None
            }
            if all(t in opened for t in self._sent) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        opens = [opened[t] - at for t, at in self._sent.items() if t in opened]
        return ProbeResult(list(self._help), opens, len(self._sent) - len(opens))
