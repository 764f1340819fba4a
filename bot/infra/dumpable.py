"""No other process reads this one's memory or its initial environment through /proc.

A secret given to atp-bot as an environment variable stays in the kernel's copy of the process's
initial environment, `/proc/<pid>/environ`, even after bot.config.secret_env has taken it out of
`os.environ`; and any process of the same user may read that file, and `/proc/<pid>/mem`, by default:
the `command` store program that atp-bot itself runs, for one. `prctl(PR_SET_DUMPABLE, 0)` makes those
files root's and refuses a ptrace attach by the same user (it also stops core dumps, which
RLIMIT_CORE = 0 stops as well). A program the bot runs starts dumpable again (execve resets it), but
holds none of the bot's secrets in its environment (bot/store/command.py).
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def clear_dumpable() -> bool:
    """Make this process non-dumpable; True when it is. Linux only: elsewhere a no-op, logged at debug."""
    if not sys.platform.startswith("linux"):
        log.debug("PR_SET_DUMPABLE is Linux only; not set on %s", sys.platform)
        return False
    import ctypes  # here, not at the top: `atp-bot --help` never gets this far

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_DUMPABLE, 0) failed: %s", os.strerror(ctypes.get_errno()))
        return False
    return True
