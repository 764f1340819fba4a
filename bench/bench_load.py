"""Load: many concurrent `/atp status` requests against a real `atp-bot run` process and a large fleet.

The bot runs as its own process (Socket Mode, default `[slack] workers` and `[sensor_checks] pool_size`)
against the Slack emulator and N emulated sensors over WinRM/NTLM on loopback, each answering after
`--latency-ms`. Each round sends `--requests` slash commands at once and waits until every requester has
the final report. Reported: acknowledgement latency (Slack gives up after 3 s), time until the last
requester's final report, WinRM scripts run (one per sensor when the requests share one check), and the
bot's resident memory (idle, after each round, peak).

    .venv/bin/python bench/bench_load.py [--sensors 500] [--requests 50] [--rounds 3] [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench_ack import percentile  # bench/ is on the path of a script run from it

from lab.load import WINRM_PASSWORD_ENV, WINRM_USER, BotProcess, load_config, sensor_fleet, status_storm
from lab.slack import SlackEmulator
from lab.winrm.server import WinRMEmulator

WINRM_PASSWORD = "Bench-W1nRM-secret"


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=500)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        WinRMEmulator(username=WINRM_USER, password=WINRM_PASSWORD) as sensors,
        SlackEmulator() as slack,
    ):
        tables = sensor_fleet(sensors, args.sensors, args.latency_ms / 1000)
        config = load_config(Path(tmp) / "state", slack, tables)
        with BotProcess(Path(tmp), config, slack, {WINRM_PASSWORD_ENV: WINRM_PASSWORD}) as bot:
            print(f"{args.sensors} sensors, {args.latency_ms} ms per WinRM round trip;", end=" ")
            print(
                f"{args.requests} concurrent `/atp status` per round; bot idle: {mib(bot.memory().rss_kib)}"
            )
            print(
                "| round | ack p50 | ack p99 | ack max | late | last final report | scripts run | RSS after |"
            )
            print("| --- | --- | --- | --- | --- | --- | --- | --- |")
            for round_ in range(1, args.rounds + 1):
                before = sum(h.counters.scripts for h in sensors.hosts.values())
                result = status_storm(slack, args.requests)
                scripts = sum(h.counters.scripts for h in sensors.hosts.values()) - before
                acks = [s * 1000 for s in result.ack_seconds]
                missing = args.requests - len(result.final_texts)
                print(
                    f"| {round_} | {statistics.median(acks):.0f} ms | {percentile(acks, 0.99):.0f} ms"
                    f" | {max(acks):.0f} ms | {result.late} | {result.seconds_to_last_report:.1f} s"
                    + (f" ({missing} never)" if missing else "")
                    + f" | {scripts} | {mib(bot.memory().rss_kib)} |"
                )
            print(f"peak resident memory of the bot: {mib(bot.memory().peak_kib)}")


if __name__ == "__main__":
    main()
