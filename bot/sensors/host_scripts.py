"""One PowerShell script run on each of several sensors, where the bot's checks run (its check worker
processes in `atp-bot run`; threads of the caller's process otherwise). The gMSA host checks use it."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr

from bot.infra.redaction import active_secret
from bot.sensors.results import Failure
from bot.sensors.targets import SensorTarget
from bot.sensors.winrm_runner import RemoteFailure, ScriptOutput, run_powershell

ScriptRun = ScriptOutput | Failure


@dataclass(frozen=True)
class ScriptPlan:
    """A script for one sensor, with what running it needs (it may travel to a worker process)."""

    target: SensorTarget
    password: SecretStr | None
    script: str
    deadline_seconds: float


class ScriptRunner(Protocol):
    """Runs each plan's script, yielding (sensor name, what it gave) as each one ends (any order)."""

    def run_scripts(self, plans: Sequence[ScriptPlan]) -> Iterator[tuple[str, ScriptRun]]: ...


def run_script_plan(plan: ScriptPlan) -> ScriptRun:
    """The script's output, or why there is none; ends by the plan's deadline."""
    with ExitStack() as secrets:
        if plan.password:
            secrets.enter_context(active_secret(plan.password))
        try:
            deadline = time.monotonic() + plan.deadline_seconds
            return run_powershell(plan.target, plan.password, plan.script, deadline=deadline)
        except RemoteFailure as failure:
            return Failure(failure.kind, failure.detail)


@dataclass(frozen=True)
class ThreadScripts:
    """The scripts in this process, `pool_size` at a time (the CLI)."""

    pool_size: int

    def run_scripts(self, plans: Sequence[ScriptPlan]) -> Iterator[tuple[str, ScriptRun]]:
        if not plans:
            return
        pool = ThreadPoolExecutor(max_workers=min(self.pool_size, len(plans)), thread_name_prefix="host")
        try:
            futures = {pool.submit(run_script_plan, plan): plan.target.name for plan in plans}
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:  # a caller that stops early (Ctrl-C) waits for no host: each ends by its deadline
            pool.shutdown(wait=False, cancel_futures=True)
