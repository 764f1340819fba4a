"""Exit codes shared by every `atp-bot` subcommand."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    PROBLEM = 1  # the check ran and found a problem (e.g. the credential was rejected)
    USAGE = 2  # usage or configuration error
    UNREACHABLE = 3  # a peer could not be reached
