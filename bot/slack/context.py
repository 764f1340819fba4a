"""What a subcommand handler gets: the parsed command, Bolt's ack/respond, and the runtime's services."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from slack_bolt import Ack, Respond
from slack_sdk import WebClient

from bot.audit import AuditSink
from bot.change import PasswordChanges
from bot.config import Settings
from bot.scheduler import Scheduler
from bot.sensor_inventory import GraphFleet
from bot.shared_checks import SharedChecks
from bot.slack.audit import slack_actor
from bot.slack.authz import Authorizer
from bot.slack.registry import Registry

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Services:
    """Everything long-lived that handlers and listeners share. `executor` is the runtime's own pool for
    slow work (LDAP tests, saves, sensor checks), kept apart from the threads that acknowledge Slack."""

    settings: Settings
    client: WebClient
    audit: AuditSink
    authorizer: Authorizer
    registry: Registry
    executor: Executor
    # `/atp status` requests for the same sensors share one check.
    status_checks: SharedChecks
    # The change path (test → save → audit → checks); None only where a runtime is built without one.
    changes: PasswordChanges | None = None
    # The monitor's scheduler (alerts, re-checks); None when `atp-bot run` runs without it.
    scheduler: Scheduler | None = None
    # Graph's sensor list (`/atp sensors`), cached across requests; None: built from the settings.
    graph_fleet: GraphFleet | None = None

    @property
    def fleet(self) -> GraphFleet:
        return self.graph_fleet or (self.changes.fleet if self.changes else GraphFleet(self.settings))

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run `fn` on the work executor; an exception is logged (it has nobody else to go to)."""
        future = self.executor.submit(fn, *args, **kwargs)
        name = getattr(fn, "__qualname__", repr(fn))
        future.add_done_callback(lambda done: _log_failure(name, done))
        return future


def _log_failure(name: str, future: Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("background work %s failed", name, exc_info=exc)


@dataclass(frozen=True)
class CommandContext:
    """One `/atp <name> <args…>` invocation."""

    name: str  # the subcommand as typed (lower-cased); "" for a bare `/atp`
    args: tuple[str, ...]
    user_id: str
    user_name: str | None
    channel_id: str
    trigger_id: str
    response_url: str | None
    ack: Ack
    respond: Respond
    client: WebClient
    services: Services

    @property
    def actor(self) -> str:
        return slack_actor(self.user_id, self.user_name)

    def reply(self, text: str, blocks: Sequence[dict[str, Any]] | None = None) -> None:
        """Acknowledge with an ephemeral message (only the invoking user sees it)."""
        self.ack(response_type="ephemeral", text=text, blocks=blocks)
