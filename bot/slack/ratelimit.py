"""How many expensive requests one person may make: `[slack] user_rate_per_minute` in any 60 seconds.

A sliding window per Slack user, kept in this process (with replicas, each counts the requests it
received). Only people who passed authorization are counted, so it holds a few timestamps for each
allowed user who asked something in the last minute.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Admission:
    allowed: bool
    retry_after: int = 0  # whole seconds until the oldest counted request leaves the window
    first_refusal: bool = False  # the first refusal since this person's last allowed request


class UserRateLimit:
    """At most `per_minute` admitted requests per user in any `WINDOW_SECONDS`; refusals are not
    counted (asking again while limited does not push the time to retry further away)."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, deque[float]] = {}
        self._refused: set[str] = set()

    def admit(self, user_id: str) -> Admission:
        """Count a request of `user_id` if the window has room; otherwise say when there will be."""
        now = self.clock()
        with self._lock:
            self._forget_before(now - WINDOW_SECONDS)
            window = self._windows.setdefault(user_id, deque())
            if len(window) < self.per_minute:
                window.append(now)
                self._refused.discard(user_id)
                return ALLOWED
            first = user_id not in self._refused
            self._refused.add(user_id)
            wait = max(1, math.ceil(window[0] + WINDOW_SECONDS - now))
            return Admission(allowed=False, retry_after=wait, first_refusal=first)

    def _forget_before(self, oldest: float) -> None:
        """Drop timestamps that left the window, and the people who have none left."""
        for user_id in list(self._windows):
            window = self._windows[user_id]
            while window and window[0] <= oldest:
                window.popleft()
            if not window:
                del self._windows[user_id]
                self._refused.discard(user_id)


ALLOWED = Admission(allowed=True)
