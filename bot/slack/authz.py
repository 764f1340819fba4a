"""Who may use the sensitive `/atp` subcommands: allowed users, allowed user-group members, and
optionally only in allowed channels. User-group members (and the groups' handles, which the audit trail
names when a group granted access) are read from Slack and cached briefly."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.config import SlackConfig

log = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 60.0
# A user group's handle as Slack allows it (lower case, digits, `.`, `-`, `_`); anything else is not shown.
HANDLE = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str | None = None  # for the audit trail
    message: str | None = None  # for the user, in a refusal
    via: str | None = None  # the user group that granted access (`@handle`, or its ID), for the audit trail


ALLOWED = Decision(allowed=True)


def click_counts(config: SlackConfig, channel_id: str | None, posted_in: Collection[str]) -> bool:
    """Does a button clicked in `channel_id` count? Only where atp-bot put it (`posted_in`: a channel, a
    person's direct message with the bot) or in `allowed_channels`: a copy of it elsewhere changes nothing."""
    return bool(channel_id) and (channel_id in posted_in or channel_id in config.allowed_channels)


class GroupLookupError(Exception):
    """Slack could not tell who is in a user group."""


class Authorizer:
    """The access policy of `[slack]`: `allowed_users`, `allowed_usergroups`, `allowed_channels`.

    With neither users nor groups configured, nobody is allowed (fail closed).
    """

    def __init__(
        self,
        config: SlackConfig,
        client: WebClient,
        *,
        cache_seconds: float = GROUP_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = frozenset(config.allowed_users)
        self._groups = tuple(config.allowed_usergroups)
        self._channels = frozenset(config.allowed_channels)
        self._client = client
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._handles: tuple[float, dict[str, str]] | None = None

    def check(self, what: str, user_id: str, channel_id: str | None) -> Decision:
        """May `user_id` do `what` (e.g. `/atp password`) in `channel_id` (None: not in a channel)?"""
        if self._channels and channel_id is not None and channel_id not in self._channels:
            places = ", ".join(f"<#{c}>" for c in sorted(self._channels))
            return Decision(False, "channel not allowed", f"`{what}` can only be used in {places}.")
        if user_id in self._users:
            return ALLOWED
        try:
            group = next((g for g in self._groups if user_id in self._group_members(g)), None)
        except GroupLookupError as exc:
            return Decision(
                False,
                f"user-group lookup failed: {exc}",
                "Your access could not be checked because Slack did not answer; try again in a minute.",
            )
        if group is not None:
            return Decision(allowed=True, via=self._group_name(group))
        return Decision(
            False, "user not allowed", f"You are not allowed to use `{what}`. Ask an atp-bot administrator."
        )

    def _group_members(self, group: str) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            cached = self._members.get(group)
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        try:
            response = self._client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            error = exc.response.get("error", "unknown error")
            log.warning("cannot list the members of user group %s: %s", group, error)
            raise GroupLookupError(str(error)) from None
        except SlackClientError as exc:
            log.warning("cannot list the members of user group %s: %s", group, type(exc).__name__)
            raise GroupLookupError(type(exc).__name__) from None
        except OSError as exc:
            log.warning("cannot reach Slack to list user group %s: %s", group, exc)
            raise GroupLookupError("Slack unreachable") from None
        members = frozenset(response.get("users") or [])
        with self._lock:
            self._members[group] = (now, members)
        return members

    def _group_name(self, group: str) -> str:
        """`@handle` of a user group (`usergroups.list`, cached like the members), or its ID when Slack
        does not say: the name is for the audit trail, access was already decided by the ID."""
        now = self._clock()
        with self._lock:
            cached = self._handles
        if cached is None or now - cached[0] >= self._cache_seconds:
            try:
                answer = self._client.usergroups_list(include_disabled=True)
            except (SlackClientError, OSError) as exc:
                log.warning("cannot list the user groups' handles: %s", type(exc).__name__)
                return group
            listed = answer.get("usergroups") or []
            handles = {
                g["id"]: g["handle"]
                for g in listed
                if isinstance(g, dict) and isinstance(g.get("id"), str) and isinstance(g.get("handle"), str)
            }
            cached = (now, handles)
            with self._lock:
                self._handles = cached
        handle = cached[1].get(group, "")
        return f"@{handle}" if HANDLE.fullmatch(handle) else group
