"""Work that several people ask for at once runs once.

When fifty people ask for the same thing during an incident, the peers (sensors over WinRM, Graph, a DC)
should be asked once, not fifty times: a request for the same key as a run still in flight joins it. The
joiner is first told the progress that run already has, then every later step as it arrives, and the
same ending. Nothing is cached: a request made after a run ended starts a new one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
P = TypeVar("P")
R = TypeVar("R")
P_contra = TypeVar("P_contra", contravariant=True)
R_contra = TypeVar("R_contra", contravariant=True)
T = TypeVar("T")

UNEXPECTED = "it failed unexpectedly (details in atp-bot's log)"


class Follower(Protocol[P_contra, R_contra]):
    """Someone waiting for a run: told each step, then either its result or why there is none."""

    def add(self, progress: P_contra) -> None: ...

    def finish(self, result: R_contra) -> None: ...

    def fail(self, problem: str) -> None: ...


@dataclass
class _Run(Generic[P, R]):
    """One run in flight and who follows it."""

    progress: list[P] = field(default_factory=list)
    followers: list[Follower[P, R]] = field(default_factory=list)


def _now(job: Callable[[], None]) -> None:
    job()


class SharedRuns(Generic[K, P, R]):
    """Runs keyed by what was asked; see the module docstring.

    `problem` turns an exception of the work into what its followers are told (None: unexpected, which is
    logged with its traceback and told as `UNEXPECTED`).
    """

    def __init__(self, problem: Callable[[Exception], str | None] = lambda _exc: None) -> None:
        self._problem = problem
        self._lock = threading.Lock()
        self._running: dict[K, _Run[P, R]] = {}

    def follow(
        self,
        key: K,
        follower: Follower[P, R],
        work: Callable[[Callable[[P], None]], R],
        *,
        start: Callable[[Callable[[], None]], object] = _now,
        on_join: Callable[[], None] | None = None,
    ) -> bool:
        """Tell `follower` the run of `key`. Returns True if this call joined a run in flight.

        A call that starts a run hands it to `start` (by default: run it in the calling thread), which
        calls `work` with the function that publishes a step to every follower; one follower's exception
        is logged, never passed on to the others. A call that joins calls `on_join` (under the lock, before
        anything is told to the follower: it must only take note), replays the steps known so far and
        returns at once. The run is listed from this call on, so a request made while
        `start` has not begun it yet joins it too.
        """
        with self._lock:
            run = self._running.get(key)
            if run is not None:
                if on_join is not None:
                    on_join()
                run.followers.append(follower)
                known = list(run.progress)
            else:
                run = self._running[key] = _Run(followers=[follower])
                known = None
        if known is not None:
            for step in known:
                _tell(follower.add, step)
            return True
        try:
            start(lambda: self._run(key, run, work))
        except RuntimeError:  # e.g. the executor is shutting down: nobody will run it
            self._end(key, lambda each: each.fail("atp-bot is stopping"))
        return False

    def _run(self, key: K, run: _Run[P, R], work: Callable[[Callable[[P], None]], R]) -> None:
        try:
            result = work(lambda step: self._publish(run, step))
        except Exception as exc:  # told to every follower
            problem = self._problem(exc)
            if problem is None:
                log.exception("a shared run failed")
                problem = UNEXPECTED
            self._end(key, lambda each: each.fail(problem))
        else:
            self._end(key, lambda each: each.finish(result))

    def _publish(self, run: _Run[P, R], step: P) -> None:
        with self._lock:
            run.progress.append(step)
            followers = list(run.followers)
        for follower in followers:
            _tell(follower.add, step)

    def _end(self, key: K, tell: Callable[[Follower[P, R]], None]) -> None:
        with self._lock:
            run = self._running.pop(key)
        for follower in run.followers:  # no one can join any more: the run is no longer listed
            _tell(tell, follower)


def _tell(callback: Callable[[T], None], value: T) -> None:
    try:
        callback(value)
    except Exception:  # one requester's failure (e.g. Slack refusing an update) must not stop the others
        log.exception("a follower of a shared run failed")
