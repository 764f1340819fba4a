"""A program atp-bot runs cannot read the bot's secrets through /proc: the real `atp-bot set-password`
against the real Samba AD DC, as an unprivileged user (`nobody`: root reads any process's files), with a
`[store] backend = "command"` program that tries `/proc/<bot>/environ` while the bot holds a canary in
its environment."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.infra.dumpable import clear_dumpable
from lab.domain import LabDomain
from lab.samba import LabUser
from tests.conftest import CANARY
from tests.monitor_tools import toml_str
from tests.peers import peer_missing

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")
SET_PASSWORD = ("set-password", "--account", "svc", "--password-stdin", "--no-checks")
SECRET_ENV = "ATP_BOT_TEST_WINRM"  # a secret the configuration names: the bot takes it out of os.environ

# The store program: reads the password, then tries its parent's initial environment.
PEEK = """
import errno, os, sys
sys.stdin.read()
try:
    with open(f"/proc/{os.getppid()}/environ", "rb") as environ:
        seen = "read, canary " + ("found" if sys.argv[2].encode() in environ.read() else "absent")
except OSError as exc:
    seen = "refused: " + errno.errorcode[exc.errno]
with open(sys.argv[1], "w") as out:
    out.write(seen)
"""


def nobody() -> tuple[int, int]:
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def others_may_run(program: Path) -> bool:
    """Every directory on the way is searchable, and the file executable, by any user."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in (program, *program.parents))


def python_for_nobody() -> Path:
    """An interpreter `nobody` may run with this virtualenv's packages: the one running the tests may sit
    under a directory only root may enter (pyenv in /root), then Debian's, of the same Python version."""
    if others_may_run(Path(sys.executable).resolve()):
        return Path(sys.executable)
    if not SYSTEM_PYTHON.exists():
        peer_missing("no Python that an unprivileged user may run (/usr/bin/python3)")
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip()
    if version != str(sys.version_info[:2]):
        peer_missing(f"/usr/bin/python3 is {version}, the virtualenv's Python {sys.version_info[:2]}")
    return SYSTEM_PYTHON


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory `nobody` can read (its state directory and the program's output: its own)."""
    if os.geteuid() != 0:
        pytest.skip("runs the bot as `nobody`: needs root to switch users")
    work = Path(tempfile.mkdtemp(prefix="atp-dumpable-"))
    work.chmod(0o755)
    uid, gid = nobody()
    for owned in ("state", "out"):
        (work / owned).mkdir(mode=0o700)
        os.chown(work / owned, uid, gid)
    yield work
    shutil.rmtree(work)


def write_config(work: Path, lab: LabDomain, user: LabUser) -> Path:
    ca_file = work / "ca.pem"
    shutil.copyfile(lab.dc.ca_file, ca_file)
    ca_file.chmod(0o644)
    (work / "peek.py").write_text(PEEK, encoding="utf-8")
    argv = [python_for_nobody(), work / "peek.py", work / "out" / "seen", CANARY]
    config = work / "atp-bot.toml"
    config.write_text(
        f'state_dir = "{work / "state"}"\n'
        f'[[accounts]]\nid = "svc"\nusername = "{user.upn}"\n'
        f'domain_controllers = ["{lab.dc.ldaps_url}"]\nca_file = "{ca_file}"\n'
        f'[winrm]\nusername = "atp-checker"\npassword_env = "{SECRET_ENV}"\n'
        f'[store]\nbackend = "command"\n[store.command]\nargv = [{", ".join(toml_str(a) for a in argv)}]\n',
        encoding="utf-8",
    )
    config.chmod(0o644)
    return config


def set_password_as_nobody(work: Path, config: Path, password: str) -> subprocess.CompletedProcess[str]:
    uid, gid = nobody()
    site = sysconfig.get_paths()["purelib"]
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(work),
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join((str(REPO), site)),
        SECRET_ENV: CANARY,
    }
    return subprocess.run(
        [python_for_nobody(), "-m", "bot", "--config", str(config), *SET_PASSWORD],
        input=password + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        user=uid,
        group=gid,
        extra_groups=[],
        timeout=120,
        check=False,
    )


@pytest.mark.samba
def test_the_store_program_cannot_read_the_bots_environment(
    lab_domain: LabDomain, fresh_user: LabUser, shared_dir: Path
) -> None:
    password = f"Dumpable-{os.urandom(4).hex()}!Aa1"
    lab_domain.dc.set_password(fresh_user.name, password)
    config = write_config(shared_dir, lab_domain, fresh_user)

    done = set_password_as_nobody(shared_dir, config, password)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "SAVED: account svc" in done.stdout
    assert (shared_dir / "out" / "seen").read_text() == "refused: EACCES"
    assert CANARY not in done.stdout + done.stderr


def test_elsewhere_than_linux_nothing_is_done_and_that_is_logged_at_debug(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="bot.infra.dumpable")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert clear_dumpable() is False
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "PR_SET_DUMPABLE is Linux only; not set on darwin")
    ]
