"""The configuration tables that make atp-bot one of several replicas sharing one PostgreSQL database."""

from __future__ import annotations

from typing import Any


def replica_tables(db_url: str, password_env: str, poll: float) -> dict[str, Any]:
    """`[store]`, `[audit]` and `[scheduler]` for a replica: job store, leader lock and audit trail in
    `db_url` (a URL without the password, which comes from `password_env`)."""
    return {
        # A store whose target every replica shares (the embedded one is refused); this one keeps nothing.
        "store": {"backend": "command", "command": {"argv": ["/bin/sh", "-c", "cat >/dev/null"]}},
        "audit": {"url": db_url, "password_env": password_env},
        "scheduler": {
            "jobstore_url": db_url,
            "jobstore_password_env": password_env,
            "leader_lock_url": db_url,
            "leader_lock_password_env": password_env,
            "leader_poll_seconds": poll,
        },
    }
