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


# `extra=` of a record whose content the command also shows the person itself (a test's result, a
# failure's one line): a one-shot command's stderr leaves it out, so one failure is printed once.
TOLD = {"told": True}


class NotTold(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "told", False)


class ForAPerson(logging.Formatter):
    """`atp-bot: warning: …`, as a one-shot command prints its other messages: no time, no module name."""

    def format(self, record: logging.LogRecord) -> str:
        return f"atp-bot: {record.levelname.lower()}: {super().format(record)}"


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
    level: str = "INFO",
    fmt: str = "text",
    stream: TextIO | None = None,
    *,
    tracebacks: bool = True,
    person: bool = False,
) -> None:
    """Install (or replace) atp-bot's handler on the root logger, and redact records as they are made.

    `person`: a one-shot command's stderr, read by a person: `atp-bot: warning: …` lines, and nothing the
    command tells itself (TOLD). Text lines never name the module that logged (JSON lines do, in
    `logger`)."""
    install_record_redaction()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RedactingFilter())
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter()
    elif person:
        formatter = ForAPerson("%(message)s")
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    if person:
        handler.addFilter(NotTold())
    handler.setFormatter(formatter if tracebacks else WithoutTracebacks(formatter))
    root.addHandler(handler)
    root.setLevel(level)
