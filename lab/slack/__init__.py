"""A Slack emulator for atp-bot's tests and for trying the bot locally: Web API, Socket Mode server,
and signed HTTP-mode requests, all on loopback. See `lab.slack.emulator.SlackEmulator`."""

from lab.slack.emulator import Delivery, SlackEmulator
from lab.slack.signing import Signing
from lab.slack.webapi import Call

__all__ = ["Call", "Delivery", "Signing", "SlackEmulator"]
