"""After a change: the thread is told when MDI closes the DSA health issue, or that it is still open
(Graph emulator through msal/requests, the scheduler's persisted jobs, the recording notifier)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.monitor.models import HealthIssueNotice, MessageRef
from bot.monitor.scheduler import ISSUE_WATCH_PREFIX, Scheduler, start_scheduler
from lab.graph import CREDENTIALS_ISSUE, GraphEmulator
from tests.monitor_tools import Clock, RecordingNotifier, make_runtime, monitor_settings, toml_str
from tests.test_sensor_inventory import GRAPH_SECRET

THREAD = MessageRef(channel="C0OPS", ts="1764050000.000100")


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", "unused")
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET) as emulator:
        yield emulator


@pytest.fixture
def watch(tmp_path: Path, graph: GraphEmulator) -> Iterator[tuple[Scheduler, RecordingNotifier]]:
    extra = (
        "[graph]\nenabled = true\nissue_watch_minutes = 30\nissue_watch_poll_minutes = 10\n"
        f"tenant_id = {toml_str(graph.tenant_id)}\nclient_id = {toml_str(graph.client_id)}\n"
        'client_secret_env = "ATP_BOT_TEST_GRAPH_SECRET"\n'
        f"authority_url = {toml_str(graph.authority_url)}\ngraph_url = {toml_str(graph.graph_url)}\n"
        f"ca_file = {toml_str(graph.tls.ca_file)}\n"
    )
    notifier = RecordingNotifier()
    scheduler = start_scheduler(
        make_runtime(monitor_settings(tmp_path, None, extra=extra), notifier, Clock()), paused=True
    )
    try:
        yield scheduler, notifier
    finally:
        scheduler.shutdown()


def watch_jobs(scheduler: Scheduler) -> list[str]:
    return sorted(j.id for j in scheduler.pending() if j.id.startswith(ISSUE_WATCH_PREFIX))


def told(notifier: RecordingNotifier) -> list[str]:
    return [notice.text() for _, notice in notifier.of("post_health_issue")]


def test_the_thread_is_told_when_mdi_closes_the_issue(
    graph: GraphEmulator, watch: tuple[Scheduler, RecordingNotifier]
) -> None:
    scheduler, notifier = watch
    changed_at = datetime(2026, 11, 30, 14, 23, tzinfo=UTC)
    issue = graph.add_issue(CREDENTIALS_ISSUE, domains=("contoso.test",))
    graph.add_issue("Sensor stopped communicating")  # not about the DSA: never watched
    scheduler.schedule_rechecks("svc", THREAD, changed_at)
    jobs = watch_jobs(scheduler)
    assert len(jobs) == 3  # 30 min, one poll every 10 min

    scheduler.run_job_now(jobs[0])
    assert told(notifier) == []  # still open, not the last poll
    graph.set_status(issue, "closed", at=changed_at + timedelta(minutes=14))
    graph.set_status(
        graph.add_issue("Sensor stopped communicating"), "closed", at=changed_at + timedelta(minutes=15)
    )
    scheduler.run_job_now(jobs[1])  # window 10 to 20 min
    assert told(notifier) == [f"MDI closed '{CREDENTIALS_ISSUE}' at 14:37 UTC, 14 min after the change"]
    scheduler.run_job_now(jobs[2])
    assert len(told(notifier)) == 1  # told once; nothing is open at the limit


def test_a_closure_is_told_once_by_the_poll_whose_window_holds_it(
    graph: GraphEmulator, watch: tuple[Scheduler, RecordingNotifier]
) -> None:
    scheduler, notifier = watch
    changed_at = datetime(2026, 11, 30, 14, 23, tzinfo=UTC)
    issue = graph.add_issue(CREDENTIALS_ISSUE.upper(), domains=("contoso.test",))  # names: case-insensitive
    scheduler.schedule_rechecks("svc", THREAD, changed_at)
    graph.set_status(issue, "closed", at=changed_at + timedelta(minutes=9, seconds=30))
    for job in watch_jobs(scheduler):
        scheduler.run_job_now(job)
    assert told(notifier) == [
        f"MDI closed '{CREDENTIALS_ISSUE.upper()}' at 14:32 UTC, 9 min after the change"
    ]
    assert notifier.of("post_health_issue")[0][0] == THREAD


def test_an_issue_still_open_at_the_limit_is_told(
    graph: GraphEmulator, watch: tuple[Scheduler, RecordingNotifier]
) -> None:
    scheduler, notifier = watch
    graph.add_issue("Read-only user password expired", domains=("contoso.test",))
    graph.add_issue(CREDENTIALS_ISSUE, domains=("fabrikam.test",))  # another account's domain
    scheduler.schedule_rechecks("svc", THREAD, datetime(2026, 11, 30, 14, 0, tzinfo=UTC))
    for job in watch_jobs(scheduler):
        scheduler.run_job_now(job)
    assert told(notifier) == ["'Read-only user password expired' is still open 30 min after the change"]


def test_notice_text() -> None:
    at = datetime(2026, 11, 30, 14, 23, tzinfo=UTC)
    notice = HealthIssueNotice.closed("svc", CREDENTIALS_ISSUE, at, at + timedelta(minutes=9))
    assert notice.text() == f"MDI closed '{CREDENTIALS_ISSUE}' at 14:32 UTC, 9 min after the change"
