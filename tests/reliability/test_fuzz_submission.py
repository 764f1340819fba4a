"""Fuzzed `/atp password` submissions: whatever shape Slack (or a forger) sends, validation answers with
inline errors or a submission, never an exception, and accepts only what the password policy accepts."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import Settings
from bot.directory import password_problem
from commands.password.validation import Submission, validate
from commands.password.views import Action, Block, PasswordModalOrigin

SETTINGS = Settings.model_validate(
    {
        "accounts": [
            {"id": "svc", "username": "svc@contoso.test", "domain_controllers": ["ldaps://dc1"]},
            {"id": "other", "username": "other@contoso.test", "domain_controllers": ["ldaps://dc1"]},
        ]
    }
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
block_ids = st.sampled_from([*list(Block), "junk"])
action_ids = st.sampled_from([*list(Action), "junk"])
state_values = st.dictionaries(
    block_ids,
    st.dictionaries(
        action_ids,
        st.dictionaries(
            st.sampled_from(["value", "selected_option", "type"]),
            json_values | st.text(max_size=300) | st.fixed_dictionaries({"value": json_values}),
        ),
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(values=state_values, account=st.sampled_from([None, "svc", "other"]))
def test_any_submission_gets_an_answer(values: dict[str, Any], account: str | None) -> None:
    state = PasswordModalOrigin(account_id=account, channel_id="C0OPS")
    answer = validate(values, state, SETTINGS)
    if isinstance(answer, Submission):
        typed = values[Block.PASSWORD][Action.PASSWORD]["value"]
        assert answer.password.get_secret_value() == typed
        assert password_problem(typed) is None
        assert values[Block.CONFIRM][Action.CONFIRM]["value"] == typed
    else:
        assert answer
        assert set(answer) <= {Block.ACCOUNT, Block.PASSWORD, Block.CONFIRM}
