"""A large fleet at a realistic latency through `atp-bot run` and its check worker processes (issue 17,
item 4).

N emulated sensors (`atp-bot lab winrm`, its own process) answer each WinRM round trip after
`--latency-ms`; the bot (its own process, Socket Mode, `[sensor_checks] pool_size`, one worker process) is
asked `/atp status` once and the time until the final report is measured against the ideal for the pool,
ceil(N / pool) x one check of one sensor alone (measured in the same invocation). Also reported: the peak
memory of the bot with its workers, and CPU seconds per sensor check (bot and workers, from /proc).
Bounds: wall time <= 1.2 x ideal, memory < 200 MiB. Exits 1 when one is missed. `--quick` (CI: 100 sensors,
200 ms, about 15 s) fails only on a gross regression: ratio <= 2.5, memory < 2 GiB.

    .venv/bin/python bench/bench_fleet.py [--sensors 2000] [--latency-ms 200] [--pool 32] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench_sensors import (  # bench/ is on the script's path
    PASSWORD_ENV,
    bot_config,
    settings_for,
    start_lab,
    timed,
)

from lab.load import BotProcess, status_storm
from lab.slack import SlackEmulator

PASSWORD = "Bench-fleet-W1nRM"
RATIO_BOUND, RSS_BOUND_MIB = 1.2, 200.0
QUICK_RATIO_BOUND, QUICK_RSS_BOUND_MIB = 2.5, 2048.0
START_SECONDS = 180  # the bot validates and logs thousands of [[sensors]] before it connects


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--pool", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="CI: 100 sensors at 200 ms, gross bounds")
    args = parser.parse_args()
    ratio_bound, rss_bound = RATIO_BOUND, RSS_BOUND_MIB
    if args.quick:
        args.sensors = 100
        ratio_bound, rss_bound = QUICK_RATIO_BOUND, QUICK_RSS_BOUND_MIB
    with tempfile.TemporaryDirectory() as tmp, SlackEmulator() as slack:
        env = {PASSWORD_ENV: PASSWORD}
        os.environ.update(env)  # the lab and the one-sensor baseline read it
        lab, snippet = start_lab(args.sensors, args.latency_ms, Path(tmp))
        try:
            one = statistics.median(timed(settings_for(snippet, 1), ["sensor000"]) for _ in range(5))
            config = bot_config(snippet, Path(tmp) / "state", slack)
            config["sensor_checks"] = {"pool_size": args.pool, "worker_processes": 1}
            bot = BotProcess(Path(tmp), config, slack, env).start(timeout=START_SECONDS)
            try:
                idle_kib, cpu_before = bot.memory().rss_kib, bot.cpu_seconds()
                result = status_storm(slack, 1, timeout=3600)
                cpu = bot.cpu_seconds() - cpu_before
                peak_kib = bot.memory().peak_kib
            finally:
                bot.stop()
        finally:
            lab.terminate()
            lab.wait(timeout=30)
    final = next(iter(result.final_texts.values()), "no final report")
    if f"All {args.sensors} sensor(s) are running" not in final:
        print(f"the report was not complete and healthy: {final.splitlines()[:2]}", file=sys.stderr)
        return 1
    wall = result.seconds_to_last_report
    ideal = math.ceil(args.sensors / args.pool) * one
    peak = peak_kib / 1024
    ok = wall <= ratio_bound * ideal and peak < rss_bound
    print(
        f"{args.sensors} sensors, {args.latency_ms} ms per WinRM round trip, pool {args.pool}, "
        "1 worker process"
    )
    print(f"one check of one sensor alone (median of 5): {one:.2f} s")
    print("| figure | measured | bound |")
    print("| --- | --- | --- |")
    print(f"| `/atp status` until the final report | {wall:.1f} s | |")
    print(f"| ideal ceil(n/pool) x one check | {ideal:.1f} s | |")
    print(f"| ratio | {wall / ideal:.2f} | <= {ratio_bound} |")
    print(
        f"| bot + workers memory, idle / peak | {idle_kib / 1024:.0f} / {peak:.0f} MiB "
        f"| < {rss_bound:.0f} MiB |"
    )
    print(f"| CPU per sensor check (bot + workers) | {cpu / args.sensors * 1000:.1f} ms | |")
    print("ok" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
