"""Private loopback addresses for lab peers, so several peers (and several test runs) never collide.

Only one process can bind 127.0.0.1:636; a DC on its own address (127.x.y.z added to `lo`) can.
Adding an address needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


class LoopbackUnavailable(Exception):
    pass


def _addresses_on_lo() -> set[str]:
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3}


def can_claim() -> str | None:
    """None when addresses can be claimed here, else the reason why not."""
    if os.geteuid() != 0:
        return "adding a loopback address needs root"
    try:
        _addresses_on_lo()
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"the ip command is not usable: {exc}"
    return None


@contextmanager
def claimed_address() -> Iterator[str]:
    """A fresh 127.x.y.z on `lo`, removed again at exit."""
    reason = can_claim()
    if reason:
        raise LoopbackUnavailable(reason)
    taken = _addresses_on_lo()
    rng = random.SystemRandom()
    while True:
        address = f"127.{rng.randint(100, 250)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
        if address not in taken:
            break
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True, capture_output=True)
    try:
        yield address
    finally:
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], check=False, capture_output=True)
