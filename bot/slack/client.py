"""The Slack Web API client: configurable base URL, slack_sdk's own retry handlers, and no redirects."""

from __future__ import annotations

import logging
import urllib.request
from email.message import Message
from typing import IO, Any

from pydantic import SecretStr
from slack_sdk import WebClient
from slack_sdk.http_retry import HttpRequest, HttpResponse, RetryState
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.web import SlackResponse

from bot.infra.controls import escape_controls
from bot.infra.redirects import describe_redirect, redirect_target

log = logging.getLogger(__name__)

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


class RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would follow a 301/302/303 with the Authorization header (the token) to the Location host.

    Slack's Web API never redirects. Returning no new request makes urllib raise the 3xx as an HTTPError,
    which slack_sdk turns into a failed call (`SlackApiError`, with the status).
    """

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> None:
        target = redirect_target(code, req.full_url, newurl) or newurl
        log.warning("slack: the Web API answered with an %s", describe_redirect(code, target))
        return None


def refuse_redirects() -> None:
    """Make urllib's default opener, which slack_sdk's WebClient uses, refuse redirects (idempotent).

    slack_sdk builds its own opener, which follows redirects, only when a proxy is configured
    (`WebClient(proxy=…)` or `$HTTPS_PROXY`); see docs/operations.md."""
    urllib.request.install_opener(urllib.request.build_opener(RefuseRedirects))


def _inert(value: Any) -> Any:
    """Every string in a request's arguments with its control and format characters escaped."""
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, dict):
        return {key: _inert(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_inert(item) for item in value]
    return value


class InertWebClient(WebClient):
    """A WebClient that sends no control or format character: the net under `bot.slack.text` for text
    objects built anywhere (a message, a block, a view). Escaping is idempotent, so text already made
    inert is unchanged."""

    def api_call(
        self,
        api_method: str,
        *,
        data: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SlackResponse:
        return super().api_call(
            api_method, data=_inert(data), params=_inert(params), json=_inert(json), **kwargs
        )


def build_client(api_url: str, token: SecretStr, *, max_retry_after: int | None = None) -> WebClient:
    """A WebClient for `api_url` (Slack's, a proxy's or the lab emulator's) that retries rate limits
    (honouring Retry-After, up to `max_retry_after` seconds if given), 5xx answers and connection errors."""
    rate_limit = (
        RateLimitErrorRetryHandler(max_retry_count=MAX_RETRIES)
        if max_retry_after is None
        else BoundedRateLimitRetryHandler(max_retry_after)
    )
    refuse_redirects()
    return InertWebClient(
        token=token.get_secret_value(),
        base_url=api_url,
        timeout=TIMEOUT_SECONDS,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=MAX_RETRIES),
            rate_limit,
            ServerErrorRetryHandler(max_retry_count=MAX_RETRIES),
        ],
    )
