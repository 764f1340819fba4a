"""Running an operator's program (the command store, the audit anchor command): bounded output and a
timeout that stops what the program started too."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from bot.infra.operator_command import OUTPUT_LIMIT, CommandTimeout, run_command

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def test_a_flood_of_output_is_read_but_only_its_head_kept() -> None:
    flood = "import sys\nfor _ in range(160):\n    sys.stdout.write('x' * 65536)\nsys.stderr.write('done')\n"
    result = run_command([sys.executable, "-c", flood], "", timeout=60, env=ENV)
    assert result.returncode == 0  # the program was never blocked on a full pipe
    assert len(result.stdout) == OUTPUT_LIMIT and result.stderr == "done"


def test_the_input_arrives_on_stdin_even_if_the_program_never_reads_it() -> None:
    echo = "import sys\nsys.stdout.write(sys.stdin.read().upper())"
    assert run_command([sys.executable, "-c", echo], "1:ab\n", timeout=60, env=ENV).stdout == "1:AB\n"
    ignore = "import sys\nsys.exit(4)"
    assert run_command([sys.executable, "-c", ignore], "x" * 500_000, timeout=60, env=ENV).returncode == 4


def test_a_timeout_stops_the_program_and_what_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    spawn = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n"
    )
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="did not finish within 1 s"):
        run_command([sys.executable, "-c", spawn], "", timeout=1, env=ENV)
    assert time.monotonic() - started < 60  # long before either sleep would end
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent, init here, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
