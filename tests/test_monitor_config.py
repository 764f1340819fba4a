"""The [scheduler] and [graph] tables: defaults, precise errors, secrets only from env/files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, parse_settings

ACCOUNT = (
    '[[accounts]]\nid = "svc"\nusername = "svc-atp@contoso.test"\ndomain_controllers = ["ldaps://dc1"]\n'
)


def problems(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(ACCOUNT + extra)
    return caught.value.problems


def test_defaults() -> None:
    settings = parse_settings(ACCOUNT)
    scheduler = settings.scheduler
    assert scheduler.enabled and scheduler.monitor_interval_minutes == 5
    assert scheduler.recheck_delays_minutes == [2, 10]
    assert scheduler.expiry_daily_at == (8, 0) and scheduler.expiry_interval_minutes is None
    assert scheduler.expiry_warning_days == [14, 7, 3, 1] and scheduler.unreachable_after == 3
    assert not settings.graph.enabled
    assert settings.graph.graph_url == "https://graph.microsoft.com/v1.0"


@pytest.mark.parametrize(("value", "minutes"), [('"12h"', 720), ('"90m"', 90)])
def test_the_expiry_check_may_run_at_an_interval(value: str, minutes: int) -> None:
    scheduler = parse_settings(ACCOUNT + f"[scheduler]\nexpiry_check_time = {value}\n").scheduler
    assert scheduler.expiry_daily_at is None and scheduler.expiry_interval_minutes == minutes


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('expiry_check_time = "25:00"', "scheduler.expiry_check_time: '25:00': use a UTC time of day"),
        ('expiry_check_time = "0h"', "scheduler.expiry_check_time: '0h'"),
        ("recheck_delays_minutes = [2, 2]", "scheduler.recheck_delays_minutes: a value is listed twice"),
        ("recheck_delays_minutes = [0]", "scheduler.recheck_delays_minutes[0]: must be at least 1"),
        ("monitor_interval_minutes = 0", "scheduler.monitor_interval_minutes: must be at least 1"),
        ("unreachable_after = 0", "scheduler.unreachable_after: must be at least 1"),
        (
            'jobstore_url = "postgresql://atp:hunter2@db/atp"',
            "scheduler.jobstore_url: must not contain a password",
        ),
        ('jobstore_url = "not a url"', "scheduler.jobstore_url: not a valid SQLAlchemy URL"),
        (
            "monitor_interval = 5",
            "scheduler.monitor_interval: unknown key; did you mean `monitor_interval_minutes`?",
        ),
    ],
)
def test_scheduler_errors_are_located(snippet: str, expected: str) -> None:
    found = problems(f"[scheduler]\n{snippet}\n")
    assert any(p.startswith(expected) for p in found), found
    assert "hunter2" not in " ".join(found)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "enabled = true",
            "graph: enabled = true needs tenant_id, client_id, client_secret_env or client_secret_file",
        ),
        (
            'graph_url = "http://graph.local/v1.0"',
            "graph.graph_url: 'http://graph.local/v1.0': must be an https://",
        ),
        (
            'client_secret_env = "A"\nclient_secret_file = "/b"',
            "graph: set client_secret_env or client_secret_file",
        ),
        ("client_secret = 'x'", "graph.client_secret: unknown key"),
        ('tenant_id = "a/b"', "graph.tenant_id: must match the pattern"),
    ],
)
def test_graph_errors_are_located(snippet: str, expected: str) -> None:
    found = problems(f"[graph]\n{snippet}\n")
    assert any(p.startswith(expected) for p in found), found


def test_the_graph_secret_comes_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "graph.secret"
    secret.write_text("s3cret-value\n")
    graph = parse_settings(
        ACCOUNT
        + f'[graph]\nenabled = true\ntenant_id = "t"\nclient_id = "c"\nclient_secret_file = "{secret}"\n'
    ).graph
    assert graph.client_secret().get_secret_value() == "s3cret-value"
    secret.write_text("")
    with pytest.raises(ConfigError, match=r"graph.client_secret: .* is empty"):
        graph.client_secret()
