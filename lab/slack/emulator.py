"""`SlackEmulator`: what tests (and a person) drive. It plays Slack towards the real Bolt app: the
Web API the app calls, and the user who types `/atp …`, submits modals and clicks buttons, delivered
over Socket Mode or, once `request_url` is set, as signed HTTP requests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from lab.slack.signing import HttpAnswer, Signing, post, signed_headers
from lab.slack.socket_mode import SocketModeServer
from lab.slack.webapi import Call, Fault, Outage, WebApi, WebApiServer
from lab.slack.workspace import APP_ID, TEAM_DOMAIN, TEAM_ID, Message, View, Workspace

ACK_DEADLINE = 3.0  # Slack shows the user an error when an acknowledgement takes longer
VERIFICATION_TOKEN = "lab-verification-token"
LAB_BOT_TOKEN = "xoxb-lab-bot-token"
LAB_APP_TOKEN = "xapp-1-lab-app-token"
LAB_SIGNING_SECRET = "lab-signing-secret"


@dataclass(frozen=True)
class Delivery:
    """What happened to one request sent to the app: its acknowledgement as Slack saw it."""

    kind: str  # slash_commands | block_actions | view_submission | view_closed
    status: int  # HTTP status (Socket Mode: 200 if acknowledged, 0 if not)
    ack: dict[str, Any] | None  # the acknowledgement's payload ({} for an empty ack)
    latency: float
    trigger_id: str

    @property
    def late(self) -> bool:
        return self.ack is None or self.latency > ACK_DEADLINE

    @property
    def text(self) -> str:
        """The text of an acknowledgement message (what the user sees ephemerally)."""
        return str((self.ack or {}).get("text", ""))


class SlackEmulator:
    def __init__(
        self,
        *,
        bot_token: str = LAB_BOT_TOKEN,
        app_token: str = LAB_APP_TOKEN,
        signing_secret: str = LAB_SIGNING_SECRET,
        workspace: Workspace | None = None,
        ack_wait: float = 5.0,
        api_port: int = 0,
    ) -> None:
        self.bot_token, self.app_token, self.signing_secret = bot_token, app_token, signing_secret
        self.workspace = workspace or Workspace()
        self.ack_wait = ack_wait
        self.request_url: str | None = None  # set: deliver as signed HTTP requests (HTTP mode)
        self.deliveries: list[Delivery] = []
        self._last_request: tuple[str, dict[str, str]] | None = None  # HTTP mode: body and headers
        self._socket = SocketModeServer()
        self._api = WebApi(self.workspace, bot_token, app_token, self._socket.new_url)
        self._http = WebApiServer(self._api, port=api_port)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> SlackEmulator:
        self._http.start()
        self._socket.start()
        return self

    def stop(self) -> None:
        self._socket.stop()
        self._http.stop()

    def __enter__(self) -> SlackEmulator:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        """The app's `[slack] api_url`."""
        return f"{self._http.base_url}/api/"

    @property
    def socket_port(self) -> int:
        return self._socket.port

    def wait_connected(self, timeout: float = 5.0) -> None:
        self._socket.wait_connected(timeout)

    @property
    def connected_apps(self) -> int:
        """How many Socket Mode connections are open."""
        return self._socket.connected

    def reset(self) -> None:
        """Forget recorded calls, deliveries, scripted faults and outages, messages, modals and triggers
        (users, user groups and channels stay), so one running emulator can serve several tests."""
        with self._api.lock:
            self._api.calls.clear()
            self._api.faults.clear()
            self._api.outage = None
        with self.workspace.lock:
            self.workspace.messages.clear()
            self.workspace.views.clear()
            self.workspace.triggers.clear()
        self.deliveries.clear()

    # -- what Slack saw ----------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        with self._api.lock:
            return [c for c in self._api.calls if method is None or c.method == method]

    def fail(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int | None = 1,
        error: str | None = None,
        times: int = 1,
    ) -> None:
        """Script the next `times` calls of `method`: 429 with Retry-After, 5xx, or 200 with `error`."""
        self._api.fail(method, Fault(status, retry_after if status == 429 else None, error, times))

    def outage(self, seconds: float, *, status: int = 503, retry_after: int | None = None) -> None:
        """Slack is down for `seconds` of the workspace's clock from now: every Web API call answers
        `status` (503, or 429 with `retry_after`), whatever the method, until then."""
        with self._api.lock:
            until = self.workspace.clock() + seconds
            self._api.outage = Outage(status, until, retry_after if status == 429 else None)

    def redirect(self, method: str, location: str, *, status: int = 302) -> None:
        """Answer the next call of `method` with a `status` redirect to `location`."""
        self._api.fail(method, Fault(status, location=location))

    def messages(self, channel: str | None = None) -> list[Message]:
        with self.workspace.lock:
            return [m for m in self.workspace.messages if channel is None or m.channel == channel]

    def view(self, view_id: str) -> dict[str, Any]:
        """The view as the user currently sees it."""
        return self.workspace.open_view(view_id).as_slack()

    def open_views(self, user: str) -> list[View]:
        with self.workspace.lock:
            return [v for v in self.workspace.views.values() if v.user == user and v.open]

    # -- what the user does ------------------------------------------------------------------------

    def slash_command(
        self,
        text: str,
        *,
        user: str = "U0ALICE",
        channel: str = "C0OPS",
        command: str = "/atp",
        signing: Signing = Signing.VALID,
    ) -> Delivery:
        trigger_id = self.workspace.new_trigger(user)
        payload = {
            "token": VERIFICATION_TOKEN,
            "team_id": TEAM_ID,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel,
            "channel_name": channel.lower(),
            "user_id": user,
            "user_name": self.workspace.user_name(user),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": f"{self._http.base_url}/response/{trigger_id}",
            "trigger_id": trigger_id,
        }
        return self._deliver("slash_commands", payload, trigger_id, signing)

    def submit_view(
        self,
        view_id: str,
        values: dict[str, dict[str, Any]],
        *,
        user: str | None = None,
        signing: Signing = Signing.VALID,
    ) -> Delivery:
        """Submit an open modal. `values` maps block_id → action_id → a typed string (a plain-text
        input) or a full Slack state value dict. The acknowledgement's `response_action` is applied."""
        view = self.workspace.open_view(view_id)
        user = user or view.user
        state = {
            block: {action: _state_value(v) for action, v in actions.items()}
            for block, actions in values.items()
        }
        trigger_id = self.workspace.new_trigger(user)
        payload = self._interaction("view_submission", user, trigger_id)
        payload["view"] = {**view.as_slack(), "state": {"values": state}}
        payload["response_urls"] = []
        delivery = self._deliver("interactive", payload, trigger_id, signing, kind="view_submission")
        if delivery.status == 200 and delivery.ack is not None:
            self._apply_response_action(view, delivery.ack)
        return delivery

    def close_view(self, view_id: str, *, user: str | None = None) -> Delivery | None:
        """The user closes the modal; the app hears of it only if the view asked (`notify_on_close`)."""
        view = self.workspace.open_view(view_id)
        self.workspace.close_stack(view_id)
        if not view.data.get("notify_on_close"):
            return None
        user = user or view.user
        payload = self._interaction("view_closed", user, "")
        payload["view"], payload["is_cleared"] = view.as_slack(), False
        return self._deliver("interactive", payload, "", Signing.VALID, kind="view_closed")

    def click(
        self,
        action_id: str,
        *,
        user: str = "U0ALICE",
        block_id: str = "",
        value: str | None = None,
        view_id: str | None = None,
        channel: str | None = None,
        message_ts: str | None = None,
        signing: Signing = Signing.VALID,
    ) -> Delivery:
        """Click a button in an open modal (`view_id`) or in a message (`channel` + `message_ts`)."""
        trigger_id = self.workspace.new_trigger(user)
        payload = self._interaction("block_actions", user, trigger_id)
        action: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "block_id": block_id,
            "action_ts": f"{time.time():.6f}",
        }
        if value is not None:
            action["value"] = value
        payload["actions"] = [action]
        if view_id is not None:
            payload["container"] = {"type": "view", "view_id": view_id}
            payload["view"] = self.workspace.open_view(view_id).as_slack()
        elif channel is not None and message_ts is not None:
            payload["container"] = {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": False,
            }
            payload["channel"] = {"id": channel, "name": channel.lower()}
            found = [m for m in self.messages(channel) if m.ts == message_ts]
            payload["message"] = {
                "ts": message_ts,
                "text": found[0].text if found else "",
                "blocks": found[0].blocks if found else [],
            }
            payload["response_url"] = f"{self._http.base_url}/response/{trigger_id}"
        else:
            raise ValueError("click: give view_id, or channel and message_ts")
        return self._deliver("interactive", payload, trigger_id, signing, kind="block_actions")

    def resend_last(self) -> HttpAnswer:
        """HTTP mode: send the last request again, byte for byte (what someone who captured it could do
        within the signature's 5 minutes)."""
        if self.request_url is None or self._last_request is None:
            raise RuntimeError("no HTTP request was sent yet")
        body, headers = self._last_request
        return post(self.request_url, body, headers, timeout=self.ack_wait)

    # -- delivery ----------------------------------------------------------------------------------

    def _interaction(self, kind: str, user: str, trigger_id: str) -> dict[str, Any]:
        name = self.workspace.user_name(user)
        return {
            "type": kind,
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "user": {"id": user, "username": name, "name": name, "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": trigger_id,
            "is_enterprise_install": False,
            "enterprise": None,
        }

    def _deliver(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        trigger_id: str,
        signing: Signing,
        *,
        kind: str | None = None,
    ) -> Delivery:
        kind = kind or envelope_type
        if self.request_url is None:
            ack = self._socket.deliver(envelope_type, payload, timeout=self.ack_wait)
            delivery = Delivery(
                kind, 200 if ack.payload is not None else 0, ack.payload, ack.latency, trigger_id
            )
        else:
            if envelope_type == "slash_commands":
                body = urlencode(payload)
            else:
                body = urlencode({"payload": json.dumps(payload)})
            headers = signed_headers(self.signing_secret, body, signing)
            self._last_request = (body, headers)
            answer = post(self.request_url, body, headers, timeout=self.ack_wait)
            parsed = json.loads(answer.body) if answer.body.strip().startswith("{") else {}
            delivery = Delivery(
                kind, answer.status, parsed if answer.status == 200 else None, answer.latency, trigger_id
            )
        self.deliveries.append(delivery)
        return delivery

    def _apply_response_action(self, view: View, ack: dict[str, Any]) -> None:
        action = ack.get("response_action")
        with self.workspace.lock:
            if action == "update":
                self.workspace.replace_view(view, ack["view"])
            elif action == "push":
                self.workspace.push_view(view, ack["view"])
            elif action == "clear":
                self.workspace.close_stack(view.id)
            elif action != "errors":
                self.workspace.pop_view(view.id)


def _state_value(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return {"type": "plain_text_input", "value": str(value)}
