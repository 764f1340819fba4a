"""`/atp status [account]`: check the sensors now and show the result to the person who asked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slack_bolt import App, Respond

from bot.audit import AuditSink
from bot.change import record_checks, sensors_for_account
from bot.sensor_inventory import graph_notes
from bot.sensors import SensorResult
from bot.slack.context import CommandContext, Services
from bot.slack.registry import Subcommand
from commands.arguments import account_argument
from commands.sensor_report import LiveReport

NAME = "status"


def handle(ctx: CommandContext) -> None:
    settings = ctx.services.settings
    account, error = account_argument(settings, ctx.args)
    if error:
        ctx.reply(error)
        return
    sensors = sensors_for_account(settings, account) if account else list(settings.sensors)
    if not sensors:
        ctx.reply("No sensors are configured" + (f" for account `{account}`." if account else "."))
        return
    ctx.reply(f":hourglass_flowing_sand: Checking {len(sensors)} sensor(s)…")
    names = [s.name for s in sensors]
    ctx.services.submit(run_status, ctx.services, ctx.respond, ctx.actor, names)


def run_status(services: Services, respond: Respond, actor: str, names: list[str]) -> None:
    """On the bot's executor: check (or join a check of the same sensors already running), replacing the
    ephemeral reply as results come in."""

    def show(text: str, blocks: list[dict[str, Any]]) -> None:
        respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=True)

    def post(text: str, blocks: list[dict[str, Any]]) -> str:
        show(text, blocks)
        return ""  # a response URL message has no ts: every update replaces it

    report = LiveReport(post, lambda _ts, text, blocks: show(text, blocks), "*Sensor status*", len(names))
    graph, graph_error = services.fleet.sensors()
    for note in graph_notes(services.settings, names, graph):
        report.note(note)
    if graph_error is not None:
        report.note(f"Graph could not be used: {graph_error}")
    services.status_checks.check(names, _AuditedReport(report, services.audit, actor))


class _AuditedReport:
    """The requester's live report; the round of checks they were shown is audited under their name."""

    def __init__(self, report: LiveReport, audit: AuditSink, actor: str) -> None:
        self._report, self._audit, self._actor = report, audit, actor

    def add(self, result: SensorResult) -> None:
        self._report.add(result)

    def finish(self, results: Sequence[SensorResult]) -> None:
        self._report.finish(results)
        record_checks(self._audit, self._actor, None, results)

    def fail(self, problem: str) -> None:
        self._report.fail(problem)


SUBCOMMAND = Subcommand(
    name=NAME,
    summary="check every sensor now: services and credential errors",
    handler=handle,
    usage="[account]",
)


def register(app: App, services: Services) -> None:
    """`/atp status` has no interactions."""
