"""Peer text in Slack mrkdwn (pure): nothing a sensor, a DC or a store says can mention, link or format."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.monitor.models import Incident, RecheckReport, SensorIssue, SensorSummary, ServiceState
from bot.sensors.checks import Failure, FailureKind, SensorResult, ServiceStatus
from bot.slack.text import code_block, code_span, escape, inline
from commands.alerts import incident_message, recheck_message
from commands.shared.sensor_report import sensor_line

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
HOSTILE = "bad ` <!channel> <https://evil.example/login|bank> &lt; *bold* _it_ ~gone~\nline two"


def assert_inert(text: str) -> None:
    """No mention, link or entity of the peer's survives: its `<`, `>` and `&` are all escaped."""
    assert "<" not in text and ">" not in text
    assert "&amp;lt;" in text  # the peer's own `&lt;` is shown as typed, not decoded to `<`


def test_escape_covers_exactly_slacks_three_characters() -> None:
    assert escape("a & b < c > d *e* `f`") == "a &amp; b &lt; c &gt; d *e* `f`"


def test_inline_text_cannot_mention_link_or_format() -> None:
    text = inline(HOSTILE)
    assert_inert(text)
    assert "&lt;!channel&gt;" in text and "&lt;https://evil.example/login|bank&gt;" in text
    assert "&amp;lt;" in text
    assert not any(mark in text for mark in "`*~") and " _it_ " not in text
    assert "\n" not in text and "line two" in text


def test_inline_keeps_marks_inside_words() -> None:
    assert inline("C:\\PROGRA~1\\svc_atp\\x*y") == "C:\\PROGRA~1\\svc_atp\\x*y"


def test_a_code_span_cannot_be_closed_by_the_peer() -> None:
    span = code_span(HOSTILE)
    assert span.startswith("`") and span.endswith("`") and span.count("`") == 2
    assert_inert(span)
    assert code_span("") == "` `"  # an empty span would show its backticks


def test_limits_cut_the_peer_text_before_escaping() -> None:
    span = code_span("<" * 50, 10)
    assert span == "`" + "&lt;" * 9 + "…`"
    assert inline("x" * 600).endswith("…") and len(inline("x" * 600)) == 500


def test_a_code_block_keeps_lines_but_not_backtick_runs() -> None:
    block = code_block("one\n```\n<!here>")
    assert block == "```one\n\u02cb\u02cb\u02cb\n&lt;!here&gt;```"


def test_sensor_lines_escape_what_the_sensor_said() -> None:
    failed = SensorResult(
        "s1", "http://s1", "mdi", None, NOW, 0.1, failure=Failure(FailureKind.WINRM_FAULT, HOSTILE)
    )
    stopped = SensorResult("s2", "http://s2", "mdi", None, NOW, 0.1, services=(ServiceStatus("A", HOSTILE),))
    for line in (sensor_line(failed), sensor_line(stopped)):
        assert_inert(line)
        assert line.count("*") == 2  # only the bot's own bold sensor name


def test_alerts_and_rechecks_escape_what_the_sensor_said() -> None:
    issue = SensorIssue(
        sensor="s1",
        credential_errors=1,
        sample=HOSTILE,
        stopped_services=(ServiceState(name="A", state=HOSTILE),),
    )
    incident = Incident(id="i1", account_id="svc", opened_at=NOW, updated_at=NOW, sensors=(issue,))
    text, blocks = incident_message(incident)
    assert_inert(text)
    sample = blocks[2]["elements"][0]["text"]
    assert sample.count("`") == 2
    assert_inert(sample)
    summary = SensorSummary(name="s1", reachable=True, healthy=False, problems=(HOSTILE,))
    report = RecheckReport(
        account_id="svc", changed_at=NOW, delay_minutes=2, checked_at=NOW, sensors=(summary,)
    )
    assert_inert(recheck_message(report))
