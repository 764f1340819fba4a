"""Ctrl-C in a one-shot command: say so and exit 130 at once, whatever the command is waiting on.

Python raises KeyboardInterrupt in the main thread only once it runs Python code again: a main thread
blocked in C (a Kerberos exchange) would not see it, and one that sees it may then wait in a `finally` for
threads stuck on a peer that never answers (a thread pool's shutdown, the interpreter's join at exit).
So the signal is also watched from a daemon thread (Python's wakeup file descriptor): it prints the
message at once, gives the main thread `GRACE_SECONDS` to record what it was doing (a change's
`interrupted` audit row, `bot.change.path`), then ends the process. Hung peers are abandoned with it; a
change whose row could not be written in time keeps its journal entry, resolved at the next start.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command that Ctrl-C stopped
GRACE_SECONDS = 0.75
MESSAGE = b"atp-bot: interrupted, stopping\n"

_said = threading.Lock()


def _say_once() -> None:
    """The message, once, written straight to the file descriptor (no buffer another thread may hold)."""
    if _said.acquire(blocking=False):
        with suppress(OSError):
            os.write(sys.__stderr__.fileno() if sys.__stderr__ else 2, MESSAGE)


def _exit_now(*, flush: bool) -> None:
    if flush:  # from the main thread only: another thread may hold a stream's lock
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):
                stream.flush()
    os._exit(INTERRUPTED)


def _watch(signals: socket.socket) -> None:
    with signals:
        while received := signals.recv(64):  # empty once the command ended (the writer closed)
            if signal.SIGINT in received:
                _say_once()
                time.sleep(GRACE_SECONDS)
                _exit_now(flush=False)


@contextmanager
def stopping_at_once() -> Iterator[None]:
    """Inside: SIGINT (Ctrl-C) ends the process with 130 within about GRACE_SECONDS. Only the main thread
    can watch signals; elsewhere (an embedding program) KeyboardInterrupt is left to the caller."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(reader,), name="atp-bot-interrupt", daemon=True).start()
    try:
        yield
    except KeyboardInterrupt:
        _say_once()
        _exit_now(flush=True)
    finally:
        signal.set_wakeup_fd(previous)
        writer.close()
