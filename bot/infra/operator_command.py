"""Running a program the operator configured (the command store, the audit anchor command) safely.

The program is run from the argv in the configuration, without a shell, in a session of its own.
What it needs comes on standard input only: never in its arguments or environment, which other users
of the machine can read. Its environment is minimal: PATH, LANG, HOME, the variables its section passes
on, and those its caller adds; no variable that holds a secret of atp-bot's, even if named. It is
stopped, with everything it started, after `timeout` seconds; of its output only the first
`OUTPUT_LIMIT` bytes of each stream are kept (the rest is read and dropped, so it never blocks).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from bot.config import Settings
from bot.config.secret_env import taken_names

# What any program needs to run; everything else only through the section's `pass_env`.
BASE_ENV = ("PATH", "LANG", "HOME")
OUTPUT_LIMIT = 64 * 1024
_CHUNK = 8192
_JOIN_SECONDS = 2.0  # a grandchild that keeps the output open is not waited for longer than this


class CommandTimeout(Exception):
    """The program did not finish in time; it was stopped with everything it started."""


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str  # at most OUTPUT_LIMIT bytes of each, decoded (invalid UTF-8 replaced)
    stderr: str

    def output_sizes(self) -> str:
        """What the program wrote, by size only (its text may hold a secret in some form)."""
        sizes = [
            f"{len(text)} characters on {name}"
            for name, text in (("stdout", self.stdout), ("stderr", self.stderr))
            if text
        ]
        return ", ".join(sizes) or "no output"


def command_environment(
    settings: Settings, pass_env: Iterable[str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The child's whole environment. A secret is left out even if `pass_env` names it (the
    configuration refuses that) or an entry point failed to take it out of `os.environ`."""
    secret = settings.secret_env_names() | taken_names()
    wanted = [name for name in (*BASE_ENV, *pass_env) if name not in secret]
    env = {name: os.environ[name] for name in wanted if name in os.environ}
    env.update(extra or {})
    return env


def _keep_head(stream: IO[bytes], kept: bytearray) -> None:
    """Read `stream` to its end, keeping its first OUTPUT_LIMIT bytes."""
    try:
        while chunk := stream.read(_CHUNK):
            kept += chunk[: max(0, OUTPUT_LIMIT - len(kept))]
    except (OSError, ValueError):  # closed under it: a grandchild kept it open past the join
        pass


def _feed(stream: IO[bytes], data: bytes) -> None:
    try:
        stream.write(data)
        stream.close()
    except OSError:  # the program ended, or closed its input, without reading it all
        pass


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_command(argv: Sequence[str], stdin: str, *, timeout: float, env: Mapping[str, str]) -> CommandResult:
    """Run `argv` with `stdin` (UTF-8) as its input. Raises CommandTimeout, or OSError when the program
    cannot be started."""
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    outputs = (bytearray(), bytearray())
    threads = [
        threading.Thread(target=_feed, args=(process.stdin, stdin.encode("utf-8")), daemon=True),
        threading.Thread(target=_keep_head, args=(process.stdout, outputs[0]), daemon=True),
        threading.Thread(target=_keep_head, args=(process.stderr, outputs[1]), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process)
        raise CommandTimeout(f"did not finish within {timeout:g} s") from None
    finally:
        for thread in threads:
            thread.join(_JOIN_SECONDS)
        process.stdout.close()
        process.stderr.close()
    stdout, stderr = (bytes(kept).decode("utf-8", errors="replace") for kept in outputs)
    return CommandResult(returncode, stdout, stderr)
