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
from typing import Protocol, TypeVar

from bot.config import ConfigError, Settings
from bot.sensors.checks import SensorChecker, SensorResult, check_sensors

log = logging.getLogger(__name__)

T = TypeVar("T")


class CheckFollower(Protocol):
    """Someone waiting for a check: told each result, then either every result or why there are none."""

    def add(self, result: SensorResult) -> None: ...

    def finish(self, results: Sequence[SensorResult]) -> None: ...

    def fail(self, problem: str) -> None: ...


@dataclass
class _Run:
    """One check in flight and who follows it."""

    results: list[SensorResult] = field(default_factory=list)
    followers: list[CheckFollower] = field(default_factory=list)


class SharedChecks:
    """Checks sensors for several requesters at once; see the module docstring."""

    def __init__(self, settings: Settings, checker: SensorChecker = check_sensors) -> None:
        self._settings = settings
        self._checker = checker
        self._lock = threading.Lock()
        self._running: dict[tuple[str, ...], _Run] = {}

    def check(self, names: Sequence[str], follower: CheckFollower) -> bool:
        """Report a check of `names` to `follower`. Returns True if this call joined a check in flight.

        A call that starts a check runs it in the calling thread and tells every follower from there (one
        follower's exception is logged, never passed on to the others). A call that joins returns at once,
        after replaying the results known so far. A check that cannot run (e.g. a WinRM password that
        cannot be read) is told to every follower as its problem.
        """
        key = tuple(names)
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
                _tell(follower.add, result)
            return True
        try:
            results = self._checker(self._settings, list(names), on_result=lambda r: self._publish(run, r))
        except ConfigError as exc:
            problem = "; ".join(exc.problems)
            self._end(key, lambda each: each.fail(problem))
        except Exception:
            log.exception("the sensor check failed")
            self._end(key, lambda each: each.fail("the check failed unexpectedly (details in atp-bot's log)"))
        else:
            self._end(key, lambda each: each.finish(results))
        return False

    def _publish(self, run: _Run, result: SensorResult) -> None:
        with self._lock:
            run.results.append(result)
            followers = list(run.followers)
        for follower in followers:
            _tell(follower.add, result)

    def _end(self, key: tuple[str, ...], tell: Callable[[CheckFollower], None]) -> None:
        with self._lock:
            run = self._running.pop(key)
        for follower in run.followers:  # no one can join any more: the run is no longer listed
            _tell(tell, follower)


def _tell(callback: Callable[[T], None], value: T) -> None:
    try:
        callback(value)
    except Exception:  # one requester's failure (e.g. Slack refusing an update) must not stop the others
        log.exception("a follower of a shared sensor check failed")
