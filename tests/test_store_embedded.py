"""The embedded store: round trips, keys, permissions, init, atomicity, and no plaintext on disk."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.cli import main
from bot.infra.state_dir import state_dir_lock
from bot.store import StoreError, open_store
from bot.store.embedded import init_embedded_store, rotate_key, store_path
from bot.store.keys import key_file_path
from lab.slack import SlackEmulator
from tests.slack_lab import wait_for
from tests.storetools import CANARY, files_containing, make_settings, write_config
from tests.test_slack_cli import APP_TOKEN, BOT_TOKEN, start_bot
from tests.test_slack_cli import write_config as write_bot_config


@pytest.fixture(autouse=True)
def _no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)


def test_round_trip_with_key_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    result = init_embedded_store(settings)
    assert result.key_created
    key_file = key_file_path(settings)
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert store_path(settings).stat().st_mode & 0o777 == 0o600

    store = open_store(settings)
    assert store.read("corp") is None
    assert store.metadata("corp") is None
    meta = store.save("corp", SecretStr("first"), "cli:alice")
    store.save("corp", SecretStr(CANARY), "slack:U123 (bob)")
    assert meta.backend == "embedded"
    assert meta.saved_at.tzinfo == UTC

    reopened = open_store(settings)
    secret = reopened.read("corp")
    assert secret is not None
    assert secret.get_secret_value() == CANARY
    latest = reopened.metadata("corp")
    assert latest is not None
    assert latest.saved_by == "slack:U123 (bob)"
    assert reopened.read("lab") is None


def test_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATP_BOT_STORE_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    settings = make_settings(tmp_path)
    result = init_embedded_store(settings)
    assert not result.key_created
    assert "ATP_BOT_STORE_KEY" in result.key_source
    assert not key_file_path(settings).exists()
    open_store(settings).save("lab", SecretStr(CANARY), "cli:alice")
    secret = open_store(settings).read("lab")
    assert secret is not None
    assert secret.get_secret_value() == CANARY


def test_wrong_key_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    init_embedded_store(settings)
    open_store(settings).save("corp", SecretStr(CANARY), "cli:alice")
    monkeypatch.setenv("ATP_BOT_STORE_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    with pytest.raises(StoreError, match="wrong store key") as caught:
        open_store(settings)
    assert caught.value.reason == "key"
    assert "environment variable ATP_BOT_STORE_KEY" in caught.value.message


def test_malformed_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    init_embedded_store(settings)
    monkeypatch.setenv("ATP_BOT_STORE_KEY", "not-a-key")
    with pytest.raises(StoreError, match="not a valid key"):
        open_store(settings)


def test_ciphertext_is_bound_to_its_account(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    init_embedded_store(settings)
    open_store(settings).save("corp", SecretStr(CANARY), "cli:alice")
    with sqlite3.connect(store_path(settings)) as db:
        db.execute(
            "INSERT INTO credentials SELECT 'lab', nonce, ciphertext, key_id, saved_at, saved_by "
            "FROM credentials WHERE account_id = 'corp'"
        )
    with pytest.raises(StoreError, match="cannot be decrypted"):
        open_store(settings).read("lab")


def test_insecure_key_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    init_embedded_store(settings)
    key_file = key_file_path(settings)
    key_file.chmod(0o640)
    with pytest.raises(StoreError) as caught:
        open_store(settings)
    assert f"chmod 600 {key_file}" in caught.value.message
    key_file.chmod(0o600)
    open_store(settings)


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    init_embedded_store(settings)
    key_before = key_file_path(settings).read_bytes()
    with pytest.raises(StoreError, match="refusing to overwrite"):
        init_embedded_store(settings)
    store_path(settings).unlink()  # the store is gone but the key is still there: keep the key
    with pytest.raises(StoreError, match="refusing to overwrite a store key"):
        init_embedded_store(settings)
    assert key_file_path(settings).read_bytes() == key_before


def test_uninitialised_store_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="atp-bot store init"):
        open_store(make_settings(tmp_path))


_CRASHING_SAVE = """
import os, sys, time
from pathlib import Path
from pydantic import SecretStr
from bot.store.embedded import open_embedded
from tests.storetools import make_settings

marker = Path(sys.argv[2])
def crash_point():
    marker.write_text("in the transaction")
    time.sleep(60)

store = open_embedded(make_settings(Path(sys.argv[1])), before_commit=crash_point)
store.save("corp", SecretStr("the-new-password"), "cli:crash")
"""


def test_a_crash_mid_save_keeps_the_previous_credential(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    init_embedded_store(settings)
    open_store(settings).save("corp", SecretStr("the-old-password"), "cli:alice")
    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_SAVE, str(tmp_path), str(marker)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert child.poll() is None, "the saving process ended before the crash point"
            assert time.monotonic() < deadline, "the saving process never reached the crash point"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=10)
    store = open_store(settings)
    secret = store.read("corp")
    assert secret is not None
    assert secret.get_secret_value() == "the-old-password"
    meta = store.metadata("corp")
    assert meta is not None
    assert meta.saved_by == "cli:alice"
    store.save("corp", SecretStr("after-the-crash"), "cli:alice")  # the store is not left locked


def test_no_plaintext_secret_on_disk_or_in_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(tmp_path)
    init_embedded_store(settings)
    store = open_store(settings)
    store.save("corp", SecretStr(CANARY), "cli:alice")
    assert store.read("corp") is not None
    assert files_containing(tmp_path, CANARY) == []
    assert CANARY not in caplog.text
    assert CANARY not in repr(store.read("corp"))


def test_rotate_key_reencrypts_every_credential(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    init_embedded_store(settings)
    store = open_store(settings)
    store.save("corp", SecretStr(CANARY), "cli:alice")
    store.save("lab", SecretStr("lab-password"), "cli:alice")
    key_file = key_file_path(settings)
    old_key = key_file.read_bytes()

    result = rotate_key(settings)
    assert result.credentials == 2
    assert result.old_key_id != result.new_key_id
    assert key_file.read_bytes() != old_key
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert not key_file.with_name("store.key.new").exists()
    reopened = open_store(settings)
    corp, lab = reopened.read("corp"), reopened.read("lab")
    assert corp is not None
    assert corp.get_secret_value() == CANARY
    assert lab is not None
    assert lab.get_secret_value() == "lab-password"

    key_file.write_bytes(old_key)  # the old key no longer opens the store
    with pytest.raises(StoreError, match="wrong store key"):
        open_store(settings)


def test_interrupted_rotation_points_at_the_new_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    init_embedded_store(settings)
    key_file = key_file_path(settings)
    old_key = key_file.read_bytes()
    rotate_key(settings)
    # As if the process died between the commit and the rename of the key files:
    key_file.rename(key_file.with_name("store.key.new"))
    key_file.write_bytes(old_key)
    key_file.chmod(0o600)
    with pytest.raises(StoreError, match=r"rotation was interrupted.*mv .*store\.key\.new"):
        open_store(settings)


def test_rotate_key_refuses_an_environment_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATP_BOT_STORE_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    settings = make_settings(tmp_path)
    init_embedded_store(settings)
    with pytest.raises(StoreError, match="environment variable ATP_BOT_STORE_KEY"):
        rotate_key(settings)


def test_rotation_is_durable_key_file_and_rename_synced_with_their_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power loss after the rotation must find the new key on disk: the new file, then the rename, are
    followed by an fsync of the key's directory (security review 11.11)."""
    settings = make_settings(tmp_path)
    init_embedded_store(settings)
    key_file = key_file_path(settings)
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        events.append(("replace", str(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    rotate_key(settings)
    directory, pending = str(key_file.parent), str(key_file) + ".new"
    key_events = [e for e in events if e[1] in (directory, pending, str(key_file))]
    assert key_events == [
        ("fsync", pending),  # the new key's bytes
        ("fsync", directory),  # its directory entry
        ("replace", str(key_file)),
        ("fsync", directory),  # the rename
    ]


def test_rotate_key_refuses_while_a_bot_holds_the_state_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    settings = make_settings(tmp_path)
    assert main(["--config", str(config), "store", "init"]) == 0
    key = key_file_path(settings).read_bytes()
    with state_dir_lock(settings, exclusive=False):  # what `atp-bot run` holds for its lifetime
        assert main(["--config", str(config), "store", "rotate-key"]) == 1
    err = capsys.readouterr().err
    assert f"atp-bot run is using the state directory {tmp_path / 'state'}" in err
    assert "Stop it first" in err
    assert key_file_path(settings).read_bytes() == key
    assert main(["--config", str(config), "history", "--json"]) == 0
    (rotation, _init) = json.loads(capsys.readouterr().out)
    assert (rotation["action"], rotation["outcome"]) == ("store-rotate-key", "refused")
    assert main(["--config", str(config), "store", "rotate-key"]) == 0


def test_rotate_key_refuses_beside_a_running_bot(tmp_path: Path) -> None:
    """The real `atp-bot run` process: refused while it runs, done once it stopped."""
    with SlackEmulator(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as emulator:
        config = write_bot_config(tmp_path, emulator.api_url)
        rotate = [sys.executable, "-m", "bot", "--config", str(config), "store", "rotate-key"]
        bot = start_bot(config, BOT_TOKEN)
        try:
            wait_for(lambda: emulator.connected_apps, timeout=20)
            refused = subprocess.run(rotate, capture_output=True, text=True, timeout=60, check=False)
            bot.send_signal(signal.SIGTERM)
            bot.communicate(timeout=30)
        finally:
            bot.kill()
    assert refused.returncode == 1
    assert "atp-bot run is using the state directory" in refused.stderr
    assert "Traceback" not in refused.stderr
    done = subprocess.run(rotate, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_rotate_key_waits_while_an_approval_request_holds_a_password_sealed_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.change.approvals import HeldRequests, Requester, RequestStatus, new_request_id
    from bot.change.baseline import Baseline
    from bot.directory import ConnectionTestResult, Outcome, PasswordExpiry

    extra = '[approvals]\nrequired = true\napprovers = ["U0BOB"]\n'
    config = write_config(tmp_path, extra)
    settings = make_settings(tmp_path, extra)
    assert main(["--config", str(config), "store", "init"]) == 0
    requests = HeldRequests.for_settings(settings)
    request_id = new_request_id()
    test = ConnectionTestResult("corp", Outcome.PASSED, "ok", dc="dc1", expiry=PasswordExpiry(never=True))
    requester = Requester("U0A", "alice", "C0", "V1")
    baseline = Baseline(datetime.now(UTC), None, None)
    requests.hold(request_id, "corp", SecretStr("held-Pa55word"), requester, test, baseline)
    key = key_file_path(settings).read_bytes()

    assert main(["--config", str(config), "store", "rotate-key"]) == 1
    assert "1 approval request(s) hold a tested password sealed with this key" in capsys.readouterr().err
    assert key_file_path(settings).read_bytes() == key  # nothing rotated: the request can still be opened
    requests.decide(request_id, RequestStatus.DENIED, "bob")
    assert main(["--config", str(config), "store", "rotate-key"]) == 0
