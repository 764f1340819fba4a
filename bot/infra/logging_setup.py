"""The one logging setup of the process: level, text or JSON lines, and the redaction filter."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from bot.infra.redaction import RedactingFilter, install_record_redaction

_HANDLER_NAME = "atp-bot"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class WithoutTracebacks(logging.Formatter):
    """Formats like `inner` but leaves tracebacks out: a one-shot command's stderr is read by a person
    (its -v shows them)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        bare = logging.makeLogRecord(record.__dict__)
        bare.exc_info, bare.exc_text, bare.stack_info = None, None, None
        return self._inner.format(bare)


def configure_logging(
    level: str = "INFO", fmt: str = "text", stream: TextIO | None = None, *, tracebacks: bool = True
) -> None:
    """Install (or replace) atp-bot's handler on the root logger, and redact records as they are made."""
    install_record_redaction()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RedactingFilter())
    formatter = (
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.setFormatter(formatter if tracebacks else WithoutTracebacks(formatter))
    root.addHandler(handler)
    root.setLevel(level)
