"""`[scheduler]`: the background jobs, their job store and the leader lock of replicas."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, SecretStr, field_validator, model_validator

from bot.config.base import DAILY_TIME, SecretSource, StrictModel, database_url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

_INTERVAL = r"^([1-9][0-9]{0,4})([mh])$"


class SchedulerConfig(StrictModel):
    """`[scheduler]`: the background jobs that watch the sensors and the password expiry."""

    enabled: bool = True
    monitor_interval_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 5
    # Drift: each account's pwdLastSet / badPwdCount / lockout read with its lookup account (no bind).
    drift_interval_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 5
    recheck_delays_minutes: Annotated[
        list[Annotated[int, Field(ge=1, le=7 * 24 * 60)]], Field(max_length=10)
    ] = [2, 10]
    # "HH:MM" (UTC, daily) or an interval such as "12h" or "90m".
    expiry_check_time: str = "08:00"
    expiry_warning_days: Annotated[
        list[Annotated[int, Field(ge=0, le=365)]], Field(min_length=1, max_length=20)
    ] = [14, 7, 3, 1]
    # A sensor that cannot be reached is reported once, after this many consecutive failed cycles.
    unreachable_after: Annotated[int, Field(ge=1, le=1000)] = 3
    # SQLAlchemy URL of the job store (without a password); default: SQLite in the state directory.
    jobstore_url: str | None = None
    jobstore_password_env: str | None = None
    jobstore_password_file: Path | None = None
    # Two or more replicas: a PostgreSQL URL (without a password) whose session advisory lock elects the
    # one replica that runs the scheduler. Unset: a single instance runs it.
    leader_lock_url: str | None = None
    leader_lock_password_env: str | None = None
    leader_lock_password_file: Path | None = None
    # How often a standby tries to take the lock and the leader checks it still holds it.
    leader_poll_seconds: Annotated[float, Field(ge=0.1, le=60)] = 5.0

    @field_validator("expiry_check_time")
    @classmethod
    def _valid_check_time(cls, value: str) -> str:
        if not (re.match(DAILY_TIME, value) or re.match(_INTERVAL, value)):
            raise ValueError(f'{value!r}: use a UTC time of day ("08:00") or an interval ("12h", "90m")')
        return value

    @field_validator("recheck_delays_minutes", "expiry_warning_days")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("a value is listed twice")
        return value

    @field_validator("jobstore_url")
    @classmethod
    def _jobstore_without_password(cls, value: str | None) -> str | None:
        if value is None:
            return value
        url = database_url(value, "sqlite:////var/lib/atp-bot/jobs.sqlite")
        if url.password:
            raise ValueError(
                "must not contain a password: use jobstore_password_env or jobstore_password_file"
            )
        return value

    @field_validator("leader_lock_url")
    @classmethod
    def _leader_lock_on_postgresql(cls, value: str | None) -> str | None:
        if value is None:
            return value
        url = database_url(value, "postgresql+psycopg://atp@db/atp")
        if url.get_backend_name() != "postgresql":
            raise ValueError(
                "must be a PostgreSQL URL (advisory locks), e.g. postgresql+psycopg://atp@db/atp"
            )
        if url.password:
            raise ValueError(
                "must not contain a password: use leader_lock_password_env or leader_lock_password_file"
            )
        return value

    @model_validator(mode="after")
    def _shared_when_replicated(self) -> SchedulerConfig:
        self.jobstore_password_source.check()
        self.leader_lock_password_source.check()
        if self.leader_lock_url is not None and (
            self.jobstore_url is None or database_url(self.jobstore_url, "").get_backend_name() == "sqlite"
        ):
            raise ValueError(
                "leader_lock_url (several replicas) needs a jobstore_url on a shared database such as "
                "PostgreSQL, so that every replica sees the same jobs"
            )
        return self

    @property
    def jobstore_password_source(self) -> SecretSource:
        return SecretSource(
            "scheduler.jobstore_password",
            "jobstore_password",
            self.jobstore_password_env,
            self.jobstore_password_file,
        )

    @property
    def leader_lock_password_source(self) -> SecretSource:
        return SecretSource(
            "scheduler.leader_lock_password",
            "leader_lock_password",
            self.leader_lock_password_env,
            self.leader_lock_password_file,
        )

    def jobstore_password(self) -> SecretStr | None:
        return self.jobstore_password_source.read_if_configured()

    def leader_lock(self) -> URL | None:
        """`leader_lock_url` with the password from `leader_lock_password_env`/`_file`; None when unset."""
        if self.leader_lock_url is None:
            return None
        url = database_url(self.leader_lock_url, "")
        password = self.leader_lock_password_source.read_if_configured()
        return url if password is None else url.set(password=password.get_secret_value())

    @property
    def expiry_daily_at(self) -> tuple[int, int] | None:
        """(hour, minute) UTC when the expiry check runs daily; None when it runs at an interval."""
        if re.match(DAILY_TIME, self.expiry_check_time):
            hour, minute = self.expiry_check_time.split(":")
            return int(hour), int(minute)
        return None

    @property
    def expiry_interval_minutes(self) -> int | None:
        match = re.match(_INTERVAL, self.expiry_check_time)
        if match is None:
            return None
        return int(match.group(1)) * (60 if match.group(2) == "h" else 1)
