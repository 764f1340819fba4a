"""The process's logging setup: text or JSON lines, and redaction of active secrets."""

from __future__ import annotations

import io
import json
import logging

from pydantic import SecretStr

from bot.infra.logging_setup import configure_logging
from bot.infra.redaction import REDACTED, active_secret
from tests.conftest import CANARY


def test_active_secrets_are_redacted_from_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", "text", stream)
    log = logging.getLogger("test.redaction")
    with active_secret(SecretStr(CANARY)):
        log.info("careless %s", CANARY)
        try:
            raise ValueError(f"boom {CANARY}")
        except ValueError:
            log.exception("failed")
    log.info("after: %s", CANARY)  # no longer active: nothing to redact
    output = stream.getvalue()
    assert output.count(REDACTED) == 2
    assert output.count(CANARY) == 1 and output.rstrip().endswith(CANARY)


def test_json_lines() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    logging.getLogger("test.json").warning("hello %s", "world")
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["message"] == "hello world"
    assert entry["level"] == "WARNING" and entry["logger"] == "test.json"
