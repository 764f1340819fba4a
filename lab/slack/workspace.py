"""The emulated workspace and its Web API methods: state in, Slack-shaped answers out (no I/O here)."""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TEAM_ID = "T0LAB"
TEAM_DOMAIN = "atp-lab"
APP_ID = "A0ATPBOT"
BOT_USER_ID = "U0ATPBOT"
BOT_ID = "B0ATPBOT"
TRIGGER_SECONDS = 3.0  # Slack's validity of a trigger_id
MAX_VIEW_STACK = 3


class ApiError(Exception):
    """A Slack error answer: HTTP 200 with `{"ok": false, "error": …}`."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class User:
    id: str
    name: str
    real_name: str = ""


@dataclass
class Trigger:
    user: str
    issued: float
    used: bool = False


@dataclass
class View:
    """One modal as Slack keeps it. `stack` is the list of view ids of its modal stack, shared."""

    id: str
    user: str
    data: dict[str, Any]
    hash: str
    stack: list[str]
    open: bool = True

    def as_slack(self) -> dict[str, Any]:
        root = self.stack[0] if self.stack else self.id
        index = self.stack.index(self.id) if self.id in self.stack else 0
        return {
            "id": self.id,
            "team_id": TEAM_ID,
            "type": self.data.get("type", "modal"),
            "title": self.data.get("title"),
            "submit": self.data.get("submit"),
            "close": self.data.get("close"),
            "blocks": self.data.get("blocks", []),
            "private_metadata": self.data.get("private_metadata", ""),
            "callback_id": self.data.get("callback_id", ""),
            "external_id": self.data.get("external_id", ""),
            "notify_on_close": bool(self.data.get("notify_on_close", False)),
            "clear_on_close": bool(self.data.get("clear_on_close", False)),
            "state": {"values": {}},
            "hash": self.hash,
            "root_view_id": root,
            "previous_view_id": self.stack[index - 1] if index > 0 else None,
            "app_id": APP_ID,
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
        }


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    ephemeral_to: str | None = None  # a chat.postEphemeral message, seen only by this user


@dataclass
class Workspace:
    """Users, user groups, channels, modals, messages. Every method takes the API arguments as sent."""

    users: dict[str, User] = field(
        default_factory=lambda: {
            u.id: u
            for u in (
                User("U0ALICE", "alice", "Alice Admin"),
                User("U0BOB", "bob", "Bob Ops"),
                User("U0MALLORY", "mallory", "Mallory"),
                User(BOT_USER_ID, "atp-bot"),
            )
        }
    )
    usergroups: dict[str, list[str]] = field(default_factory=lambda: {"S0SECOPS": ["U0BOB"]})
    # A user group's handle (what `@…` mentions) and display name; a group not listed here has its ID,
    # lower-cased, as handle and its ID as name. Any member may edit these unless the workspace restricts
    # user-group editing to admins.
    usergroup_labels: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {"S0SECOPS": ("secops", "Security Operations")}
    )
    channels: set[str] = field(default_factory=lambda: {"C0OPS", "C0RANDOM"})
    trigger_seconds: float = TRIGGER_SECONDS
    clock: Callable[[], float] = time.monotonic
    views: dict[str, View] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    triggers: dict[str, Trigger] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _next(self) -> int:
        return next(self._ids)

    # -- things the emulated user does --------------------------------------------------------------

    def new_trigger(self, user: str) -> str:
        trigger_id = f"{self._next()}.{secrets.token_hex(6)}"
        with self.lock:
            self.triggers[trigger_id] = Trigger(user, self.clock())
        return trigger_id

    def user_name(self, user_id: str) -> str:
        user = self.users.get(user_id)
        return user.name if user else user_id.lower()

    def open_view(self, view_id: str) -> View:
        with self.lock:
            view = self.views.get(view_id)
            if view is None or not view.open:
                raise LookupError(f"view {view_id} is not open")
            return view

    def close_stack(self, view_id: str) -> None:
        """The user closes the modal (or the app answered `clear`): every view of its stack goes."""
        with self.lock:
            for member in self.views[view_id].stack:
                self.views[member].open = False

    def pop_view(self, view_id: str) -> None:
        """A submission acknowledged without `response_action` closes that view; the previous one shows."""
        with self.lock:
            view = self.views[view_id]
            view.open = False
            if view_id in view.stack:
                view.stack.remove(view_id)

    # -- Web API methods ------------------------------------------------------------------------------

    def call(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, "api_" + method.replace(".", "_"), None)
        if handler is None:
            raise ApiError("unknown_method")
        with self.lock:
            result: dict[str, Any] = handler(args)
        return {"ok": True, **result}

    def api_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "ATP Lab",
            "user": "atp-bot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def api_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user", "")))
        if user is None:
            raise ApiError("user_not_found")
        return {
            "user": {
                "id": user.id,
                "team_id": TEAM_ID,
                "name": user.name,
                "real_name": user.real_name,
                "is_bot": user.id == BOT_USER_ID,
                "deleted": False,
            }
        }

    def api_usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self.usergroups.get(str(args.get("usergroup", "")))
        if group is None:
            raise ApiError("no_such_subteam")
        return {"users": list(group)}

    def api_usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        """The workspace's user groups as Slack lists them; members only with `include_users`, counts only
        with `include_count` (Slack sends booleans in a form body as "true"/"1")."""
        return {"usergroups": [self._usergroup(group, args) for group in self.usergroups]}

    def _usergroup(self, group: str, args: dict[str, Any]) -> dict[str, Any]:
        handle, name = self.usergroup_labels.get(group, (group.lower(), group))
        members = list(self.usergroups[group])
        listed: dict[str, Any] = {
            "id": group,
            "team_id": TEAM_ID,
            "is_usergroup": True,
            "name": name,
            "description": "",
            "handle": handle,
            "is_external": False,
            "date_create": 1700000000,
            "date_update": 1700000000,
            "date_delete": 0,
            "auto_type": None,
            "created_by": "U0ALICE",
            "updated_by": "U0ALICE",
            "deleted_by": None,
            "prefs": {"channels": [], "groups": []},
        }
        if _flag(args.get("include_users")):
            listed["users"] = members
        if _flag(args.get("include_count")):
            listed["user_count"] = str(len(members))  # a string, as in Slack's answers
        return listed

    def _take_trigger(self, trigger_id: str) -> Trigger:
        trigger = self.triggers.get(trigger_id)
        if trigger is None:
            raise ApiError("invalid_trigger_id")
        if trigger.used:
            raise ApiError("exchanged_trigger_id")
        if self.clock() - trigger.issued > self.trigger_seconds:
            raise ApiError("expired_trigger_id")
        trigger.used = True
        return trigger

    def _new_view(self, data: dict[str, Any], user: str, stack: list[str]) -> View:
        view = View(id=f"V{self._next():06d}", user=user, data=data, hash=_new_hash(), stack=stack)
        stack.append(view.id)
        self.views[view.id] = view
        return view

    def api_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        data = _view_argument(args)
        trigger = self._take_trigger(str(args.get("trigger_id", "")))
        return {"view": self._new_view(data, trigger.user, []).as_slack()}

    def api_views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        data = _view_argument(args)
        trigger = self._take_trigger(str(args.get("trigger_id", "")))
        top = [v for v in self.views.values() if v.user == trigger.user and v.open]
        if not top:
            raise ApiError("not_found")
        return {"view": self.push_view(top[-1], data).as_slack()}

    def push_view(self, on: View, data: dict[str, Any]) -> View:
        """Push a view onto the stack of `on` (views.push, or a submission answered `push`)."""
        if len(on.stack) >= MAX_VIEW_STACK:
            raise ApiError("push_limit_reached")
        return self._new_view(data, on.user, on.stack)

    def api_views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        data = _view_argument(args)
        view = self.views.get(str(args.get("view_id", "")))
        if view is None and args.get("external_id"):
            view = next(
                (v for v in self.views.values() if v.data.get("external_id") == args["external_id"]), None
            )
        if view is None or not view.open:
            raise ApiError("not_found")
        if args.get("hash") and args["hash"] != view.hash:
            raise ApiError("hash_conflict")
        self.replace_view(view, data)
        return {"view": view.as_slack()}

    def replace_view(self, view: View, data: dict[str, Any]) -> None:
        view.data, view.hash = data, _new_hash()

    def _channel(self, args: dict[str, Any]) -> str:
        channel = str(args.get("channel", ""))
        if channel not in self.channels and not channel.startswith("D"):
            raise ApiError("channel_not_found")
        return channel

    def _new_ts(self) -> str:
        return f"{int(time.time())}.{self._next():06d}"

    def api_conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        """A DM with one user (`users`): its channel id is D + the user id."""
        user = str(args.get("users", ""))
        if user not in self.users:
            raise ApiError("user_not_found")
        return {"channel": {"id": f"D{user}"}}

    def api_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        text, blocks = _content(args)
        thread_ts = args.get("thread_ts") or None
        message = Message(channel, self._new_ts(), text, blocks, thread_ts=thread_ts)
        self.messages.append(message)
        return {"channel": channel, "ts": message.ts, "message": _message_json(message)}

    def api_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        message = next((m for m in self.messages if m.channel == channel and m.ts == args.get("ts")), None)
        if message is None or message.ephemeral_to:
            raise ApiError("message_not_found")
        message.text, message.blocks = _content(args)
        return {"channel": channel, "ts": message.ts, "text": message.text, "message": _message_json(message)}

    def api_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        user = str(args.get("user", ""))
        if user not in self.users:
            raise ApiError("user_not_found")
        text, blocks = _content(args)
        message = Message(channel, self._new_ts(), text, blocks, args.get("thread_ts"), ephemeral_to=user)
        self.messages.append(message)
        return {"message_ts": message.ts}


def _new_hash() -> str:
    return f"{int(time.time())}.{secrets.token_hex(4)}"


def _view_argument(args: dict[str, Any]) -> dict[str, Any]:
    view = args.get("view")
    if isinstance(view, str):
        try:
            view = json.loads(view)
        except ValueError:
            raise ApiError("invalid_arguments") from None
    if not isinstance(view, dict) or view.get("type") != "modal":
        raise ApiError("invalid_arguments")
    title = (view.get("title") or {}).get("text", "")
    if not title or len(title) > 24 or len(view.get("blocks") or []) > 100:
        raise ApiError("invalid_arguments")
    if len(view.get("private_metadata") or "") > 3000 or len(view.get("callback_id") or "") > 255:
        raise ApiError("invalid_arguments")
    return view


def _content(args: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    blocks = args.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    text = str(args.get("text") or "")
    if not text and not blocks:
        raise ApiError("no_text")
    return text, blocks


def _message_json(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "message",
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "text": message.text,
        "blocks": message.blocks,
        "ts": message.ts,
    }
    if message.thread_ts:
        data["thread_ts"] = message.thread_ts
    return data


def _flag(value: Any) -> bool:
    """A boolean Web API argument, as JSON or as form text."""
    return value is True or str(value).lower() in ("true", "1")
