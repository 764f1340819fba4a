"""`atp-bot health`: ask a running `atp-bot run` for its /healthz (for container and service checks)."""

from __future__ import annotations

import argparse
import urllib.error
import urllib.request
from typing import Any

from bot.cli import context
from bot.config import ConfigError, parse_listen
from bot.infra.exitcodes import ExitCode

WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - mapped to loopback


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "health",
        help="ask the running bot's /healthz ([observability] listen): 0 healthy, 1 unhealthy, 3 no answer",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    parser.set_defaults(handler=run)


def healthz_url(listen: str) -> str:
    host, port = parse_listen(listen)
    host = WILDCARDS.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"


def run(args: argparse.Namespace) -> int:
    settings = context.load(args)
    if settings.observability.listen is None:
        raise ConfigError(["observability.listen is not set, so atp-bot run serves no /healthz"])
    url = healthz_url(settings.observability.listen)
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as answer:  # noqa: S310 - http to our own port
            print(answer.read().decode())
            return ExitCode.OK
    except urllib.error.HTTPError as unhealthy:
        print(unhealthy.read().decode())
        return ExitCode.PROBLEM
    except (urllib.error.URLError, OSError) as exc:
        print(f"atp-bot is not answering on {url}: {getattr(exc, 'reason', exc)}")
        return ExitCode.UNREACHABLE
