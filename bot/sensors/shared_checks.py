"""Sensor checks shared by concurrent requesters (`bot.infra.shared_runs`, keyed by the sensors asked).

When fifty people type `/atp status` during an incident, the sensors should be asked once, not fifty
times: a request for the same sensors as a check already in flight joins it. The joiner is first shown
the results that check already has, then every later one as it arrives, and the same final list.
Nothing is cached: a request made after a check ended starts a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.config import ConfigError, Settings
from bot.infra.shared_runs import Follower, SharedRuns
from bot.sensors.checks import SensorChecker, SensorResult, check_sensors

# Someone waiting for a check: told each result, then either every result or why there are none.
CheckFollower = Follower[SensorResult, Sequence[SensorResult]]


def _problem(exc: Exception) -> str | None:
    """A check that cannot run (e.g. a WinRM password that cannot be read) says why."""
    return "; ".join(exc.problems) if isinstance(exc, ConfigError) else None


class SharedChecks:
    """Checks sensors for several requesters at once; see the module docstring."""

    def __init__(self, settings: Settings, checker: SensorChecker = check_sensors) -> None:
        self._settings = settings
        self._checker = checker
        self._runs: SharedRuns[tuple[str, ...], SensorResult, Sequence[SensorResult]] = SharedRuns(_problem)

    def check(
        self, names: Sequence[str], follower: CheckFollower, *, on_join: Callable[[], None] | None = None
    ) -> bool:
        """Report a check of `names` to `follower`. Returns True if this call joined a check in flight.

        A call that starts a check runs it in the calling thread and tells every follower from there. A
        call that joins calls `on_join`, replays the results known so far and returns at once.
        """
        wanted = list(names)

        def run(publish: Callable[[SensorResult], None]) -> Sequence[SensorResult]:
            return self._checker(self._settings, wanted, on_result=publish)

        return self._runs.follow(tuple(names), follower, run, on_join=on_join)
