"""`gmsa check` for one account: read AD, ask the sensor hosts, judge; shared by the CLI, Slack and the
monitor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from bot.config import AccountConfig, ConfigError, Settings
from bot.gmsa.core import GmsaReport, Status, gmsa_sensors, mentions_gmsa
from bot.gmsa.directory import read_facts
from bot.gmsa.hosts import host_checks
from bot.gmsa.verdicts import alert_verdict, evaluate
from bot.infra.exitcodes import ExitCode
from bot.sensors import SensorResult


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


def check_gmsa(settings: Settings, account: AccountConfig, now: datetime | None = None) -> GmsaReport:
    """Every check of one gMSA account. Never raises for peer problems."""
    moment = now or datetime.now(UTC)
    sensors = gmsa_sensors(settings, account)
    verdict = read_facts(account, sensors, moment)
    gmsa = verdict.facts.gmsa if verdict.facts else None
    hosts = host_checks(settings, account, sensors, gmsa.sid if gmsa else None)
    return evaluate(account, replace(verdict, host_checks=hosts), moment)


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


def gmsa_alert_verdicts(settings: Settings, results: Sequence[SensorResult]) -> dict[str, str]:
    """For the monitor: account id -> the gMSA verdict, for each gMSA account one of whose sensors logged
    a gMSA retrieval failure in this cycle (so AD is read only when new such lines appear)."""
    failing = {
        r.name
        for r in results
        if r.credential_errors is not None and mentions_gmsa(r.credential_errors.sample)
    }
    verdicts = {}
    for account in settings.accounts:
        sensors = {s.name for s in gmsa_sensors(settings, account)} & failing
        if account.kind == "gmsa" and sensors:
            try:
                verdicts[account.id] = alert_verdict(check_gmsa(settings, account), sensors)
            except ConfigError as error:  # the cycle goes on; the alert says why there is no verdict
                verdicts[account.id] = f"`gmsa check` cannot run: {'; '.join(error.problems)}"
    return verdicts
