"""Secrets stay out of logs and out of what Slack records, in both modes; forged, stale, replayed or
oversized HTTP requests are rejected before anything runs."""

from __future__ import annotations

import dataclasses
import logging
import socket
from urllib.parse import SplitResult, urlsplit

import pytest

from bot.infra.logging_setup import configure_logging
from bot.slack import runtime
from lab.slack import Signing, SlackEmulator
from tests import slack_probe
from tests.slack_lab import ALICE, OPS, Lab, running_lab, wait_for

BOT_TOKEN = "xoxb-1111-CANARYBOTTOKEN"
APP_TOKEN = "xapp-1-A0-2222-CANARYAPPTOKEN"
SIGNING_SECRET = "CANARY-signing-secret-3333"
PASSWORD = 'CANARY-pa}}ss"w{or\\d-4444'
CANARIES = (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, PASSWORD, "CANARYBOTTOKEN", "CANARYAPPTOKEN", "d-4444")


@pytest.fixture(autouse=True)
def _quick_probe() -> None:
    slack_probe.SLOW_STEP_DONE.set()


def debug_logging() -> None:
    """atp-bot's logging at DEBUG, installed after pytest's capture handler: what the capture sees is
    then redacted by the record factory alone, not by atp-bot's handler filter running first."""
    configure_logging("DEBUG")


def canary_emulator() -> SlackEmulator:
    return SlackEmulator(bot_token=BOT_TOKEN, app_token=APP_TOKEN, signing_secret=SIGNING_SECRET)


def assert_clean(text: str) -> None:
    for canary in CANARIES:
        assert canary not in text


@pytest.mark.parametrize("mode", ["socket", "http"])
def test_no_secret_in_logs_or_slack_recordings(
    mode: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    debug_logging()
    with caplog.at_level(logging.DEBUG), running_lab(mode, emulator=canary_emulator()) as lab:
        emulator = lab.emulator
        emulator.slash_command("probe corp")
        wait_for(lambda: emulator.calls("views.open"))
        [view] = emulator.open_views(ALICE)
        values = {slack_probe.Block.SECRET: {slack_probe.Action.SECRET: PASSWORD}}
        emulator.submit_view(view.id, values)
        wait_for(lambda: [m for m in emulator.messages(OPS) if m.thread_ts])
        recorded = [f"{c.method} {c.args} {c.body}" for c in emulator.calls()]
        acks = [str(d.ack) for d in emulator.deliveries]

    # The canaries did travel (so the checks below mean something) …
    assert any("state" in r.getMessage() for r in caplog.records), "Bolt/slack_sdk logged no payloads"
    assert "checked (25 characters)" in str(emulator.calls("views.update")[-1].args)
    # … but no log record, no output, no Web API call and no acknowledgement carries one.
    assert_clean(caplog.text)  # formatted when emitted
    for record in caplog.records:
        assert_clean(record.getMessage())
        assert_clean(record.exc_text or "")
    out, err = capfd.readouterr()
    assert_clean(out + err)
    assert_clean("\n".join(recorded + acks))


@pytest.mark.parametrize("signing", [Signing.FORGED, Signing.STALE, Signing.UNSIGNED])
def test_bad_signatures_are_rejected_and_nothing_runs(
    signing: Signing, caplog: pytest.LogCaptureFixture
) -> None:
    debug_logging()
    with caplog.at_level(logging.DEBUG), running_lab("http", emulator=canary_emulator()) as lab:
        baseline = len(lab.emulator.calls())
        for user in (ALICE, "U0MALLORY"):
            delivery = lab.emulator.slash_command("probe corp", user=user, signing=signing)
            assert delivery.status == 401
            assert delivery.ack is None
        lab.emulator.slash_command("probe corp")  # a genuine one opens the modal
        wait_for(lambda: lab.emulator.calls("views.open"))
        [view] = lab.emulator.open_views(ALICE)
        values = {slack_probe.Block.SECRET: {slack_probe.Action.SECRET: PASSWORD}}
        assert lab.emulator.submit_view(view.id, values, signing=signing).status == 401
        calls = [c.method for c in lab.emulator.calls()[baseline:]]
        assert calls == ["views.open"]
        assert lab.audit.records == []
    assert "Invalid request signature detected" in caplog.text  # Bolt logged the body …
    assert_clean(caplog.text)  # … redacted


def test_a_replayed_request_is_refused_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), running_lab("http") as lab:
        assert lab.emulator.slash_command("probe corp").status == 200
        wait_for(lambda: lab.emulator.calls("views.open"))
        replayed = lab.emulator.resend_last()  # the same bytes, signature and timestamp
        assert (replayed.status, replayed.body) == (401, '{"error": "replayed request"}')
        assert lab.emulator.slash_command("probe corp").status == 200  # a genuine one still passes
        wait_for(lambda: len(lab.emulator.calls("views.open")) == 2)
        assert len(lab.emulator.calls("views.open")) == 2
    assert "refused a replayed Slack request (/atp)" in caplog.text


def events_url(lab: Lab) -> SplitResult:
    return urlsplit(lab.runtime.runner.url)  # type: ignore[union-attr]


def test_a_body_over_the_limit_gets_413_before_it_is_sent() -> None:
    with running_lab("http") as lab:
        url = events_url(lab)
        with socket.create_connection((url.hostname, url.port), timeout=5) as client:
            client.sendall(
                f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {2 * 1024 * 1024}\r\n\r\n".encode()
            )
            answer = client.recv(4096).decode()  # the body was never sent
        assert answer.startswith("HTTP/1.1 413 ")
        assert {c.method for c in lab.emulator.calls()} == {"auth.test"}  # nothing ran


def closed_by_peer(client: socket.socket, line: bytes, *, tries: int) -> bool:
    """Send `line` every 0.2 s (a slow-loris client) until the peer closes the connection, `tries` at most."""
    client.settimeout(0.2)
    for _ in range(tries):
        try:
            client.sendall(line)
            if client.recv(4096) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:  # reset
            return True
    return False


def test_a_request_still_arriving_after_the_deadline_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that sends a byte now and then is never idle: the request deadline closes it."""
    monkeypatch.setattr(runtime, "HTTP_LIMITS", dataclasses.replace(runtime.HTTP_LIMITS, request_seconds=1.0))
    with running_lab("http") as lab:
        url = events_url(lab)
        with (
            socket.create_connection((url.hostname, url.port), timeout=5) as headers,
            socket.create_connection((url.hostname, url.port), timeout=5) as body,
        ):
            headers.sendall(f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n".encode())
            body.sendall(
                f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: 1000\r\n\r\n".encode()
            )
            assert closed_by_peer(headers, b"X-Slow: 1\r\n", tries=50)
            assert closed_by_peer(body, b"a", tries=50)
        assert lab.emulator.slash_command("help").status == 200
