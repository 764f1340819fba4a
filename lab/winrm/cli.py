"""`atp-bot lab winrm --hosts FILE`: run emulated sensors until interrupted, for `atp-bot check` to use."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from lab.tlsca import issue_ca_and_server_cert
from lab.winrm.hostfile import HostFile, build_host, load_host_file
from lab.winrm.server import WinRMEmulator


def register(actions: Any) -> None:
    parser = actions.add_parser("winrm", help="emulate sensors' WinRM endpoints (see docs/sensors.md)")
    parser.add_argument("--hosts", type=Path, required=True, metavar="FILE", help="host file (TOML)")
    parser.add_argument(
        "--tls-dir",
        type=Path,
        default=Path(".lab/winrm-tls"),
        help="where to write the test CA (with tls = true)",
    )
    parser.set_defaults(handler=run)


def config_snippet(spec: HostFile, emulator: WinRMEmulator, ca_file: Path | None) -> str:
    """The atp-bot configuration that points at the emulated hosts."""
    transport = "ntlm" if "ntlm" in spec.auth else "basic"
    lines = ["[winrm]", f'username = "{spec.username.replace(chr(92), chr(92) * 2)}"']
    if transport == "basic" and not spec.tls:
        lines.insert(0, "# atp-bot refuses basic over http:// (clear-text password): set tls = true")
    lines.append(f'password_env = "{spec.password_env or "ATP_BOT_WINRM_PASSWORD"}"')
    lines.append(f'transport = "{transport}"')
    if ca_file:
        lines.append(f'ca_file = "{ca_file}"')
    for host in spec.hosts:
        lines += ["", "[[sensors]]", f'name = "{host.name}"', f'endpoint = "{emulator.endpoint(host.name)}"']
        lines.append(f'kind = "{host.kind}"')
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        spec = load_host_file(args.hosts)
        password = spec.secret()
    except ValueError as exc:
        print(f"atp-bot lab winrm: {exc}", file=sys.stderr)
        return 2
    tls = issue_ca_and_server_cert(args.tls_dir, ["localhost"], [spec.bind]) if spec.tls else None
    emulator = WinRMEmulator(
        username=spec.username, password=password, auth=tuple(spec.auth), tls=tls, bind=spec.bind
    )
    with emulator:
        for host in spec.hosts:
            emulator.add_host(build_host(host), host.port)
        print("# atp-bot configuration for these hosts:")
        print(config_snippet(spec, emulator, tls.ca_file if tls else None))
        print("# serving; press Ctrl-C to stop", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    return 0
