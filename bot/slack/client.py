"""The Slack Web API client: configurable base URL, and slack_sdk's own retry handlers."""

from __future__ import annotations

from pydantic import SecretStr
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

# One retry each: enough to ride out a blip without holding a 3-second acknowledgement for long.
MAX_RETRIES = 1
TIMEOUT_SECONDS = 10


def build_client(api_url: str, token: SecretStr) -> WebClient:
    """A WebClient for `api_url` (Slack's, a proxy's or the lab emulator's) that retries rate limits
    (honouring Retry-After), 5xx answers and connection errors."""
    return WebClient(
        token=token.get_secret_value(),
        base_url=api_url,
        timeout=TIMEOUT_SECONDS,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=MAX_RETRIES),
            RateLimitErrorRetryHandler(max_retry_count=MAX_RETRIES),
            ServerErrorRetryHandler(max_retry_count=MAX_RETRIES),
        ],
    )
