"""Text from peers (sensor output, AD messages, store errors, Graph text) made inert for Slack mrkdwn.

Slack reads `<…>` as mentions and links (`<!channel>`, `<https://x|label>`) and `&…;` as entities; its
docs ask for `&`, `<` and `>` to be escaped, and only those. mrkdwn has no escape for `*`, `_`, `~` or
the backtick, so where they would format (or close a code span) they become look-alike characters.
Control and format characters (terminal escapes, a right-to-left override, zero-width characters)
are shown as escapes (`bot.infra.controls`), here and, as a net for text built elsewhere, in every
payload the Web API client sends (`bot.slack.client`). Every peer string that reaches a message, a view
or a fallback text goes through one of these.
"""

from __future__ import annotations

import re

from bot.infra.controls import escape_controls

ELLIPSIS = "…"
_ENTITIES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# Look-alikes: U+2217 asterisk operator, U+02CD modifier letter low macron, U+223C tilde operator,
# U+02CB modifier letter grave accent.
_LOOK_ALIKE = {"*": "\u2217", "_": "\u02cd", "~": "\u223c"}
_BACKTICK = str.maketrans({"`": "\u02cb"})
# Slack formats `*x*`, `_x_`, `~x~` only where the mark is not inside a word: `svc_atp` or `PROGRA~1`
# stay as they are (a path or a name can be copied), every other mark is replaced.
_FORMAT_MARK = re.compile(r"(?<![^\W_])[*_~]|[*_~](?![^\W_])")
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def _one_line(text: str, limit: int) -> str:
    """`text` on one line (line breaks become one space, other controls escapes), at most `limit` long."""
    line = _LINE_BREAKS.sub(" ", escape_controls(text)).strip()
    return line if len(line) <= limit else line[: max(0, limit - 1)] + ELLIPSIS


def escape(text: str) -> str:
    """Slack's three control characters, and control and format characters, escaped: for peer text whose
    layout is kept (code blocks)."""
    return escape_controls(text).translate(_ENTITIES)


def inline(text: str, limit: int = 500) -> str:
    """Peer text in running mrkdwn: one line, no mention, link or formatting of its own."""
    line = _FORMAT_MARK.sub(lambda mark: _LOOK_ALIKE[mark.group()], _one_line(text, limit))
    return escape(line.translate(_BACKTICK))


def code_span(text: str, limit: int = 500) -> str:
    """Peer text as an inline code span (a log line): one line, no backtick that could end the span."""
    line = _one_line(text, limit).translate(_BACKTICK) or " "
    return f"`{escape(line)}`"


def code_block(text: str, limit: int = 2900) -> str:
    """Peer text as a preformatted block, lines kept; a run of backticks inside cannot close it."""
    body = escape_controls(text)
    body = body if len(body) <= limit else body[: max(0, limit - 1)] + ELLIPSIS
    return f"```{escape(body.translate(_BACKTICK))}```"
