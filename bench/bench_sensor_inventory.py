"""Benchmark of `atp-bot sensors` over a large fleet (`python bench/bench_sensor_inventory.py`).

2 000 sensors in the Graph emulator (HTTPS on loopback, the real MSAL token flow), served 100 per page
(20 pages of `/security/identities/sensors`, plus the open health issues), listed by the real
`atp-bot sensors --json` in a child process. Reported: wall time of the whole command, the child's peak
RSS and CPU time (median/maximum of the runs); the time of `atp-bot --version` (interpreter start and
imports, the part that does not depend on the fleet); and the listing alone in this process (sign-in,
20 pages, health issues, merge, JSON). Exits 1 when the whole command's median misses issue 14's bounds (under
5 s and 150 MiB). `--quick` (one run of each, still 2 000 sensors over 20 pages, seconds) is for CI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bot.config import load_settings
from bot.fleet import GraphFleet, build_rows, merge_fleet
from lab.graph import CREDENTIALS_ISSUE, GraphEmulator

SECRET_ENV = "ATP_BOT_BENCH_GRAPH_SECRET"
TIME_BOUND_SECONDS = 5.0
RSS_BOUND_MIB = 150.0
ACCOUNT = (
    '[[accounts]]\nid = "contoso"\nusername = "svc@contoso.test"\ndomain_controllers = ["ldaps://dc1"]\n'
)


def populate(graph: GraphEmulator, count: int) -> None:
    """A mixed fleet: a third unified, a tenth not healthy, one in fifty with an open health issue."""
    for i in range(count):
        name = f"dc{i:04d}"
        unhealthy = i % 10 == 0
        graph.add_sensor(
            name,
            version="3.0.1234.0" if i % 3 == 0 else "2.250.18972.56743",
            health_status="notHealthyMedium" if unhealthy else "healthy",
            deployment_status="startFailure" if unhealthy else "upToDate",
            open_issues=1 if i % 50 == 0 else 0,
        )
        if i % 50 == 0:
            graph.add_issue(CREDENTIALS_ISSUE, sensors=(f"{name}.contoso.test",))


def config_for(graph: GraphEmulator, workdir: Path) -> Path:
    path = workdir / "atp-bot.toml"
    path.write_text(
        f'state_dir = "{workdir / "state"}"\n' + ACCOUNT + "[graph]\ndiscover_sensors = true\n"
        f'tenant_id = "{graph.tenant_id}"\nclient_id = "{graph.client_id}"\n'
        f'client_secret_env = "{SECRET_ENV}"\nauthority_url = "{graph.authority_url}"\n'
        f'graph_url = "{graph.graph_url}"\nca_file = "{graph.tls.ca_file}"\n',
        encoding="utf-8",
    )
    return path


def run_once(config: Path, env: dict[str, str]) -> tuple[float, float, int, float]:
    """Wall seconds, peak RSS in MiB, the number of rows printed, and the child's CPU seconds (user and
    system: what the command itself costs, whatever else the machine is doing)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "bot", "--config", str(config), "sensors", "--json"],
        stdout=subprocess.PIPE,
        env=env,
    )
    out = child.stdout.read() if child.stdout else b""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if child.returncode not in (0, 1):
        raise SystemExit(f"atp-bot sensors exited {child.returncode}")
    return elapsed, usage.ru_maxrss / 1024, len(json.loads(out)), usage.ru_utime + usage.ru_stime


def startup_seconds(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bot", "--version"], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def listing_seconds(config: Path, env: dict[str, str]) -> float:
    """The listing without the interpreter start: a fresh source (no cache), rows, JSON."""
    os.environ[SECRET_ENV] = env[SECRET_ENV]
    settings = load_settings(config)
    started = time.perf_counter()
    graph, error = GraphFleet(settings).sensors()
    if error:
        raise SystemExit(error)
    json.dumps([r.model_dump(mode="json") for r in build_rows(merge_fleet(settings, graph))])
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=2000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one run of each, for CI")
    args = parser.parse_args()
    runs_of_each = 1 if args.quick else args.runs
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with GraphEmulator(workdir / "graph", page_size=args.page_size) as graph:
            populate(graph, args.sensors)
            env = {**os.environ, SECRET_ENV: graph.client_secret}
            env.pop("ATP_BOT_CONFIG", None)
            config = config_for(graph, workdir)
            runs = [run_once(config, env) for _ in range(runs_of_each)]
            pages = sum(1 for r in graph.records if r.path.endswith("/sensors")) // runs_of_each
            startup = statistics.median(startup_seconds(env) for _ in range(runs_of_each))
            listing = statistics.median(listing_seconds(config, env) for _ in range(runs_of_each))
    for elapsed, rss, rows, cpu in runs:
        print(f"run: {elapsed:.2f} s (CPU {cpu:.2f} s), peak RSS {rss:.1f} MiB, {rows} rows")
    median, slowest = statistics.median(r[0] for r in runs), max(r[0] for r in runs)
    peak = max(r[1] for r in runs)
    met = median < TIME_BOUND_SECONDS and peak < RSS_BOUND_MIB
    print(
        f"{args.sensors} sensors over {pages} pages: median {median:.2f} s, max {slowest:.2f} s; "
        f"peak RSS max {peak:.1f} MiB (bounds < {TIME_BOUND_SECONDS:g} s, < {RSS_BOUND_MIB:g} MiB: "
        f"{'met' if met else 'MISSED'})"
    )
    print(f"CPU time of the command: median {statistics.median(r[3] for r in runs):.2f} s")
    print(f"of which interpreter start and imports (atp-bot --version): median {startup:.2f} s")
    print(f"the listing alone, in process: median {listing:.2f} s")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
