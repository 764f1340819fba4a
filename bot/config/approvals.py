"""`[approvals]`: two-person approval (a tested password waits for an approver's click to be saved)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from bot.config.base import SecretSource, StrictModel
from bot.config.slack import SLACK_USER_PATTERN, SLACK_USERGROUP_PATTERN


class ApprovalsConfig(StrictModel):
    """Two-person approval: a tested password waits for an approver's click before it is saved."""

    required: bool = False  # every account, unless its `approval` says otherwise
    approvers: list[Annotated[str, Field(pattern=SLACK_USER_PATTERN)]] = []
    approver_usergroups: list[Annotated[str, Field(pattern=SLACK_USERGROUP_PATTERN)]] = []
    expires_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 15
    notify: Literal["channel", "dm"] = "channel"  # where the Approve / Deny message goes
    # The key that encrypts a held password when the store is not embedded (the embedded store's key
    # otherwise): 32 random bytes in URL-safe base64, as `atp-bot store init` writes one.
    key_env: str | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> ApprovalsConfig:
        self.key_source.check()
        return self

    @property
    def key_source(self) -> SecretSource:
        return SecretSource("approvals.key", "key", self.key_env, self.key_file)
