"""Running the app: Socket Mode (outbound WebSocket, the default) or HTTP (Slack posts to
`/slack/events`), each startable and stoppable in-process, with executors owned by the runtime."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.audit import AuditSink
from bot.change import PasswordChanges
from bot.config import Settings
from bot.infra.redaction import install_record_redaction
from bot.infra.wsgi import BackgroundWsgiServer, ServerLimits
from bot.monitor.scheduler import Scheduler
from bot.slack.app import build_app, build_services
from bot.slack.context import CommandModule
from bot.slack.secrets import SlackSecrets

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
LISTENER_THREADS = 16  # Bolt listeners: quick handlers that acknowledge; slow work goes to `workers`
CONNECT_TIMEOUT_SECONDS = 10.0
# HTTP mode. Slack's own payloads are far below the body limit. Idle or slow clients cost a connection,
# not a thread; past the connection limit new ones wait in the listen backlog until idle ones time out.
HTTP_LIMITS = ServerLimits(
    threads=LISTENER_THREADS,
    connection_limit=500,
    idle_seconds=20,
    max_body_bytes=1024 * 1024,
)


class SlackUnreachable(Exception):
    """The runtime could not connect to Slack (or bind its HTTP port)."""


class SocketModeRunner:
    """Bolt's built-in Socket Mode client: no inbound URL; tokens from `SlackSecrets`."""

    def __init__(self, app: App, app_token: str, *, connect_timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
        self._app = app
        self._app_token = app_token
        self._connect_timeout = connect_timeout
        self._handler: SocketModeHandler | None = None

    def start(self) -> None:
        handler = SocketModeHandler(self._app, app_token=self._app_token)
        self._handler = handler
        try:
            handler.connect()  # type: ignore[no-untyped-call]
            deadline = time.monotonic() + self._connect_timeout
            while not handler.client.is_connected():
                if time.monotonic() > deadline:
                    raise SlackUnreachable("the Socket Mode connection did not open")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise
        log.info("connected to Slack in Socket Mode")

    def stop(self) -> None:
        if self._handler is not None:
            self._handler.close()  # type: ignore[no-untyped-call]
            self._handler = None

    @property
    def connected(self) -> bool:
        """The Socket Mode WebSocket is open (for /healthz)."""
        return self._handler is not None and bool(self._handler.client.is_connected())

    @property
    def alive(self) -> bool:
        """Started and not stopped (for /livez): the client reconnects by itself while Slack is away."""
        return self._handler is not None


class HttpRunner:
    """Bolt's WSGI adapter on waitress (bot.infra.wsgi), serving `POST /slack/events`."""

    def __init__(self, app: App, host: str, port: int) -> None:
        self._handler = SlackRequestHandler(app, path=EVENTS_PATH)
        self._host, self._port = host, port
        self._server: BackgroundWsgiServer | None = None

    @property
    def url(self) -> str:
        """Where Slack must send commands and interactions (the bound port, if 0 was asked for)."""
        if self._server is None:
            raise RuntimeError("not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._server.port}{EVENTS_PATH}"

    @property
    def connected(self) -> bool:
        """The HTTP listener is serving (for /healthz)."""
        return self.alive

    @property
    def alive(self) -> bool:
        """The HTTP server's I/O thread runs (for /livez)."""
        return self._server is not None and self._server.alive

    def start(self) -> None:
        try:
            self._server = BackgroundWsgiServer(
                self._handler, self._host, self._port, HTTP_LIMITS, name="atp-bot-http"
            )
        except OSError as exc:
            raise SlackUnreachable(f"cannot listen on {self._host}:{self._port}: {exc.strerror}") from None
        self._server.start()
        log.info("listening for Slack on %s", self.url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


class SlackRuntime:
    """The app and everything it runs on; `with SlackRuntime(…) as runtime:` starts and stops it.

    `services` (client, executor, audit, …) is also what code outside a Slack request (a scheduled
    job) uses to post messages.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        secrets: SlackSecrets,
        audit: AuditSink,
        modules: Sequence[CommandModule],
        client: WebClient | None = None,
        changes: PasswordChanges | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        config = settings.slack
        if config.mode == "socket" and secrets.app_token is None:
            raise ValueError("Socket Mode needs the app-level token")
        # Bolt and slack_sdk log whole payloads (typed modal values included) at DEBUG: whatever the
        # process's logging setup, records are redacted as they are created.
        install_record_redaction()
        self.executor = ThreadPoolExecutor(config.workers, thread_name_prefix="atp-bot-work")
        self._listener_executor = ThreadPoolExecutor(LISTENER_THREADS, thread_name_prefix="atp-bot-bolt")
        try:
            self.services = build_services(
                settings,
                secrets=secrets,
                audit=audit,
                executor=self.executor,
                client=client,
                modules=modules,
                changes=changes,
                scheduler=scheduler,
            )
            self.app = build_app(self.services, secrets=secrets, listener_executor=self._listener_executor)
        except BaseException:
            self._shutdown_executors()
            raise
        self.runner: SocketModeRunner | HttpRunner
        if secrets.app_token is not None and config.mode == "socket":
            self.runner = SocketModeRunner(self.app, secrets.app_token.get_secret_value())
        else:
            self.runner = HttpRunner(self.app, *config.listen_address)

    def start(self) -> None:
        try:
            self.runner.start()
        except BaseException:
            self._shutdown_executors()
            raise
        for work in self.services.background:
            work.start()

    def stop(self) -> None:
        """Stop taking requests, then let running work finish (queued work that never started is dropped)."""
        self.runner.stop()
        for work in self.services.background:
            work.stop()
        self._shutdown_executors()

    def _shutdown_executors(self) -> None:
        self._listener_executor.shutdown(wait=True)
        self.executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SlackRuntime:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
