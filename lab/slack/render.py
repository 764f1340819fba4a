"""Block Kit as terminal text (pure): what a person would see of a modal or a message in Slack.

Text is shown as sent (mrkdwn is not interpreted). Inputs never show a value: a typed password is not
part of what Slack echoes back to the app, and the renderer would not print it if it were.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

Block = Mapping[str, Any]

BLANK = "________"
BAR = "| "


def text_of(obj: Any) -> str:
    """The text of a text object (`{"type": "mrkdwn" | "plain_text", "text": …}`) or a plain string."""
    if isinstance(obj, Mapping):
        return str(obj.get("text", ""))
    return "" if obj is None else str(obj)


def element_text(element: Block) -> str:
    """One interactive element or context element, on one line."""
    kind = element.get("type")
    if kind == "button":
        return f"[{text_of(element.get('text'))}]"
    if kind in ("mrkdwn", "plain_text"):
        return text_of(element)
    if kind == "image":
        return f"[image: {element.get('alt_text', '')}]"
    if kind in ("static_select", "multi_static_select", "radio_buttons", "checkboxes"):
        options = [text_of(o.get("text")) for o in element.get("options", [])]
        return "( " + " | ".join(options) + " )" if options else "( … )"
    if kind in ("users_select", "conversations_select", "channels_select", "external_select"):
        return f"( {text_of(element.get('placeholder')) or 'choose'} ▾ )"
    if kind in ("plain_text_input", "datepicker", "timepicker", "number_input", "email_text_input"):
        return BLANK
    return f"[{kind}]"


def _input(block: Block, error: str | None) -> list[str]:
    label = text_of(block.get("label"))
    optional = " (optional)" if block.get("optional") else ""
    lines = [f"[ {label}{optional}: {element_text(block.get('element') or {})} ]"]
    hint = text_of(block.get("hint"))
    if hint:
        lines.append(f"  {hint}")
    if error:
        lines.append(f"  ⚠ {error}")
    return lines


def block_lines(block: Block, errors: Mapping[str, str] | None = None) -> list[str]:
    """The lines of one block; `errors` are inline errors by block id (`response_action: errors`)."""
    kind = block.get("type")
    if kind == "section":
        lines = text_of(block.get("text")).splitlines() if block.get("text") else []
        lines += [text_of(f) for f in block.get("fields", [])]
        accessory = block.get("accessory")
        if accessory:
            lines.append(element_text(accessory))
        return lines
    if kind == "header":
        return [f"# {text_of(block.get('text'))}"]
    if kind == "context":
        return ["» " + "  ".join(element_text(e) for e in block.get("elements", []))]
    if kind == "input":
        return _input(block, (errors or {}).get(str(block.get("block_id", ""))))
    if kind == "actions":
        return ["  ".join(element_text(e) for e in block.get("elements", []))]
    if kind == "divider":
        return ["―" * 20]
    if kind == "image":
        return [element_text(block)]
    return [f"[{kind} block]"]


def decode_blocks(blocks: Any) -> list[Block]:
    """Blocks as an API call carried them: a list, or a JSON string (form-encoded calls)."""
    if isinstance(blocks, str):
        blocks = json.loads(blocks) if blocks.strip() else []
    return list(blocks or [])


def render_blocks(blocks: Sequence[Block], errors: Mapping[str, str] | None = None) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        lines += block_lines(block, errors)
    return lines


def render_view(view: Block, errors: Mapping[str, str] | None = None) -> str:
    """A modal: its title, its blocks, and its Close/Submit buttons."""
    title = text_of(view.get("title"))
    body = [BAR + line for line in render_blocks(decode_blocks(view.get("blocks")), errors)]
    buttons = [f"[{text_of(view[key])}]" for key in ("close", "submit") if view.get(key)]
    return "\n".join([f"┌─ {title}", *body, "└─ " + " ".join(buttons)])


def render_message(text: str, blocks: Any = None, *, heading: str = "atp-bot") -> str:
    """A message: its blocks, or its text when it has none (Slack shows the text only then)."""
    decoded = decode_blocks(blocks)
    lines = render_blocks(decoded) if decoded else text.splitlines()
    return "\n".join([f"{heading}:", *(BAR + line for line in lines)])
