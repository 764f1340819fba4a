"""Hostile answers the Graph emulator gives in place of one real answer (`GraphEmulator.answer_next`):
what an impersonated Graph, a compromised proxy or a broken middlebox could send to the bot.

- `deep_json`: valid JSON nested 100 000 levels deep (`[[[[…]]]]`, 200 KB): a recursive parser runs out of
  stack.
- `huge_body`: 64 MiB of a JSON page sent chunked, without Content-Length, until the client hangs up.
- `malformed_json`: a page cut off mid-object, announced as JSON.
- `wrong_shape`: a JSON object whose `value` is not a list and whose next link is a number.
- `wrong_types`: a page whose items carry every field of a sensor and of a health issue with a value of
  the wrong type (and items that are no objects at all); one item has a usable id and name.
"""

from __future__ import annotations

import json
from io import BufferedIOBase
from typing import Literal, get_args

HostileAnswer = Literal["deep_json", "huge_body", "malformed_json", "wrong_shape", "wrong_types"]
HOSTILE_ANSWERS: tuple[HostileAnswer, ...] = get_args(HostileAnswer)

DEEP_LEVELS = 100_000
HUGE_BODY_BYTES = 64 * 2**20
CHUNK_BYTES = 64 * 1024
WRONG_TYPES_NAME = "DC8"  # the one item of `wrong_types` with a usable id and display name

_WRONG_TYPES_PAGE = {
    "value": [
        1,
        "DC9",
        None,
        [{"id": "nested"}],
        {"id": 7, "displayName": ["DC9"], "status": {"open": True}},
        {
            "id": "wrong-types-1",
            "displayName": WRONG_TYPES_NAME,
            "domainName": 5,
            "sensorType": ["domainControllerIntegrated"],
            "version": {"major": 2},
            "healthStatus": [],
            "deploymentStatus": 3.5,
            "openHealthIssuesCount": True,
            "settings": {"domainControllerDnsNames": "dc8.contoso.test"},
            "status": ["open"],
            "severity": {"level": "high"},
            "healthIssueType": 4,
            "sensorDNSNames": "dc8.contoso.test",
            "domainNames": {"contoso.test": True},
            "createdDateTime": 12,
        },
    ]
}


def hostile_body(answer: HostileAnswer) -> bytes:
    """The whole body of an answer sent with a Content-Length (every kind but `huge_body`)."""
    if answer == "deep_json":
        return b"[" * DEEP_LEVELS + b"]" * DEEP_LEVELS
    if answer == "malformed_json":
        return b'{"value": [{"id": "1", "displayName": "DC1", "settings": {"domainControllerDnsNa'
    if answer == "wrong_shape":
        return json.dumps({"value": {"id": "1", "displayName": "DC1"}, "@odata.nextLink": 7}).encode()
    if answer == "wrong_types":
        return json.dumps(_WRONG_TYPES_PAGE).encode()
    raise ValueError(f"{answer} has no fixed body")


def write_huge_chunked(stream: BufferedIOBase) -> int:
    """Send HUGE_BODY_BYTES of one JSON page in chunked transfer coding; stop when the client hangs up.
    Returns how many body bytes were written (what the client did not take stays in socket buffers)."""
    item = json.dumps({"id": "x" * 32, "displayName": "DC", "version": "2.250.1.1"}).encode() + b","
    chunk = b'{"value": [' + item * ((CHUNK_BYTES - 11) // len(item))
    sent = 0
    try:
        while sent < HUGE_BODY_BYTES:
            stream.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            chunk = item * (CHUNK_BYTES // len(item))
        stream.write(b"0\r\n\r\n")
    except OSError:  # the client closed the connection: what a real server sees then
        pass
    return sent
