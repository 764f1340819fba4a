"""Fuzzed `/atp …` text from allowed and unknown users, through the real Bolt app over signed HTTP:
always acknowledged in time with a message, never a 500 or an unhandled error."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands import MODULES
from tests.slack_lab import ALICE, MALLORY, running_lab, wait_for

words = st.sampled_from(["password", "status", "history", "alerts", "help", "corp", "CORP", "nope", ""])
texts = st.lists(words | st.text(max_size=40), max_size=4).map(" ".join) | st.text(max_size=200)


def test_any_slash_command_text_is_answered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    with running_lab("http", modules=MODULES) as lab:

        @settings(
            max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
        )
        @given(text=texts, user=st.sampled_from([ALICE, MALLORY]))
        def answered(text: str, user: str) -> None:
            opened = len(lab.emulator.calls("views.open"))
            delivery = lab.emulator.slash_command(text, user=user)
            assert delivery.status == 200
            assert not delivery.late
            if not delivery.text:  # no message: then it must have opened the password modal
                wait_for(lambda: len(lab.emulator.calls("views.open")) > opened)

        answered()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("bot")] == []
