"""The Bolt app factory: `/atp` with its router and authorization, plus each module's listeners."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.audit import AuditSink
from bot.change import PasswordChanges
from bot.change.approvals import open_approvals
from bot.config import Settings
from bot.fleet import GraphFleet
from bot.monitor.scheduler import Scheduler
from bot.sensors import SharedChecks
from bot.slack.authz import Authorizer
from bot.slack.client import ACK_PATH_MAX_RETRY_AFTER, build_client
from bot.slack.context import CommandModule, Registry, Services
from bot.slack.middleware import authorize_command, limit_expensive_command
from bot.slack.ratelimit import UserRateLimit
from bot.slack.replay import ReplayCache, refuse_replays
from bot.slack.router import COMMAND, route
from bot.slack.secrets import SlackSecrets

log = logging.getLogger(__name__)


def build_services(
    settings: Settings,
    *,
    secrets: SlackSecrets,
    audit: AuditSink,
    modules: Sequence[CommandModule],
    executor: Executor,
    client: WebClient | None = None,
    changes: PasswordChanges | None = None,
    scheduler: Scheduler | None = None,
) -> Services:
    """What handlers share. `client` defaults to one for `[slack] api_url` with the retry handlers;
    `executor` runs slow work (`Services.submit`)."""
    config = settings.slack
    # Group lookups happen before the acknowledgement: they must not wait out a long rate limit.
    lookups = client or build_client(
        config.api_url, secrets.bot_token, max_retry_after=ACK_PATH_MAX_RETRY_AFTER
    )
    client = client or build_client(config.api_url, secrets.bot_token)
    return Services(
        settings=settings,
        client=client,
        audit=audit,
        authorizer=Authorizer(config, lookups),
        registry=Registry(modules),
        executor=executor,
        status_checks=SharedChecks(settings, changes.checker) if changes else SharedChecks(settings),
        rate_limit=UserRateLimit(config.user_rate_per_minute),
        changes=changes,
        scheduler=scheduler,
        graph_fleet=changes.fleet if changes else GraphFleet(settings),
        approvals=open_approvals(settings) if changes is not None else None,
    )


def build_app(services: Services, *, secrets: SlackSecrets, listener_executor: Executor | None = None) -> App:
    """The Bolt app: `/atp` (router + authorization middleware) and every module's listeners.

    Calls `auth.test` once (Bolt's token check), so Slack must answer. `listener_executor` runs Bolt's
    listeners, the acknowledgement path. HTTP mode verifies request signatures with the signing secret,
    and refuses a signature it has already seen (a replay within Bolt's 5-minute window).
    """
    config = services.settings.slack
    http = config.mode == "http"
    if http and secrets.signing_secret is None:
        raise ValueError("HTTP mode needs the signing secret")
    if not config.allowed_users and not config.allowed_usergroups:
        log.warning("slack: no allowed_users or allowed_usergroups: nobody may use sensitive subcommands")
    app = App(
        client=services.client,
        signing_secret=secrets.signing_secret.get_secret_value() if http and secrets.signing_secret else None,
        request_verification_enabled=http,
        listener_executor=listener_executor,
        logger=logging.getLogger("bot.slack.bolt"),
    )
    if http:
        app.use(refuse_replays(ReplayCache()))
    middleware = [authorize_command(services), limit_expensive_command(services)]
    app.command(COMMAND, middleware=middleware)(route(services))
    for module in services.registry.modules:
        module.register(app, services)
    app.error(_log_error)
    return app


def _log_error(error: Exception, body: dict[str, Any]) -> None:
    """Unhandled listener errors go to the log; Slack (and so the user) never sees a traceback."""
    log.error("unhandled error in a Slack listener (request type %s)", body.get("type"), exc_info=error)
