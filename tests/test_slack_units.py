"""Configuration, credentials, redaction patterns and view helpers of the Slack face."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr, ValidationError

from bot.config import ConfigError, SlackConfig
from bot.config.secret_env import take_from_environment
from bot.infra.redaction import REDACTED, active_secret, install_record_redaction, redact, redact_patterns
from bot.slack.replay import WINDOW_SECONDS, ReplayCache
from bot.slack.secrets import SlackSecrets
from bot.slack.views import decode_metadata, encode_metadata, notice_modal, view_channel


def test_slack_config_defaults_and_validation() -> None:
    config = SlackConfig()
    assert (config.mode, config.api_url, config.listen_address) == (
        "socket",
        "https://slack.com/api/",
        ("127.0.0.1", 3000),  # loopback: the container files pass --listen 0.0.0.0:3000
    )
    assert SlackConfig(api_url="http://127.0.0.1:9/api").api_url == "http://127.0.0.1:9/api/"
    assert SlackConfig(listen="[::1]:8080").listen_address == ("::1", 8080)
    for bad in (
        {"channel": "#ops"},
        {"allowed_users": ["alice"]},
        {"allowed_usergroups": ["U1"]},
        {"listen": "3000"},
        {"listen": "host:99999"},
        {"api_url": "ftp://x"},
        {"mode": "rtm"},
        {"bot_token": "xoxb-1"},
    ):
        with pytest.raises(ValidationError):
            SlackConfig.model_validate(bad)


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret-1")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-secret-2")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret-3")
    socket = SlackSecrets.from_env(SlackConfig())
    assert socket.app_token is not None
    assert socket.signing_secret is None
    http = SlackSecrets.from_env(SlackConfig(mode="http"))
    assert http.signing_secret is not None
    assert http.app_token is None
    take_from_environment(
        ["SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"]
    )  # as entry points do
    assert "SLACK_BOT_TOKEN" not in os.environ
    assert SlackSecrets.from_env(SlackConfig()).bot_token.get_secret_value() == "xoxb-secret-1"  # read again


def test_a_token_of_the_wrong_kind_is_named_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xapp-swapped-secret")
    with pytest.raises(ConfigError) as error:
        SlackSecrets.from_env(SlackConfig())
    assert "SLACK_BOT_TOKEN: expected a token starting with xoxb-" in str(error.value)
    assert "swapped-secret" not in str(error.value)


PAYLOAD_TEMPLATE = {"type": "view_submission", "view": {"id": "V1", "hash": "h", "state": {"values": {}}}}


def payload_with(secret: str) -> dict[str, object]:
    values = {"blk": {"act": {"type": "plain_text_input", "value": secret}}}
    return {
        **PAYLOAD_TEMPLATE,
        "view": {"id": "V1", "hash": "h", "state": {"values": values}},
        "after": "kept",
    }


@given(st.text(min_size=6))
def test_view_state_values_are_redacted_in_every_encoding(secret: str) -> None:
    rendered = json.dumps(PAYLOAD_TEMPLATE) + repr(PAYLOAD_TEMPLATE) + urlencode({"payload": "{}"})
    assume(secret not in rendered and secret not in "[REDACTED]kept")
    payload = payload_with(secret)
    for text in (
        json.dumps(payload),
        json.dumps(payload, ensure_ascii=False),
        repr(payload),
        "body: " + urlencode({"payload": json.dumps(payload)}),
        "body: payload=" + quote(json.dumps(payload)),
    ):
        cleaned = redact_patterns(text)
        assert secret not in cleaned
        assert "kept" in cleaned  # only the values object goes


def test_tokens_and_bearer_credentials_are_redacted() -> None:
    text = (
        "headers: {'Authorization': 'Bearer abc.def'} xoxb-1-2-abc xapp-1-A-3-xyz xoxp-9 "
        'token=legacy123&team_id=T1 {"token": "legacy456"} %22token%22%3A%20%22legacy789%22'
    )
    cleaned = redact_patterns(text)
    for secret in (
        "abc.def",
        "xoxb-1-2-abc",
        "xapp-1-A-3-xyz",
        "xoxp-9",
        "legacy123",
        "legacy456",
        "legacy789",
    ):
        assert secret not in cleaned
    assert "team_id=T1" in cleaned


def test_active_secrets_still_redacted_first() -> None:
    with active_secret(SecretStr("hunter2-values")):
        assert redact("pw hunter2-values") == f"pw {REDACTED}"
    assert redact("pw hunter2-values") == "pw hunter2-values"


def test_records_are_redacted_when_created(caplog: pytest.LogCaptureFixture) -> None:
    install_record_redaction()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("slack_sdk.test").debug("sending %s", {"token": "xoxb-77-canary"})
    assert "xoxb-77-canary" not in caplog.text
    assert REDACTED in caplog.text


class State(BaseModel):
    account: str


def test_private_metadata_round_trip_and_limit() -> None:
    assert decode_metadata(State, encode_metadata(State(account="corp"))) == State(account="corp")
    with pytest.raises(ValueError, match="limit 3000"):
        encode_metadata(State(account="x" * 3000))
    with pytest.raises(ValidationError):
        decode_metadata(State, '{"acct": 1}')
    assert len(notice_modal("A title longer than twenty-four", "text")["title"]["text"]) == 24


def test_manifest_asks_only_for_the_scopes_the_bot_uses() -> None:
    manifest = (Path(__file__).parent.parent / "deploy" / "slack-manifest.yaml").read_text(encoding="utf-8")
    scopes = re.findall(r"^      - ([a-z:.]+)", manifest, flags=re.MULTILINE)
    assert scopes == ["commands", "chat:write", "usergroups:read"]
    assert re.search(r"^  socket_mode_enabled: true$", manifest, flags=re.MULTILINE)
    assert re.search(r"^    - command: /atp$", manifest, flags=re.MULTILINE)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_replay_cache_refuses_a_second_use_until_bolt_would_refuse_it_anyway() -> None:
    clock = FakeClock(1_000_000.0)
    cache = ReplayCache(clock=clock)
    signed_at = str(int(clock.now))
    assert cache.first_use("v0=a", signed_at)
    assert not cache.first_use("v0=a", signed_at)
    assert cache.first_use("v0=b", signed_at)
    clock.now += WINDOW_SECONDS + 1  # Bolt now rejects the timestamp itself: the entries can go
    assert cache.first_use("v0=c", str(int(clock.now)))
    assert len(cache) == 1


def test_replay_cache_is_bounded() -> None:
    clock = FakeClock(1_000_000.0)
    cache = ReplayCache(max_entries=3, clock=clock)
    for n in range(10):
        assert cache.first_use(f"v0={n}", str(int(clock.now)))
    assert len(cache) == 3
    assert not cache.first_use("v0=9", str(int(clock.now)))


def test_the_channel_a_modal_was_opened_from() -> None:
    assert view_channel({"private_metadata": '{"channel_id": "C0OPS", "account_id": null}'}) == "C0OPS"
    for unknown in ({}, {"private_metadata": ""}, {"private_metadata": "{}"}, {"private_metadata": "x"}):
        assert view_channel(unknown) is None
