"""Trust limits of the Slack face, through the Slack emulator and the real Bolt app: identical expensive
requests in flight share one run (the WinRM emulator counts what the sensors were asked), each person has
a per-minute limit, and access through a user group is audited with the group's handle."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.config import SlackConfig
from bot.slack.context import JOINED_NOTE
from commands import MODULES
from commands.alerts import Action
from lab.slack.emulator import Delivery
from lab.winrm.server import WinRMEmulator
from tests.conftest import sensor_config
from tests.slack_lab import (
    ALICE,
    BOB,
    OPS,
    Lab,
    initialised_changes,
    open_modal,
    running_lab,
    values,
    wait_for,
)

SENSORS = ("sensor01", "sensor02")


class Clock:
    """The rate limit's clock, moved by the test (no test waits a minute)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def sensors_lab(sensors: WinRMEmulator, **slack: Any) -> Iterator[Lab]:
    with running_lab("socket", config=sensor_config(sensors, "corp"), **slack) as lab:
        yield lab


def answer(lab: Lab, delivery: Delivery, final: str) -> str:
    """The last text posted to this request's response URL once it contains `final`."""

    def shown() -> str | None:
        texts = [
            json.dumps(c.args)
            for c in lab.emulator.calls("response_url")
            if c.response_id == delivery.trigger_id and c.status == 200
        ]
        return texts[-1] if texts and final in texts[-1] else None

    return wait_for(shown, timeout=30)


def scripts(sensors: WinRMEmulator) -> list[int]:
    return [sensors.host(name).counters.scripts for name in SENSORS]


def at_once(lab: Lab, *requests: tuple[str, str]) -> list[Delivery]:
    """Send the slash commands (text, user) concurrently."""
    deliveries: dict[int, Delivery] = {}

    def send(index: int, text: str, user: str) -> None:
        deliveries[index] = lab.emulator.slash_command(text, user=user)

    threads = [threading.Thread(target=send, args=(i, *r)) for i, r in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return [deliveries[i] for i in range(len(requests))]


def test_identical_status_requests_share_one_check(sensors: WinRMEmulator, env: None) -> None:
    sensors.host("sensor02").set_latency(0.5)  # the first check is still running when the second arrives
    with sensors_lab(sensors) as lab:
        first, second = at_once(lab, ("status", ALICE), ("status", BOB))
        reports = [answer(lab, d, "All 2 sensor(s)") for d in (first, second)]
    assert scripts(sensors) == [1, 1]  # one set of WinRM checks for both
    assert sum(JOINED_NOTE in r for r in reports) == 1  # the one who joined is told so
    assert all("sensor01" in r and "sensor02" in r for r in reports)


def test_identical_sensor_listings_share_one_run(sensors: WinRMEmulator, env: None) -> None:
    sensors.host("sensor02").set_latency(0.5)
    with sensors_lab(sensors) as lab:
        deliveries = at_once(lab, ("sensors", ALICE), ("sensors", BOB), ("sensors", ALICE))
        reports = [answer(lab, d, "*Sensors*: 2") for d in deliveries]
    assert scripts(sensors) == [1, 1]
    assert sum(JOINED_NOTE in r for r in reports) == 2
    assert len({r.replace(f"\\n_{JOINED_NOTE}_", "") for r in reports}) <= 2  # the same table for all


def test_the_seventh_expensive_request_in_a_minute_is_refused(sensors: WinRMEmulator, env: None) -> None:
    clock = Clock()
    with sensors_lab(sensors) as lab:
        lab.runtime.services.rate_limit.clock = clock
        for _ in range(6):
            answer(lab, lab.emulator.slash_command("status", user=ALICE), "All 2 sensor(s)")
            clock.now += 5
        checked = scripts(sensors)

        refused = lab.emulator.slash_command("status", user=ALICE)
        assert not refused.late
        assert "Try again in 30 s" in refused.text  # the first of the six leaves the window at 1060
        assert "Traceback" not in refused.text
        assert "Try again in" in lab.emulator.slash_command("sensors", user=ALICE).text
        assert "Try again in" not in lab.emulator.slash_command("help", user=ALICE).text  # not limited

        other = lab.emulator.slash_command("status", user=BOB)  # another person is not limited
        answer(lab, other, "All 2 sensor(s)")
        assert scripts(sensors) == [n + 1 for n in checked]  # BOB's check only

        clock.now = 1060.0  # a minute after the first: one request fits again
        answer(lab, lab.emulator.slash_command("status", user=ALICE), "All 2 sensor(s)")
        assert "Try again in" in lab.emulator.slash_command("status", user=ALICE).text
    limited = [r for r in lab.audit.records if r.reason == "rate limited"]
    assert [(r.action, r.outcome) for r in limited] == [("status", "denied"), ("status", "denied")]
    assert all(r.actor.startswith(f"slack:{ALICE}") for r in limited)  # one row per burst, not per request


def test_re_check_now_is_shared_and_limited(sensors: WinRMEmulator, env: None, tmp_path: Path) -> None:
    config = {
        "state_dir": str(tmp_path / "state"),
        "accounts": [{"id": "svc", "username": "svc@contoso.test", "domain_controllers": ["ldaps://dc1"]}],
        **sensor_config(sensors, "svc"),
    }
    sensors.host("sensor02").set_latency(0.5)
    lab_running = running_lab(
        "socket",
        modules=MODULES,
        config=config,
        changes=initialised_changes,
        monitor=True,
        user_rate_per_minute=2,
    )
    with lab_running as lab:
        lab.runtime.services.rate_limit.clock = Clock()

        def click(user: str) -> None:
            lab.emulator.click(Action.RECHECK, user=user, channel=OPS, message_ts="1.000100", value="svc")

        def told(user: str, marker: str) -> list[str]:
            return [m.text for m in lab.emulator.messages(OPS) if m.ephemeral_to == user and marker in m.text]

        both = [threading.Thread(target=click, args=(user,)) for user in (ALICE, BOB)]
        for thread in both:
            thread.start()
        for thread in both:
            thread.join(timeout=30)
        done = wait_for(
            lambda: len(told(ALICE, "Re-check done") + told(BOB, "Re-check done")) == 2, timeout=30
        )
        assert done
        assert scripts(sensors) == [1, 1]  # one monitor cycle for both clicks
        assert len(told(ALICE, JOINED_NOTE) + told(BOB, JOINED_NOTE)) == 1

        click(ALICE)  # ALICE's second in the minute: runs
        wait_for(lambda: len(told(ALICE, "Re-check done")) == 2, timeout=30)
        click(ALICE)  # the third: refused, nothing runs
        refusal = wait_for(lambda: told(ALICE, "Try again in"))
        assert "Traceback" not in refusal[0]
        assert scripts(sensors) == [2, 2]


def test_the_rate_is_a_whole_number_of_at_least_one() -> None:
    assert SlackConfig().user_rate_per_minute == 6
    assert SlackConfig(user_rate_per_minute=1).user_rate_per_minute == 1
    for bad in (0, -3, "many", "6", 2.5, True):
        with pytest.raises(ValidationError) as error:
            SlackConfig.model_validate({"user_rate_per_minute": bad})
        assert "user_rate_per_minute" in str(error.value)
    with pytest.raises(ValidationError, match="must be at least 1"):
        SlackConfig(user_rate_per_minute=0)


def test_access_through_a_user_group_is_audited_with_its_handle(sensors: WinRMEmulator, env: None) -> None:
    with sensors_lab(sensors) as lab:
        answer(lab, lab.emulator.slash_command("status", user=BOB), "All 2 sensor(s)")
        answer(lab, lab.emulator.slash_command("status", user=ALICE), "All 2 sensor(s)")
        view_id = open_modal(lab, "password corp", user=BOB)
        lab.emulator.submit_view(view_id, values("short", "different"))
        wait_for(lambda: [r for r in lab.audit.records if r.reason == "invalid-input"])
    actors = {(r.action, r.actor) for r in lab.audit.records}
    assert ("check", f"slack:{BOB} (bob) via @secops") in actors  # the command's rows
    assert ("check", f"slack:{ALICE} (alice)") in actors  # allowed_users: no group named
    assert ("change", f"slack:{BOB} (bob) via @secops") in actors  # the modal's submission


@pytest.mark.parametrize("handle", ["<!channel>", "Sec Ops", "secops\nforged", ""])
def test_a_handle_slack_would_not_allow_is_audited_as_the_group_id(
    sensors: WinRMEmulator, env: None, handle: str
) -> None:
    with sensors_lab(sensors) as lab:
        lab.emulator.workspace.usergroup_labels["S0SECOPS"] = (handle, "whatever")
        answer(lab, lab.emulator.slash_command("status", user=BOB), "All 2 sensor(s)")
    actors = {r.actor for r in lab.audit.records}
    assert actors == {f"slack:{BOB} (bob) via S0SECOPS"}


def test_the_group_is_still_audited_when_slack_cannot_list_the_groups(
    sensors: WinRMEmulator, env: None
) -> None:
    with sensors_lab(sensors) as lab:
        lab.emulator.fail("usergroups.list", status=500, times=2)
        answer(lab, lab.emulator.slash_command("status", user=BOB), "All 2 sensor(s)")
    assert {r.actor for r in lab.audit.records} == {f"slack:{BOB} (bob) via S0SECOPS"}
