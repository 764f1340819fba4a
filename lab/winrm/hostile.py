"""Hostile WinRM peers, at the HTTP level: what a compromised or broken sensor may send back.

Each behaviour is a host's fault (`Host.fault`), so a test or the standalone lab picks it per host:
"trickle" sends every answer (status line, headers, body) one byte a second, so no read timeout ever
fires; "chunked_flood" answers every authenticated request with a `Transfer-Encoding: chunked` body of
`Host.flood_bytes` and no Content-Length; "redirect" answers every request with a 307 to
`Host.redirect_to` (another listener).
"""

from __future__ import annotations

import contextlib
import threading
from http.client import responses
from io import BufferedIOBase

FLOOD_CHUNK = 64 * 1024
REDIRECT_STATUS = 307  # re-sends the request, body included, to Location


def raw_response(status: int, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """One HTTP/1.1 response as it goes on the wire, with its Content-Length."""
    lines = [f"HTTP/1.1 {status} {responses.get(status, '')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def trickle(out: BufferedIOBase, data: bytes, stopping: threading.Event, interval: float) -> int:
    """Write `data` one byte every `interval` seconds, until done, the client leaves or the listener
    stops; returns how many bytes went out."""
    sent = 0
    with contextlib.suppress(OSError):
        for index in range(len(data)):
            out.write(data[index : index + 1])
            out.flush()
            sent += 1
            if stopping.wait(interval):
                break
    return sent


def chunked_flood(out: BufferedIOBase, status: int, headers: list[tuple[str, str]], size: int) -> int:
    """A response whose body is `size` bytes in chunks, with no Content-Length (generated as it goes,
    never held); stops early if the client leaves. Returns the body bytes that went out."""
    head = [f"HTTP/1.1 {status} {responses.get(status, '')}", *(f"{n}: {v}" for n, v in headers)]
    head.append("Transfer-Encoding: chunked")
    sent = 0
    piece = b"<" * FLOOD_CHUNK
    with contextlib.suppress(OSError):
        out.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        while sent < size:
            chunk = piece[: min(FLOOD_CHUNK, size - sent)]
            out.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
        out.write(b"0\r\n\r\n")
        out.flush()
    return sent
