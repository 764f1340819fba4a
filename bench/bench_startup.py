"""Start-up benchmark (a plain script: `python bench/bench_startup.py [--runs N] [--quick]`).

Whole processes, run interleaved so that the machine's load weighs on each the same: a bare
`python -c pass`, the baseline `python -c "import ldap3"`, `atp-bot --help`, and `atp-bot health` against
a configuration whose listen address has nothing listening (it exits 3 at once). Prints the median wall
time and the peak RSS of each (from `os.wait4`, per process) beside issue 17's bounds: at most 3 x the
ldap3 baseline and under 40 MiB. Exits 1 when a bound is missed. `--quick` (3 runs) is for CI.
`--before DIR` also runs both atp-bot commands from another source tree (e.g. `git archive` of an older
commit unpacked in DIR, put first on PYTHONPATH), interleaved with the rest, for a before/after table.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TIME_FACTOR = 3.0  # times the ldap3 baseline
RSS_BOUND_MIB = 40.0
BASELINE = "python -c 'import ldap3'"
# A configuration every version validates (older ones validated the whole file for `health`).
ACCOUNT = '[[accounts]]\nid = "contoso"\nusername = "CONTOSO\\\\svc"\ndomain_controllers = ["ldaps://dc1"]\n'


@dataclass
class Runs:
    argv: list[str]
    expected_exit: int
    bounded: bool
    env: dict[str, str] | None = None
    seconds: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)


def run_once(runs: Runs) -> None:
    started = time.perf_counter()
    process = subprocess.Popen(runs.argv, env=runs.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(process.pid, 0)
    runs.seconds.append(time.perf_counter() - started)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != runs.expected_exit:
        raise SystemExit(f"{' '.join(runs.argv)}: exit {process.returncode}, expected {runs.expected_exit}")
    runs.rss_mib.append(usage.ru_maxrss / 1024)  # KiB on Linux


def unused_port() -> int:
    """A loopback port with nothing listening (bound, then closed): the probe is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def commands(config: Path, before: Path | None) -> dict[str, Runs]:
    python = sys.executable
    atp_bot = str(Path(python).with_name("atp-bot"))
    help_argv = [atp_bot, "--help"]
    health_argv = [atp_bot, "--config", str(config), "health", "--timeout", "2"]
    measured = {
        "python -c pass": Runs([python, "-c", "pass"], 0, bounded=False),
        BASELINE: Runs([python, "-c", "import ldap3"], 0, bounded=False),
        "atp-bot --help": Runs(help_argv, 0, bounded=True),
        "atp-bot health": Runs(health_argv, 3, bounded=True),
    }
    if before is not None:
        env = {**os.environ, "PYTHONPATH": str(before)}  # its bot, commands and lab packages
        measured["before: atp-bot --help"] = Runs(help_argv, 0, bounded=False, env=env)
        measured["before: atp-bot health"] = Runs(health_argv, 3, bounded=False, env=env)
    return measured


def report(measured: dict[str, Runs]) -> bool:
    time_bound = TIME_FACTOR * statistics.median(measured[BASELINE].seconds)
    print(f"{'command':<28} {'median wall':>12} {'peak RSS':>10}   bound")
    met = True
    for name, runs in measured.items():
        median, peak = statistics.median(runs.seconds), max(runs.rss_mib)
        line = f"{name:<28} {median:>10.3f} s {peak:>6.1f} MiB"
        if runs.bounded:
            ok = median <= time_bound and peak < RSS_BOUND_MIB
            met &= ok
            verdict = "ok" if ok else "MISSED"
            line += f"   <= {time_bound:.3f} s (3 x ldap3), < {RSS_BOUND_MIB:.0f} MiB: {verdict}"
        print(line)
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (default 15)")
    parser.add_argument("--quick", action="store_true", help="3 runs each, for CI")
    parser.add_argument("--before", type=Path, metavar="DIR", help="an older source tree to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        config = Path(workdir, "atp-bot.toml")
        listen = f'[observability]\nlisten = "127.0.0.1:{unused_port()}"\n'
        config.write_text(ACCOUNT + listen, encoding="utf-8")
        measured = commands(config, args.before)
        for _ in range(3 if args.quick else args.runs):
            for runs in measured.values():
                run_once(runs)
    return 0 if report(measured) else 1


if __name__ == "__main__":
    sys.exit(main())
