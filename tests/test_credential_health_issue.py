"""Defender for Identity's credential health issue is the DSA's, whichever sensors it names: one alert per
issue (by its Graph id) for the accounts of the domains it names, across cycles, restarts and replicas'
shared state, and one reply when it closes (msal/requests against the Graph emulator; the recording
notifier, and the real Slack client against the Slack emulator)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from pydantic import SecretStr

from bot.change import open_changes
from bot.config import Settings
from bot.monitor.context import MonitorContext
from bot.monitor.cycle import run_monitor_cycle
from bot.monitor.models import CredentialIssueAlert
from bot.monitor.render import UNIFIED_SENSORS_REASON, render_credential_issue
from bot.slack.client import build_client
from commands import MODULES
from commands.alerts import SlackNotifier
from commands.credential_alert import credential_issue_message
from commands.password.views import Action as PasswordAction
from lab.graph import CREDENTIALS_ISSUE, HEALTH_ISSUES_PATH, GraphEmulator
from lab.postgres import PostgresCluster
from lab.slack import SlackEmulator
from tests.monitor_tools import Clock, RecordingNotifier, alert_rows, make_runtime, monitor_settings, toml_str
from tests.peers import postgres_cluster
from tests.replicas import replica_tables
from tests.slack_lab import ALICE, OPS, initialised_changes, running_lab, wait_for

GRAPH_SECRET = "Canary-Graph-Secret~3Fw.8_k1"
ACCOUNTS = (
    '[[accounts]]\nid = "svc"\nusername = "svc-atp@contoso.test"\ndomain_controllers = ["ldaps://127.0.0.1:1"]\n'
    '[[accounts]]\nid = "fab"\nusername = "FABRIKAM\\\\svc-atp"\ndomains = ["fabrikam.test"]\n'
    'domain_controllers = ["ldaps://127.0.0.1:1"]\n'
    '[[accounts]]\nid = "gm"\nkind = "gmsa"\nusername = "mdisvc$"\ndomain = "corp.test"\n'
    'domain_controllers = ["ldaps://127.0.0.1:1"]\nlookup_username = "r@corp.test"\n'
    'lookup_password_env = "ATP_BOT_TEST_GMSA_LOOKUP"\n'
)
UNIFIED_DC = "dc7.contoso.test"
DB_PASSWORD = "credential-issue-db-61"
DB_PASSWORD_ENV = "ATP_TEST_CREDENTIAL_ISSUE_DB"


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    monkeypatch.setenv("ATP_BOT_TEST_GMSA_LOOKUP", "unused")
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", "unused")
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET, page_size=2) as emulator:
        emulator.add_sensor("dc7", version="3.0.1234.5678")  # unified: uses no DSA, yet MDI names it
        yield emulator


def settings_for(tmp_path: Path, graph: GraphEmulator, tables: str = "") -> Settings:
    extra = tables + (
        "[graph]\nenabled = true\n"
        f"tenant_id = {toml_str(graph.tenant_id)}\nclient_id = {toml_str(graph.client_id)}\n"
        'client_secret_env = "ATP_BOT_TEST_GRAPH_SECRET"\n'
        f"authority_url = {toml_str(graph.authority_url)}\ngraph_url = {toml_str(graph.graph_url)}\n"
        f"ca_file = {toml_str(graph.tls.ca_file)}\ntimeout = 10\n"
    )
    return monitor_settings(tmp_path, None, account=ACCOUNTS, extra=extra)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


@pytest.fixture
def runtime(
    tmp_path: Path, graph: GraphEmulator, clock: Clock, notifier: RecordingNotifier
) -> MonitorContext:
    return make_runtime(settings_for(tmp_path, graph), notifier, clock)


def cycles(runtime: MonitorContext, clock: Clock, count: int = 1) -> None:
    for _ in range(count):
        run_monitor_cycle(runtime)
        clock.advance(minutes=5)


def posted(notifier: RecordingNotifier) -> list[CredentialIssueAlert]:
    return list(notifier.of("post_credential_issue"))


def test_a_global_issue_naming_only_unified_sensors_alerts_the_dsa_of_its_domain(
    runtime: MonitorContext, graph: GraphEmulator, clock: Clock, notifier: RecordingNotifier
) -> None:
    issue = graph.add_global_issue(domains=("CONTOSO.test.",), sensors=(UNIFIED_DC,))
    cycles(runtime, clock, 3)
    (alert,) = posted(notifier)
    assert (alert.issue_id, alert.issue_type, alert.sensors) == (issue, "global", (UNIFIED_DC,))
    assert alert.accounts == ("svc",) and alert.gmsa_accounts == ()  # its domain's account, no other
    assert [(a.kind, a.account_id) for a in alert.actions] == [("update_password", "svc")]
    text = render_credential_issue(alert)
    assert UNIFIED_SENSORS_REASON in text and "atp-bot set-password --account svc" in text
    assert "post_incident" not in notifier.names()  # one alert per issue, not one per account too
    assert [r[1:] for r in alert_rows(runtime)] == [("credential_health_issue", "svc")]


def test_an_issue_naming_no_domain_alerts_every_dsa_account(
    runtime: MonitorContext, graph: GraphEmulator, clock: Clock, notifier: RecordingNotifier
) -> None:
    graph.add_global_issue(domains=())
    cycles(runtime, clock)
    (alert,) = posted(notifier)
    assert alert.accounts == ("svc", "fab") and alert.gmsa_accounts == ("gm",)
    assert [a.account_id for a in alert.actions] == ["svc", "fab"]  # a gMSA's password is never typed
    assert "atp-bot gmsa check --account gm" in render_credential_issue(alert)


def test_one_alert_across_cycles_and_a_restart_then_one_reply_when_it_closes(
    tmp_path: Path, runtime: MonitorContext, graph: GraphEmulator, clock: Clock, notifier: RecordingNotifier
) -> None:
    issue = graph.add_global_issue(domains=("fabrikam.test",))
    cycles(runtime, clock, 2)
    restarted = make_runtime(settings_for(tmp_path, graph), notifier, clock)  # same state, new process
    cycles(restarted, clock, 2)
    graph.fail_next(HEALTH_ISSUES_PATH, 500)
    cycles(restarted, clock)  # Graph did not answer: the issue is not closed for that
    assert [a.accounts for a in posted(notifier)] == [("fab",)]
    assert "close_credential_issue" not in notifier.names()

    graph.set_status(issue, "closed")
    cycles(restarted, clock, 3)
    ((ref, closed),) = notifier.of("close_credential_issue")
    assert ref.ts == "1764050000.000001" and closed.issue_id == issue and closed.closed
    assert "closed" in render_credential_issue(closed)
    reasons = [r[1] for r in alert_rows(restarted)]
    assert reasons == ["credential_health_issue", "credential_health_issue_closed"]


def test_a_sensor_type_issue_is_alerted_and_an_unrelated_one_is_not(
    runtime: MonitorContext, graph: GraphEmulator, clock: Clock, notifier: RecordingNotifier
) -> None:
    graph.add_issue("Sensor stopped communicating", domains=("contoso.test",))
    graph.add_global_issue(issue_id="<x>" * 1000)  # no id Graph gives: not a key for the monitor's state
    graph.add_issue(CREDENTIALS_ISSUE.upper(), domains=("fabrikam.test",), sensors=("adfs1.fabrikam.test",))
    cycles(runtime, clock, 2)
    (alert,) = posted(notifier)
    assert (alert.issue_type, alert.accounts) == ("sensor", ("fab",))
    assert notifier.names() == ["post_credential_issue"]


def test_a_notifier_outage_delays_the_alert_without_repeating_it(
    runtime: MonitorContext, graph: GraphEmulator, clock: Clock, notifier: RecordingNotifier
) -> None:
    graph.add_global_issue()
    notifier.failing = True
    run_monitor_cycle(runtime)
    assert not run_monitor_cycle(runtime).delivered
    notifier.failing = False
    cycles(runtime, clock, 2)
    assert len(posted(notifier)) == 1
    assert [r[1] for r in alert_rows(runtime)] == ["credential_health_issue"]


def test_the_slack_alert_shows_the_reason_and_update_password_then_replies_when_closed(
    tmp_path: Path, graph: GraphEmulator, clock: Clock
) -> None:
    hostile = f"{CREDENTIALS_ISSUE} <!channel> <https://evil.example|click>"
    issue = graph.add_global_issue(hostile, domains=("contoso.test",), sensors=(UNIFIED_DC,))
    with SlackEmulator() as slack:
        client = build_client(slack.api_url, SecretStr(slack.bot_token))
        runtime = make_runtime(settings_for(tmp_path, graph), RecordingNotifier(), clock)
        runtime.notifier = SlackNotifier(client, "C0OPS")
        cycles(runtime, clock, 2)
        (alert,) = slack.messages("C0OPS")
        assert UNIFIED_SENSORS_REASON in alert.text and "account(s) *svc*" in alert.text
        assert "<!channel>" not in alert.text and "<https://evil" not in alert.text
        assert "&lt;!channel&gt;" in alert.text
        buttons = [e for b in alert.blocks if b["type"] == "actions" for e in b["elements"]]
        assert [(b["action_id"], b["value"], b["text"]["text"]) for b in buttons] == [
            (PasswordAction.OPEN, "svc", "Update password")
        ]
        graph.set_status(issue, "closed")
        cycles(runtime, clock, 2)
        (reply,) = [m for m in slack.messages("C0OPS") if m.thread_ts == alert.ts]
        assert "Defender for Identity closed" in reply.text and len(slack.messages("C0OPS")) == 2


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from postgres_cluster(DB_PASSWORD)


def test_two_replicas_sharing_the_state_alert_once_and_reply_once(
    tmp_path: Path, graph: GraphEmulator, cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DB_PASSWORD_ENV, DB_PASSWORD)
    tables = tomli_w.dumps(replica_tables(cluster.create_database("credential_issue"), DB_PASSWORD_ENV, 0.2))
    clock, notifiers = Clock(), (RecordingNotifier(), RecordingNotifier())
    replicas = []
    for name, notifier in zip(("a", "b"), notifiers, strict=True):
        settings = settings_for(tmp_path / name, graph, tables)
        replicas.append(MonitorContext.create(settings, notifier, open_changes(settings), clock=clock))
    issue = graph.add_global_issue(domains=("contoso.test",), sensors=(UNIFIED_DC,))
    for replica in (*replicas, *replicas):  # the leader changes back and forth
        cycles(replica, clock)
    graph.set_status(issue, "closed")
    for replica in reversed(replicas):
        cycles(replica, clock)
    calls = [name for notifier in notifiers for name in notifier.names()]
    assert calls == ["post_credential_issue", "close_credential_issue"]
    assert notifiers[1].of("close_credential_issue")[0][0].ts == "1764050000.000001"  # a's alert


def test_update_password_opens_the_modal_and_alerts_lists_the_issue(
    tmp_path: Path, graph: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real Bolt app: the alert's *Update password* opens the password modal for its account, and
    `/atp alerts` lists the open issue."""
    monkeypatch.setenv("ATP_BOT_STORE_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    config = {
        "state_dir": str(tmp_path / "state"),
        "accounts": [{"id": "svc", "username": "svc-atp@contoso.test", "domain_controllers": ["ldaps://dc"]}],
        "graph": {
            "enabled": True,
            "tenant_id": graph.tenant_id,
            "client_id": graph.client_id,
            "client_secret_env": "ATP_BOT_TEST_GRAPH_SECRET",
            "authority_url": graph.authority_url,
            "graph_url": graph.graph_url,
            "ca_file": str(graph.tls.ca_file),
        },
    }
    graph.add_global_issue(domains=("contoso.test",), sensors=(UNIFIED_DC,))
    lab_run = running_lab("socket", modules=MODULES, config=config, changes=initialised_changes, monitor=True)
    with lab_run as lab:
        scheduler = lab.runtime.services.scheduler
        assert scheduler is not None
        scheduler.run_cycle_now()
        scheduler.run_cycle_now()
        (alert,) = wait_for(lambda: [m for m in lab.emulator.messages(OPS) if "Credential problem" in m.text])
        lab.emulator.click(PasswordAction.OPEN, channel=OPS, message_ts=alert.ts, value="svc")
        view = wait_for(lambda: lab.emulator.open_views(ALICE))[-1]
        assert "Account *svc*" in json.dumps(view.data["blocks"])
        listed = lab.emulator.slash_command("alerts").text
        assert CREDENTIALS_ISSUE in listed and UNIFIED_SENSORS_REASON in listed


def test_a_hostile_issue_makes_a_bounded_inert_message() -> None:
    """Graph's words are escaped and cut short; the buttons name only the configured accounts given."""
    long_name = "<!here>" + "x" * 5000
    alert = CredentialIssueAlert(
        issue_id="i" * 5000,
        display_name=long_name,
        domains=tuple(f"d{n}.<@U0BOSS>." + "y" * 300 for n in range(50)),
        sensors=tuple(f"s{n}" + "z" * 300 for n in range(50)),
        accounts=("svc",),
        opened_at=Clock().now,
    )
    text, blocks = credential_issue_message(alert)
    assert len(text) < 4000 and "and 40 more" in text
    assert "<!here>" not in text and "<@U0BOSS>" not in text
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")
