"""The Slack Web API client: configurable base URL, and slack_sdk's own retry handlers."""

from __future__ import annotations

from pydantic import SecretStr
from slack_sdk import WebClient
from slack_sdk.http_retry import HttpRequest, HttpResponse, RetryState
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

# One retry each: enough to ride out a blip without holding a 3-second acknowledgement for long.
MAX_RETRIES = 1
TIMEOUT_SECONDS = 10
# Calls made before an acknowledgement (user-group lookups) wait out a rate limit only this long.
ACK_PATH_MAX_RETRY_AFTER = 1


class BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack_sdk's rate-limit handler, retrying only when Slack's Retry-After fits a time budget."""

    def __init__(self, max_retry_after: int, max_retry_count: int = MAX_RETRIES) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_retry_after = max_retry_after

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or not super()._can_retry(
            state=state, request=request, response=response, error=error
        ):
            return False
        values = [v for k, v in response.headers.items() if k.lower() == "retry-after"]
        try:
            return int(values[0][0]) <= self.max_retry_after
        except (IndexError, ValueError):
            return False


def build_client(api_url: str, token: SecretStr, *, max_retry_after: int | None = None) -> WebClient:
    """A WebClient for `api_url` (Slack's, a proxy's or the lab emulator's) that retries rate limits
    (honouring Retry-After, up to `max_retry_after` seconds if given), 5xx answers and connection errors."""
    rate_limit = (
        RateLimitErrorRetryHandler(max_retry_count=MAX_RETRIES)
        if max_retry_after is None
        else BoundedRateLimitRetryHandler(max_retry_after)
    )
    return WebClient(
        token=token.get_secret_value(),
        base_url=api_url,
        timeout=TIMEOUT_SECONDS,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=MAX_RETRIES),
            rate_limit,
            ServerErrorRetryHandler(max_retry_count=MAX_RETRIES),
        ],
    )
