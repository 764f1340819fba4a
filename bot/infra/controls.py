"""Peer text made visible: control and format characters become escapes before they reach a person.

A peer (a sensor, Graph, a DC, Slack) can put terminal escape sequences (`ESC [2J`, `ESC ]0;title BEL`),
a right-to-left override, zero-width characters or NUL into a name or a log line. Shown as they are,
they clear a terminal, retitle it, reorder what is read or hide text. Every character of Unicode
category Cc or Cf except newline and tab is shown instead as an escape: C0 controls as `\\xNN` (ESC is
`\\x1b`), every other one as `\\uNNNN` (UTF-16 code units, so a JSON document stays valid JSON that
decodes to the same text). Escaped text holds none of those characters, so escaping twice changes
nothing. Used where peer text is recorded or shown: the audit trail, the CLI's output, Slack.
"""

from __future__ import annotations

import re
import unicodedata

# Runs of characters that may be Cc or Cf: ASCII controls, DEL, and anything outside ASCII. A run that
# is all printable (most text: letters, CJK) is kept in one step; in any other run each character is
# checked against this Python's Unicode database, so no table goes stale.
_CANDIDATES = re.compile(r"[^\x20-\x7e\n\t]+")


def _escaped(char: str) -> str:
    if unicodedata.category(char) not in ("Cc", "Cf"):
        return char
    code = ord(char)
    if code < 0x20:
        return f"\\x{code:02x}"
    if code > 0xFFFF:
        high, low = divmod(code - 0x10000, 0x400)
        return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"
    return f"\\u{code:04x}"


def _escaped_run(match: re.Match[str]) -> str:
    run = match.group()
    return run if run.isprintable() else "".join(map(_escaped, run))


def escape_controls(text: str) -> str:
    """`text` with every Cc and Cf character but newline and tab shown as an escape."""
    return _CANDIDATES.sub(_escaped_run, text)
