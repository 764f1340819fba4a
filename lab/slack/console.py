"""The person at the keyboard of `atp-bot lab slack`: type `/atp …` as a Slack user, see what Slack would
show (modals, messages, threads, ephemeral answers, rendered by `lab.slack.render` as the demo does), fill
and submit modals, and click buttons by number or name.

A watcher thread prints what changes while the person types: the bot works on its own threads (a modal
goes from "Testing…" to "Saved.", a threaded report is updated as each sensor answers). Typed values are
passed to the emulator and forgotten; a field whose label or id says "password" is read without echo.
"""

from __future__ import annotations

import getpass
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from lab.slack.emulator import SlackEmulator
from lab.slack.render import decode_blocks, render_message, render_view
from lab.slack.socket_mode import NotConnected
from lab.slack.webapi import RESPONSE_URL_METHOD
from lab.slack.workspace import Message

POLL_SECONDS = 0.1
HELP = """\
  /atp …           a slash command, e.g. /atp help, /atp password contoso
  N or click N     click button number N (the numbers are shown under each modal and message)
  click NAME       click a button by its label, e.g. click Try again (NAME alone works too)
  submit, close    submit the open modal (it asks for each field) or close it
  show             show the open modals again
  help             this list;  Ctrl-D quits"""


UNDELIVERED = (NotConnected, OSError)  # no app on Socket Mode; an HTTP-mode app that does not answer


def _undelivered(exc: Exception) -> str:
    if isinstance(exc, NotConnected):
        return "no app is connected over Socket Mode yet"
    return f"the app at the request URL did not answer: {exc}"


@dataclass(frozen=True)
class Button:
    """Something the person can click: a block button, or a modal's Submit/Close."""

    label: str
    kind: str  # button | submit | close
    container: str  # a view id, or "channel/ts" for a message
    action_id: str = ""
    block_id: str = ""
    value: str | None = None
    confirm: Mapping[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str, str, str | None]:
        return (self.container, self.kind, self.action_id, self.value)


@dataclass
class Screen:
    """What the person has been shown, to print only what changed, and the numbered buttons on it."""

    views: dict[str, str] = field(default_factory=dict)  # open view id -> hash shown
    messages: dict[str, str] = field(default_factory=dict)  # "channel/ts" -> content shown
    responses: int = 0  # posts to response URLs shown
    numbers: dict[tuple[str, str, str, str | None], int] = field(default_factory=dict)
    buttons: dict[str, list[Button]] = field(default_factory=dict)  # container -> its buttons now

    def number(self, button: Button) -> int:
        return self.numbers.setdefault(button.key, len(self.numbers) + 1)

    def live(self) -> Iterator[tuple[int, Button]]:
        for buttons in self.buttons.values():
            for button in buttons:
                yield self.number(button), button


def _block_buttons(blocks: Sequence[Mapping[str, Any]], container: str) -> list[Button]:
    found = []
    for block in blocks:
        elements = [*block.get("elements", []), block.get("accessory") or {}]
        for element in elements:
            if isinstance(element, Mapping) and element.get("type") == "button":
                found.append(
                    Button(
                        label=str((element.get("text") or {}).get("text", "")),
                        kind="button",
                        container=container,
                        action_id=str(element.get("action_id", "")),
                        block_id=str(block.get("block_id", "")),
                        value=element.get("value"),
                        confirm=element.get("confirm"),
                    )
                )
    return found


def view_buttons(view: Mapping[str, Any]) -> list[Button]:
    view_id = str(view["id"])
    found = _block_buttons(decode_blocks(view.get("blocks")), view_id)
    for kind in ("close", "submit"):
        if view.get(kind):
            found.append(Button(str(view[kind].get("text", kind)), kind, view_id))
    return found


def _secret(block: Mapping[str, Any]) -> bool:
    element = block.get("element") or {}
    label = str((block.get("label") or {}).get("text", ""))
    names = (label, block.get("block_id", ""), element.get("action_id", ""))
    return any("password" in str(name).lower() for name in names)


class SlackConsole:
    """The prompt loop and its watcher; `run()` returns when standard input ends."""

    def __init__(
        self,
        emulator: SlackEmulator,
        *,
        user: str,
        channel: str,
        stdin: TextIO,
        stdout: TextIO,
    ) -> None:
        self.slack, self.user, self.channel = emulator, user, channel
        self.stdin, self.stdout = stdin, stdout
        # No echo on a terminal; piped input is not echoed anyway.
        self.read_secret: Callable[[str], str] = getpass.getpass if stdin.isatty() else self._read_line
        self.screen = Screen()
        self.lock = threading.RLock()  # one writer at a time: the prompt loop or the watcher
        self.stopped = threading.Event()

    # -- output ------------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        with self.lock:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def _show(self, rendered: str, buttons: list[Button], container: str) -> None:
        self.screen.buttons[container] = buttons
        numbered = "  ".join(f"{self.screen.number(b)} [{b.label}]" for b in buttons)
        self.say(rendered + (f"\n  click: {numbered}" if numbered else ""))

    def show_view(self, view: Mapping[str, Any], errors: Mapping[str, str] | None = None) -> None:
        self._show(f"modal {view['id']}:\n" + render_view(view, errors), view_buttons(view), str(view["id"]))

    def _where(self, message: Message) -> str:
        if message.ephemeral_to:
            return f"atp-bot in #{message.channel} (only visible to you)"
        if message.thread_ts:
            return f"atp-bot in #{message.channel}, thread of {message.thread_ts}"
        return f"atp-bot in #{message.channel}"

    def _show_message(self, message: Message, updated: bool) -> None:
        heading = self._where(message) + (" (updated)" if updated else "") + f" [{message.ts}]"
        container = f"{message.channel}/{message.ts}"
        rendered = render_message(message.text, message.blocks, heading=heading)
        self._show(rendered, _block_buttons(message.blocks, container), container)

    # -- the watcher -------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Print every modal, message and ephemeral answer that is new or changed since last shown."""
        with self.lock:
            self._refresh_views()
            self._refresh_messages()
            self._refresh_responses()

    def _refresh_views(self) -> None:
        open_now = {v.id: v for v in self.slack.open_views(self.user)}
        for view_id in [v for v in self.screen.views if v not in open_now]:
            del self.screen.views[view_id]
            self.screen.buttons.pop(view_id, None)
            self.say(f"(modal {view_id} closed)")
        for view_id, view in open_now.items():
            if self.screen.views.get(view_id) != view.hash:
                self.screen.views[view_id] = view.hash
                self.show_view(view.as_slack())

    def _refresh_messages(self) -> None:
        for message in self.slack.messages():
            if message.ephemeral_to not in (None, self.user):
                continue
            key = f"{message.channel}/{message.ts}"
            content = message.text + json.dumps(message.blocks)
            shown = self.screen.messages.get(key)
            if shown != content:
                self.screen.messages[key] = content
                self._show_message(message, updated=shown is not None)

    def _refresh_responses(self) -> None:
        calls = self.slack.calls(RESPONSE_URL_METHOD)
        for call in calls[self.screen.responses :]:
            if call.status != 200:  # refused (a response URL used more than Slack allows): never shown
                continue
            text = str(call.args.get("text", ""))
            self.say(render_message(text, call.args.get("blocks"), heading="atp-bot (only visible to you)"))
        self.screen.responses = len(calls)

    def _watch(self) -> None:
        while not self.stopped.wait(POLL_SECONDS):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - the prompt goes on; a person never sees a traceback
                self.say(f"(could not show what changed: {exc})")

    # -- the prompt loop ---------------------------------------------------------------------------

    def run(self) -> None:
        watcher = threading.Thread(target=self._watch, name="slack-console-watcher", daemon=True)
        watcher.start()
        try:
            for line in self.stdin:
                self.handle(line.strip())
        finally:
            self.stopped.set()
            watcher.join()

    def handle(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        if line.startswith("/"):
            self.slash(word, rest)
        elif line in ("help", "?"):
            self.say(HELP)
        elif line == "show":
            for view in self.slack.open_views(self.user):
                self.show_view(view.as_slack())
        elif line in ("submit", "close"):
            self.modal_button(line)
        elif line:
            self.click(rest if word == "click" else line)

    def slash(self, command: str, text: str) -> None:
        try:
            delivery = self.slack.slash_command(text, user=self.user, channel=self.channel, command=command)
        except UNDELIVERED as exc:
            self.say(_undelivered(exc))
            return
        if delivery.late:
            self.say(f"({command} failed: the app did not answer in time; Slack shows the user an error)")
        elif delivery.text or (delivery.ack or {}).get("blocks"):
            heading = "atp-bot (only visible to you)"
            self.say(render_message(delivery.text, (delivery.ack or {}).get("blocks"), heading=heading))
        self.refresh()

    def modal_button(self, kind: str) -> None:
        views = self.slack.open_views(self.user)
        found = [b for b in view_buttons(views[-1].as_slack()) if b.kind == kind] if views else []
        if not found:
            self.say(f"no open modal to {kind}")
            return
        self.press(found[0])

    def find(self, name: str) -> Button | None:
        """A live button by its number or its label (case-insensitive; the newest one if several)."""
        live = list(self.screen.live())
        if name.isdigit():
            return next((b for n, b in live if n == int(name)), None)
        matches = [b for _, b in live if b.label.lower() == name.lower()]
        return matches[-1] if matches else None

    def click(self, name: str) -> None:
        button = self.find(name)
        if button is None:
            self.say(f"no button {name!r} on screen (type help)")
            return
        self.press(button)

    def press(self, button: Button) -> None:
        try:
            with self.lock:
                if button.kind == "submit":
                    self.submit(button.container)
                elif button.kind == "close":
                    self.slack.close_view(button.container, user=self.user)
                elif self.confirmed(button):
                    self.click_button(button)
        except LookupError:
            self.say("that modal is closed")
        except EOFError:  # Ctrl-D at a field's prompt (getpass raises it too)
            self.say("\n(input ended: nothing was submitted)")
        except UNDELIVERED as exc:
            self.say(_undelivered(exc))
        self.refresh()

    def confirmed(self, button: Button) -> bool:
        """A button with a confirmation dialog asks first, as Slack does."""
        if not button.confirm:
            return True
        title = str((button.confirm.get("title") or {}).get("text", "Are you sure?"))
        text = str((button.confirm.get("text") or {}).get("text", ""))
        return self._read_line(f"{title} {text} [y/N] ").strip().lower() in ("y", "yes")

    def click_button(self, button: Button) -> None:
        where: dict[str, Any] = {"view_id": button.container}
        if "/" in button.container:
            channel, ts = button.container.split("/", 1)
            where = {"channel": channel, "message_ts": ts}
        delivery = self.slack.click(
            button.action_id, user=self.user, block_id=button.block_id, value=button.value, **where
        )
        if delivery.late:
            self.say("(the app did not answer the click in time; Slack shows the user an error)")

    def submit(self, view_id: str) -> None:
        view = self.slack.view(view_id)
        values = self.fill(view)
        delivery = self.slack.submit_view(view_id, values, user=self.user)
        ack = delivery.ack or {}
        if delivery.late:
            self.say("(the app did not answer the submission in time; Slack shows the user an error)")
        elif ack.get("response_action") == "errors":
            self.show_view(self.slack.view(view_id), ack.get("errors") or {})

    def fill(self, view: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Ask for each input of the modal; what is typed goes to Slack only."""
        values: dict[str, dict[str, Any]] = {}
        for block in decode_blocks(view.get("blocks")):
            element = block.get("element") or {}
            if block.get("type") != "input":
                continue
            label = str((block.get("label") or {}).get("text", "value"))
            if element.get("type") == "plain_text_input":
                read = self.read_secret if _secret(block) else self._read_line
                value: Any = read(f"{label}: ")
            elif element.get("type") == "static_select":
                value = self._choose(label, element.get("options") or [])
            else:
                self.say(f"({label}: a {element.get('type')} cannot be filled here; left empty)")
                continue
            values.setdefault(str(block.get("block_id", "")), {})[str(element.get("action_id", ""))] = value
        return values

    def _read_line(self, prompt: str) -> str:
        with self.lock:
            self.stdout.write(prompt)
            self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return line.removesuffix("\n")

    def _choose(self, label: str, options: list[Mapping[str, Any]]) -> dict[str, Any]:
        """A select: the option picked by its number, its value or its text (none: left empty)."""
        names = [str((o.get("text") or {}).get("text", o.get("value"))) for o in options]
        listed = "  ".join(f"{n} {name}" for n, name in enumerate(names, 1))
        answer = self._read_line(f"{label} ({listed}): ").strip().lower()
        chosen = [
            option
            for number, (option, name) in enumerate(zip(options, names, strict=True), 1)
            if answer in (str(number), str(option.get("value", "")).lower(), name.lower())
        ]
        return {"type": "static_select", "selected_option": dict(chosen[0]) if chosen else None}
