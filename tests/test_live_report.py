"""commands.shared.sensor_report.LiveReport: progress updates leave the thread that adds results, go out in
order, and nothing follows the final report."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from bot.sensors import SensorResult
from bot.sensors.results import ServiceStatus
from commands.shared.sensor_report import LiveReport


def healthy(name: str) -> SensorResult:
    return SensorResult(
        name=name,
        endpoint=f"http://{name}:5985/wsman",
        kind="mdi",
        account="contoso",
        checked_at=datetime.now(UTC),
        duration=0.1,
        services=(ServiceStatus("AATPSensor", "Running"), ServiceStatus("AATPSensorUpdater", "Running")),
    )


class SlowSlack:
    """chat.update that takes a while, recording each call's thread and text."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def post(self, text: str, blocks: object) -> str:
        return "1.0"

    def update(self, ts: str, text: str, blocks: object) -> None:
        time.sleep(0.02)
        with self.lock:
            self.updates.append((threading.current_thread().name, text))


def test_adding_results_never_waits_for_slack_and_the_final_report_comes_last() -> None:
    slacks = [SlowSlack() for _ in range(10)]  # ten requesters following one check
    reports = [LiveReport(s.post, s.update, "*Sensor status*", 100, interval=0.05) for s in slacks]
    results = [healthy(f"sensor{i:03d}") for i in range(100)]
    adder = threading.current_thread().name
    for result in results:  # the results of a check arrive over a while, not all at once
        for report in reports:
            report.add(result)
        time.sleep(0.005)
    for report in reports:
        report.finish(results)
    time.sleep(0.2)  # a refresh that was still due would have been sent by now

    for slack in slacks:
        threads = [thread for thread, _ in slack.updates]
        assert len(threads) > 1 and threads.count(adder) == 1  # progress came from timer threads
        assert slack.updates[-1][0] == adder  # the final report, and nothing after it
        assert "All 100 sensor(s) are running" in slack.updates[-1][1]


def test_a_failing_progress_update_does_not_stop_the_report() -> None:
    calls: list[str] = []

    def update(ts: str, text: str, blocks: object) -> None:
        calls.append(text)
        if "answered." in text:
            raise ConnectionError("Slack is away")

    report = LiveReport(lambda text, blocks: "1.0", update, "*Sensor status*", 2, interval=0)
    report.add(healthy("sensor1"))
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    report.finish([healthy("sensor1"), healthy("sensor2")])
    assert "All 2 sensor(s) are running" in calls[-1]


def test_a_bounded_destination_gets_its_final_report_within_the_bound() -> None:
    slack = SlowSlack()
    report = LiveReport(slack.post, slack.update, "*Sensor status*", 100, interval=0.01, max_messages=5)
    for i in range(100):
        report.add(healthy(f"sensor{i:03d}"))
        if i % 40 == 0:
            report.note(f"note {i}")
        time.sleep(0.002)
    time.sleep(0.3)
    report.finish([healthy(f"sensor{i:03d}") for i in range(100)])
    time.sleep(0.1)

    assert len(slack.updates) <= 5 - 1  # the first post is the fifth message
    assert "All 100 sensor(s) are running" in slack.updates[-1][1]
    assert "note 80" in slack.updates[-1][1]  # a note is shown, but costs no message of its own
