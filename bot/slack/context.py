"""What a subcommand handler gets: the parsed command, Bolt's ack/respond, and the runtime's services."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from slack_bolt import Ack, Respond
from slack_sdk import WebClient

from bot.approvals import HeldRequests
from bot.audit import AuditSink
from bot.change import PasswordChanges
from bot.config import Settings
from bot.failures import one_line, report_failure
from bot.scheduler import Scheduler
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
    # Passwords held for a second person's approval (bot.approvals); None when no account needs it.
    approvals: HeldRequests | None = None

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run `fn` on the work executor; an exception is logged (it has nobody else to go to)."""
        future = self.executor.submit(fn, *args, **kwargs)
        name = getattr(fn, "__qualname__", repr(fn))
        future.add_done_callback(lambda done: _log_failure(name, done))
        return future

    def submit_for(self, person: Person, work: Callable[[], None]) -> Future[None]:
        """`run_for` on the work executor."""
        return self.submit(self.run_for, person, work)

    def run_for(self, person: Person, work: Callable[[], None]) -> None:
        """Run `work` (what a person's click or command started). If it fails unexpectedly, the person is
        told in one line, the traceback logged and an audit row written; nothing is raised."""
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - told, logged and audited
            line = report_failure(
                self.audit, person.actor, person.action, person.account, exc, doing=person.doing
            )
            try:
                person.tell(f":warning: Something went wrong: {line}.")
            except Exception as telling:  # noqa: BLE001 - nobody else to tell
                log.error("%s: could not tell the person: %s", person.doing, one_line(telling))


def _log_failure(name: str, future: Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("background work %s failed", name, exc_info=exc)


@dataclass(frozen=True)
class Person:
    """Who started some background work, what to audit if it fails, and how to tell them."""

    actor: str
    action: str
    account: str | None
    doing: str  # for the log: "re-check requested by …"
    tell: Callable[[str], None]


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
