"""The command line explains itself: no arguments print the help, and every subcommand, at every level,
opens its `--help` with a description."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bot.cli import build_parser, main
from bot.infra.exitcodes import ExitCode


def subcommands(
    parser: argparse.ArgumentParser, path: str = "atp-bot"
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """Every subcommand under the parser, at every depth: (its command line, one-line help, parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                command = action.choices[choice.dest]
                yield f"{path} {choice.dest}", choice.help or "", command
                yield from subcommands(command, f"{path} {choice.dest}")


def test_no_arguments_print_the_help_and_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == ExitCode.OK
    out, err = capsys.readouterr()
    assert out == build_parser().format_help()
    assert err == ""


def test_the_console_script_without_arguments_prints_the_help() -> None:
    done = subprocess.run([sys.executable, "-m", "bot"], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (ExitCode.OK, "")
    assert done.stdout.startswith("usage: atp-bot ")
    assert "set-password" in done.stdout and "gmsa" in done.stdout


def test_every_subcommand_has_a_description_in_its_help() -> None:
    walked = list(subcommands(build_parser()))
    paths = {path for path, _, _ in walked}
    assert {"atp-bot config check", "atp-bot gmsa plan", "atp-bot store init"} <= paths
    undescribed = [path for path, _, parser in walked if not (parser.description or "").strip()]
    assert undescribed == []
    unlisted = [path for path, help_line, _ in walked if not help_line.strip()]
    assert unlisted == []


def test_a_sub_subcommand_help_shows_its_description(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["config", "check", "--help"])
    assert done.value.code == 0
    assert "validate the configuration file and print a summary" in capsys.readouterr().out
