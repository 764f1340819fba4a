"""A lab peer's HTTP(S) server run on a background thread: start/stop, or use it as a context manager."""

from __future__ import annotations

import threading
from socketserver import BaseServer
from typing import Generic, Self, TypeVar

S = TypeVar("S", bound=BaseServer)


class BackgroundServer(Generic[S]):
    """Base for emulators: subclasses set `self._server` (their socketserver) and `thread_name`."""

    thread_name = "lab-server"
    _server: S
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        serve = self._server.serve_forever
        self._thread = threading.Thread(
            target=serve, kwargs={"poll_interval": 0.05}, name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
