"""Slack `/atp` subcommands: one module per subcommand, each owning its interactions and messages.

A module exposes `SUBCOMMAND` (a `bot.slack.context.Subcommand`: name, one-line help, handler,
sensitivity) and `register(app, services)` for its view/action listeners, and is listed in `MODULES`
(the order `/atp help` shows).
"""

from __future__ import annotations

from bot.slack.context import CommandModule
from commands import alerts, dsa, gmsa, help, history, password, sensors, status

MODULES: tuple[CommandModule, ...] = (password, status, sensors, dsa, gmsa, alerts, history, help)
