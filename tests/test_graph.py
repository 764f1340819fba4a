"""Defender for Identity health issues from Graph (MSAL + requests) against the local Graph emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import Settings
from bot.graph import GraphError, GraphHealthSource
from bot.monitor.cycle import run_monitor_cycle
from lab.graph import CREDENTIALS_ISSUE, HEALTH_ISSUES_PATH, GraphEmulator
from tests.monitor_tools import Clock, RecordingNotifier, make_runtime, monitor_settings, toml_str

GRAPH_SECRET = "Canary-Graph-Secret~7Qv.9_x2"


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", "unused")
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET, page_size=2) as emulator:
        yield emulator


def graph_settings(tmp_path: Path, graph: GraphEmulator, *, ca: bool = True) -> Settings:
    extra = (
        "[graph]\nenabled = true\n"
        f"tenant_id = {toml_str(graph.tenant_id)}\nclient_id = {toml_str(graph.client_id)}\n"
        'client_secret_env = "ATP_BOT_TEST_GRAPH_SECRET"\n'
        f"authority_url = {toml_str(graph.authority_url)}\ngraph_url = {toml_str(graph.graph_url)}\n"
        + (f"ca_file = {toml_str(graph.tls.ca_file)}\n" if ca else "")
        + "timeout = 10\n"
    )
    return monitor_settings(tmp_path, None, extra=extra)


def requests_to(graph: GraphEmulator, path: str) -> int:
    return sum(1 for r in graph.records if r.path == path)


def test_open_credential_issues_are_read_across_pages(tmp_path: Path, graph: GraphEmulator) -> None:
    wanted = {graph.add_issue() for _ in range(3)}
    graph.add_issue("Sensor stopped communicating")
    graph.add_issue(status="closed")
    source = GraphHealthSource(graph_settings(tmp_path, graph).graph)

    issues = source.credential_issues()
    assert {i.id for i in issues} == wanted
    assert all(i.display_name == CREDENTIALS_ISSUE and i.status == "open" for i in issues)
    assert issues[0].domains == ("contoso.test",) and issues[0].sensors == ("dc1.contoso.test",)
    assert issues[0].severity == "high" and issues[0].created is not None
    assert requests_to(graph, HEALTH_ISSUES_PATH) == 2  # 4 open issues, 2 per page
    source.credential_issues()
    assert requests_to(graph, graph.token_path) == 1  # MSAL reuses its cached token


def test_a_wrong_client_secret_is_a_clear_error(
    tmp_path: Path, graph: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", "not-the-secret")
    with pytest.raises(GraphError, match="invalid_client"):
        GraphHealthSource(graph_settings(tmp_path, graph).graph).credential_issues()
    assert requests_to(graph, HEALTH_ISSUES_PATH) == 0


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (500, "HTTP 500"),
        (401, "SecurityIdentitiesHealth.Read.All"),
        (403, "SecurityIdentitiesHealth.Read.All"),
    ],
)
def test_graph_errors_are_reported(tmp_path: Path, graph: GraphEmulator, status: int, message: str) -> None:
    graph.add_issue()
    graph.fail_next(HEALTH_ISSUES_PATH, status)
    source = GraphHealthSource(graph_settings(tmp_path, graph).graph)
    with pytest.raises(GraphError, match=message):
        source.credential_issues()
    assert len(source.credential_issues()) == 1  # the next poll works again


def test_a_token_endpoint_outage_is_a_graph_error(tmp_path: Path, graph: GraphEmulator) -> None:
    graph.fail_next(graph.token_path, 500)
    source = GraphHealthSource(graph_settings(tmp_path, graph).graph)
    with pytest.raises(GraphError, match=r"cannot sign in .*HTTP Error: 500"):
        source.credential_issues()
    source.credential_issues()  # signs in on the next poll


def test_an_untrusted_certificate_is_refused(tmp_path: Path, graph: GraphEmulator) -> None:
    with pytest.raises(GraphError, match="cannot sign in"):
        GraphHealthSource(graph_settings(tmp_path, graph, ca=False).graph).credential_issues()
    assert graph.records == []


def test_the_client_secret_never_reaches_logs_errors_or_state(
    tmp_path: Path, graph: GraphEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    graph.add_issue()
    runtime = make_runtime(graph_settings(tmp_path, graph), RecordingNotifier(), Clock())
    run_monitor_cycle(runtime)
    graph.fail_next(HEALTH_ISSUES_PATH, 401)
    result = run_monitor_cycle(runtime)
    assert result.health_error is not None
    assert GRAPH_SECRET not in result.health_error
    for record in caplog.records:
        assert GRAPH_SECRET not in record.getMessage(), record.name
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert GRAPH_SECRET.encode() not in path.read_bytes(), path


def test_the_runtime_uses_graph_when_it_is_enabled(tmp_path: Path, graph: GraphEmulator) -> None:
    runtime = make_runtime(graph_settings(tmp_path, graph), RecordingNotifier(), Clock())
    assert isinstance(runtime.health, GraphHealthSource)
    assert make_runtime(monitor_settings(tmp_path / "off", None), RecordingNotifier(), Clock()).health is None


def test_a_rotated_client_secret_is_picked_up(
    tmp_path: Path, graph: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph.add_issue()
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", "the-old-secret")
    source = GraphHealthSource(graph_settings(tmp_path, graph).graph)
    with pytest.raises(GraphError, match="invalid_client"):
        source.credential_issues()
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    assert len(source.credential_issues()) == 1


@pytest.mark.parametrize("status", [302, 307, 308])
def test_a_token_endpoint_redirect_is_never_followed(
    tmp_path: Path, graph: GraphEmulator, status: int
) -> None:
    """A 307/308 would re-send the client secret to the Location host (here: the emulator, renamed)."""
    elsewhere = graph.authority_url.replace("127.0.0.1", "localhost") + graph.token_path
    graph.redirect_next(graph.token_path, status, elsewhere)
    with pytest.raises(GraphError, match=rf"cannot sign in .*HTTP {status} redirect to localhost:\d+"):
        GraphHealthSource(graph_settings(tmp_path, graph).graph).credential_issues()
    assert [r.status for r in graph.records if r.path == graph.token_path] == [status]


def test_a_health_issues_redirect_is_never_followed(tmp_path: Path, graph: GraphEmulator) -> None:
    """A 302 would re-send the bearer token to the Location host."""
    graph.add_issue()
    elsewhere = graph.graph_url.replace("127.0.0.1", "localhost") + HEALTH_ISSUES_PATH.removeprefix("/v1.0")
    graph.redirect_next(HEALTH_ISSUES_PATH, 302, elsewhere)
    source = GraphHealthSource(graph_settings(tmp_path, graph).graph)
    with pytest.raises(GraphError, match=r"HTTP 302 redirect to localhost:\d+"):
        source.credential_issues()
    assert [r.status for r in graph.records if r.path == HEALTH_ISSUES_PATH] == [302]
    assert len(source.credential_issues()) == 1
