"""Prometheus metrics of the bot process (served on `/metrics` by `bot.infra.health`).

Never a secret in a label."""

from __future__ import annotations

import math
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.exc import SQLAlchemyError

REGISTRY = CollectorRegistry(auto_describe=True)

CONNECTION_TESTS = Counter(
    "atp_bot_connection_tests",
    "Connection tests of a directory service account password, by outcome and reason.",
    ["outcome", "reason"],
    registry=REGISTRY,
)
CONNECTION_TEST_SECONDS = Histogram(
    "atp_bot_connection_test_seconds",
    "How long a connection test took (lock held, all DCs tried).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
PASSWORD_CHANGES = Counter(
    "atp_bot_password_changes", "Password changes, by how they ended.", ["status"], registry=REGISTRY
)
SENSOR_CHECKS = Counter(
    "atp_bot_sensor_checks",
    "Sensor checks, by result (healthy, problem, unreachable) and failure kind (none when checked).",
    ["result", "failure"],
    registry=REGISTRY,
)
SENSOR_CHECK_SECONDS = Histogram(
    "atp_bot_sensor_check_seconds",
    "How long one sensor's check took.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
ALERTS_OPEN = Gauge(
    "atp_bot_alerts_open",
    "Open credential incidents (one per account), read from the monitor's state at each scrape.",
    registry=REGISTRY,
)
SCHEDULER_LEADER = Gauge(
    "atp_bot_scheduler_leader",
    "1 while this process runs the scheduler (the elected leader, or a single instance), 0 as a standby.",
    registry=REGISTRY,
)


def count_open_alerts(read: Callable[[], int]) -> None:
    """Let `atp_bot_alerts_open` ask `read` at each scrape: right after a restart too, and the same number
    on every replica that shares the state. NaN while the state cannot be read."""

    def value() -> float:
        try:
            return float(read())
        except SQLAlchemyError:
            return math.nan

    ALERTS_OPEN.set_function(value)
