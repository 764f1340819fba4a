"""The `/atp` subcommands: each `commands/<name>.py` module contributes one `Subcommand` and registers
its own view/action listeners. The router and `/atp help` read this registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.slack.context import CommandContext, Services


@dataclass(frozen=True)
class Subcommand:
    """`/atp <name> <usage>`: `summary` is the one line `/atp help` shows.

    `handler` runs on Bolt's listener thread and must acknowledge fast (`ctx.ack`/`ctx.reply`, or by
    opening a modal), handing slow work to `ctx.services.submit`. Sensitive subcommands pass the
    authorization middleware first.
    """

    name: str
    summary: str
    handler: Callable[[CommandContext], None]
    usage: str = ""
    sensitive: bool = True


class CommandModule(Protocol):
    """What a `commands/<name>.py` module exposes."""

    SUBCOMMAND: Subcommand

    def register(self, app: App, services: Services) -> None:
        """Add this subcommand's view and action listeners (if any) to the app."""


class Registry:
    """The subcommand modules, in the order `/atp help` lists them."""

    def __init__(self, modules: Iterable[CommandModule]) -> None:
        self.modules = tuple(modules)
        self._by_name: dict[str, Subcommand] = {}
        for module in self.modules:
            subcommand = module.SUBCOMMAND
            if subcommand.name in self._by_name:
                raise ValueError(f"subcommand {subcommand.name!r} is registered twice")
            self._by_name[subcommand.name] = subcommand

    def get(self, name: str) -> Subcommand | None:
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[Subcommand]:
        return iter(self._by_name.values())
