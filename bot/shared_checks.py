"""Sensor checks shared by concurrent requesters.

When fifty people type `/atp status` during an incident, the sensors should be asked once, not fifty
times: a request for the same sensors as a check already in flight joins it. The joiner is first shown
the results that check already has, then every later one as it arrives, and the same final list.
Nothing is cached: a request made after a check ended starts a new one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from bot.config import Settings
from bot.sensors import SensorResult, check_sensors

log = logging.getLogger(__name__)

ResultCallback = Callable[[SensorResult], None]
DoneCallback = Callable[[Sequence[SensorResult]], None]
T = TypeVar("T")


@dataclass
class _Follower:
    on_result: ResultCallback
    on_done: DoneCallback


@dataclass
class _Run:
    """One check in flight and who follows it."""

    results: list[SensorResult] = field(default_factory=list)
    followers: list[_Follower] = field(default_factory=list)


class SharedChecks:
    """Checks sensors for several requesters at once; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._running: dict[tuple[str, ...], _Run] = {}

    def check(self, names: Sequence[str], on_result: ResultCallback, on_done: DoneCallback) -> bool:
        """Report a check of `names` to the callbacks. Returns True if this call joined a check in flight.

        A call that starts a check runs it in the calling thread and calls every follower's callbacks
        from there (each follower's failure is logged, never passed on to the others). A call that joins
        returns at once, after replaying the results known so far. If the check itself fails, its
        exception goes to the caller that started it; the followers get no `on_done`.
        """
        key = tuple(names)
        follower = _Follower(on_result, on_done)
        with self._lock:
            run = self._running.get(key)
            if run is not None:
                run.followers.append(follower)
                known = list(run.results)
            else:
                run = self._running[key] = _Run(followers=[follower])
                known = None
        if known is not None:
            for result in known:
                _call(on_result, result)
            return True
        try:
            results = check_sensors(self._settings, list(names), on_result=lambda r: self._publish(run, r))
        finally:
            with self._lock:
                del self._running[key]
        for each in run.followers:  # no one can join any more: the run is no longer listed
            _call(each.on_done, results)
        return False

    def _publish(self, run: _Run, result: SensorResult) -> None:
        with self._lock:
            run.results.append(result)
            followers = list(run.followers)
        for follower in followers:
            _call(follower.on_result, result)


def _call(callback: Callable[[T], None], value: T) -> None:
    try:
        callback(value)
    except Exception:  # one requester's failure (e.g. Slack refusing an update) must not stop the others
        log.exception("a follower of a shared sensor check failed")
