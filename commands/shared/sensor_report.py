"""Sensor check results as Slack shows them (pure), and a message that updates in place as they arrive.

Shared by `/atp password` (the threaded follow-up checks) and `/atp status`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from slack_sdk import WebClient

from bot.sensors import SensorResult
from bot.slack.text import code_span, escape, inline
from bot.slack.views import section

SECTION_LIMIT = 2900  # Slack allows 3000 characters in a section's text
MAX_SECTIONS = 40  # of Slack's 50 blocks per message


NOT_USING_DSA = "unified sensor: does not use the directory service account"


def sensor_line(result: SensorResult) -> str:
    """One sensor's line; everything the sensor said (states, errors, log lines) is escaped."""
    if result.failure is not None:
        failure = f"{result.failure.kind}: {inline(result.failure.detail)}"
        return f":warning: *{result.name}*: not checked ({failure})"
    if result.generation == "3":
        return f":white_check_mark: *{result.name}*: {NOT_USING_DSA} (SenseIdentity running)"
    if result.healthy:
        services = ", ".join(f"{s.name} {inline(s.state)}" for s in result.services) or "no services"
        return f":white_check_mark: *{result.name}*: {services}; no credential errors"
    problems = [inline(problem) for problem in result.problems]
    errors = result.credential_errors
    if errors and errors.count and errors.sample:
        problems.append(f"e.g. {code_span(errors.sample, 200)}")
    return f":x: *{result.name}*: " + "; ".join(problems)


def summary(results: Sequence[SensorResult], total: int) -> str:
    if len(results) < total:
        return f":hourglass_flowing_sand: Checking {total} sensor(s)… {len(results)} of {total} answered."
    attention = [r.name for r in results if not r.healthy]
    if not attention:
        return f":white_check_mark: All {total} sensor(s) are running and show no credential errors."
    names = ", ".join(attention[:20]) + (f" and {len(attention) - 20} more" if len(attention) > 20 else "")
    return f":rotating_light: {len(attention)} of {total} sensor(s) need attention: {names}."


def report(heading: str, results: Sequence[SensorResult], total: int) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and blocks: the heading, problems first, then healthy sensors, within Slack's limits."""
    ordered = sorted(results, key=lambda r: r.healthy)
    chunks: list[str] = []
    for line in (sensor_line(r) for r in ordered):
        if chunks and len(chunks[-1]) + len(line) + 1 <= SECTION_LIMIT:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line[:SECTION_LIMIT])
    hidden = max(0, len(chunks) - MAX_SECTIONS)
    text = f"{heading}\n{summary(results, total)}"
    blocks = [
        section(heading),
        *(section(c) for c in chunks[:MAX_SECTIONS]),
        section(summary(results, total)),
    ]
    if hidden:
        blocks.insert(-1, section(f"…and {hidden} more section(s) of healthy sensors."))
    return text, blocks


class LiveReport:
    """One Slack message showing sensor checks, updated in place (at most once per `interval` seconds
    until the last result), so hundreds of sensors do not exhaust chat.update's rate limit."""

    def __init__(
        self,
        post: Callable[[str, list[dict[str, Any]]], str],
        update: Callable[[str, str, list[dict[str, Any]]], None],
        heading: str,
        total: int,
        interval: float = 1.0,
    ) -> None:
        self._update = update
        self._heading = heading
        self._total = total
        self._interval = interval
        self._results: list[SensorResult] = []
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self.ts = post(*report(heading, [], total))

    def add(self, result: SensorResult) -> None:
        """Record one result; refresh the message unless it was refreshed less than `interval` ago."""
        with self._lock:
            self._results.append(result)
            if time.monotonic() - self._last < self._interval:
                return
            self._last = time.monotonic()
            text, blocks = report(self._heading, self._results, self._total)
        self._update(self.ts, text, blocks)

    def finish(self, results: Sequence[SensorResult]) -> None:
        """Show every result and the summary (always sent)."""
        with self._lock:
            self._results = list(results)
            text, blocks = report(self._heading, self._results, self._total)
        self._update(self.ts, text, blocks)

    def note(self, text: str) -> None:
        """A line under the heading (escaped: it may name sensors as Graph spells them)."""
        with self._lock:
            self._heading = f"{self._heading}\n{escape(text)}"
            text, blocks = report(self._heading, self._results, self._total)
        self._update(self.ts, text, blocks)

    def fail(self, problem: str) -> None:
        """The checks could not run at all: say why instead of the results."""
        text = f"{self._heading}\n:warning: The sensors could not be checked: {escape(problem)}"
        self._update(self.ts, text, [section(text)])


def thread_report(
    client: WebClient, channel: str, thread_ts: str | None, heading: str, total: int
) -> LiveReport:
    """A LiveReport posted as a channel message (in a thread when `thread_ts` is given)."""

    def post(text: str, blocks: list[dict[str, Any]]) -> str:
        return str(
            client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text, blocks=blocks)["ts"]
        )

    def update(ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    return LiveReport(post, update, heading, total)
