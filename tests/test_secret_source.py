"""SecretSource: the one helper behind every `<key>_env`/`<key>_file` pair of the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, SchedulerConfig, SecretSource

CANARY = "canary-secret-7f3a"


def test_both_keys_set_is_refused_by_name() -> None:
    source = SecretSource("scheduler.jobstore_password", "jobstore_password", "VAR", Path("/x"))
    with pytest.raises(ValueError, match="set jobstore_password_env or jobstore_password_file, not both"):
        source.check()


def test_reads_from_the_environment_or_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATP_TEST_SECRET", CANARY)
    assert SecretSource("x", "password", "ATP_TEST_SECRET", None).read().get_secret_value() == CANARY
    secret_file = tmp_path / "secret"
    secret_file.write_text(CANARY + "\n", encoding="utf-8")
    assert SecretSource("x", "password", None, secret_file).read().get_secret_value() == CANARY


def test_unconfigured_optional_secret_is_none() -> None:
    source = SecretSource("audit", "password", None, None)
    assert not source.configured
    assert source.read_if_configured() is None


def test_errors_name_the_source_never_the_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ATP_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError) as unset:
        SecretSource("graph.client_secret", "client_secret", "ATP_TEST_UNSET", None).read()
    assert str(unset.value) == "graph.client_secret: environment variable ATP_TEST_UNSET is not set"
    empty = tmp_path / "empty"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="is empty"):
        SecretSource("audit", "password", None, empty).read()


def test_models_use_it_for_their_pairs() -> None:
    with pytest.raises(ValueError, match="set leader_lock_password_env or leader_lock_password_file"):
        SchedulerConfig(leader_lock_password_env="A", leader_lock_password_file=Path("/b"))
