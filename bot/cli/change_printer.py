"""How `atp-bot set-password` shows each step of a change. Its own module because it subclasses the change
path's callbacks: `set-password` imports it when it runs, so `atp-bot --help` loads no change path."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.change import ChangeOutcome, ChangeProgress, ChangeStatus, Recovery
from bot.cli import check
from bot.cli.test_connection import render

if TYPE_CHECKING:
    from bot.config import AccountConfig
    from bot.directory import ConnectionTestResult
    from bot.sensors import SensorResult


class ChangePrinter(ChangeProgress):
    """Each step of the change on the terminal, the sensor checks with a live progress line."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names
        self.live: check.LiveProgress | None = None
        self.checks_problem: str | None = None

    def recovered(self, recovery: Recovery) -> None:
        print(f"AN EARLIER CHANGE WAS INTERRUPTED: {recovery.describe()}.", flush=True)

    def testing(self, account: AccountConfig) -> None:
        print(
            f"Testing the password of {account.id} ({account.username}) on its domain controllers…",
            flush=True,
        )

    def tested(self, result: ConnectionTestResult) -> None:
        print("\n".join(render(result)), flush=True)

    def finished(self, outcome: ChangeOutcome) -> None:
        if outcome.saved:
            saved = outcome.saved
            print(
                f"SAVED: account {saved.account_id} in the {saved.backend} store "
                f"at {saved.saved_at:%Y-%m-%d %H:%M:%S} UTC by {saved.saved_by}"
            )
            if outcome.problem:
                print(f"WARNING: {outcome.message}")
        elif outcome.status is ChangeStatus.FAILED:
            print(outcome.message)
        elif outcome.status is not ChangeStatus.TEST_FAILED:
            print(f"NOT SAVED: {outcome.message}")
        else:
            print("NOT SAVED: the password did not pass the connection test.")

    def checking(self) -> None:
        print(
            f"Checking {len(self.names)} sensor(s): services, credential errors since the change…", flush=True
        )
        if sys.stderr.isatty():
            self.live = check.LiveProgress(self.names, sys.stderr)
            self.live.start()

    def sensor_checked(self, result: SensorResult) -> None:
        if self.live is not None:
            self.live.add(result)

    def not_using_dsa(self, names: Sequence[str]) -> None:
        listed = ", ".join(names)
        print(f"Not checked, unified sensors that do not use the directory service account: {listed}")

    def graph_unread(self, line: str) -> None:
        print(line)

    def checks_done(self, results: Sequence[SensorResult]) -> None:
        self._stop_live()
        check.print_report(results)

    def checks_failed(self, problem: str) -> bool:
        self._stop_live()
        self.checks_problem = problem
        print(f"The sensors could not be checked: {problem}")
        return True

    def _stop_live(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
