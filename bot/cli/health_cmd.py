"""`atp-bot health`: ask a running `atp-bot run` for its /healthz (ready), or with `--live` its /livez
(alive), for container and service checks."""

from __future__ import annotations

import argparse
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bot.config.core import ConfigError, parse_listen, read_config_text, resolve_config_path
from bot.infra.exitcodes import ExitCode

WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - mapped to loopback


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "health",
        help="ask the running bot's /healthz ([observability] listen): 0 healthy, 1 unhealthy, 3 no answer",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    parser.add_argument(
        "--live",
        action="store_true",
        help="ask /livez instead: is the process working (not: is Slack connected); for liveness probes",
    )
    parser.set_defaults(handler=run)


def healthz_url(listen: str, path: str = "/healthz") -> str:
    host, port = parse_listen(listen)
    host = WILDCARDS.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"


def run(args: argparse.Namespace) -> int:
    # Only the listen address is read: a probe asks the running bot, which checked the configuration's
    # files when it started; a CA bundle that is missing in the probe's view must not fail the probe.
    listen = configured_listen(resolve_config_path(args.config))
    url = healthz_url(listen, "/livez" if args.live else "/healthz")
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


def configured_listen(path: Path) -> str:
    """`[observability] listen`, read with tomllib alone: a probe runs every few seconds, and building the
    model of every section would cost it about a second of CPU each time. A value that is not a valid
    address is reported by the full validation, with the messages every other command gives."""
    try:
        listen = _listen_value(read_config_text(path))
    except ValueError as invalid:  # TOMLDecodeError is one too
        from bot.config import load_settings

        load_settings(path)
        raise ConfigError([f"observability.listen: {invalid}"]) from None
    if listen is None:
        raise ConfigError(["observability.listen is not set, so atp-bot run serves no /healthz"])
    return listen


def _listen_value(text: str) -> str | None:
    observability = tomllib.loads(text).get("observability", {})
    listen = observability.get("listen") if isinstance(observability, dict) else observability
    if listen is not None and not isinstance(listen, str):
        raise ValueError(f"{listen!r} is not a host:port string")
    if listen is not None:
        parse_listen(listen)
    return listen
