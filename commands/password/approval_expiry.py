"""The approvals' expiry sweep: a held request that nobody decided in time is expired, told and audited,
on its own thread beside the listeners (a feature's background work, started and stopped by the runtime)."""

from __future__ import annotations

import logging
import threading

from bot.slack.context import Services
from commands.password.approval import sweep_expired

log = logging.getLogger(__name__)

SWEEP_SECONDS = 60.0  # how often pending requests are checked for expiry


class ExpirySweeper:
    """Sweeps at start, then every SWEEP_SECONDS, on its own thread, until stopped."""

    def __init__(self, services: Services, interval: float = SWEEP_SECONDS) -> None:
        self._services = services
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="atp-bot-approvals", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                sweep_expired(self._services)
            except Exception:
                log.exception("approval requests: the expiry sweep failed")
            if self._stop.wait(self._interval):
                return
