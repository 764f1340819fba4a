"""atp-bot: Slack chat-ops for the Defender for Identity / ATA directory service account password."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("atp-bot")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
