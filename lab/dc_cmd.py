"""`atp-bot lab dc`: run the lab's Samba AD DC until interrupted, with a matching atp-bot config."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

from lab.domain import LAB_ACCOUNTS, LabDomain, running_lab_domain
from lab.loopback import LoopbackUnavailable
from lab.samba import SambaUnavailable

DEFAULT_DIR = Path(".lab")


def register(actions: Any) -> None:
    parser = actions.add_parser(
        "dc",
        help="run a throwaway Samba AD DC on loopback with ready accounts (needs root)",
        description="Provision a throwaway AD domain on a private loopback address, create one account of "
        "every kind, write DIR/atp-bot.toml for it, and run until Ctrl-C.",
    )
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="lab directory (default: ./.lab)")
    parser.set_defaults(handler=run)


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def prepare(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(directory / "dc", ignore_errors=True)


def write_lab_files(domain: LabDomain, directory: Path) -> Path:
    """Write the config, the lookup password and the lab accounts' passwords; return the config path."""
    lookup_file = directory / "lookup-password"
    write_private(lookup_file, domain.users["lookup"].password + "\n")
    write_private(
        directory / "lab-passwords.txt",
        "".join(
            f"{spec.account_id}\t{domain.users[spec.account_id].upn}\t{domain.users[spec.account_id].password}"
            f"\t# {spec.description}\n"
            for spec in LAB_ACCOUNTS
        ),
    )
    config = directory / "atp-bot.toml"
    config.write_text(domain.config_toml(directory / "state", lookup_file), encoding="utf-8")
    return config


def run(args: argparse.Namespace) -> int:
    directory: Path = args.dir.resolve()
    prepare(directory)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with running_lab_domain(directory) as domain:
            config = write_lab_files(domain, directory)
            print(
                f"Lab DC for {domain.dc.dns_domain} is up at {domain.dc.ldaps_url} (and {domain.dc.ldap_url})"
            )
            print(f"  config:    {config}")
            print(f"  passwords: {directory / 'lab-passwords.txt'} (throwaway lab accounts)")
            print(f"Try: atp-bot --config {config} test-connection --account contoso")
            print("Ctrl-C stops the DC.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
    except (SambaUnavailable, LoopbackUnavailable) as exc:
        print(f"atp-bot lab: cannot start the DC: {exc}")
        return 3
    return 0
