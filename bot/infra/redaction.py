"""Keeps secrets out of log output.

Code that handles a password registers it for the duration of the work (`active_secret`); the logging
filter installed by `bot.infra.logging_setup` replaces every registered value in a formatted record. This is
defence in depth: the code itself never logs a secret, and the tests prove it with a canary.

Some secrets are logged by libraries before atp-bot ever sees them: Bolt logs the whole request body when
a signature check fails and slack_sdk logs request parameters at DEBUG. Those are caught by shape
(`redact_patterns`): Slack tokens, bearer credentials, `token` fields, and every `values` object (a
modal's `view.state.values`, where a typed password travels) in JSON, Python-repr or URL-encoded text.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import SecretStr

REDACTED = "[REDACTED]"

_lock = threading.Lock()
_active: Counter[str] = Counter()


@contextmanager
def active_secret(secret: SecretStr) -> Iterator[None]:
    """Redact `secret` from every log record emitted while the block runs."""
    value = secret.get_secret_value()
    if not value:
        yield
        return
    with _lock:
        _active[value] += 1
    try:
        yield
    finally:
        with _lock:
            _active[value] -= 1
            if _active[value] <= 0:
                del _active[value]


_TOKEN = re.compile(r"\b(?:xox[a-z]|xapp|xoxe(?:\.xox[a-z])?|xwfp)-[A-Za-z0-9-]+")
_BEARER = re.compile(r"(?i)\b(Bearer\s+)[^\s'\",}]+")
_TOKEN_FIELD = re.compile(
    r"""(["']token["']\s*:\s*["'])[^"']*"""
    r"""|((?:^|[?&\s])token=)[^&\s'",]+"""
    r"""|((?i:%22token%22(?:\+|%20)*%3A(?:\+|%20)*%22))[A-Za-z0-9._-]+"""
)
# The key of a `values` object in JSON/repr text (`"values": {`) or URL-encoded JSON (`%22values%22%3A%7B`).
_VALUES_KEY = re.compile(
    r"""(?i)(?:(["'])values\1\s*:\s*(?=\{)|%22values%22(?:\+|%20)*%3A(?:\+|%20)*(?=%7B))"""
)
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _units(text: str, start: int, url_encoded: bool) -> Iterator[tuple[int, str]]:
    """Yield (end offset, decoded character) from `start`, decoding %XX escapes in URL-encoded text."""
    index = start
    while index < len(text):
        if url_encoded and text[index] == "%" and _PERCENT_ESCAPE.match(text, index):
            yield index + 3, chr(int(text[index + 1 : index + 3], 16))
            index += 3
        else:
            yield index + 1, text[index]
            index += 1


def _object_end(text: str, start: int, url_encoded: bool) -> int:
    """The offset just past the JSON/repr object opening at `start`; the text's end if it never closes.

    Braces inside quoted strings do not count, so a password like `a}"b` cannot end the object early.
    """
    depth, quote, escaped = 0, "", False
    for end, char in _units(text, start, url_encoded):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return end
    return len(text)


def _redact_values(text: str) -> str:
    pieces, position = [], 0
    while match := _VALUES_KEY.search(text, position):
        url_encoded = match.group(0).startswith("%")
        end = _object_end(text, match.end(), url_encoded)
        pieces.append(text[position : match.end()] + ("%7B" if url_encoded else "{") + REDACTED)
        pieces.append("%7D" if url_encoded else "}")
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def redact_patterns(text: str) -> str:
    """Redact secrets recognisable by their shape (see the module docstring)."""
    if "values" in text.lower():
        text = _redact_values(text)
    text = _TOKEN.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _TOKEN_FIELD.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + REDACTED, text)


def redact(text: str) -> str:
    """Redact the active secrets, then everything `redact_patterns` recognises."""
    with _lock:
        values = sorted(_active, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return redact_patterns(text)


class RedactingFilter(logging.Filter):
    """A filter that rewrites a record's message and traceback without secrets (see `redact`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_redacting_factory_installed = False


def install_record_redaction() -> None:
    """Redact every log record as it is created, so that every handler (not only atp-bot's) gets it clean.

    Idempotent. A handler filter alone would leave library records unredacted for other handlers
    (a test's capture handler, a log shipper added later).
    """
    global _redacting_factory_installed
    with _lock:
        if _redacting_factory_installed:
            return
        _redacting_factory_installed = True
    previous = logging.getLogRecordFactory()
    redacting = RedactingFilter()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redacting.filter(record)
        return record

    logging.setLogRecordFactory(factory)
