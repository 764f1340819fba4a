"""The scan algorithm of check_sensor.ps1 (as the emulator runs it) against a naive reference.

Random logs, random chunk sizes, appends that split lines, rotations: the incremental scan must count
every complete matching line exactly once, and the time-window scan exactly the lines of records at or
after `since`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from lab.winrm.model import Host, log_line
from lab.winrm.powershell import CheckRun

PATTERN = "credential is invalid"
START = datetime(2026, 1, 1, tzinfo=UTC)

# (stamped, matching) per line; stamped lines advance the clock by one second.
lines_strategy = st.lists(st.tuples(st.booleans(), st.booleans()), min_size=0, max_size=40)


def render(lines: list[tuple[bool, bool]]) -> tuple[list[str], list[datetime | None]]:
    texts, times, now, current = [], [], START, None
    for index, (stamped, matching) in enumerate(lines):
        body = f"entry {index}" + (f" {PATTERN}" if matching else "") + " ü"
        if stamped:
            now += timedelta(seconds=1)
            current = now
            texts.append(log_line(now, body))
        else:
            texts.append(f"   ---> {body}")
        times.append(current)
    return texts, times


def params(host: Host, chunk: int, **extra: Any) -> dict[str, Any]:
    return {
        "services": [],
        "log_dir": host.log_dir,
        "error_log": host.error_log_path.rsplit("\\", 1)[1],
        "patterns": [PATTERN],
        "position": None,
        "since": None,
        "max_bytes": 1 << 30,
        "chunk": chunk,
        "head": 64,
        **extra,
    }


@settings(max_examples=150, deadline=None)
@given(
    lines=lines_strategy,
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=6),
    rotate_at=st.sets(st.integers(min_value=0, max_value=6)),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_incremental_scans_count_each_line_once(
    lines: list[tuple[bool, bool]], cuts: list[int], rotate_at: set[int], chunk: int
) -> None:
    host = Host.sensor("h")
    texts, _ = render(lines)
    data = "".join(t + "\r\n" for t in texts)
    ends = [i + 1 for i, c in enumerate(data) if c == "\n"] or [0]
    # Even cuts fall on line boundaries (where rotation may happen), odd ones anywhere.
    snapped = {ends[(c // 2) % len(ends)] if c % 2 == 0 else min(c, len(data)) for c in cuts}
    points = sorted(snapped | {len(data)})
    position, total, written = None, 0, 0
    for step, point in enumerate(points):
        if step in rotate_at and (written == 0 or data[written - 1] == "\n"):
            host.rotate_log()  # a logger rotates between lines, never inside one
            event("rotated")
        log = host.find(host.error_log_path)
        assert log is not None
        log.append(data[written:point])
        written = point
        extra = {"position": position} if position else {"since": "2000-01-01T00:00:00+00:00"}
        out = CheckRun(host, params(host, chunk, **extra)).run()["log"]
        total += out["matches"]
        position = {"path": out["path"], "file_id": out["file_id"], "offset": out["offset"]}
    assert total == sum(1 for _, matching in lines if matching)


@settings(max_examples=150, deadline=None)
@given(lines=lines_strategy, since_offset=st.integers(min_value=0, max_value=45), chunk=st.integers(1, 64))
def test_time_window_scan_counts_records_since(
    lines: list[tuple[bool, bool]], since_offset: int, chunk: int
) -> None:
    host = Host.sensor("h")
    texts, times = render(lines)
    host.append_log(*texts)
    since = START + timedelta(seconds=since_offset)
    out = CheckRun(host, params(host, chunk, since=since.isoformat())).run()["log"]
    stamped = [t for t in times if t is not None]
    all_recent = all(t >= since for t in stamped)
    expected = sum(
        1
        for (_, matching), when in zip(lines, times, strict=True)
        if matching and (when >= since if when is not None else all_recent)
    )
    assert out["matches"] == expected
    assert out["offset"] == host.find(host.error_log_path).size  # type: ignore[union-attr]
    if expected:
        matching_times = [
            w for (_, m), w in zip(lines, times, strict=True) if m and (w is None or w >= since)
        ]
        assert out["last"] == (log_line(matching_times[-1], "")[:24] if matching_times[-1] else None)
