"""Block Kit as a Slack-like picture (SVG, pure): the `/atp password` modal, its result, and the channel
thread, drawn from the Web API calls the Slack emulator recorded (`atp-bot lab demo --picture`).

Everything drawn is peer text: it is escaped, and characters XML cannot carry are dropped. Inputs never
show a value: a password input is a fixed row of dots whatever was typed (and what was typed is never part
of a recorded call). SVG cannot wrap text, so lines are wrapped on widths estimated for the widest common
sans-serif (DejaVu Sans): with a narrower font a line ends a little short, never outside its box.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from lab.slack.render import Block, decode_blocks, text_of
from lab.slack.webapi import Call

FONT = "Lato, 'Helvetica Neue', Helvetica, Arial, 'Segoe UI', 'DejaVu Sans', sans-serif"
EMOJI_FONT = "'Apple Color Emoji', 'Segoe UI Emoji', 'Noto Color Emoji', sans-serif"
MONO = "Monaco, Menlo, Consolas, 'DejaVu Sans Mono', monospace"
INK, GREY, LINK, CODE, GREEN, RULE = "#1d1c1d", "#616061", "#1264a3", "#e01e5a", "#007a5a", "#dddddd"
EMOJI = {
    "key": "🔑",
    "white_check_mark": "✅",
    "x": "❌",
    "warning": "⚠️",
    "rotating_light": "🚨",
    "hourglass_flowing_sand": "⏳",
    "no_entry": "⛔",
}
BOT_NAME = "atp-bot"  # the lab workspace's bot user, who posts every message drawn
EMOJI_CHARS = re.compile("(?:" + "|".join(EMOJI.values()) + ")")
PASSWORD_DOTS = "•" * 12  # the same whatever was typed: not even the length shows
MARGIN, GAP, MODAL_WIDTH, THREAD_WIDTH, PAD = 24, 32, 520, 600, 24
MRKDWN = re.compile(
    r"`(?P<code>[^`\n]+)`|(?<!\w)\*(?P<bold>[^*\n]+)\*(?!\w)|(?<!\w)_(?P<italic>[^_\n]+)_(?!\w)"
    r"|<(?P<link>[^>\n]+)>"
)
SHORTCODE = re.compile(r":([a-z0-9_+-]+):")
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
NARROW, WIDE = frozenset(" .,:;'|!ijlrtfI()[]-/"), frozenset("mwMW@%…")
SELECTS = ("static_select", "external_select", "users_select", "conversations_select", "channels_select")


@dataclass(frozen=True)
class Run:
    """A piece of text in one style: "" (plain), bold, italic, code, link; muted or badge (small, grey)."""

    text: str
    style: str = ""


@dataclass(frozen=True)
class Post:
    """A channel message as it ended up (`edited`: chat.update changed it)."""

    channel: str
    ts: str
    thread_ts: str | None
    text: str
    blocks: list[Block]
    edited: bool = False


@dataclass(frozen=True)
class Scene:
    """What the picture shows: the modal as opened, its last state, the first top-level message and its
    thread replies."""

    form: Block | None = None
    result: Block | None = None
    announcement: Post | None = None
    replies: list[Post] = field(default_factory=list)


def _decoded(value: Any) -> Any:
    """An argument as sent: JSON arguments are objects, form-encoded ones are JSON strings."""
    return json.loads(value) if isinstance(value, str) else value


def _post(call: Call, calls: Sequence[Call]) -> Post:
    """A posted message as the last chat.update of its ts (from the answer to the post) left it."""
    ts = str((call.answer or {}).get("ts", ""))
    updates = [c.args for c in calls if c.method == "chat.update" and c.args.get("ts") == ts]
    final = updates[-1] if updates else call.args
    channel, thread_ts = str(call.args.get("channel", "")), call.args.get("thread_ts") or None
    text, blocks = str(final.get("text", "")), decode_blocks(final.get("blocks"))
    return Post(channel, ts, thread_ts, text, blocks, edited=bool(updates))


def scene_from_calls(calls: Sequence[Call]) -> Scene:
    """The scene from recorded calls; only those Slack answered with ok count."""
    done = [c for c in calls if c.answer and c.answer.get("ok")]
    opened = next((c for c in done if c.method == "views.open"), None)
    if opened is None:
        form = result = None
    else:
        form = _decoded(opened.args.get("view"))
        view_id = (opened.answer or {}).get("view", {}).get("id")
        updates = [c for c in done if c.method == "views.update" and c.args.get("view_id") == view_id]
        result = _decoded(updates[-1].args.get("view")) if updates else None
    posts = [_post(c, done) for c in done if c.method == "chat.postMessage"]
    top = next((p for p in posts if p.thread_ts is None), None)
    replies = [p for p in posts if top is not None and p.thread_ts == top.ts]
    return Scene(form, result, top, replies)


def _xml(text: str) -> str:
    return escape(NOT_XML.sub("", text))


def _attribute(value: object) -> str:
    text = f"{round(value, 1):g}" if isinstance(value, float) else str(value)  # not 430.65000000000001
    return quoteattr(NOT_XML.sub("", text))


def _element(tag: str, attributes: Mapping[str, object], content: str = "") -> str:
    attrs = "".join(f" {name}={_attribute(value)}" for name, value in attributes.items())
    return f"<{tag}{attrs}>{content}</{tag}>" if content else f"<{tag}{attrs}/>"


def _emoji(text: str) -> str:
    return SHORTCODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _link(target: str, names: Mapping[str, str]) -> str:
    """`<@U1>`, `<#C1|name>`, `<!here>`, `<url|label>` as Slack shows them."""
    target, _, label = _unescape(target).partition("|")
    if target.startswith("@"):
        return "@" + names.get(target[1:], label or target[1:])
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if target.startswith("!"):
        return "@" + target[1:]
    return label or target


def runs(mrkdwn: str, names: Mapping[str, str]) -> list[Run]:
    """One line of mrkdwn: bold, italic, code, links and mentions; emoji shortcodes outside code."""
    found: list[Run] = []
    position = 0
    for match in MRKDWN.finditer(mrkdwn):
        found.append(Run(_emoji(_unescape(mrkdwn[position : match.start()]))))
        style = str(match.lastgroup)
        value = match.group(style)
        if style == "link":
            found.append(Run(_link(value, names), style))
        else:
            found.append(Run(_unescape(value) if style == "code" else _emoji(_unescape(value)), style))
        position = match.end()
    found.append(Run(_emoji(_unescape(mrkdwn[position:]))))
    return [run for run in found if run.text]


def _em(char: str) -> float:
    if char == "\ufe0f":  # the emoji variation selector
        return 0.0
    if char in NARROW:
        return 0.36
    if char in WIDE:
        return 0.95
    if ord(char) > 0x2000:
        return 1.3
    return 0.74 if char.isupper() or char.isdigit() else 0.62


def width(run: Run, size: float) -> float:
    if run.style == "code":
        return len(run.text) * 0.61 * (size - 1)
    return sum(_em(char) for char in run.text) * size * (1.1 if run.style == "bold" else 1.0)


def _pieces(line: Sequence[Run], limit: float, size: float) -> Iterator[Run]:
    """The words and spaces of a line; a word wider than `limit` is cut in parts that fit."""
    for run in line:
        for piece in re.findall(r"\s+|\S+", run.text):
            part = ""
            for char in piece:
                if part and width(Run(part + char, run.style), size) > limit:
                    yield Run(part, run.style)
                    part = ""
                part += char
            yield Run(part, run.style)


def wrap(line: Sequence[Run], limit: float, size: float) -> list[list[Run]]:
    """The line cut into lines no wider than `limit` (a space only between two words of a line)."""
    lines: list[list[Run]] = [[]]
    used, space = 0.0, None
    for piece in _pieces(line, limit, size):
        if piece.text.isspace():
            space = Run(" ", piece.style)
            continue
        gap = width(space, size) if space and lines[-1] else 0.0
        if lines[-1] and used + gap + width(piece, size) > limit:
            lines.append([])
            used = gap = 0.0
        if gap and space:
            lines[-1].append(space)
        lines[-1].append(piece)
        used += gap + width(piece, size)
        space = None
    return lines


def _content(text: str) -> str:
    """Text for an element: escaped, emoji in an emoji font (a text font may have a plain glyph for them)."""
    return EMOJI_CHARS.sub(lambda m: _element("tspan", {"font-family": EMOJI_FONT}, m.group(0)), _xml(text))


def _tspan(run: Run, size: float) -> str:
    styles: dict[str, dict[str, object]] = {
        "bold": {"font-weight": "bold"},
        "italic": {"font-style": "italic"},
        "code": {"font-family": MONO, "fill": CODE, "font-size": size - 1},
        "link": {"fill": LINK},
        "muted": {"fill": GREY, "font-size": round(size * 0.8)},
        "badge": {"fill": GREY, "font-size": round(size * 0.65), "font-weight": "bold"},
    }
    return _element("tspan", styles[run.style], _content(run.text)) if run.style else _content(run.text)


def button_width(label: str) -> float:
    return width(Run(label, "bold"), 14) + 28


@dataclass
class Pen:
    """Draws in a column, top to bottom: `y` is where the next line starts."""

    x: float
    y: float
    width: float
    names: Mapping[str, str]
    parts: list[str] = field(default_factory=list)

    def text(
        self,
        line: Sequence[Run],
        x: float,
        top: float,
        size: float = 15,
        color: str = INK,
        *,
        middle: bool = False,
    ) -> None:
        """One line of text whose line box starts at `top` (`middle`: centred on `x`)."""
        spans = "".join(_tspan(run, size) for run in line)
        at = {"x": x, "y": top + size * 1.1, "font-size": size, "fill": color, "xml:space": "preserve"}
        self.parts.append(_element("text", {**at, **({"text-anchor": "middle"} if middle else {})}, spans))

    def line(self, line: Sequence[Run], size: float = 15, color: str = INK) -> None:
        self.text(line, self.x, self.y, size, color)
        self.y += size * 1.45

    def paragraph(self, line_runs: Sequence[Run], size: float = 15, color: str = INK) -> None:
        for line in wrap(line_runs, self.width, size):
            self.line(line, size, color)

    def mrkdwn(self, text: str, size: float = 15, color: str = INK) -> None:
        for source_line in text.splitlines() or [""]:
            self.paragraph(runs(source_line, self.names), size, color)

    def text_object(self, obj: Any, size: float = 15, color: str = INK) -> None:
        """A text object: mrkdwn is interpreted, plain_text only gets its emoji."""
        if isinstance(obj, Mapping) and obj.get("type") == "plain_text":
            self.paragraph([Run(_emoji(text_of(obj)))], size, color)
        else:
            self.mrkdwn(text_of(obj), size, color)

    def rect(self, x: float, y: float, w: float, h: float, fill: str = "#ffffff", stroke: str = RULE) -> None:
        box = {"x": x, "y": y, "width": w, "height": h, "rx": 6, "fill": fill, "stroke": stroke}
        self.parts.append(_element("rect", box))

    def rule(self, x: float, y: float, w: float) -> None:
        self.parts.append(_element("line", {"x1": x, "y1": y, "x2": x + w, "y2": y, "stroke": RULE}))

    def button(self, label: str, x: float, primary: bool = False) -> float:
        """A button at `x` on the current line; returns where the next one goes."""
        self.rect(
            x, self.y, button_width(label), 34, *((GREEN, GREEN) if primary else ("#ffffff", "#bbbbbb"))
        )
        color = "#ffffff" if primary else INK
        self.text([Run(label, "bold")], x + button_width(label) / 2, self.y + 8, 14, color, middle=True)
        return x + button_width(label) + 10


def _input_face(label: str, element: Block) -> tuple[str, str]:
    """What an input box shows, and in which colour: never a value, except a select's chosen option."""
    kind = element.get("type")
    if kind == "plain_text_input" and "password" in label.lower():
        return PASSWORD_DOTS, INK
    if kind in SELECTS and element.get("initial_option"):
        return text_of(element["initial_option"].get("text")), INK
    default = "Select an option" if kind in SELECTS else ""
    return text_of(element.get("placeholder")) or default, GREY


def _input(pen: Pen, block: Block) -> None:
    label = text_of(block.get("label"))
    element = block.get("element") or {}
    pen.paragraph([Run(label, "bold")])
    pen.y += 4
    pen.rect(pen.x, pen.y, pen.width, 38, stroke="#bbbbbb")
    shown, color = _input_face(label, element)
    pen.text([Run(shown)], pen.x + 12, pen.y + 9, 15, color)
    if element.get("type") in SELECTS:
        pen.text([Run("▾")], pen.x + pen.width - 24, pen.y + 9, 15, GREY)
    pen.y += 42
    if block.get("hint"):
        pen.text_object(block["hint"], 13, GREY)


def draw_block(pen: Pen, block: Block) -> None:
    kind = block.get("type")
    if kind == "section":
        pen.text_object(block.get("text"))
        for field_text in block.get("fields", []):
            pen.text_object(field_text)
    elif kind == "header":
        pen.paragraph([Run(_emoji(text_of(block.get("text"))), "bold")], 18)
    elif kind == "context":
        texts = [text_of(element) for element in block.get("elements", []) if element.get("type") != "image"]
        pen.mrkdwn("  ".join(texts), 13, GREY)
    elif kind == "input":
        _input(pen, block)
    elif kind == "actions":
        x = pen.x
        for element in block.get("elements", []):
            x = pen.button(text_of(element.get("text")), x, element.get("style") == "primary")
        pen.y += 34
    elif kind == "divider":
        pen.rule(pen.x, pen.y + 6, pen.width)
        pen.y += 12
    else:
        pen.paragraph([Run(f"[{kind} block]")], 13, GREY)
    pen.y += 10


def _frame(x: float, y: float, w: float, h: float) -> list[str]:
    """A white panel with a soft shadow: an offset translucent copy (some viewers lack SVG filters)."""
    shadow = {"x": x + 1, "y": y + 3, "width": w, "height": h, "rx": 8, "fill": "#000000", "opacity": 0.08}
    panel = {"x": x, "y": y, "width": w, "height": h, "rx": 8, "fill": "#ffffff", "stroke": "#d0d0d0"}
    return [_element("rect", shadow), _element("rect", panel)]


def modal(view: Block, x: float, y: float, names: Mapping[str, str]) -> tuple[list[str], float]:
    """A modal's parts and its bottom: title, blocks, and its Close/Submit buttons at the foot."""
    pen = Pen(x + PAD, y + 18, MODAL_WIDTH - 2 * PAD, names)
    pen.text([Run(text_of(view.get("title")), "bold")], pen.x, pen.y, 20)
    pen.text([Run("✕")], x + MODAL_WIDTH - PAD - 14, pen.y, 18, GREY)
    pen.rule(x, y + 64, MODAL_WIDTH)
    pen.y = y + 84
    for block in decode_blocks(view.get("blocks")):
        draw_block(pen, block)
    pen.rule(x, pen.y + 6, MODAL_WIDTH)
    pen.y += 22
    buttons = [(text_of(view[key]), key == "submit") for key in ("close", "submit") if view.get(key)]
    left = x + MODAL_WIDTH - PAD - sum(button_width(label) + 10 for label, _ in buttons) + 10
    for label, primary in buttons:
        left = pen.button(label, left, primary)
    bottom = pen.y + 34 + 18
    return [*_frame(x, y, MODAL_WIDTH, bottom - y), *pen.parts], bottom


def _clock(ts: str) -> str:
    """A message's time, from its ts (seconds since the epoch), in UTC as the lab runs."""
    seconds = ts.partition(".")[0]
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%H:%M") if seconds.isdigit() else ""


def message(pen: Pen, post: Post) -> None:
    """The bot's avatar, name, APP and time, then the message's blocks (or its text when none)."""
    x, top = pen.x, pen.y
    pen.rect(x, top, 36, 36, fill="#4a154b", stroke="#4a154b")
    pen.text([Run("ATP", "bold")], x + 18, top + 11, 11, "#ffffff", middle=True)
    pen.text([Run(BOT_NAME, "bold"), Run("  APP  ", "badge"), Run(_clock(post.ts), "muted")], x + 48, top - 2)
    body = Pen(x + 48, top + 22, pen.width - 48, pen.names)
    for block in post.blocks:
        draw_block(body, block)
    if not post.blocks:
        body.mrkdwn(post.text)
    if post.edited:
        body.line([Run("(edited)")], 12, GREY)
    pen.parts += body.parts
    pen.y = max(body.y, top + 40) + 12


def thread(scene: Scene, x: float, y: float, names: Mapping[str, str]) -> tuple[list[str], float]:
    """The thread pane: the announcement, how many replies, and each reply as it ended up."""
    if scene.announcement is None:
        return [], y
    pen = Pen(x + PAD, y + 18, THREAD_WIDTH - 2 * PAD, names)
    pen.text([Run("Thread", "bold"), Run(f"   #{scene.announcement.channel}", "muted")], pen.x, pen.y, 18)
    pen.rule(x, y + 56, THREAD_WIDTH)
    pen.y = y + 72
    message(pen, scene.announcement)
    count = len(scene.replies)
    label = f"{count} repl{'y' if count == 1 else 'ies'}"
    label_width = width(Run(label), 13) + 10
    pen.rule(pen.x + label_width, pen.y + 10, pen.width - label_width)
    pen.line([Run(label)], 13, GREY)
    pen.y += 6
    for reply in scene.replies:
        message(pen, reply)
    bottom = pen.y + 8
    return [*_frame(x, y, THREAD_WIDTH, bottom - y), *pen.parts], bottom


def render_picture(calls: Sequence[Call], names: Mapping[str, str] | None = None) -> str:
    """The picture (an SVG document) of the modal and the thread in `calls`; `names`: user names by id."""
    scene, names = scene_from_calls(calls), names or {}
    left = Pen(MARGIN, MARGIN, MODAL_WIDTH, names)
    for view, caption in ((scene.form, "The modal, filled in"), (scene.result, "After submitting")):
        if view is not None:
            left.line([Run(caption, "bold")], 14, GREY)
            drawn, bottom = modal(view, MARGIN, left.y + 6, names)
            left.parts += drawn
            left.y = bottom + 28
    right = Pen(MARGIN + MODAL_WIDTH + GAP, MARGIN, THREAD_WIDTH, names)
    right.line([Run("The channel", "bold")], 14, GREY)
    drawn, bottom = thread(scene, right.x, right.y + 6, names)
    right.parts += drawn
    total_width, total_height = right.x + THREAD_WIDTH + MARGIN, round(max(left.y - 28, bottom) + MARGIN)
    root = {"xmlns": "http://www.w3.org/2000/svg", "width": total_width, "height": total_height,
            "viewBox": f"0 0 {total_width} {total_height}", "font-family": FONT}  # fmt: skip
    background = _element("rect", {"width": "100%", "height": "100%", "fill": "#f4f4f4"})
    title = _element("title", {}, "What Slack shows: atp-bot's /atp password modal and its channel thread")
    return _element("svg", root, "\n".join(["", title, background, *left.parts, *right.parts, ""])) + "\n"
