"""The ATA Center backend through real requests + NTLM against the HTTPS emulator in lab/ata_center.py."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import Settings
from bot.store import StoreError, open_store
from bot.store.ata_center import ACCOUNT_NAME_FIELD, CREDENTIAL_SECTION, PROFILE_PATH
from lab.ata_center import AtaCenterEmulator
from tests.storetools import CANARY, files_containing, make_settings, toml_str


@pytest.fixture
def center(tmp_path: Path) -> Iterator[AtaCenterEmulator]:
    with AtaCenterEmulator(tmp_path / "center", account_domain="contoso.test") as emulator:
        yield emulator


def _settings(tmp_path: Path, center: AtaCenterEmulator, **overrides: object) -> Settings:
    password_file = tmp_path / "ata-admin.password"
    password_file.write_text(str(overrides.pop("password", center.password)), encoding="utf-8")
    values: dict[str, object] = {
        "url": center.url,
        "username": center.username,
        "password_file": password_file,
        "ca_file": center.tls.ca_file,
        "timeout": 10.0,
    }
    values.update(overrides)
    table = "\n".join(f"{k} = {toml_str(v) if not isinstance(v, float) else v}" for k, v in values.items())
    return make_settings(tmp_path, f'[store]\nbackend = "ata-center"\n[store.ata_center]\n{table}\n')


def test_save_updates_the_directory_services_password(
    tmp_path: Path, center: AtaCenterEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = center.profile
    store = open_store(_settings(tmp_path, center))
    meta = store.save("corp", SecretStr(CANARY), "slack:U123 (alice)")
    assert center.stored_password == CANARY
    assert center.saves == 1
    after = center.profile
    assert after["Configuration"] == before["Configuration"]  # the rest of the profile is kept
    assert after[CREDENTIAL_SECTION][ACCOUNT_NAME_FIELD] == "svc-atp"
    assert meta.backend == "ata-center"
    saved = store.metadata("corp")
    assert saved is not None
    assert saved.saved_by == "slack:U123 (alice)"
    assert store.read("corp") is None  # the Center never returns the password in clear
    assert {r.user for r in center.records if r.status == 200} == {"CONTOSO\\ata-admin"}
    assert CANARY not in json.dumps([r.__dict__ for r in center.records])
    assert CANARY not in json.dumps(after)
    assert CANARY not in caplog.text
    assert files_containing(tmp_path / "state", CANARY) == []


def test_wrong_windows_password_is_an_auth_error(tmp_path: Path, center: AtaCenterEmulator) -> None:
    store = open_store(_settings(tmp_path, center, password="not-the-password"))
    with pytest.raises(StoreError, match="HTTP 401") as caught:
        store.save("corp", SecretStr(CANARY), "cli:alice")
    assert caught.value.reason == "auth"
    assert center.saves == 0


def test_http_401_on_post(tmp_path: Path, center: AtaCenterEmulator) -> None:
    center.fail_next("POST", 401)
    with pytest.raises(StoreError, match="refused POST") as caught:
        open_store(_settings(tmp_path, center)).save("corp", SecretStr(CANARY), "cli:alice")
    assert caught.value.reason == "auth"
    assert center.stored_password is None


def test_http_500_echoing_the_body_is_reported_without_it(
    tmp_path: Path, center: AtaCenterEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    center.fail_next("POST", 500, json.dumps({"Message": f"could not save {CANARY}"}))
    with pytest.raises(StoreError, match="HTTP 500") as caught:
        open_store(_settings(tmp_path, center)).save("corp", SecretStr(CANARY), "cli:alice")
    assert caught.value.reason == "rejected"
    assert "could not save" not in caught.value.message  # the peer's text stays out of the message
    assert "500 Internal Server Error" in caught.value.message
    assert "could not save [REDACTED]" in caplog.text  # and is logged, redacted, at DEBUG
    assert CANARY not in caplog.text
    assert open_store(_settings(tmp_path, center)).metadata("corp") is None


@pytest.mark.parametrize(("method", "status"), [("POST", 307), ("POST", 308), ("GET", 302), ("GET", 301)])
def test_a_redirect_is_never_followed(
    tmp_path: Path, center: AtaCenterEmulator, method: str, status: int
) -> None:
    """The Location is the same Center under another name: following it would save there and succeed."""
    elsewhere = center.url.replace("127.0.0.1", "localhost") + PROFILE_PATH
    center.redirect_next(method, status, elsewhere)
    store = open_store(_settings(tmp_path, center))
    with pytest.raises(StoreError, match=rf"HTTP {status} redirect to localhost:\d+") as caught:
        store.save("corp", SecretStr(CANARY), "cli:alice")
    assert caught.value.reason == "bad-response"
    assert center.saves == 0
    assert center.stored_password is None
    assert [r.method for r in center.records if r.status == 200] == (["GET"] if method == "POST" else [])
    assert store.metadata("corp") is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<html>Service Unavailable</html>", "did not return JSON"),
        (b'{"Type": "CenterSystemProfile"}', f"no {CREDENTIAL_SECTION} object"),
        (json.dumps({CREDENTIAL_SECTION: {ACCOUNT_NAME_FIELD: 42}}).encode(), "missing or not a string"),
        (b"[1, 2, 3]", f"no {CREDENTIAL_SECTION} object"),
    ],
)
def test_unexpected_json_is_refused(
    tmp_path: Path, center: AtaCenterEmulator, body: bytes, expected: str
) -> None:
    center.fail_next("GET", 200, body)
    with pytest.raises(StoreError, match=expected) as caught:
        open_store(_settings(tmp_path, center)).save("corp", SecretStr(CANARY), "cli:alice")
    assert caught.value.reason == "bad-response"
    assert center.saves == 0


def test_another_account_is_not_overwritten(tmp_path: Path, center: AtaCenterEmulator) -> None:
    with pytest.raises(StoreError, match="refusing to overwrite another account") as caught:
        open_store(_settings(tmp_path, center)).save("lab", SecretStr(CANARY), "cli:alice")
    assert caught.value.reason == "config"
    assert center.saves == 0


def test_untrusted_certificate_is_a_tls_error(tmp_path: Path, center: AtaCenterEmulator) -> None:
    settings = _settings(tmp_path, center)
    assert settings.store.ata_center is not None
    untrusted = settings.model_copy(
        update={
            "store": settings.store.model_copy(
                update={"ata_center": settings.store.ata_center.model_copy(update={"ca_file": None})}
            )
        }
    )
    with pytest.raises(StoreError, match="TLS verification") as caught:
        open_store(untrusted).save("corp", SecretStr(CANARY), "cli:alice")
    assert caught.value.reason == "tls"
    assert center.saves == 0


def test_unreachable_center(tmp_path: Path, center: AtaCenterEmulator) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = _settings(tmp_path, center, url=f"https://127.0.0.1:{closed_port}")
    with pytest.raises(StoreError, match="cannot reach the ATA Center") as caught:
        open_store(settings).save("corp", SecretStr(CANARY), "cli:alice")
    assert caught.value.reason == "unreachable"


def test_slow_post_is_a_timeout_that_says_the_outcome_is_unknown(
    tmp_path: Path, center: AtaCenterEmulator
) -> None:
    center.fail_next("POST", 200, delay=1.5)
    with pytest.raises(StoreError, match="may or may not have been saved") as caught:
        open_store(_settings(tmp_path, center, timeout=0.5)).save("corp", SecretStr(CANARY), "cli:alice")
    assert caught.value.reason == "unreachable"
