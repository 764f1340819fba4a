"""HTTP mode: a signed request is accepted once. Bolt checks the signature and that the timestamp is
within 5 minutes; inside that window a captured request could be sent again, so the signatures of the
requests that passed are remembered for the window and a second use is refused."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from slack_bolt import BoltRequest, BoltResponse

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-slack-signature"
TIMESTAMP_HEADER = "x-slack-request-timestamp"
WINDOW_SECONDS = 5 * 60  # Bolt (slack_sdk's SignatureVerifier) accepts timestamps this far from now
MAX_ENTRIES = 10_000  # far above Slack's rate to one app over 5 minutes

Middleware = Callable[[BoltRequest, BoltResponse, Callable[[], BoltResponse]], BoltResponse]


class ReplayCache:
    """Signatures seen within the window, bounded: past `max_entries` the oldest are forgotten (only
    requests that passed Bolt's signature check get here, so only Slack itself can fill it)."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.time) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: OrderedDict[str, float] = OrderedDict()  # signature → when Bolt stops accepting it

    def first_use(self, signature: str, timestamp: str) -> bool:
        """Remember `signature`; False if it was already used."""
        now = self._clock()
        expires = _epoch(timestamp) + WINDOW_SECONDS
        with self._lock:
            self._forget_expired(now)
            if signature in self._expiry:
                return False
            self._expiry[signature] = expires
            while len(self._expiry) > self._max_entries:
                self._expiry.popitem(last=False)
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def _forget_expired(self, now: float) -> None:
        # Insertion order follows Slack's timestamps closely enough: stop at the first one still valid.
        while self._expiry and next(iter(self._expiry.values())) < now:
            self._expiry.popitem(last=False)


def _epoch(timestamp: str) -> float:
    try:
        return float(int(timestamp))
    except ValueError:  # Bolt has verified it: cannot happen, but never crash on a header
        return 0.0


def refuse_replays(cache: ReplayCache) -> Middleware:
    """A Bolt middleware (after Bolt's signature check): a signature used before gets 401, and a log line."""

    def middleware(req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:
        signature = _header(req, SIGNATURE_HEADER)
        if not signature or cache.first_use(signature, _header(req, TIMESTAMP_HEADER)):
            return next()
        log.warning(
            "refused a replayed Slack request (%s): its signature was already used",
            req.body.get("type") or req.body.get("command") or "unknown type",
        )
        return BoltResponse(status=401, body={"error": "replayed request"})

    return middleware


def _header(req: BoltRequest, name: str) -> str:
    values = req.headers.get(name) or [""]
    return str(values[0])
