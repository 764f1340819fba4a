"""Benchmarks for the sensor checks (a plain script: `python bench/bench_sensors.py`).

(a) Fan-out: 200 emulated sensors, each WinRM round trip delayed by 200 ms, checked with the bounded
    pool, against the ideal ceil(200/pool) x one check and against a sequential loop (pool of 1).
    The emulator runs in its own process (`atp-bot lab winrm`), so client and peer do not share a GIL.
(b) Incremental scan: the same new lines appended to a 1 MB and a 1 GB error log; time and log bytes
    read per check. The 1 GB log is virtual: the emulator computes its old filler lines on demand, so
    nothing is allocated; reads of it are counted like reads of a real file.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bot.config import Settings, parse_settings
from bot.sensors import LogPosition, check_sensors
from lab.winrm.model import Host, log_line
from lab.winrm.server import WinRMEmulator

USERNAME = "CONTOSO\\atp-checker"
PASSWORD_ENV = "ATP_BOT_BENCH_WINRM_PASSWORD"
ACCOUNT = '[[accounts]]\nid = "contoso"\nusername = "CONTOSO\\\\svc"\ndomain_controllers = ["ldaps://dc1"]\n'


def settings_for(snippet: str, pool: int, timeout: float = 120) -> Settings:
    checks = f"\n[sensor_checks]\npool_size = {pool}\nhost_timeout = {timeout}\n"
    return parse_settings(ACCOUNT + checks + snippet)


def start_lab(count: int, latency_ms: int, workdir: Path) -> tuple[subprocess.Popen[str], str]:
    hosts = workdir / "hosts.toml"
    lines = [f'username = "{USERNAME.replace(chr(92), chr(92) * 2)}"', f'password_env = "{PASSWORD_ENV}"']
    for i in range(count):
        lines += ["[[hosts]]", f'name = "sensor{i:03d}"', f"latency_ms = {latency_ms}"]
    hosts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    lab = subprocess.Popen(
        [sys.executable, "-m", "bot", "lab", "winrm", "--hosts", str(hosts)],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    assert lab.stdout is not None
    snippet = []
    for line in lab.stdout:
        if line.startswith("# serving"):
            break
        if not line.startswith("#"):
            snippet.append(line)
    return lab, "".join(snippet)


def timed(settings: Settings, names: list[str] | None = None) -> float:
    started = time.perf_counter()
    results = check_sensors(settings, names)
    elapsed = time.perf_counter() - started
    bad = [r.name for r in results if not r.healthy]
    if bad:
        raise SystemExit(f"unexpected unhealthy sensors: {bad[:5]}")
    return elapsed


def fan_out(count: int, latency_ms: int, pools: list[int], sequential: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lab, snippet = start_lab(count, latency_ms, Path(tmp))
        try:
            one = statistics.median(timed(settings_for(snippet, 1), ["sensor000"]) for _ in range(5))
            print(f"(a) {count} sensors, {latency_ms} ms per WinRM round trip (NTLM over HTTP, sealed)")
            print(f"    one check, one sensor (median of 5): {one:.2f} s")
            print("    | pool | wall time | ideal ceil(n/pool) x one | ratio |")
            for pool in pools:
                wall = timed(settings_for(snippet, pool))
                ideal = math.ceil(count / pool) * one
                print(f"    | {pool:4d} | {wall:8.2f} s | {ideal:23.2f} s | {wall / ideal:5.2f} |")
            names = [f"sensor{i:03d}" for i in range(sequential)]
            seq = timed(settings_for(snippet, 1), names)
            print(f"    sequential loop (pool 1) over {sequential} sensors: {seq:.2f} s", end="")
            print(
                f" (x{count / sequential:.0f} = {seq * count / sequential:.1f} s for {count})"
                if sequential < count
                else ""
            )
        finally:
            lab.terminate()
            lab.wait(timeout=30)


def incremental(sizes: list[int], new_lines: int) -> None:
    print(f"(b) incremental scan, {new_lines} new lines appended (virtual filler log, in-process emulator)")
    print("    | log size | first check (time window) | incremental check | log bytes read | WinRM bytes |")
    with WinRMEmulator(username=USERNAME, password=os.environ[PASSWORD_ENV]) as emulator:
        for size in sizes:
            host = Host.sensor(f"log{size}", filler_bytes=size)
            endpoint = emulator.add_host(host)
            settings = settings_for(
                f'[winrm]\nusername = "CONTOSO\\\\atp-checker"\npassword_env = "{PASSWORD_ENV}"\n'
                f'[[sensors]]\nname = "{host.name}"\nendpoint = "{endpoint}"\n',
                1,
            )
            started = time.perf_counter()
            (first,) = check_sensors(settings)
            first_time, first_read = time.perf_counter() - started, host.counters.log_bytes_read
            host.append_log(
                *[
                    log_line(datetime.now(UTC), f"entry {i} The supplied credential is invalid.")
                    for i in range(new_lines)
                ]
            )
            assert first.position is not None
            position = LogPosition.from_json(first.position.to_json())
            read, wire = host.counters.log_bytes_read, host.counters.wire_in + host.counters.wire_out
            started = time.perf_counter()
            (second,) = check_sensors(settings, positions={host.name: position})
            elapsed = time.perf_counter() - started
            assert second.credential_errors is not None
            assert second.credential_errors.count == new_lines
            read = host.counters.log_bytes_read - read
            wire = host.counters.wire_in + host.counters.wire_out - wire
            label = f"{size / 2**20:.0f} MB" if size < 2**30 else f"{size / 2**30:.0f} GB"
            print(
                f"    | {label:>8} | {first_time:6.2f} s, {first_read:7d} B read | {elapsed:15.2f} s | "
                f"{read:14d} | {wire:11d} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sensors", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--pools", default="32,64", help="pool sizes to try (comma separated)")
    parser.add_argument("--sequential", type=int, default=200, help="sensors in the sequential loop")
    parser.add_argument("--skip-fanout", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault(PASSWORD_ENV, "bench-password")
    if not args.skip_fanout:
        pools = [int(p) for p in re.split(r"[, ]+", args.pools) if p]
        fan_out(args.sensors, args.latency_ms, pools, min(args.sequential, args.sensors))
    incremental([1 << 20, 1 << 30], new_lines=10)


if __name__ == "__main__":
    main()
