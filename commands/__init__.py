"""Slack `/atp` subcommands: one module per subcommand, each owning its interactions and messages.

A module exposes `SUBCOMMAND` (a `bot.slack.registry.Subcommand`: name, one-line help, handler,
sensitivity) and `register(app, services)` for its view/action listeners, and is listed in `MODULES`
(the order `/atp help` shows).
"""

from __future__ import annotations

from bot.slack.registry import CommandModule
from commands import alerts, help, history, password, sensors, status

MODULES: tuple[CommandModule, ...] = (password, status, sensors, alerts, history, help)
