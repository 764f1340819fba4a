"""Slack `/atp` subcommands: one module per subcommand, each owning its interactions and messages."""
