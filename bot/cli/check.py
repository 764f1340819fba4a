"""`atp-bot check`: check every sensor (services, credential errors in the log) over WinRM."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from bot.cli import context
from bot.cli.output import raw
from bot.config.core import ConfigError, UsageError
from bot.infra.controls import escape_controls
from bot.infra.exitcodes import ExitCode

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.graph import GraphSensor
    from bot.sensors import SensorResult


PATIENCE_SECONDS = 3.0  # after this long, the progress line names the sensors still pending
TICK_SECONDS = 1.0
UNIFIED_SENSOR = "SenseIdentity running (unified sensor: no directory service account)"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "check", help="check the sensors: services running, credential errors in their error log"
    )
    parser.add_argument(
        "--sensor", action="append", metavar="NAME", help="check only this sensor (repeatable; default: all)"
    )
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="look for credential errors since this ISO 8601 time with a zone, e.g. 2026-01-31T08:00:00Z "
        "(default: sensor_checks.default_window_minutes ago)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON list (one object per sensor)")
    parser.set_defaults(handler=run)


def parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError([f"--since: not an ISO 8601 time: {value!r}"]) from None
    if when.tzinfo is None:
        raise UsageError([f"--since: add a time zone (e.g. Z or +01:00): {value!r}"])
    return when


def has_problem(result: SensorResult) -> bool:
    """It answered with a problem, or answered by refusing atp-bot's WinRM credential."""
    return result.access_denied or (result.reachable and not result.healthy)


def exit_code(results: Sequence[SensorResult]) -> ExitCode:
    """1 if any sensor has a problem, a refused WinRM credential included (even if others could not be
    checked: a script looking for 1 must not miss a credential error), else 3 if any could not be
    checked, else 0."""
    if any(has_problem(r) for r in results):
        return ExitCode.PROBLEM
    if any(not r.reachable for r in results):
        return ExitCode.UNREACHABLE
    return ExitCode.OK


def state_word(result: SensorResult) -> str:
    if result.access_denied:
        return "access denied"
    return "unreachable" if not result.reachable else "ok" if result.healthy else "problem"


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set to anything (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


STATUS_COLOURS = {
    "ok": "32",
    "PROBLEM": "31",
    "ACCESS DENIED": "31",
    "UNREACHABLE": "33",
}  # green, red, yellow


def _errors_cell(result: SensorResult) -> str:
    errors = result.credential_errors
    if result.log_error:
        return f"log: {result.log_error}"
    if errors is None:
        return "-"
    if not errors.count:
        return "0"
    last = errors.last.strftime("%Y-%m-%d %H:%M:%SZ") if errors.last else "time unknown"
    return f"{errors.count} (last {last})"


def render_table(results: Sequence[SensorResult], *, colour: bool = False) -> str:
    rows = [("SENSOR", "STATUS", "SERVICES", "CREDENTIAL ERRORS", "DURATION")]
    for r in results:
        if r.failure:
            status = "ACCESS DENIED" if r.access_denied else "UNREACHABLE"
            services = f"{r.failure.kind}: {r.failure.detail}"
            errors = "-"
        elif r.generation == "3":
            status, services, errors = "ok", UNIFIED_SENSOR, "-"
        else:
            status = "ok" if r.healthy else "PROBLEM"
            services = ", ".join(f"{s.name} {s.state}" for s in r.services)
            errors = _errors_cell(r)
        name, services, errors = (escape_controls(text) for text in (r.name, services, errors))
        rows.append((name, status, services, errors, f"{r.duration:.2f}s"))  # printed with colours unescaped
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]

    def cell(row_number: int, column: int, text: str) -> str:
        padded = text.ljust(widths[column])
        code = STATUS_COLOURS.get(text) if colour and column == 1 and row_number else None
        return f"\x1b[{code}m{text}\x1b[0m{padded[len(text) :]}" if code else padded

    lines = [
        "  ".join(cell(n, i, text) for i, text in enumerate(row[:-1])) + "  " + row[-1]
        for n, row in enumerate(rows)
    ]
    return "\n".join(line.rstrip() for line in lines)


def problem_lines(results: Sequence[SensorResult]) -> list[str]:
    """Every problem, one line each, the sensors that could not be checked included."""
    lines = []
    for r in results:
        if r.access_denied and r.failure:
            lines.append(f"{r.name}: the host refused atp-bot's WinRM credential: {r.failure.detail}")
        elif r.failure:
            lines.append(f"{r.name}: not checked: {r.failure.kind}: {r.failure.detail}")
        lines.extend(f"{r.name}: {problem}" for problem in r.problems)
    return lines


def summary_line(results: Sequence[SensorResult]) -> str:
    """`48 of 50 ok (1 with a problem, 1 unreachable)`."""
    healthy = sum(r.healthy for r in results)
    problems = sum(has_problem(r) for r in results)
    unreachable = sum(not r.reachable and not r.access_denied for r in results)
    parts = (
        [f"{problems} with a problem" if problems == 1 else f"{problems} with problems"] if problems else []
    )
    parts += [f"{unreachable} unreachable"] if unreachable else []
    return f"{healthy} of {len(results)} ok" + (f" ({', '.join(parts)})" if parts else "")


def print_report(results: Sequence[SensorResult]) -> None:
    """The table, the problems, and the count, once."""
    colour = use_colour(sys.stdout)
    print(render_table(results, colour=colour), file=raw(sys.stdout) if colour else sys.stdout)
    for line in problem_lines(results):
        print(line)
    print(summary_line(results))


class LiveProgress:
    """`[49/50] dc49: ok` on a terminal, redrawn in place; once the wait exceeds `patience` seconds it names
    the sensors still pending and for how long, so a person knows what is being waited for."""

    def __init__(self, names: Sequence[str], stream: TextIO, *, patience: float = PATIENCE_SECONDS) -> None:
        self._pending = list(dict.fromkeys(names))
        self._total = len(self._pending)
        self._done = 0
        self._last = "starting"
        self._stream = raw(stream)  # its own terminal controls; the sensor names are escaped in _draw
        self._patience = patience
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="atp-bot-progress", daemon=True)

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        """Stop redrawing and clear the line (the final report follows on stdout)."""
        self._stop.set()
        self._ticker.join()
        self._stream.write("\r\x1b[K")
        self._stream.flush()

    def __enter__(self) -> LiveProgress:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, result: SensorResult) -> None:
        with self._lock:
            if result.name in self._pending:
                self._pending.remove(result.name)
            self._done += 1
            self._last = f"{result.name}: {state_word(result)}"
            self._draw()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            with self._lock:
                self._draw()

    def _draw(self) -> None:
        line = f"[{self._done}/{self._total}] {self._last}"
        waited = time.monotonic() - self._started
        if self._pending and waited >= self._patience:
            shown = ", ".join(self._pending[:3])
            more = f" and {len(self._pending) - 3} more" if len(self._pending) > 3 else ""
            line += f"; waiting for {shown}{more} ({waited:.0f} s)"
        self._stream.write(f"\r{escape_controls(line)}\x1b[K")
        self._stream.flush()


def run(args: argparse.Namespace) -> int:
    from bot.fleet import GraphFleet, checked_fleet, merge_fleet
    from bot.sensors import check_sensors

    settings = context.load(args, contacts_sensors=True)
    since = parse_since(args.since)
    graph, graph_error = GraphFleet(settings).sensors()
    checked = checked_fleet(settings, merge_fleet(settings, graph))
    if not checked.sensors:
        raise ConfigError(["no [[sensors]] are configured"])
    names = args.sensor or [s.name for s in checked.sensors]
    if sys.stderr.isatty():
        with LiveProgress(names, sys.stderr) as progress:
            results = check_sensors(checked, args.sensor, since=since, on_result=progress.add)
    else:
        results = check_sensors(checked, args.sensor, since=since)
    if settings.graph.discover_sensors:
        return _print_with_graph(settings, results, graph, graph_error, args.json, everyone=not args.sensor)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        print_report(results)
    return exit_code(results)


def _print_with_graph(
    settings: Settings,
    results: Sequence[SensorResult],
    graph: Sequence[GraphSensor],
    graph_error: str | None,
    as_json: bool,
    *,
    everyone: bool,
) -> int:
    """The WinRM results beside Graph's health, deployment status and open issues of each sensor. For the
    whole fleet (`everyone`), Graph's sensors that no WinRM check reaches count too, on Graph's word."""
    from bot.fleet import fleet_exit_code, graph_unread, rows_for_results, unchecked_rows

    rows = rows_for_results(settings, results, graph)
    unchecked = unchecked_rows(settings, graph) if everyone else []
    if graph_error is not None:
        print(f"atp-bot: {graph_unread(graph_error)}", file=sys.stderr)
    if as_json:
        graph_fields = ("generation", "uses_dsa", "health_status", "deployment_status", "open_health_issues")
        extra = [row.model_dump(include={*graph_fields, "verdict"}) for row in rows]
        print(json.dumps([r.to_json() | e for r, e in zip(results, extra, strict=True)], indent=2))
    else:
        print(render_table(results))
        for row in rows:
            for problem in row.problems:
                print(f"{row.name}: {problem}")
    for row in unchecked:
        for problem in row.problems:
            print(
                f"{row.name}: {problem} (Graph; not checked over WinRM)",
                file=sys.stderr if as_json else sys.stdout,
            )
    return fleet_exit_code([*rows, *unchecked], graph_error)
