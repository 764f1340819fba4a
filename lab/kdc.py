"""A loopback KDC that holds no keys: it records every AS-REQ a Kerberos client sends and answers as a
man-in-the-middle on port 88 could.

A request without pre-authentication gets KDC_ERR_PREAUTH_REQUIRED whose ETYPE-INFO2 offers the
encryption types it is told to offer (e.g. only RC4, to ask the client for a timestamp keyed with the
NT hash), or, when told a `reply_etype`, an AS-REP at once whose parts claim that enctype (random bytes:
it has no key); a request with a PA-ENC-TIMESTAMP gets KDC_ERR_PREAUTH_FAILED (it cannot check one).
With `honest`, it answers as AD does for an account without keys of a requested enctype:
KDC_ERR_ETYPE_NOSUPP when it offers none of the enctypes the request lists. TCP
(RFC 4120 section 7.2.2: a 4-byte length, then the message) and UDP on the same port, as a KDC serves.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime

from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error

from lab.kdc_asn1 import (
    KDC_ERR_ETYPE_NOSUPP,
    KDC_ERR_PREAUTH_FAILED,
    KDC_ERR_PREAUTH_REQUIRED,
    PA_ENC_TIMESTAMP,
    PA_ETYPE_INFO2,
    AsRep,
    AsReq,
    EncryptedData,
    EtypeInfo2,
    EtypeInfo2Entry,
    KdcReqBody,
    KrbError,
    MethodData,
    PaData,
    PrincipalName,
)

MAX_MESSAGE = 64 * 1024
RC4_HMAC = 23
DES3_CBC_SHA1 = 16
AES_ENCTYPES = frozenset({17, 18, 19, 20})


@dataclass(frozen=True)
class AsRequest:
    """One AS-REQ as it arrived."""

    transport: str  # "tcp" or "udp"
    client: str  # the cname's name-string joined with "/"
    etypes: tuple[int, ...]  # the req-body's etype list, in the client's order
    padata_types: tuple[int, ...]
    timestamp_etype: int | None  # the enctype of its PA-ENC-TIMESTAMP; None: it sent none

    @property
    def preauthenticated(self) -> bool:
        return self.timestamp_etype is not None


def _timestamp_etype(padata: MethodData) -> int | None:
    for item in padata:
        if int(item["padata-type"]) == PA_ENC_TIMESTAMP:
            encrypted, _ = decoder.decode(bytes(item["padata-value"]), asn1Spec=EncryptedData())
            return int(encrypted["etype"])
    return None


def parse_as_req(message: bytes, transport: str) -> tuple[AsRequest, KdcReqBody]:
    """Raises PyAsn1Error when `message` is not a DER AS-REQ."""
    request, rest = decoder.decode(message, asn1Spec=AsReq())
    if rest:
        raise PyAsn1Error("trailing bytes after the AS-REQ")
    body = request["req-body"]
    padata = request["padata"] if request["padata"].isValue else MethodData()
    cname = "/".join(str(part) for part in body["cname"]["name-string"]) if body["cname"].isValue else ""
    recorded = AsRequest(
        transport=transport,
        client=cname,
        etypes=tuple(int(etype) for etype in body["etype"]),
        padata_types=tuple(int(item["padata-type"]) for item in padata),
        timestamp_etype=_timestamp_etype(padata),
    )
    return recorded, body


def _copy_name(name: PrincipalName, into: PrincipalName) -> None:
    into["name-type"] = int(name["name-type"])
    for index, part in enumerate(name["name-string"]):
        into["name-string"][index] = str(part)


def _method_data(body: KdcReqBody, offered: Sequence[int]) -> bytes:
    """PA-ETYPE-INFO2 offering `offered` (salted as AD salts a user's keys), then PA-ENC-TIMESTAMP."""
    realm = str(body["realm"])
    user = "".join(str(part) for part in body["cname"]["name-string"]) if body["cname"].isValue else ""
    info = EtypeInfo2()
    for index, etype in enumerate(offered):
        entry = EtypeInfo2Entry()
        entry["etype"] = etype
        if etype != RC4_HMAC:
            entry["salt"] = f"{realm.upper()}{user}"
        info[index] = entry
    methods = MethodData()
    for index, (kind, value) in enumerate(((PA_ETYPE_INFO2, encoder.encode(info)), (PA_ENC_TIMESTAMP, b""))):
        item = PaData()
        item["padata-type"] = kind
        item["padata-value"] = value
        methods[index] = item
    return bytes(encoder.encode(methods))


def krb_error(body: KdcReqBody, code: int, offered: Sequence[int]) -> bytes:
    now = datetime.now(UTC)
    error = KrbError()
    error["pvno"] = 5
    error["msg-type"] = 30
    error["stime"] = now.strftime("%Y%m%d%H%M%SZ")
    error["susec"] = now.microsecond
    error["error-code"] = code
    error["realm"] = str(body["realm"])
    if body["cname"].isValue:
        error["crealm"] = str(body["realm"])
        _copy_name(body["cname"], error["cname"])
    _copy_name(body["sname"], error["sname"])
    if code == KDC_ERR_PREAUTH_REQUIRED:
        error["e-data"] = _method_data(body, offered)
    return bytes(encoder.encode(error))


def _encrypted(etype: int, into: EncryptedData) -> None:
    into["etype"] = etype
    into["cipher"] = os.urandom(64)


def as_rep(body: KdcReqBody, etype: int) -> bytes:
    """An AS-REP for the request's client whose ticket and enc-part claim `etype` (undecryptable)."""
    realm = str(body["realm"])
    reply = AsRep()
    reply["pvno"] = 5
    reply["msg-type"] = 11
    reply["crealm"] = realm
    _copy_name(body["cname"], reply["cname"])
    ticket = reply["ticket"]
    ticket["tkt-vno"] = 5
    ticket["realm"] = realm
    _copy_name(body["sname"], ticket["sname"])
    _encrypted(etype, ticket["enc-part"])
    _encrypted(etype, reply["enc-part"])
    return bytes(encoder.encode(reply))


class FakeKdc:
    """Serves one realm's AS exchanges on 127.0.0.1:`port` (TCP and UDP) until `stop()`."""

    def __init__(
        self,
        offered_etypes: Sequence[int],
        reply_etype: int | None = None,
        honest: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.offered_etypes = tuple(offered_etypes)
        self.reply_etype = reply_etype
        self.honest = honest
        self.requests: list[AsRequest] = []
        self.undecodable = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tcp, self._udp = _bind_pair(host)
        self.port: int = self._tcp.getsockname()[1]
        self._threads = [
            threading.Thread(target=self._accept, name="fake-kdc-tcp", daemon=True),
            threading.Thread(target=self._serve_udp, name="fake-kdc-udp", daemon=True),
        ]

    def __enter__(self) -> FakeKdc:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._tcp.close()
        self._udp.close()

    def answer(self, message: bytes, transport: str) -> bytes | None:
        """The KRB-ERROR for one message; None (and counted) when it is not an AS-REQ."""
        try:
            recorded, body = parse_as_req(message, transport)
        except PyAsn1Error:
            with self._lock:
                self.undecodable += 1
            return None
        with self._lock:
            self.requests.append(recorded)
        if recorded.preauthenticated:
            return krb_error(body, KDC_ERR_PREAUTH_FAILED, self.offered_etypes)
        if self.honest and not set(self.offered_etypes) & set(recorded.etypes):
            return krb_error(body, KDC_ERR_ETYPE_NOSUPP, self.offered_etypes)
        if self.reply_etype is not None:
            return as_rep(body, self.reply_etype)
        return krb_error(body, KDC_ERR_PREAUTH_REQUIRED, self.offered_etypes)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve_tcp, args=(conn,), daemon=True).start()

    def _serve_tcp(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            with suppress(OSError):
                while (message := _read_framed(conn)) is not None:
                    reply = self.answer(message, "tcp")
                    if reply is None:
                        return
                    conn.sendall(struct.pack(">I", len(reply)) + reply)

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                message, peer = self._udp.recvfrom(MAX_MESSAGE)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self.answer(message, "udp")
            if reply is not None:
                self._udp.sendto(reply, peer)


def _read_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _read_framed(conn: socket.socket) -> bytes | None:
    header = _read_exactly(conn, 4)
    if header is None:
        return None
    (length,) = struct.unpack(">I", header)
    return None if length > MAX_MESSAGE else _read_exactly(conn, length)


def _bind_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """A TCP listener and a UDP socket on the same ephemeral port (retried while UDP's is taken)."""
    for _ in range(50):
        tcp = socket.create_server((host, 0))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind((host, tcp.getsockname()[1]))
        except OSError as exc:
            tcp.close()
            udp.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        tcp.settimeout(0.2)
        udp.settimeout(0.2)
        return tcp, udp
    raise OSError("no port free for both TCP and UDP")


@contextmanager
def fake_kdc(
    offered_etypes: Sequence[int], reply_etype: int | None = None, honest: bool = False
) -> Iterator[FakeKdc]:
    with FakeKdc(offered_etypes, reply_etype, honest) as kdc:
        yield kdc
