"""Misbehaving peers for failure tests: a server that completes TLS and then never answers; a SQLite
database that can be read but no longer written."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.tlsca import TlsFiles


@contextmanager
def silent_tls_server(tls: TlsFiles, host: str = "127.0.0.1") -> Iterator[int]:
    """Accept TLS connections on an ephemeral port, read everything, answer nothing. Yields the port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    listener = socket.create_server((host, 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    received: list[bytes] = []

    def drain(conn: socket.socket) -> None:
        with conn:
            try:
                with context.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.settimeout(0.2)
                    while not stop.is_set():
                        try:
                            data = tls_conn.recv(4096)
                        except TimeoutError:
                            continue
                        if not data:
                            return
                        received.append(data)
            except (OSError, ssl.SSLError):
                return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=drain, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def read_only_sqlite(path: Path) -> None:
    """Make a SQLite database readable but not writable, for root too (which file modes do not stop):
    a file format write version above 2 in the header makes SQLite treat the file as read-only, and every
    write then fails as on a read-only disk ("attempt to write a readonly database")."""
    with path.open("r+b") as db:
        db.seek(18)
        db.write(b"\x03")


@contextmanager
def silent_tcp_server(host: str = "127.0.0.1") -> Iterator[int]:
    """A port whose connections the kernel completes but nothing ever reads or answers (a hung KDC)."""
    with socket.create_server((host, 0), backlog=16) as listener:
        yield listener.getsockname()[1]
