"""The Slack emulator answers the real slack_sdk client like Slack does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.webhook import WebhookClient

from bot.slack.client import build_client
from bot.slack.views import notice_modal, update_view
from lab.slack import SlackEmulator
from lab.slack.webapi import RESPONSE_URL_METHOD
from lab.slack.workspace import Workspace


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    with SlackEmulator() as running:
        yield running


@pytest.fixture
def client(emulator: SlackEmulator) -> WebClient:
    return build_client(emulator.api_url, SecretStr(emulator.bot_token))


def error_of(call: object) -> str:
    with pytest.raises(SlackApiError) as raised:
        call()  # type: ignore[operator]
    return str(raised.value.response["error"])


def test_tokens_are_checked_and_not_recorded(emulator: SlackEmulator, client: WebClient) -> None:
    assert client.auth_test()["user_id"] == "U0ATPBOT"
    assert (
        error_of(lambda: WebClient(token="xoxb-wrong", base_url=emulator.api_url).auth_test())
        == "invalid_auth"
    )
    assert error_of(lambda: client.apps_connections_open(app_token=emulator.bot_token)) == "invalid_auth"
    url = client.apps_connections_open(app_token=emulator.app_token)["url"]
    assert url.startswith(f"ws://127.0.0.1:{emulator.socket_port}/link/?ticket=")
    assert all(emulator.bot_token not in c.body + str(c.args) for c in emulator.calls())


def test_views_follow_slack_rules(emulator: SlackEmulator, client: WebClient) -> None:
    trigger = emulator.workspace.new_trigger("U0ALICE")
    view = client.views_open(trigger_id=trigger, view=notice_modal("One", "first"))["view"]
    assert error_of(lambda: client.views_open(trigger_id=trigger, view=notice_modal("Two", "x"))) == (
        "exchanged_trigger_id"
    )
    assert error_of(lambda: client.views_open(trigger_id="nope", view=notice_modal("Two", "x"))) == (
        "invalid_trigger_id"
    )
    assert error_of(
        lambda: client.views_update(view_id=view["id"], hash="stale", view=notice_modal("A", "b"))
    ) == ("hash_conflict")
    updated = client.views_update(view_id=view["id"], hash=view["hash"], view=notice_modal("One", "second"))
    assert updated["view"]["hash"] != view["hash"]
    assert "second" in str(emulator.view(view["id"])["blocks"])
    emulator.close_view(view["id"])
    assert update_view(client, view["id"], notice_modal("One", "third")) is False
    assert (
        error_of(lambda: client.views_open(trigger_id=trigger, view={"type": "modal"})) == "invalid_arguments"
    )


def test_expired_trigger() -> None:
    now = [0.0]
    with SlackEmulator(workspace=Workspace(clock=lambda: now[0])) as emulator:
        client = build_client(emulator.api_url, SecretStr(emulator.bot_token))
        trigger = emulator.workspace.new_trigger("U0ALICE")
        now[0] = 3.5
        assert error_of(lambda: client.views_open(trigger_id=trigger, view=notice_modal("A", "b"))) == (
            "expired_trigger_id"
        )


def test_push_limit(emulator: SlackEmulator, client: WebClient) -> None:
    client.views_open(trigger_id=emulator.workspace.new_trigger("U0ALICE"), view=notice_modal("1", "x"))
    for _ in range(2):
        client.views_push(trigger_id=emulator.workspace.new_trigger("U0ALICE"), view=notice_modal("n", "x"))
    trigger = emulator.workspace.new_trigger("U0ALICE")
    assert error_of(lambda: client.views_push(trigger_id=trigger, view=notice_modal("4", "x"))) == (
        "push_limit_reached"
    )


def test_messages_threads_and_updates(emulator: SlackEmulator, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C0OPS", text="announcement")
    reply = client.chat_postMessage(channel="C0OPS", text="detail", thread_ts=posted["ts"])
    assert reply["message"]["thread_ts"] == posted["ts"]
    client.chat_update(channel="C0OPS", ts=posted["ts"], text="edited")
    assert [m.text for m in emulator.messages("C0OPS")] == ["edited", "detail"]
    assert error_of(lambda: client.chat_update(channel="C0OPS", ts="1.2", text="x")) == "message_not_found"
    assert error_of(lambda: client.chat_postMessage(channel="C0NOPE", text="x")) == "channel_not_found"
    with pytest.warns(UserWarning, match="`text` argument is missing"):
        assert error_of(lambda: client.chat_postMessage(channel="C0OPS")) == "no_text"
    assert client.chat_postEphemeral(channel="C0OPS", user="U0BOB", text="psst")["message_ts"]
    assert client.usergroups_users_list(usergroup="S0SECOPS")["users"] == ["U0BOB"]
    assert error_of(lambda: client.usergroups_users_list(usergroup="S0NOPE")) == "no_such_subteam"
    assert client.users_info(user="U0BOB")["user"]["name"] == "bob"
    assert error_of(lambda: client.users_info(user="U0NOPE")) == "user_not_found"
    assert [c.method for c in emulator.calls("chat.postMessage")] == ["chat.postMessage"] * 4


def test_scripted_faults_are_retried(emulator: SlackEmulator, client: WebClient) -> None:
    emulator.fail("auth.test", status=503)
    emulator.fail("users.info", status=200, error="fatal_error")
    assert client.auth_test()["ok"]
    assert [c.status for c in emulator.calls("auth.test")] == [503, 200]
    assert error_of(lambda: client.users_info(user="U0BOB")) == "fatal_error"
    emulator.fail("auth.test", status=500, times=2)
    assert error_of(client.auth_test) == "internal_error"  # one retry only, then the error


def test_socket_mode_tickets_are_single_use(emulator: SlackEmulator, client: WebClient) -> None:
    url = client.apps_connections_open(app_token=emulator.app_token)["url"]
    first = SocketModeClient(app_token=emulator.app_token, web_client=client, auto_reconnect_enabled=False)
    second = SocketModeClient(app_token=emulator.app_token, web_client=client, auto_reconnect_enabled=False)
    try:
        first.wss_uri = url
        first.connect()
        emulator.wait_connected()
        second.wss_uri = url  # replayed
        second.connect()
        assert not second.is_connected()
        assert emulator.connected_apps == 1
    finally:
        first.close()
        second.close()


def test_bounded_rate_limit_retry(emulator: SlackEmulator) -> None:
    client = build_client(emulator.api_url, SecretStr(emulator.bot_token), max_retry_after=1)
    emulator.fail("auth.test", status=429, retry_after=1)
    assert client.auth_test()["ok"]
    emulator.fail("auth.test", status=429, retry_after=2)
    assert error_of(client.auth_test) == "ratelimited"
    assert [c.status for c in emulator.calls("auth.test")] == [429, 200, 429]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed_with_the_token(
    emulator: SlackEmulator, client: WebClient, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """urllib would re-send the Authorization header (the bot token) to the Location of a 301/302/303."""
    elsewhere = emulator.api_url.replace("127.0.0.1", "localhost") + "auth.test"
    emulator.redirect("auth.test", elsewhere, status=status)
    with pytest.raises(SlackApiError) as raised:
        client.auth_test()
    assert raised.value.response.status_code == status
    assert [c.status for c in emulator.calls("auth.test")] == [status]  # nothing reached the Location
    assert f"HTTP {status} redirect to localhost:" in caplog.text
    assert client.auth_test()["ok"]


def test_a_response_url_takes_five_posts_within_thirty_minutes() -> None:
    now = [0.0]
    with SlackEmulator(workspace=Workspace(clock=lambda: now[0])) as emulator:
        used, late = emulator.workspace.new_trigger("U0ALICE"), emulator.workspace.new_trigger("U0ALICE")
        url = emulator.api_url.removesuffix("/api/")

        def post(trigger: str) -> tuple[int, str]:
            response = WebhookClient(f"{url}/response/{trigger}").send(text="progress")
            return response.status_code, response.body

        assert [post(used) for _ in range(6)] == [(200, '{"ok": true}')] * 5 + [(404, "used_url")]
        now[0] = 30 * 60 + 1
        assert post(late) == (404, "expired_url")
        assert [c.status for c in emulator.calls(RESPONSE_URL_METHOD)] == [200] * 5 + [404, 404]


def test_an_outage_answers_every_method_until_it_ends_on_the_workspace_clock() -> None:
    now = [0.0]
    with SlackEmulator(workspace=Workspace(clock=lambda: now[0])) as emulator:
        client = build_client(emulator.api_url, SecretStr(emulator.bot_token), max_retry_after=1)
        emulator.outage(90)
        assert error_of(client.auth_test) == "internal_error"  # retried once, still down
        now[0] = 89.0
        assert error_of(lambda: client.chat_postMessage(channel="C0OPS", text="up?")) == "internal_error"
        assert emulator.messages("C0OPS") == []
        now[0] = 90.0
        assert client.chat_postMessage(channel="C0OPS", text="up")["ok"]
        assert [(c.method, c.status) for c in emulator.calls()] == [
            *[("auth.test", 503)] * 2,
            *[("chat.postMessage", 503)] * 2,
            ("chat.postMessage", 200),
        ]
        emulator.outage(30, status=429, retry_after=60)  # longer than this client waits: not retried
        assert error_of(client.auth_test) == "ratelimited"
        assert emulator.calls()[-1].status == 429
