"""The real Bolt app, in Socket Mode and in HTTP mode, against the Slack emulator."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.slack.context import Subcommand
from bot.slack.runtime import SlackRuntime
from commands import MODULES
from lab.slack import SlackEmulator
from tests import slack_probe
from tests.slack_lab import (
    ALICE,
    BOB,
    MALLORY,
    OPS,
    RANDOM,
    Lab,
    RecordingAudit,
    initialised_changes,
    running_lab,
    secrets_for,
    settings_for,
    values,
    wait_for,
)

MODES = ["socket", "http"]


@pytest.fixture(autouse=True)
def _probe_is_quick() -> None:
    slack_probe.SLOW_STEP_DONE.set()


@pytest.fixture(scope="module", params=MODES)
def running(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """One runtime per mode for the tests that share the default configuration (a Socket Mode client
    takes about a second to close)."""
    with running_lab(request.param) as lab:
        yield lab


@pytest.fixture
def lab(running: Lab) -> Lab:
    running.emulator.reset()
    running.audit.records.clear()
    return running


def open_probe(lab: Lab, user: str = ALICE) -> str:
    """`/atp probe corp` and the id of the modal it opened."""
    delivery = lab.emulator.slash_command("probe corp", user=user)
    assert delivery.status == 200
    assert delivery.ack == {}
    wait_for(lambda: lab.emulator.calls("views.open"))
    return lab.emulator.open_views(user)[-1].id


def test_help_lists_the_subcommands(lab: Lab) -> None:
    delivery = lab.emulator.slash_command("help", user=MALLORY)
    assert delivery.status == 200
    assert delivery.ack is not None
    assert delivery.ack["response_type"] == "ephemeral"
    assert "`/atp help` — show this list of subcommands" in delivery.text
    assert "`/atp probe [account]` — test a secret (test only)" in delivery.text
    assert lab.audit.records == []


@pytest.mark.parametrize("text", ["frobnicate now", "", "HELP"])
def test_unknown_or_no_subcommand_gets_the_usage(lab: Lab, text: str) -> None:
    delivery = lab.emulator.slash_command(text)
    assert "`/atp probe [account]`" in delivery.text
    unknown = text.split()[0] if text and text.lower() != "help" else None
    assert (f"`/atp {unknown}` is not a subcommand" in delivery.text) == bool(unknown)


def test_unauthorized_user_is_refused_and_audited(lab: Lab) -> None:
    delivery = lab.emulator.slash_command("probe corp", user=MALLORY)
    assert delivery.ack is not None
    assert delivery.ack["response_type"] == "ephemeral"
    assert "You are not allowed to use `/atp probe`" in delivery.text
    assert lab.emulator.calls("views.open") == []
    [record] = lab.audit.records
    assert (record.actor, record.action, record.account, record.outcome) == (
        "slack:U0MALLORY (mallory)",
        "probe",
        None,
        "denied",
    )
    assert record.reason == "user not allowed"


def test_user_group_member_is_allowed(lab: Lab) -> None:
    open_probe(lab, user=BOB)  # S0SECOPS members are looked up (or cached from an earlier test)
    assert lab.audit.records == []


def test_full_modal_flow_runs_on_the_executor(lab: Lab) -> None:
    slack_probe.SLOW_STEP_DONE.clear()
    view_id = open_probe(lab)
    rejected = lab.emulator.submit_view(view_id, {slack_probe.Block.SECRET: {slack_probe.Action.SECRET: "x"}})
    assert rejected.ack == {"response_action": "errors", "errors": {"probe_secret": "At least 3 characters."}}
    assert lab.emulator.open_views(ALICE)[0].id == view_id  # still open for a correction

    accepted = lab.emulator.submit_view(
        view_id, {slack_probe.Block.SECRET: {slack_probe.Action.SECRET: "s3cret"}}
    )
    assert accepted.ack is not None
    assert accepted.ack["response_action"] == "update"
    assert "Checking corp" in str(lab.emulator.view(view_id)["blocks"])
    slack_probe.SLOW_STEP_DONE.set()
    thread = wait_for(lambda: [m for m in lab.emulator.messages(OPS) if m.thread_ts])
    [announcement] = [m for m in lab.emulator.messages(OPS) if not m.thread_ts]
    assert announcement.text == "<@U0ALICE> probed corp"
    assert thread[0].thread_ts == announcement.ts
    assert "checked (6 characters)" in str(lab.emulator.view(view_id)["blocks"])


def test_button_in_a_message(lab: Lab) -> None:
    view_id = open_probe(lab)
    lab.emulator.submit_view(view_id, {slack_probe.Block.SECRET: {slack_probe.Action.SECRET: "s3cret"}})
    wait_for(lambda: [m for m in lab.emulator.messages(OPS) if m.thread_ts])
    [announcement] = [m for m in lab.emulator.messages(OPS) if not m.thread_ts]

    refused = lab.emulator.click(
        slack_probe.Action.RECHECK, user=MALLORY, channel=OPS, message_ts=announcement.ts
    )
    assert refused.ack == {}
    assert [(r.actor, r.outcome, r.detail) for r in lab.audit.records] == [
        ("slack:U0MALLORY (mallory)", "denied", "block_actions")
    ]

    clicked = lab.emulator.click(
        slack_probe.Action.RECHECK, user=BOB, channel=OPS, message_ts=announcement.ts
    )
    assert clicked.ack == {}
    replies = wait_for(lambda: [m for m in lab.emulator.messages(OPS) if "checked again" in m.text])
    assert [(m.text, m.thread_ts) for m in replies] == [("checked again by <@U0BOB>", announcement.ts)]


def test_closed_modal_falls_back_to_an_ephemeral_message(lab: Lab) -> None:
    slack_probe.SLOW_STEP_DONE.clear()
    view_id = open_probe(lab)
    lab.emulator.submit_view(view_id, {slack_probe.Block.SECRET: {slack_probe.Action.SECRET: "s3cret"}})
    assert lab.emulator.close_view(view_id) is None  # the view did not ask for notify_on_close
    slack_probe.SLOW_STEP_DONE.set()
    [ephemeral] = wait_for(lambda: lab.emulator.calls("chat.postEphemeral"))
    wait_for(lambda: [m for m in lab.emulator.messages(OPS) if m.thread_ts])  # the work is done
    assert [c.error for c in lab.emulator.calls("views.update")] == ["not_found"]
    assert ephemeral.args["user"] == ALICE
    assert "checked (6 characters)" in ephemeral.args["text"]


def test_view_submission_is_authorized_again(lab: Lab) -> None:
    view_id = open_probe(lab)
    delivery = lab.emulator.submit_view(
        view_id, {slack_probe.Block.SECRET: {slack_probe.Action.SECRET: "s3cret"}}, user=MALLORY
    )
    assert delivery.ack is not None
    assert delivery.ack["response_action"] == "update"
    assert "not allowed" in str(delivery.ack["view"]["blocks"])
    assert [r.outcome for r in lab.audit.records] == ["denied"]
    assert lab.emulator.calls("chat.postMessage") == []


@pytest.mark.parametrize(("status", "retry_after"), [(429, 1), (500, None)])
def test_slack_failure_is_retried_by_the_retry_handlers(
    lab: Lab, status: int, retry_after: int | None
) -> None:
    lab.emulator.fail("chat.postMessage", status=status, retry_after=retry_after)
    view_id = open_probe(lab)
    lab.emulator.submit_view(view_id, {slack_probe.Block.SECRET: {slack_probe.Action.SECRET: "s3cret"}})
    wait_for(lambda: [m for m in lab.emulator.messages(OPS) if m.thread_ts])
    posts = lab.emulator.calls("chat.postMessage")
    assert [c.status for c in posts] == [status, 200, 200]
    if retry_after:
        assert posts[1].at - posts[0].at >= retry_after


@pytest.mark.parametrize("mode", MODES)
def test_channel_restriction(mode: str) -> None:
    with running_lab(mode, allowed_channels=[OPS]) as lab:
        delivery = lab.emulator.slash_command("probe", channel=RANDOM)
        assert "can only be used in <#C0OPS>" in delivery.text
        assert lab.audit.records[0].reason == "channel not allowed"
        assert lab.emulator.slash_command("help", channel=RANDOM).status == 200
        lab.emulator.slash_command("probe", channel=OPS)
        assert wait_for(lambda: lab.emulator.calls("views.open"))


@pytest.mark.parametrize("mode", MODES)
def test_usergroup_lookups_rate_limited_or_failing(mode: str) -> None:
    with running_lab(mode, allowed_usergroups=["S0SECOPS", "S0AUDIT"]) as lab:
        lab.emulator.workspace.usergroups["S0AUDIT"] = []
        lab.emulator.fail("usergroups.users.list", status=429, retry_after=1)
        delivery = lab.emulator.slash_command("probe", user=BOB)
        assert delivery.ack == {}
        assert [c.status for c in lab.emulator.calls("usergroups.users.list")] == [429, 200]
        assert not delivery.late

        # S0SECOPS is cached now; S0AUDIT is looked up and Slack keeps failing: refuse, fail closed.
        lab.emulator.fail("usergroups.users.list", status=500, times=2)
        delivery = lab.emulator.slash_command("probe", user=MALLORY)
        assert "could not be checked" in delivery.text
        [record] = lab.audit.records
        assert record.reason == "user-group lookup failed: internal_error"
        assert [c.args["usergroup"] for c in lab.emulator.calls("usergroups.users.list")][2:] == [
            "S0AUDIT"
        ] * 2
        assert len(lab.emulator.calls("views.open")) == 1

        # A rate limit longer than the acknowledgement can wait is not waited out.
        lab.emulator.fail("usergroups.users.list", status=429, retry_after=30)
        delivery = lab.emulator.slash_command("probe", user=MALLORY)
        assert "could not be checked" in delivery.text
        assert not delivery.late
        assert lab.audit.records[-1].reason == "user-group lookup failed: ratelimited"
        assert [c.status for c in lab.emulator.calls("usergroups.users.list")][4:] == [429]


def test_no_allowed_users_means_nobody(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING),
        running_lab("http", allowed_users=[], allowed_usergroups=[]) as lab,
    ):
        assert "not allowed" in lab.emulator.slash_command("probe", user=ALICE).text
    assert "nobody may use sensitive subcommands" in caplog.text


def test_emulator_can_be_given_a_workspace() -> None:
    emulator = SlackEmulator()
    emulator.workspace.usergroups["S0SECOPS"].append(MALLORY)
    with running_lab("http", emulator=emulator) as lab:
        lab.emulator.slash_command("probe", user=MALLORY)
        assert wait_for(lambda: lab.emulator.calls("views.open"))


@contextmanager
def runtime_on(emulator: SlackEmulator, mode: str, audit: RecordingAudit, **slack: Any) -> Iterator[None]:
    """A runtime on an emulator that is already running: stopping one and starting another is what a
    restart with a new configuration looks like to Slack (its open modals stay open)."""
    settings = settings_for(emulator, mode, **slack)
    with SlackRuntime(settings, secrets=secrets_for(emulator), audit=audit, modules=MODULES) as runtime:
        if mode == "http":
            emulator.request_url = runtime.runner.url  # type: ignore[union-attr]
        else:
            wait_for(lambda: emulator.connected_apps == 1)
        yield


@pytest.mark.parametrize("mode", MODES)
def test_password_submission_from_a_channel_no_longer_allowed_is_refused(mode: str) -> None:
    audit = RecordingAudit()
    with SlackEmulator() as emulator:
        with runtime_on(emulator, mode, audit, allowed_channels=[OPS]):
            emulator.slash_command("password", channel=OPS)
            (view,) = wait_for(lambda: emulator.open_views(ALICE))
        with runtime_on(emulator, mode, audit, allowed_channels=[RANDOM]):
            delivery = emulator.submit_view(view.id, values("N3w-Passw0rd!"))

    assert delivery.ack is not None
    assert delivery.ack["response_action"] == "update"
    assert "`/atp password` can only be used in <#C0RANDOM>" in json.dumps(delivery.ack["view"])
    assert [(r.action, r.outcome, r.reason) for r in audit.records] == [
        ("password", "denied", "channel not allowed")
    ]
    assert emulator.calls("chat.postMessage") == []


def test_refusals_cannot_push_events_out_of_history(tmp_path: Path) -> None:
    """Anyone in the workspace can be refused as often as they like; `/atp history` lists the refusals
    apart, so the real events stay in its last 20."""
    config = {"state_dir": str(tmp_path / "state")}
    with running_lab("socket", modules=MODULES, config=config, changes=initialised_changes) as lab:
        lab.emulator.slash_command("history", user=ALICE)  # a real event: "history ok"
        for _ in range(25):
            assert "not allowed" in lab.emulator.slash_command("password", user=MALLORY).text
        listing = lab.emulator.slash_command("history", user=ALICE).text

    assert "slack:U0ALICE (alice)  history  -  ok: 0 events shown" in listing
    events, refusals = listing.split("Latest refused requests")
    assert "denied" not in events
    assert refusals.count("slack:U0MALLORY (mallory)  password  -  denied (user not allowed)") == 5


def _broken(ctx: object) -> None:
    raise RuntimeError("a handler bug")


BROKEN = SimpleNamespace(
    SUBCOMMAND=Subcommand(name="broken", summary="fails (test only)", handler=_broken, sensitive=False),
    register=lambda app, services: None,
)


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_handler_answers_in_one_line_and_is_audited(mode: str) -> None:
    with running_lab(mode, modules=(*MODULES, slack_probe, BROKEN)) as lab:
        delivery = lab.emulator.slash_command("broken")
        assert delivery.status == 200
        assert not delivery.late
        assert delivery.text == ":warning: Something went wrong: RuntimeError: a handler bug."
        assert [(r.action, r.outcome, r.reason) for r in lab.audit.records] == [
            ("broken", "error", "internal-error")
        ]
