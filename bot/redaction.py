"""Keeps secrets out of log output.

Code that handles a password registers it for the duration of the work (`active_secret`); the logging
filter installed by `bot.logging_setup` replaces every registered value in a formatted record. This is
defence in depth: the code itself never logs a secret, and the tests prove it with a canary.
"""

from __future__ import annotations

import logging
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


def redact(text: str) -> str:
    with _lock:
        values = sorted(_active, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter that rewrites a record's message and traceback without active secrets."""

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
