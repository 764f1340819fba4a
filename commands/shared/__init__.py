"""Helpers shared by the /atp subcommands that are not subcommands themselves."""
