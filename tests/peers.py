"""How tests treat a missing peer: a clear skip on a developer machine, a failure in CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from lab.postgres import PostgresCluster, server_binaries


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def peer_missing(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"test peer missing in CI (CI=true): {reason}", pytrace=False)
    pytest.skip(reason)


def postgres_cluster(password: str) -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for a fixture to yield, or `peer_missing` when it cannot run here."""
    if server_binaries() is None:
        peer_missing("PostgreSQL server binaries are not installed (Debian package: postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        peer_missing("the psycopg driver is not installed (pip install 'psycopg[binary]')")
    with PostgresCluster(password) as running:
        yield running
