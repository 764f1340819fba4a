"""Fixtures shared across test modules."""

pytest_plugins = ["tests.winrm_lab"]
