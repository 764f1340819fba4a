"""Sensor check results as Slack shows them (pure), and a message that updates in place as they arrive.

Shared by `/atp password` (the threaded follow-up checks) and `/atp status`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from slack_sdk import WebClient

from bot.sensors import SensorResult
from bot.slack.text import code_span, escape, inline
from bot.slack.views import section

log = logging.getLogger(__name__)

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
    """Fallback text and blocks: the heading, problems first, then healthy sensors, within Slack's limits.

    Fifty requesters following one shared check show the same results: it is rendered once for all of
    them (500 sensors take 13 ms to render; fifty renders at each refresh held the GIL long enough to
    delay acknowledgements by a second). The blocks returned are shared: never change them."""
    return _rendered(heading, tuple(results), total)


@functools.lru_cache(maxsize=16)
def _rendered(
    heading: str, results: tuple[SensorResult, ...], total: int
) -> tuple[str, list[dict[str, Any]]]:
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
    until the last result), so hundreds of sensors do not exhaust chat.update's rate limit.

    `add` only records: the refresh is rendered and sent from a timer thread. A shared check tells fifty
    requesters each result from one thread, and rendering and sending fifty reports there made each result
    wait for the others' round trips (on a loaded machine 500 results took minutes). Updates go out one at
    a time and in order, and nothing is sent after the final report (`finish`, `fail`).

    `max_messages` bounds the posts of a destination that allows only so many (a response URL: 5), the
    first post and the final report included: progress refreshes stop one short of it, and with such a
    bound each waits twice as long as the one before (the budget lasts through a long check).
    """

    def __init__(
        self,
        post: Callable[[str, list[dict[str, Any]]], str],
        update: Callable[[str, str, list[dict[str, Any]]], None],
        heading: str,
        total: int,
        interval: float = 1.0,
        max_messages: int | None = None,
    ) -> None:
        self._update = update
        self._heading = heading
        self._total = total
        self._interval = interval
        self._refreshes_left = None if max_messages is None else max(0, max_messages - 2)
        self._results: list[SensorResult] = []
        self._lock = threading.Lock()  # the state below
        self._sending = threading.Lock()  # one update on the wire at a time, in order
        self._timer: threading.Timer | None = None
        self._final = False
        self._last = time.monotonic()
        self.ts = post(*report(heading, [], total))

    def add(self, result: SensorResult) -> None:
        """Record one result; a refresh follows within `interval` of the previous one."""
        with self._lock:
            self._results.append(result)
            self._schedule_refresh()

    def _schedule_refresh(self) -> None:
        """With the lock held: a refresh once the interval since the last is over (unless one is due)."""
        if self._timer is not None or self._final or self._refreshes_left == 0:
            return
        delay = max(0.0, self._interval - (time.monotonic() - self._last))
        self._timer = threading.Timer(delay, self._refresh)
        self._timer.daemon = True
        self._timer.start()

    def _refresh(self) -> None:
        with self._sending:
            with self._lock:
                self._timer = None
                if self._final:
                    return
                self._last = time.monotonic()
                if self._refreshes_left is not None:
                    self._refreshes_left -= 1
                    self._interval *= 2
                text, blocks = report(self._heading, self._results, self._total)
            try:
                self._update(self.ts, text, blocks)
            except Exception as exc:  # noqa: BLE001 - a progress update: the final one is sent, its failure raised
                log.warning("a sensor report's progress update failed: %s", type(exc).__name__)

    def _send_final(self, render: Callable[[], tuple[str, list[dict[str, Any]]]]) -> None:
        with self._sending:  # after a refresh already on the wire
            with self._lock:
                self._final = True
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                text, blocks = render()
            self._update(self.ts, text, blocks)

    def finish(self, results: Sequence[SensorResult]) -> None:
        """Show every result and the summary (always sent, last)."""

        def render() -> tuple[str, list[dict[str, Any]]]:
            self._results = list(results)
            return report(self._heading, self._results, self._total)

        self._send_final(render)

    def note(self, text: str) -> None:
        """A line under the heading (escaped: it may name sensors as Graph spells them), shown with the
        next refresh."""
        with self._lock:
            self._heading = f"{self._heading}\n{escape(text)}"
            self._schedule_refresh()

    def fail(self, problem: str) -> None:
        """The checks could not run at all: say why instead of the results."""
        text = f"{self._heading}\n:warning: The sensors could not be checked: {escape(problem)}"
        self._send_final(lambda: (text, [section(text)]))


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
