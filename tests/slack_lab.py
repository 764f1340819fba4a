"""Test helpers: the real Bolt runtime wired to the Slack emulator, in either mode."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import SecretStr

from bot.audit import AuditEvent
from bot.change import PasswordChanges, open_changes
from bot.config import Settings
from bot.monitor.context import MonitorContext
from bot.monitor.scheduler import Scheduler, start_scheduler
from bot.slack.client import build_client
from bot.slack.context import CommandModule
from bot.slack.runtime import SlackRuntime
from bot.slack.secrets import SlackSecrets
from bot.store.embedded import init_embedded_store
from commands import MODULES
from commands.alerts import SlackNotifier
from commands.password.portal import DONE_ACTION, DONE_BLOCK
from commands.password.views import Action, Block
from lab.slack import SlackEmulator
from lab.slack.workspace import Message
from tests import slack_probe

T = TypeVar("T")

ALICE, BOB, MALLORY = "U0ALICE", "U0BOB", "U0MALLORY"  # allowed user; S0SECOPS member; nobody
OPS, RANDOM = "C0OPS", "C0RANDOM"


@dataclass
class RecordingAudit:
    records: list[AuditEvent] = field(default_factory=list)

    def record(self, event: AuditEvent) -> None:
        self.records.append(event)


@dataclass
class Lab:
    emulator: SlackEmulator
    runtime: SlackRuntime
    audit: RecordingAudit


def settings_for(
    emulator: SlackEmulator, mode: str, config: Mapping[str, Any] | None = None, **slack: Any
) -> Settings:
    """Settings for the runtime under test; `config` adds or replaces top-level keys (accounts, sensors…)."""
    return Settings.model_validate(
        {
            "accounts": [{"id": "corp", "username": "svc@corp.test", "domain_controllers": ["ldaps://dc1"]}],
            **(config or {}),
            "slack": {
                "mode": mode,
                "api_url": emulator.api_url,
                "channel": OPS,
                "allowed_users": [ALICE],
                "allowed_usergroups": ["S0SECOPS"],
                "listen": "127.0.0.1:0",
                **slack,
            },
        }
    )


def secrets_for(emulator: SlackEmulator) -> SlackSecrets:
    return SlackSecrets(
        bot_token=SecretStr(emulator.bot_token),
        app_token=SecretStr(emulator.app_token),
        signing_secret=SecretStr(emulator.signing_secret),
    )


@contextmanager
def running_lab(
    mode: str,
    *,
    emulator: SlackEmulator | None = None,
    modules: Sequence[CommandModule] = (*MODULES, slack_probe),
    config: Mapping[str, Any] | None = None,
    changes: Callable[[Settings], PasswordChanges] | None = None,
    monitor: bool = False,
    **slack: Any,
) -> Iterator[Lab]:
    """Emulator + runtime started; on exit both stopped and no thread of theirs left behind.

    With `changes`, the runtime gets the real change path built from the settings (and its audit trail
    instead of the recording one); with `monitor` too, the monitor's scheduler (paused: tests run its
    jobs) posting alerts through the Slack notifier."""
    before = set(threading.enumerate())
    emulator = emulator or SlackEmulator()
    audit = RecordingAudit()
    with emulator:
        settings = settings_for(emulator, mode, config, **slack)
        change_path = changes(settings) if changes else None
        scheduler = None
        if monitor and change_path is not None:
            client = build_client(emulator.api_url, SecretStr(emulator.bot_token))
            notifier = SlackNotifier(client, settings.slack.channel or OPS)
            scheduler = start_scheduler(MonitorContext.create(settings, notifier, change_path), paused=True)
        runtime = SlackRuntime(
            settings,
            secrets=secrets_for(emulator),
            audit=change_path.audit if change_path else audit,
            modules=modules,
            changes=change_path,
            scheduler=scheduler,
        )
        with runtime, _shut_down(scheduler):
            if mode == "http":
                emulator.request_url = runtime.runner.url  # type: ignore[union-attr]
            else:
                emulator.wait_connected()
            yield Lab(emulator, runtime, audit)

    def leftover() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in before]

    wait_for(lambda: not leftover(), timeout=2.0, default=False)
    assert not leftover(), f"threads left running: {leftover()}"


@contextmanager
def _shut_down(scheduler: Scheduler | None) -> Iterator[None]:
    try:
        yield
    finally:
        if scheduler is not None:
            scheduler.shutdown()


def wait_for(probe: Callable[[], T | None], *, timeout: float = 5.0, default: Any = ...) -> T:
    """Poll `probe` until it returns something truthy (work runs on the bot's executor)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            if default is not ...:
                return default  # type: ignore[no-any-return]
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def initialised_changes(settings: Settings) -> PasswordChanges:
    """The real change path on a freshly initialised embedded store (the `changes` of `running_lab`)."""
    init_embedded_store(settings)
    return open_changes(settings)


def values(password: str, confirm: str | None = None) -> dict[str, dict[str, Any]]:
    """What a person types into the password modal (the confirmation repeats the password by default)."""
    return {
        Block.PASSWORD: {Action.PASSWORD: password},
        Block.CONFIRM: {Action.CONFIRM: password if confirm is None else confirm},
    }


def open_modal(lab: Lab, text: str = "password svc", user: str = ALICE) -> str:
    """Type `/atp <text>` and return the id of the modal it opened (one at a time: the bot may open it
    after its acknowledgement, so this waits for a view that was not open before)."""
    before = {v.id for v in lab.emulator.open_views(user)}
    delivery = lab.emulator.slash_command(text, user=user)
    assert not delivery.late
    (opened,) = wait_for(lambda: [v.id for v in lab.emulator.open_views(user) if v.id not in before])
    return opened


def view_text(lab: Lab, view_id: str) -> str:
    return json.dumps(lab.emulator.view(view_id)["blocks"])


def click_done(emulator: SlackEmulator, announcement: Message, user: str = ALICE) -> None:
    """Click the announcement's *Done in the portal* button as `user`."""
    button = next(
        element
        for block in announcement.blocks
        for element in block.get("elements", [])
        if element.get("action_id") == DONE_ACTION
    )
    emulator.click(
        DONE_ACTION,
        user=user,
        block_id=DONE_BLOCK,
        value=button["value"],
        channel=OPS,
        message_ts=announcement.ts,
    )


def message(lab: Lab, ts: str) -> Message:
    """The channel message at `ts`, as it is now."""
    return next(m for m in lab.emulator.messages(OPS) if m.ts == ts)
