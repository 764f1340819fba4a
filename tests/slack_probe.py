"""A test-only sensitive subcommand, `/atp probe`, shaped like the `password` flow the lead builds:
slash command → modal → validated submission → work on the executor → views.update, an announcement
and a threaded follow-up. It is the reference for how a `commands/` module is written."""

from __future__ import annotations

import threading
from enum import StrEnum
from typing import Any

from pydantic import SecretStr
from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.infra.redaction import active_secret
from bot.slack.context import CommandContext, Services, Subcommand
from bot.slack.middleware import authorize_interaction
from bot.slack.views import (
    ViewOrigin,
    decode_metadata,
    encode_metadata,
    notice_modal,
    plain,
    section,
    update_view,
)

NAME = "probe"
# Stands for the slow step (an LDAP test): the work waits for it, so a test decides when the work
# reaches Slack. (An immediate views.update can overtake the submission's own `update` acknowledgement
# on its way to Slack and be overwritten by it.)
SLOW_STEP_DONE = threading.Event()


class Callback(StrEnum):
    MODAL = "probe_modal"


class Block(StrEnum):
    SECRET = "probe_secret"


class Action(StrEnum):
    SECRET = "probe_secret_input"
    RECHECK = "probe_recheck"


class ProbeState(ViewOrigin):
    """What the modal carries in `private_metadata` (never the secret)."""

    account: str


def modal(state: ProbeState) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": Callback.MODAL,
        "title": plain("Probe"),
        "submit": plain("Check"),
        "close": plain("Cancel"),
        "private_metadata": encode_metadata(state),
        "blocks": [
            {
                "type": "input",
                "block_id": Block.SECRET,
                "label": plain(f"Secret for {state.account}"),
                "element": {"type": "plain_text_input", "action_id": Action.SECRET},
            }
        ],
    }


def handle(ctx: CommandContext) -> None:
    ctx.ack()
    account = ctx.args[0] if ctx.args else "corp"
    ctx.client.views_open(
        trigger_id=ctx.trigger_id, view=modal(ProbeState(account=account, channel_id=ctx.channel_id))
    )


def on_submit(services: Services, ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
    value = view["state"]["values"][Block.SECRET][Action.SECRET].get("value") or ""
    if len(value) < 3:
        ack(response_action="errors", errors={Block.SECRET: "At least 3 characters."})
        return
    state = decode_metadata(ProbeState, view["private_metadata"])
    ack(response_action="update", view=notice_modal("Probe", f"Checking {state.account}…"))
    services.submit(work, services, view["id"], body["user"]["id"], state, SecretStr(value))


def work(services: Services, view_id: str, user_id: str, state: ProbeState, secret: SecretStr) -> None:
    client: WebClient = services.client
    SLOW_STEP_DONE.wait(timeout=10)
    with active_secret(secret):
        result = f"{state.account}: checked ({len(secret.get_secret_value())} characters)"
    if not update_view(client, view_id, notice_modal("Probe", result)):
        client.chat_postEphemeral(channel=state.channel_id, user=user_id, text=result)
    channel = services.settings.slack.channel or state.channel_id
    text = f"<@{user_id}> probed {state.account}"
    announcement = client.chat_postMessage(channel=channel, text=text, blocks=announcement_blocks(text))
    client.chat_postMessage(channel=channel, thread_ts=announcement["ts"], text="sensor-1: ok")


def announcement_blocks(text: str) -> list[dict[str, Any]]:
    button = {"type": "button", "action_id": Action.RECHECK, "text": plain("Check again"), "value": "corp"}
    return [section(text), {"type": "actions", "elements": [button]}]


def on_recheck(services: Services, ack: Ack, body: dict[str, Any]) -> None:
    ack()
    channel, ts = body["channel"]["id"], body["container"]["message_ts"]
    text = f"checked again by <@{body['user']['id']}>"
    services.submit(services.client.chat_postMessage, channel=channel, thread_ts=ts, text=text)


SUBCOMMAND = Subcommand(name=NAME, summary="test a secret (test only)", handler=handle, usage="[account]")


def register(app: App, services: Services) -> None:
    def submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        on_submit(services, ack, body, view)

    def recheck(ack: Ack, body: dict[str, Any]) -> None:
        on_recheck(services, ack, body)

    app.view(Callback.MODAL, middleware=[authorize_interaction(services, NAME)])(submitted)
    app.action(Action.RECHECK, middleware=[authorize_interaction(services, NAME)])(recheck)
