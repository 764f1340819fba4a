"""What a subcommand handler gets (the parsed command, Bolt's ack/respond, the runtime's services), and the
registry of `/atp` subcommands: each feature module contributes one `Subcommand` and registers its own
view/action listeners; the router and `/atp help` read the registry."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, ParamSpec, Protocol, TypeVar

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.audit import AuditSink
from bot.change import PasswordChanges
from bot.change.approvals import HeldRequests
from bot.change.failures import one_line, report_failure
from bot.config import Settings
from bot.fleet import GraphFleet
from bot.infra.shared_runs import SharedRuns
from bot.monitor.scheduler import Scheduler
from bot.sensors import SharedChecks
from bot.slack.audit import slack_actor
from bot.slack.authz import Authorizer
from bot.slack.ratelimit import UserRateLimit

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class Background(Protocol):
    """Something a feature keeps running while the runtime serves Slack."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


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
    # Expensive requests (`/atp status`, `sensors`, `gmsa`, *Re-check now*) per person and minute.
    rate_limit: UserRateLimit
    # The other expensive requests in flight, by what was asked (`submit_shared`).
    shared_requests: SharedRuns[tuple[str, ...], Reply, None] = field(default_factory=SharedRuns)
    # The change path (test → save → audit → checks); None only where a runtime is built without one.
    changes: PasswordChanges | None = None
    # The monitor's scheduler (alerts, re-checks); None when `atp-bot run` runs without it.
    scheduler: Scheduler | None = None
    # Passwords held for a second person's approval (bot.change.approvals); None when no account needs it.
    approvals: HeldRequests | None = None
    # Graph's sensor list (`/atp sensors`), cached across requests; None: built from the settings.
    graph_fleet: GraphFleet | None = None
    # Work a feature runs beside the listeners (e.g. the approvals' expiry sweep): started with the
    # runtime, stopped when it stops. Features add theirs in `register`.
    background: list[Background] = field(default_factory=list)

    @property
    def fleet(self) -> GraphFleet:
        return self.graph_fleet or (self.changes.fleet if self.changes else GraphFleet(self.settings))

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run `fn` on the work executor; an exception is logged (it has nobody else to go to)."""
        future = self.executor.submit(fn, *args, **kwargs)
        name = getattr(fn, "__qualname__", None) or type(fn).__name__  # never repr(): it may hold Settings
        future.add_done_callback(lambda done: _log_failure(name, done))
        return future

    def submit_shared(
        self,
        key: tuple[str, ...],
        person: Person,
        work: Callable[[Callable[[Reply], None]], None],
        show: Callable[[Reply], None] | None = None,
    ) -> bool:
        """Run `work` for `person` on the work executor, or join the identical request in flight (same
        `key`: the subcommand and what it was asked about). Returns True if it joined.

        Every reply `work` publishes goes to everyone following it, each through their own `show`
        (default: `person.tell` with the text), a joiner's marked `JOINED_NOTE`: the peers are asked
        once. An unexpected failure is audited under the name of who started the run and told to all.
        """
        requester = _Requester(show or (lambda reply: person.tell(reply.text)))

        def run(publish: Callable[[Reply], None]) -> None:
            everyone = Person(
                person.actor, person.action, person.account, person.doing, publish_text(publish)
            )
            self.run_for(everyone, lambda: work(publish))

        return self.shared_requests.follow(
            key, requester, run, start=lambda job: self.submit(job), on_join=requester.joined
        )

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


JOINED_NOTE = "Joined the same check already running: everyone who asked is shown its result."


@dataclass(frozen=True)
class Reply:
    """One message of a shared request, shown to each requester in their own reply."""

    text: str
    blocks: Sequence[dict[str, Any]] | None = None

    def joined(self) -> Reply:
        """This reply with `JOINED_NOTE` under it."""
        note = {"type": "context", "elements": [{"type": "mrkdwn", "text": f"_{JOINED_NOTE}_"}]}
        blocks = [*self.blocks, note] if self.blocks is not None else None
        return Reply(f"{self.text}\n_{JOINED_NOTE}_", blocks)


def publish_text(publish: Callable[[Reply], None]) -> Callable[[str], None]:
    """A `tell(text)` for work that publishes replies."""
    return lambda text: publish(Reply(text))


class _Requester:
    """One person following a shared request: each reply shown to them (marked once they joined)."""

    def __init__(self, show: Callable[[Reply], None]) -> None:
        self._show = show
        self._joined = False

    def joined(self) -> None:
        self._joined = True

    def add(self, reply: Reply) -> None:
        self._show(reply.joined() if self._joined else reply)

    def finish(self, result: None) -> None:
        """Everything was shown as it was published."""

    def fail(self, problem: str) -> None:
        self.add(Reply(f":warning: Something went wrong: {problem}."))


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
    access_via: str | None = None  # the user group that granted access (`@handle`), if one did

    @property
    def actor(self) -> str:
        return slack_actor(self.user_id, self.user_name, self.access_via)

    def reply(self, text: str, blocks: Sequence[dict[str, Any]] | None = None) -> None:
        """Acknowledge with an ephemeral message (only the invoking user sees it)."""
        self.ack(response_type="ephemeral", text=text, blocks=blocks)

    def show(self, reply: Reply) -> None:
        """Replace the ephemeral acknowledgement with `reply` (through the response URL)."""
        self.respond(text=reply.text, blocks=reply.blocks, response_type="ephemeral", replace_original=True)

    def show_text(self, text: str) -> None:
        self.show(Reply(text))


@dataclass(frozen=True)
class Subcommand:
    """`/atp <name> <usage>`: `summary` is the one line `/atp help` shows.

    `handler` runs on Bolt's listener thread and must acknowledge fast (`ctx.ack`/`ctx.reply`, or by
    opening a modal), handing slow work to `ctx.services.submit`. Sensitive subcommands pass the
    authorization middleware first, expensive ones the rate limit (`bot.slack.middleware`) after it.
    """

    name: str
    summary: str
    handler: Callable[[CommandContext], None]
    usage: str = ""
    sensitive: bool = True
    # It reaches every sensor (WinRM) or Graph: limited to `[slack] user_rate_per_minute` per person.
    expensive: bool = False


class CommandModule(Protocol):
    """What a feature module (`commands/<name>.py`) exposes."""

    SUBCOMMAND: Subcommand

    def register(self, app: App, services: Services) -> None:
        """Add this subcommand's view and action listeners (if any) to the app."""


class Registry:
    """The subcommand modules, in the order `/atp help` lists them."""

    def __init__(self, modules: Iterable[CommandModule]) -> None:
        self.modules = tuple(modules)
        self._by_name: dict[str, Subcommand] = {}
        for module in self.modules:
            subcommand = module.SUBCOMMAND
            if subcommand.name in self._by_name:
                raise ValueError(f"subcommand {subcommand.name!r} is registered twice")
            self._by_name[subcommand.name] = subcommand

    def get(self, name: str) -> Subcommand | None:
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[Subcommand]:
        return iter(self._by_name.values())
