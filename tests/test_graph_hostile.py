"""What Graph (or whoever answers in its place) sends never steers the client: every hostile answer of the
Graph emulator (lab.graph_hostile) at every endpoint the client reads is a GraphError with a plain
message, bodies are capped as they are read, wrong types are never trusted, and no redirect is followed
(msal + requests against the emulator)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.graph import MAX_BODY_BYTES, GraphError, GraphHealthSource, GraphSensorSource
from bot.graph.client import parse_health_issue
from bot.graph.sensors import SENSOR_FIELDS, parse_sensor
from lab.graph import HEALTH_ISSUES_PATH, SENSORS_PATH, GraphEmulator
from lab.graph_hostile import HOSTILE_ANSWERS, HUGE_BODY_BYTES, WRONG_TYPES_NAME, HostileAnswer
from tests.test_sensor_inventory import GRAPH_SECRET, graph_toml, settings_of

ENDPOINTS = ("token", "openid", SENSORS_PATH, HEALTH_ISSUES_PATH)
FAILING_ANSWERS = tuple(a for a in HOSTILE_ANSWERS if a != "wrong_types")


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET, page_size=3) as emulator:
        emulator.add_sensor("DC1", open_issues=1)  # so the health issues are read too
        emulator.add_issue(sensors=("dc1.contoso.test",))
        yield emulator


def sensor_source(tmp_path: Path, graph: GraphEmulator) -> GraphSensorSource:
    return GraphSensorSource(settings_of(tmp_path, graph_toml(graph)).graph, cache_seconds=0)


def path_of(graph: GraphEmulator, endpoint: str) -> str:
    if endpoint == "token":
        return graph.token_path
    if endpoint == "openid":
        return f"/{graph.tenant_id}/v2.0/.well-known/openid-configuration"
    return endpoint


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("answer", FAILING_ANSWERS)
def test_every_hostile_answer_is_a_plain_graph_error(
    tmp_path: Path, graph: GraphEmulator, endpoint: str, answer: HostileAnswer
) -> None:
    """Nested 100 000 deep (RecursionError in a recursive parser), 64 MiB, cut off, of another shape:
    at the sign-in endpoints, the sensor list and the health issues alike."""
    source = sensor_source(tmp_path, graph)
    graph.answer_next(path_of(graph, endpoint), answer)
    with pytest.raises(GraphError) as raised:
        source.sensors()
    message = str(raised.value)
    assert "\n" not in message and len(message) < 400
    assert GRAPH_SECRET not in message and "Traceback" not in message
    assert [s.display_name for s in source.sensors()] == ["DC1"]  # the next read works again


@pytest.mark.parametrize("answer", FAILING_ANSWERS)
def test_the_health_issues_source_turns_every_hostile_answer_into_a_graph_error(
    tmp_path: Path, graph: GraphEmulator, answer: HostileAnswer
) -> None:
    source = GraphHealthSource(settings_of(tmp_path, graph_toml(graph)).graph)
    graph.answer_next(HEALTH_ISSUES_PATH, answer)
    with pytest.raises(GraphError, match="/security/identities/healthIssues"):
        source.credential_issues()
    assert len(source.credential_issues()) == 1


def test_deeply_nested_json_is_named_as_such(tmp_path: Path, graph: GraphEmulator) -> None:
    graph.answer_next(SENSORS_PATH, "deep_json")
    with pytest.raises(
        GraphError, match=r"answer for /security/identities/sensors is JSON nested too deeply"
    ):
        sensor_source(tmp_path, graph).sensors()


def test_a_huge_body_is_refused_as_it_is_read(tmp_path: Path, graph: GraphEmulator) -> None:
    """64 MiB without Content-Length: the client stops at MAX_BODY_BYTES and hangs up; it never holds
    the whole body."""
    source = sensor_source(tmp_path, graph)
    source.sensors()  # signed in: what follows measures the page read alone
    graph.answer_next(SENSORS_PATH, "huge_body")
    tracemalloc.start()
    try:
        with pytest.raises(GraphError, match=r"with a body longer than 4 MiB; not read further"):
            source.sensors()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert MAX_BODY_BYTES == 4 * 2**20
    assert peak < 6 * MAX_BODY_BYTES, peak  # the whole body would be 16 times the cap
    assert graph.hostile_bytes_sent < HUGE_BODY_BYTES // 2  # the rest was never sent: the client hung up


def test_fields_of_the_wrong_type_are_never_trusted(tmp_path: Path, graph: GraphEmulator) -> None:
    """Items that are no objects, or lack a string id and name, are dropped; a field of the wrong type is
    read as not reported (`true` is no count of open issues)."""
    graph.answer_next(SENSORS_PATH, "wrong_types")
    (odd,) = sensor_source(tmp_path, graph).sensors()
    assert odd.display_name == WRONG_TYPES_NAME
    assert (odd.domain, odd.sensor_type, odd.version, odd.health_status, odd.deployment_status) == (None,) * 5
    assert (odd.open_issues_count, odd.dns_names, odd.dns_name) == (0, (), "dc8")

    graph.answer_next(HEALTH_ISSUES_PATH, "wrong_types")
    assert GraphHealthSource(settings_of(tmp_path, graph_toml(graph)).graph).credential_issues() == []


def test_a_sensor_list_redirect_is_never_followed(tmp_path: Path, graph: GraphEmulator) -> None:
    """A 302 would re-send the bearer token to the Location host (here: the emulator, renamed)."""
    elsewhere = graph.graph_url.replace("127.0.0.1", "localhost") + SENSORS_PATH.removeprefix("/v1.0")
    graph.redirect_next(SENSORS_PATH, 302, elsewhere)
    with pytest.raises(
        GraphError, match=r"answered /security/identities/sensors with HTTP 302 redirect to localhost"
    ):
        sensor_source(tmp_path, graph).sensors()
    assert [r.status for r in graph.records if r.path == SENSORS_PATH] == [302]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
FIELDS = (
    *SENSOR_FIELDS,
    "status",
    "severity",
    "healthIssueType",
    "sensorDNSNames",
    "domainNames",
    "createdDateTime",
    "domainControllerDnsNames",
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES))
def test_any_json_object_parses_or_is_dropped(item: dict[str, Any]) -> None:
    """Whatever types Graph's fields carry, an item becomes a sensor or a health issue, or None."""
    sensor = parse_sensor(item)
    assert sensor is None or isinstance(sensor.open_issues_count, int)
    issue = parse_health_issue(item)
    assert issue is None or isinstance(issue.display_name, str)
