"""Network and TLS failures of a domain controller in plain words with the fix, through the real
`atp-bot test-connection` and ldap3: a name that does not resolve (a reserved `.invalid` name), the Samba
DC's certificate without `ca_file`, and a TLS handshake that never finishes (a loopback listener that
accepts and never answers), bounded by `connect_timeout`. `-v` adds the library's message."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.domain import LabDomain
from tests.conftest import run_cli

PASSWORD = "Not-Sent-1!"  # never reaches a DC in these tests


def write_config(tmp_path: Path, dcs: list[str], extra: str = "") -> Path:
    config = tmp_path / "atp-bot.toml"
    urls = ", ".join(f'"{url}"' for url in dcs)
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[[accounts]]\nid = "acct"\nusername = "svc@contoso.test"\n'
        f"domain_controllers = [{urls}]\n{extra}"
    )
    return config


def test_a_name_that_does_not_resolve_is_told_as_dns(tmp_path: Path) -> None:
    config = write_config(tmp_path, ["ldaps://dc01.contoso.invalid"])

    done = run_cli(config, "test-connection", "--account", "acct", "--password-stdin", stdin=PASSWORD)

    assert done.returncode == 3, done.stdout + done.stderr
    assert "cannot resolve dc01.contoso.invalid in DNS" in done.stdout
    assert "invalid server address" not in done.stdout
    verbose = run_cli(
        config, "-v", "test-connection", "--account", "acct", "--password-stdin", stdin=PASSWORD
    )
    assert "invalid server address" in verbose.stderr  # the library's own message, with -v


@pytest.mark.samba
def test_an_untrusted_certificate_names_ca_file_as_the_fix(lab_domain: LabDomain, tmp_path: Path) -> None:
    config = write_config(tmp_path, [lab_domain.dc.ldaps_url])  # no ca_file: the lab CA is not trusted

    done = run_cli(config, "test-connection", "--account", "acct", "--password-stdin", stdin=PASSWORD)

    assert done.returncode == 3, done.stdout + done.stderr
    assert "certificate is not trusted by this host's trusted CAs" in done.stdout
    assert "set ca_file to the CA that issued the DC's certificate" in done.stdout
    verbose = run_cli(
        config, "-v", "test-connection", "--account", "acct", "--password-stdin", stdin=PASSWORD
    )
    assert "CERTIFICATE_VERIFY_FAILED" in verbose.stderr
    assert "presents a certificate for" in verbose.stderr and "issued by" in verbose.stderr


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts connections and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize("scheme", ["ldaps", "ldap"])  # LDAPS, and StartTLS
def test_a_tls_handshake_that_never_finishes_is_bounded_by_connect_timeout(
    scheme: str, silent_listener: int, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, [f"{scheme}://127.0.0.1:{silent_listener}"], "connect_timeout = 1.0\nreceive_timeout = 90\n"
    )
    started = time.monotonic()

    done = run_cli(config, "test-connection", "--account", "acct", "--password-stdin", stdin=PASSWORD)

    assert time.monotonic() - started < 45, "bounded by connect_timeout, well before receive_timeout"
    assert done.returncode == 3, done.stdout + done.stderr
    step = "the TLS handshake" if scheme == "ldaps" else "StartTLS"
    assert f"127.0.0.1 did not complete {step} within connect_timeout (1 s)" in done.stdout
