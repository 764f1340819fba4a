"""Small pure helpers for modals and their state, plus the one Slack answer every flow must expect:
a modal the user already closed cannot be updated."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

PRIVATE_METADATA_LIMIT = 3000  # characters, Slack's limit for `private_metadata`

M = TypeVar("M", bound=BaseModel)


def encode_metadata(state: BaseModel) -> str:
    """Serialise a view's state for `private_metadata` (never put a secret in it: Slack echoes it)."""
    text = state.model_dump_json()
    if len(text) > PRIVATE_METADATA_LIMIT:
        raise ValueError(f"private_metadata would be {len(text)} characters (limit {PRIVATE_METADATA_LIMIT})")
    return text


def decode_metadata(model: type[M], text: str) -> M:
    """Parse `private_metadata` back (raises pydantic.ValidationError on anything unexpected)."""
    return model.model_validate_json(text)


class ViewOrigin(BaseModel):
    """What the `private_metadata` of every sensitive modal carries (its state model extends this): the
    channel it was opened from. A view submission has no channel of its own, and `allowed_channels`
    must still hold when it arrives."""

    channel_id: str


def view_channel(view: Mapping[str, Any]) -> str | None:
    """The channel a modal was opened from, or None when its `private_metadata` does not say."""
    try:
        return ViewOrigin.model_validate_json(view.get("private_metadata") or "").channel_id
    except ValidationError:
        return None


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def section(markdown: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": markdown}}


def notice_modal(title: str, markdown: str) -> dict[str, Any]:
    """A modal with one message and a Close button (titles are cut to Slack's 24 characters)."""
    return {
        "type": "modal",
        "title": plain(title[:24]),
        "close": plain("Close"),
        "blocks": [section(markdown)],
    }


def update_view(
    client: WebClient, view_id: str, view: dict[str, Any], *, view_hash: str | None = None
) -> bool:
    """`views.update`; False if the user has closed the modal meanwhile (Slack says `not_found`), so the
    caller can tell the user another way. Other errors raise as usual."""
    try:
        client.views_update(view_id=view_id, view=view, hash=view_hash)
    except SlackApiError as exc:
        if exc.response.get("error") == "not_found":
            return False
        raise
    return True
