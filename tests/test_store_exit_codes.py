"""One mapping from store error reasons to exit codes, for every command (issue 13)."""

from __future__ import annotations

import pytest

from bot.change import ChangeOutcome, ChangeStatus
from bot.cli import set_password
from bot.infra.exitcodes import ExitCode
from bot.store import StoreErrorReason, store_exit_code


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("config", ExitCode.USAGE),
        ("key", ExitCode.USAGE),
        ("unreachable", ExitCode.UNREACHABLE),
        ("timeout", ExitCode.PROBLEM),
        ("rejected", ExitCode.PROBLEM),
        ("busy", ExitCode.PROBLEM),
    ],
)
def test_store_commands_and_set_password_agree(reason: StoreErrorReason, code: ExitCode) -> None:
    assert store_exit_code(reason) is code
    failed_save = ChangeOutcome("corp", ChangeStatus.SAVE_FAILED, "not saved", error_reason=reason)
    assert set_password.exit_code(failed_save) is code
