"""The Block Kit renderer of the lab (pure): modals and messages as terminal text."""

from __future__ import annotations

import json

from bot.change import ChangeOutcome, ChangeStatus
from bot.config import Settings
from commands.password.views import Block, PasswordModalOrigin, password_modal, result_modal
from commands.shared.sensor_report import report
from lab.slack.render import block_lines, decode_blocks, element_text, render_message, render_view

SETTINGS = Settings.model_validate(
    {
        "accounts": [
            {"id": "contoso", "username": "svc-atp@contoso.test", "domain_controllers": ["ldaps://dc1"]},
            {"id": "fabrikam", "username": "svc@fabrikam.test", "domain_controllers": ["ldaps://dc2"]},
        ]
    }
)


def test_password_modal_shows_blank_inputs_and_its_buttons() -> None:
    modal = password_modal(SETTINGS, PasswordModalOrigin(account_id="contoso", channel_id="C0OPS"))
    text = render_view(modal)
    lines = text.splitlines()
    assert lines[0] == "┌─ Directory password"
    assert "| Account *contoso*: `svc-atp@contoso.test`" in lines
    assert "| [ New password: ________ ]" in lines
    assert "| [ Confirm the new password: ________ ]" in lines
    assert any(line.startswith("| » atp-bot first tests the password") for line in lines)
    assert lines[-1] == "└─ [Cancel] [Test and save]"


def test_inline_errors_go_under_their_input() -> None:
    modal = password_modal(SETTINGS, PasswordModalOrigin(account_id="contoso", channel_id="C0OPS"))
    lines = render_view(modal, {Block.CONFIRM: "The two passwords do not match."}).splitlines()
    confirm = lines.index("| [ Confirm the new password: ________ ]")
    assert lines[confirm + 1] == "|   ⚠ The two passwords do not match."
    assert "⚠" not in lines[confirm - 1]


def test_account_select_lists_the_options() -> None:
    modal = password_modal(SETTINGS, PasswordModalOrigin(account_id=None, channel_id="C0OPS"))
    assert (
        "| [ Directory service account: ( contoso (svc-atp@contoso.test) | fabrikam (svc@fabrikam.test) ) ]"
        in render_view(modal).splitlines()
    )


def test_result_modal_shows_the_reason_and_the_try_again_button() -> None:
    outcome = ChangeOutcome("contoso", ChangeStatus.NOT_STARTED, "Another change is in progress.")
    text = render_view(result_modal(outcome, PasswordModalOrigin(account_id="contoso", channel_id="C0OPS")))
    assert ":no_entry: *Not saved.* Another change is in progress." in text
    assert "| [Try again]" in text.splitlines()
    assert text.endswith("└─ [Close]")


def test_typed_values_and_initial_values_are_never_shown() -> None:
    view = {
        "title": {"type": "plain_text", "text": "T"},
        "blocks": [
            {
                "type": "input",
                "block_id": "b",
                "label": {"type": "plain_text", "text": "New password"},
                "element": {"type": "plain_text_input", "action_id": "a", "initial_value": "Secret-1!"},
            }
        ],
        "state": {"values": {"b": {"a": {"type": "plain_text_input", "value": "Secret-1!"}}}},
    }
    assert "Secret-1!" not in render_view(view)


def test_message_with_blocks_renders_its_blocks_in_order() -> None:
    text, blocks = report("*Follow-up checks*", [], 3)
    rendered = render_message(text, json.dumps(blocks), heading="posted")
    assert rendered.splitlines() == [
        "posted:",
        "| *Follow-up checks*",
        "| :hourglass_flowing_sand: Checking 3 sensor(s)… 0 of 3 answered.",
    ]


def test_message_without_blocks_shows_its_text() -> None:
    assert render_message("line one\nline two") == "atp-bot:\n| line one\n| line two"


def test_blocks_of_every_common_kind() -> None:
    plain = {"type": "plain_text", "text": "Hi"}
    assert block_lines({"type": "header", "text": plain}) == ["# Hi"]
    assert block_lines({"type": "divider"}) == ["―" * 20]
    assert block_lines(
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*a*\nb"},
            "fields": [{"type": "mrkdwn", "text": "f"}],
            "accessory": {"type": "button", "text": plain, "action_id": "x"},
        }
    ) == ["*a*", "b", "f", "[Hi]"]
    assert block_lines(
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Re-check now"}},
                {"type": "button", "text": {"type": "plain_text", "text": "Change password"}},
            ],
        }
    ) == ["[Re-check now]  [Change password]"]
    assert block_lines(
        {
            "type": "input",
            "optional": True,
            "label": plain,
            "hint": {"type": "plain_text", "text": "a hint"},
            "element": {"type": "users_select", "placeholder": {"type": "plain_text", "text": "Pick"}},
        }
    ) == ["[ Hi (optional): ( Pick ▾ ) ]", "  a hint"]
    assert block_lines({"type": "rich_text"}) == ["[rich_text block]"]
    assert element_text({"type": "image", "alt_text": "logo"}) == "[image: logo]"


def test_decode_blocks_accepts_lists_strings_and_nothing() -> None:
    assert decode_blocks(None) == []
    assert decode_blocks("") == []
    assert decode_blocks('[{"type": "divider"}]') == [{"type": "divider"}]
    assert decode_blocks([{"type": "divider"}]) == [{"type": "divider"}]
