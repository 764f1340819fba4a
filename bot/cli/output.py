"""The CLI's standard output and error, with peer text made visible (`bot.infra.controls`).

`main` writes through these for every command, so that no printed sensor name, log line, Graph field
or error message can drive the terminal: control and format characters become escapes on the way
out. Only the CLI's own terminal controls (the colours and the live progress line of `check`) are
written to the stream underneath (`raw`), after the peer text in them has been escaped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO, cast

from bot.infra.controls import escape_controls


class EscapingStream:
    """A text stream that escapes control and format characters (but newline and tab) it is given."""

    def __init__(self, stream: TextIO) -> None:
        self.raw = stream

    def write(self, text: str) -> int:
        self.raw.write(escape_controls(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def raw(stream: TextIO) -> TextIO:
    """The stream underneath an escaping one, for text that carries the CLI's own terminal controls."""
    return stream.raw if isinstance(stream, EscapingStream) else stream


@contextmanager
def escaped_output() -> Iterator[None]:
    """`sys.stdout` and `sys.stderr` escaping, for as long as the command runs."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (cast(TextIO, EscapingStream(raw(stream))) for stream in saved)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
