"""`atp-bot lab demo` end to end: the real CLI in a child process, the whole lab, one run (~20 s)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bot.cli import main
from lab import stack
from lab.loopback import can_claim
from lab.samba import SambaDC, SambaUnavailable, missing_binaries
from tests.peers import peer_missing

pytestmark = pytest.mark.samba
SVG = "{http://www.w3.org/2000/svg}"

STEPS = [
    "== 1. alice types `/atp password contoso` in #C0OPS",
    "== 2. she types a new password and a different confirmation, and submits",
    "== 3. she submits a wrong password",
    "== 4. she clicks [Try again]",
    "== 5. she submits the right password",
    "== 6. #C0OPS: the announcement",
    "== 7. she saves it in the Defender portal too, then clicks [Done in the portal]",
    "== 8. in its thread: the follow-up checks",
    "== 9. alice types `/atp history contoso`",
    "== 10. alice types `/atp status`",
    "== 11. the same path from a terminal",
    "== 12. a wrong password three times for noexpiry",
    "== 13. what happened behind the scenes",
]


def lab_passwords(directory: Path) -> dict[str, str]:
    """The lab accounts' passwords by account id, from the lab directory's lab-passwords.txt."""
    lines = (directory / "lab-passwords.txt").read_text().splitlines()
    return {fields[0]: fields[2] for fields in (line.split("\t") for line in lines)}


def lab_secrets(directory: Path) -> list[str]:
    """Every lab password the demo knew: the accounts', the lookup account's, the WinRM one, the store key."""
    found = list(lab_passwords(directory).values())
    for name in ("lookup-password", "winrm-password", "state/store.key"):
        found.append((directory / name).read_text().strip())
    assert all(len(s) >= 12 for s in found)
    return found


def test_demo_plays_the_password_flow_against_the_lab(tmp_path_factory: pytest.TempPathFactory) -> None:
    reason = missing_binaries() or can_claim()
    if reason:
        peer_missing(f"Samba AD DC: {reason}")
    env = {k: v for k, v in os.environ.items() if k not in ("ATP_BOT_CONFIG", "ATP_BOT_STORE_KEY")}
    keep_in = tmp_path_factory.mktemp("keep")  # short: Samba's sockets live in the lab directory
    env["TMPDIR"] = str(keep_in)  # where --keep makes its directory
    picture = tmp_path_factory.mktemp("picture") / "slack.svg"
    done = subprocess.run(
        [sys.executable, "-m", "bot", "lab", "demo", "--keep", "--picture", str(picture)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert done.stderr == ""
    (directory,) = keep_in.glob("atp-bot-lab-*")
    assert f"files:    {directory} (config atp-bot.toml" in out
    assert f"The lab's files are kept in {directory}:" in out
    assert (directory / "state").is_dir()
    positions = [out.find(step) for step in STEPS]
    assert all(p >= 0 for p in positions), [s for s, p in zip(STEPS, positions, strict=True) if p < 0]
    assert positions == sorted(positions)

    modal, mismatch, wrong, retry, right, announced, portal, checks, history, status, cli, guard, summary = (
        out[a:b] for a, b in zip(positions, [*positions[1:], len(out)], strict=True)
    )
    assert "[ New password: ________ ]" in modal
    assert "[Cancel] [Test and save]" in modal
    assert "⚠ The two passwords do not match." in mismatch
    assert "Testing the connection for *contoso*" in wrong
    assert "The password is wrong" in wrong
    assert "(`wrong_password`)" in wrong
    assert "[Try again]" in wrong
    assert "[ New password: ________ ]" in retry
    assert "*Saved.*" in right
    assert "changed the directory service account password for *contoso*" in announced
    assert (
        "Tested and kept in the embedded store; Defender for Identity gets it when you save it" in announced
    )
    assert "[Done in the portal]" in announced and "Directory service accounts" in right
    assert "*Done in the portal*: confirmed by <@U0ALICE>" in portal and "Waiting for" not in portal
    assert "posted:" in checks
    assert "chat.update #1:" in checks
    assert "1 of 3 sensor(s) need attention: dc02." in checks
    assert ":x: *dc02*: service AATPSensor is Stopped" in checks
    assert "  test  contoso  failed (wrong_password)" in history
    assert "  test  contoso  ok" in history
    assert "  save  contoso  ok" in history
    assert "  portal-updated  contoso  ok" in history
    assert "1 of 3 sensor(s) need attention: dc02." in status
    assert "PASSED: account contoso" in cli
    assert guard.count("REJECTED: account noexpiry") == 2
    assert "reason: guard_limit" in guard
    assert "badPwdCount for svc-atp-noexpiry: 2 of 3 (locked out: no)" in guard
    assert re.search(r"badPwdCount [0-2] \(lockout threshold 3\); locked out: no", summary)
    assert "saved by slack:U0ALICE (alice)" in summary
    assert "hash chain verifies" in summary
    assert "0 carrying the password" in summary
    assert "Demo complete" in out

    assert f"The picture of what Slack showed (the modal, its result, the thread) is in {picture}." in out
    svg = picture.read_text()
    drawn = " ".join("".join(text.itertext()) for text in ET.fromstring(svg).iter(f"{SVG}text"))  # noqa: S314
    for expected in (
        "Account contoso",
        "Test and save",
        "Saved.",
        "@alice changed",
        "1 reply",
        "need attention",
    ):
        assert expected in drawn, expected

    for secret in lab_secrets(directory):
        assert secret not in out
        assert secret not in done.stderr
        assert secret not in svg


def test_demo_without_the_dc_peer_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(stack, "missing_binaries", lambda: "samba, samba-tool not installed")
    code = main(["lab", "demo"])
    assert code == 3
    assert "cannot start the lab: samba, samba-tool not installed" in capsys.readouterr().err


@pytest.mark.parametrize("keep", [False, True])
def test_a_temporary_lab_directory_is_removed_unless_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: bool
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the documented default for `dir`
    with stack.lab_directory(None, keep=keep) as directory:
        (directory / "lab-passwords.txt").write_text("x")
    assert directory.exists() is keep
    assert directory.parent == tmp_path
    with stack.lab_directory(tmp_path / "chosen", keep=False) as directory:
        directory.mkdir()
    assert directory == tmp_path / "chosen"
    assert directory.exists()


def test_a_lab_directory_too_long_for_samba_sockets_is_refused_with_a_reason() -> None:
    workdir = Path("/tmp") / ("x" * 80) / "dc"
    with pytest.raises(
        SambaUnavailable, match=r"too long for Samba's Unix sockets \(88 characters, at most 76 "
    ):
        SambaDC(workdir, "127.0.0.1").provision()
    assert not workdir.exists()
