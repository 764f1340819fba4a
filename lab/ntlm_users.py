"""The process-wide NTLM credential file pyspnego's acceptor reads (`NTLM_USER_FILE`).

pyspnego looks the variable up whenever a server context is created, so every emulator in the process
shares one file; each registers its accounts here.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_passwords: dict[tuple[str, str], str] = {}
_path: Path | None = None


def _cleanup(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def register(domain: str, user: str, password: str) -> None:
    """Make `DOMAIN\\user` with `password` acceptable to NTLM server contexts created from now on.

    Registering a user again replaces its password (pyspnego would use the first line that matches).
    """
    global _path
    with _lock:
        if _path is None:
            directory = Path(tempfile.mkdtemp(prefix="atp-bot-ntlm-"))
            atexit.register(_cleanup, directory)
            _path = directory / "users"
        _passwords[(domain.upper(), user.lower())] = password
        _path.touch(mode=0o600)
        lines = [f"{d}:{u}:{secret}" for (d, u), secret in sorted(_passwords.items())]
        _path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.environ["NTLM_USER_FILE"] = str(_path)
