"""Load: many concurrent `/atp status` requests against a real `atp-bot run` process and a large fleet, and
the acknowledgement of a person's `/atp help` and `/atp password` meanwhile (issue 17, item 2).

The bot runs as its own process (Socket Mode or HTTP, default `[slack] workers` and `[sensor_checks]`)
against the Slack emulator (in this process) and N emulated sensors over WinRM/NTLM (`atp-bot lab winrm`,
a process of their own, as the sensors are other machines: in this process their NTLM work would delay
the Slack emulator's own answers and clock) on loopback, each answering after `--latency-ms` (0: the
heaviest load, every check CPU-bound), all on the same cores. Each round sends
`--requests` slash commands at once and waits until every requester has the final report, while a probe
sends `/atp help` and `/atp password` one after the other (every 0.1 s) and records when Slack had the
acknowledgement and the modal's `views.open`. The baseline is the same probe against the idle bot.

Reported: each round's acknowledgements of the storm, the probe's p50/p99/max beside the bound (p99 <= 300
ms, none over 1 s), time until the last final report, and the memory of the bot with its check workers
(that the requests share one check, one WinRM script per sensor, is `tests/reliability/test_load.py`'s).
Exits 1 when a bound is missed. `--quick` (100 sensors, 20 requests, one round per mode) is CI's: its
bounds are 10 x the real ones, so it fails on a regression of an order of magnitude, not on a noisy
machine.

    .venv/bin/python bench/bench_load.py [--sensors 500] [--requests 50] [--rounds 2] [--latency-ms 0]
        [--modes socket,http] [--worker-processes 1] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_ack import percentile  # bench/ is on the path of a script run from it
from bench_sensors import PASSWORD_ENV, bot_config, start_lab

from lab.load import AckProbe, BotProcess, status_storm
from lab.slack import SlackEmulator

WINRM_PASSWORD = "Bench-W1nRM-secret"
P99_BOUND_MS = 300.0
MAX_BOUND_MS = 1000.0
QUICK_FACTOR = 10.0
IDLE_PROBE_SECONDS = 3.0


@dataclass(frozen=True)
class Bounds:
    p99_ms: float
    max_ms: float


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def spread(seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    if not ms:
        return "none measured"
    return f"{statistics.median(ms):.0f} / {percentile(ms, 0.99):.0f} / {max(ms):.0f} ms"


def within(seconds: list[float], bounds: Bounds) -> bool:
    ms = [s * 1000 for s in seconds]
    return bool(ms) and percentile(ms, 0.99) <= bounds.p99_ms and max(ms) <= bounds.max_ms


def storms(
    args: argparse.Namespace, mode: str, slack: SlackEmulator, bot: BotProcess
) -> tuple[list[float], list[float], int]:
    """The idle baseline, then each round's storm with the probe; what the probe measured in all rounds."""
    print(
        f"\n{mode}: {args.sensors} sensors, {args.latency_ms} ms per WinRM round trip, "
        f"{args.requests} concurrent `/atp status` per round, "
        f"worker_processes = {args.worker_processes}"
    )
    with AckProbe(slack) as idle:
        time.sleep(IDLE_PROBE_SECONDS)
    baseline = idle.result()
    print(f"idle bot ({mib(bot.memory().rss_kib)}), p50 / p99 / max:")
    print(
        f"  /atp help ack {spread(baseline.help_acks)}; "
        f"/atp password views.open {spread(baseline.password_opens)}"
    )
    print(
        "| round | status acks p50 / p99 / max (late) | /atp help ack | /atp password views.open | "
        "last final report | bot + workers RSS |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    probed_help: list[float] = []
    probed_open: list[float] = []
    failures = 0
    for round_ in range(1, args.rounds + 1):
        with AckProbe(slack) as probe:
            result = status_storm(slack, args.requests)
        probed = probe.result()
        probed_help += probed.help_acks
        probed_open += probed.password_opens
        failures += probed.password_failures
        missing = args.requests - len(result.final_texts)
        print(
            f"| {round_} | {spread(result.ack_seconds)} ({result.late}) | "
            f"{spread(probed.help_acks)} | {spread(probed.password_opens)} | "
            f"{result.seconds_to_last_report:.1f} s"
            + (f" ({missing} never)" if missing else "")
            + f" | {mib(bot.memory().rss_kib)} |"
        )
    print(f"peak memory of the bot and its workers: {mib(bot.memory().peak_kib)}")
    return probed_help, probed_open, failures


def run_mode(args: argparse.Namespace, mode: str, bounds: Bounds) -> bool:
    os.environ[PASSWORD_ENV] = WINRM_PASSWORD  # the lab reads it
    with tempfile.TemporaryDirectory() as tmp, SlackEmulator() as slack:
        lab, snippet = start_lab(args.sensors, args.latency_ms, Path(tmp))
        try:
            config = bot_config(snippet, Path(tmp) / "state", slack)
            config["slack"]["mode"] = mode
            if mode == "http":
                config["slack"]["listen"] = "127.0.0.1:0"
            config["sensor_checks"] = {"worker_processes": args.worker_processes}
            with BotProcess(Path(tmp), config, slack, {PASSWORD_ENV: WINRM_PASSWORD}) as bot:
                probed = storms(args, mode, slack, bot)
        finally:
            lab.terminate()
            lab.wait(timeout=30)
    probed_help, probed_open, failures = probed
    ok = within(probed_help, bounds) and within(probed_open, bounds) and failures == 0
    verdict = "ok" if ok else "MISSED"
    print(
        f"under load, all rounds: /atp help {spread(probed_help)}, views.open {spread(probed_open)}"
        f" ({failures} modal(s) never opened); bound p99 <= {bounds.p99_ms:.0f} ms, "
        f"max <= {bounds.max_ms:.0f} ms: {verdict}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=500)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--modes", default="socket,http")
    parser.add_argument("--worker-processes", type=int, default=1)
    parser.add_argument(
        "--quick", action="store_true", help="CI: 100 sensors, 20 requests, 1 round, bounds x 10"
    )
    args = parser.parse_args()
    bounds = Bounds(P99_BOUND_MS, MAX_BOUND_MS)
    if args.quick:
        args.sensors, args.requests, args.rounds = 100, 20, 1
        bounds = Bounds(P99_BOUND_MS * QUICK_FACTOR, MAX_BOUND_MS * QUICK_FACTOR)
    results = [run_mode(args, mode, bounds) for mode in args.modes.split(",")]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
