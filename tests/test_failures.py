"""What a person reads when something unexpected happens: one safe line, never a traceback, never a secret
(in any of the escaped forms an exception message or a traceback writes it)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.change.failures import MAX_LINE, one_line
from bot.cli import main
from bot.config import ConfigError
from bot.directory.password_policy import NOT_TEXT, password_problem
from bot.infra.logging_setup import configure_logging
from bot.infra.redaction import REDACTED, active_secret, redact
from tests.winrm_lab import settings_toml

SECRET = 'Pässwörd-"quoted"-7f3a!'


def test_one_line_is_the_first_line_redacted_and_short() -> None:
    with active_secret(SecretStr(SECRET)):
        line = one_line(RuntimeError(f"bind failed for {SECRET!r}\nsecond line\n"))
        assert line == f"RuntimeError: bind failed for '{REDACTED}'"
        assert len(one_line(ValueError("x" * 1000))) == MAX_LINE
    assert one_line(KeyError()) == "KeyError"
    assert one_line(ConfigError(["a", "b"])) == "a; b"


@pytest.mark.parametrize(
    "written",
    [
        SECRET,
        repr(SECRET)[1:-1],
        repr(SECRET.encode())[2:-1],  # b'P\xc3\xa4ssw\xc3\xb6rd…' in a bytes repr
        '"P\\u00e4ssw\\u00f6rd-\\"quoted\\"-7f3a!"'[1:-1],  # JSON with ensure_ascii
    ],
)
def test_an_active_secret_is_redacted_in_its_escaped_forms(written: str) -> None:
    with active_secret(SecretStr(SECRET)):
        assert written not in redact(f"error: {written} was refused")
    assert redact(f"error: {written}") == f"error: {written}"  # nothing active any more


def test_lone_surrogates_are_not_a_password() -> None:
    assert password_problem("Good\ud800Pa55word!") == NOT_TEXT
    assert password_problem("Good-Pä55word!") is None


def test_one_shot_commands_log_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    shown = io.StringIO()
    configure_logging("WARNING", stream=shown, tracebacks=False)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        logging.getLogger("bot.test").error("it failed: %s", exc, exc_info=exc)
    assert "it failed: boom" in shown.getvalue()
    assert "Traceback" not in shown.getvalue()
    assert caplog.records[-1].exc_info is not None  # other handlers still get the traceback


def test_an_unexpected_error_in_a_command_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "atp-bot.toml"
    config.write_text(
        settings_toml([{"name": "s1", "endpoint": "https://127.0.0.1:1/wsman"}]), encoding="utf-8"
    )

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("bot.sensors.check_sensors", broken)
    assert main(["--config", str(config), "check"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "atp-bot: something went wrong: RuntimeError: a bug (-v shows the details)"
