"""Secrets named by the configuration (`*_env`) leave the process environment once read.

Every entry point calls `take_from_environment` with those names right after loading the settings:
the values move into this module's memory, so that no child process (a `command` store backend, a
library's helper) and no code dumping `os.environ` can see them, while `environment_secret` still
answers every later read of the same setting (settings read their secrets each time they need them).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

_lock = threading.Lock()
_taken: dict[str, str] = {}


def environment_secret(name: str) -> str | None:
    """The value of the environment variable `name`: still set, or taken by `take_from_environment`."""
    value = os.environ.get(name)
    if value:
        return value
    with _lock:
        return _taken.get(name)


def take_from_environment(names: Iterable[str]) -> None:
    """Remove every variable in `names` from the environment, keeping its value for `environment_secret`."""
    with _lock:
        for name in names:
            value = os.environ.pop(name, None)
            if value:
                _taken[name] = value


def taken_names() -> frozenset[str]:
    """The variables taken from the environment: never to be handed to a child process."""
    with _lock:
        return frozenset(_taken)


def forget_taken() -> None:
    """Drop every taken value (for tests: one process runs many entry points with different secrets)."""
    with _lock:
        _taken.clear()
