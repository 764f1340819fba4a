"""A change made from the command line, told in `[slack] channel` with the text the Slack face posts
(the feature owns its messages; `atp-bot set-password` only calls this)."""

from __future__ import annotations

import sys

from pydantic import SecretStr
from slack_sdk.errors import SlackApiError

from bot.audit import AuditAction, AuditEvent, AuditOutcome, AuditSink, record_or_log
from bot.change import ChangeOutcome
from bot.change.failures import one_line
from bot.change.portal import PortalStep
from bot.config import SLACK_BOT_TOKEN_ENV, ConfigError, Settings, read_secret
from bot.infra.messages import MessageRef
from bot.slack.client import build_client
from bot.slack.text import inline
from commands.password.portal import done_blocks
from commands.password.views import announcement


class Announcer:
    """Tells `[slack] channel` about a change made here, with the text the Slack face posts. Best effort:
    a failure is a warning and an audit row, never a failed change. The bot token is read at once (the
    Slack secrets already left the environment with the others: bot.config.secret_env)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.token: SecretStr | None = None
        self.problem: str | None = None
        if settings.slack.channel is not None:
            try:
                self.token = read_secret("slack bot token", env=SLACK_BOT_TOKEN_ENV, file=None)
            except ConfigError as exc:
                self.problem = one_line(exc)

    def announce(
        self, outcome: ChangeOutcome, actor: str, audit: AuditSink, note: str | None = None
    ) -> MessageRef | None:
        """`note`: the operator's words for a break-glass change (escaped here: Slack formats text). Where
        the message went, or None."""
        channel = self.settings.slack.channel
        if channel is None:
            return None
        posted = self.problem or self._post(channel, outcome, actor, inline(note) if note else None)
        if isinstance(posted, MessageRef):
            announced = AuditEvent(
                actor=actor,
                action=AuditAction.ANNOUNCE,
                account=outcome.account_id,
                outcome=AuditOutcome.OK,
                detail=f"channel {channel}",
            )
            record_or_log(audit, announced)
            print(f"Announced in Slack channel {channel}.")
            return posted
        not_announced = AuditEvent(
            actor=actor,
            action=AuditAction.ANNOUNCE,
            account=outcome.account_id,
            outcome=AuditOutcome.ERROR,
            reason="slack",
            detail=posted,
        )
        record_or_log(audit, not_announced)
        print(f"WARNING: the change was not announced in Slack channel {channel}: {posted}", file=sys.stderr)
        return None

    def portal_done(self, outcome: ChangeOutcome, actor: str, step: PortalStep, note: str | None) -> None:
        """The portal step confirmed from this shell: the announcement's button becomes who confirmed it
        (best effort: a failure is a warning; the step is confirmed whatever Slack answers)."""
        if step.thread is None or self.token is None or step.confirmed_at is None:
            return
        text, blocks = announcement(outcome, f"`{actor}`", self.settings, inline(note) if note else None)
        done = done_blocks(blocks, f"`{actor}`", step.confirmed_at)
        try:
            client = build_client(self.settings.slack.api_url, self.token)
            client.chat_update(channel=step.thread.channel, ts=step.thread.ts, text=text, blocks=done)
        except Exception as exc:  # noqa: BLE001 - the confirmation stands; the person is told
            print(f"WARNING: the Slack message was not updated: {one_line(exc)}", file=sys.stderr)

    def _post(self, channel: str, outcome: ChangeOutcome, actor: str, note: str | None) -> MessageRef | str:
        """Post the announcement: where it went, or why it failed."""
        assert self.token is not None
        text, blocks = announcement(outcome, f"`{actor}`", self.settings, note)
        try:
            client = build_client(self.settings.slack.api_url, self.token)
            answer = client.chat_postMessage(channel=channel, text=text, blocks=blocks)
        except SlackApiError as exc:
            return f"Slack answered {exc.response.get('error')}"
        except Exception as exc:  # noqa: BLE001 - a warning and an audit row say what happened
            return one_line(exc)
        return MessageRef(channel=str(answer.get("channel") or channel), ts=str(answer["ts"]))
