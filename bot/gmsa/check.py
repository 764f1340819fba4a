"""`gmsa check` for one account: read AD, ask the sensor hosts, judge; shared by the CLI, Slack and the
monitor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from bot.config import AccountConfig, ConfigError, Settings
from bot.directory import LockoutGuard
from bot.fleet import Generation, GraphFleet
from bot.gmsa.core import Check, GmsaReport, SensorScope, Status, mentions_gmsa
from bot.gmsa.directory import read_facts
from bot.gmsa.hosts import host_checks, probe_hosts, shown_generation
from bot.gmsa.scope import sensor_scope
from bot.gmsa.verdicts import alert_verdict, evaluate
from bot.infra.exitcodes import ExitCode
from bot.sensors import ScriptRunner, SensorResult, ThreadScripts


def gmsa_accounts(settings: Settings, account_id: str | None) -> list[AccountConfig]:
    """The gMSA accounts to check: the one named, else every `kind = "gmsa"` account."""
    if account_id is not None:
        account = settings.account(account_id)
        if account.kind != "gmsa":
            raise ConfigError([f'account {account.id} is not a gMSA (kind = "{account.kind}")'])
        return [account]
    accounts = [a for a in settings.accounts if a.kind == "gmsa"]
    if not accounts:
        raise ConfigError(['no account has kind = "gmsa"'])
    return accounts


def check_gmsa(
    settings: Settings,
    account: AccountConfig,
    scope: SensorScope | None = None,
    now: datetime | None = None,
    scripts: ScriptRunner | None = None,
) -> GmsaReport:
    """Every check of one gMSA account (its sensors: `scope`, else read now). The hosts are asked first
    (by `scripts`: the bot's check workers; else this process's threads): what they show tells the
    generation Graph did not. Never raises for peer problems."""
    moment = now or datetime.now(UTC)
    scope = scope or sensor_scope(settings, account)
    winrm = [s.winrm for s in scope.retrieving if s.winrm is not None]
    probes = probe_hosts(settings, account, winrm, scripts or ThreadScripts(settings.sensor_checks.pool_size))
    shown = {name: shown_generation(p) for name, p in probes.items() if not isinstance(p, Check)}
    scope = scope.with_host_evidence(shown)
    retrieving = scope.retrieving
    verdict = read_facts(account, retrieving, moment, LockoutGuard.for_settings(settings).lookups)
    gmsa = verdict.facts.gmsa if verdict.facts else None
    hosts = host_checks(account, probes, [s.name for s in retrieving], gmsa.sid if gmsa else None)
    return evaluate(account, replace(verdict, host_checks=hosts), moment, scope)


def report_exit_code(reports: list[GmsaReport]) -> ExitCode:
    """1 when a problem was found, else 3 when a peer was unreachable, else 1 for anything unknown."""
    checks = [c for r in reports for c in r.checks]
    if any(c.status is Status.PROBLEM for c in checks):
        return ExitCode.PROBLEM
    if any(c.unreachable for c in checks):
        return ExitCode.UNREACHABLE
    if any(c.status is Status.UNKNOWN for c in checks):
        return ExitCode.PROBLEM
    return ExitCode.OK


def gmsa_alert_verdicts(
    settings: Settings,
    results: Sequence[SensorResult],
    fleet: GraphFleet | None = None,
    scripts: ScriptRunner | None = None,
) -> dict[str, str]:
    """For the monitor: account id -> the gMSA verdict, for each gMSA account one of whose sensors logged
    a gMSA retrieval failure in this cycle (so AD is read only when new such lines appear). What the
    hosts showed tells the generation of a sensor whose Graph version does not."""
    failing = {
        r.name
        for r in results
        if r.credential_errors is not None and mentions_gmsa(r.credential_errors.sample)
    }
    if not failing:
        return {}
    shown = {r.name: r.generation for r in results if r.reachable}
    verdicts = {}
    for account in (a for a in settings.accounts if a.kind == "gmsa"):
        try:
            if verdict := _alert_verdict(settings, account, failing, fleet, shown, scripts):
                verdicts[account.id] = verdict
        except ConfigError as error:  # the cycle goes on; the alert says why there is no verdict
            verdicts[account.id] = f"`gmsa check` cannot run: {'; '.join(error.problems)}"
    return verdicts


def _alert_verdict(
    settings: Settings,
    account: AccountConfig,
    failing: set[str],
    fleet: GraphFleet | None,
    shown: Mapping[str, Generation],
    scripts: ScriptRunner | None,
) -> str | None:
    """The verdict for the account's failing sensors that use the DSA; None when none of them does."""
    scope = sensor_scope(settings, account, fleet).with_host_evidence(shown)
    sensors = {s.name for s in scope.retrieving} & failing
    return alert_verdict(check_gmsa(settings, account, scope, scripts=scripts), sensors) if sensors else None
