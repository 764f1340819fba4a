"""The one directory where atp-bot keeps its state (lockout counters, store, audit trail, jobs)."""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from bot.config import ConfigError, Settings
from bot.infra.advisory import lock_engine


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "atp-bot"


def state_dir(settings: Settings) -> Path:
    """The state directory, created with mode 0700 (and tightened if it already exists)."""
    path = settings.state_dir or default_state_dir()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        raise ConfigError([f"state_dir: cannot create {path}: {exc.strerror}"]) from None
    return path


def private_file(path: Path) -> None:
    """Create `path` readable by its owner only, or tighten it (SQLite gives its journal the same mode).
    Raises OSError."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def sqlite_engine(path: Path) -> Engine:
    """An engine on a SQLite file: a connection per use (nothing held open), waiting up to 30 s for a
    writer in another process."""
    return create_engine(
        URL.create("sqlite", database=str(path)), connect_args={"timeout": 30}, poolclass=NullPool
    )


def shared_state_engine(settings: Settings, file_name: str, directory: Path | None = None) -> Engine:
    """Where state that every process and replica must see lives: the replicas' shared database when
    there is one (in transactions), else the SQLite file `file_name` (0600) in the state directory."""
    shared = settings.scheduler.leader_lock()
    if shared is not None:
        return lock_engine(shared, settings.scheduler.leader_poll_seconds, autocommit=False)
    path = (directory or state_dir(settings)) / file_name
    private_file(path)
    return sqlite_engine(path)


RUN_LOCK_NAME = "run.lock"


@contextmanager
def state_dir_lock(settings: Settings, *, exclusive: bool) -> Iterator[bool]:
    """A `flock` on `<state_dir>/run.lock`. `atp-bot run` holds it shared for its lifetime (waiting for a
    maintenance command to finish first); a maintenance command that must not run beside the bot
    (`store rotate-key`) takes it exclusively without waiting, and gets False while a bot holds it."""
    fd = os.open(state_dir(settings) / RUN_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
            held = True
        except BlockingIOError:
            held = False
        yield held
    finally:
        os.close(fd)
