"""`/atp password` with Graph: the thread names the unified sensors as not using the directory service
account and, when MDI closes the credentials health issue, says so (real Samba DC, Slack, Graph and
WinRM emulators; the monitor's persisted jobs run by hand)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.monitor.scheduler import ISSUE_WATCH_PREFIX
from commands import MODULES
from lab.domain import LabDomain
from lab.graph import CREDENTIALS_ISSUE, GraphEmulator
from lab.samba import LabUser
from lab.winrm.server import WinRMEmulator
from tests.conftest import CANARY, lab_account, sensor_config
from tests.slack_lab import (
    OPS,
    click_done,
    initialised_changes,
    open_modal,
    running_lab,
    values,
    view_text,
    wait_for,
)
from tests.test_sensor_inventory import GRAPH_SECRET
from tests.test_sensor_inventory_slack import graph_config

pytestmark = pytest.mark.samba


def test_password_thread_names_unified_sensors_and_the_issue_closing(
    lab_domain: LabDomain,
    fresh_user: LabUser,
    sensors: WinRMEmulator,
    env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    domain = lab_domain.dc.dns_domain
    lab_domain.dc.set_password(fresh_user.name, CANARY)
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET) as graph:
        graph.add_sensor("sensor01", domain=domain)
        graph.add_sensor("dcu1", domain=domain, version="3.0.1234.0")
        issue = graph.add_issue(CREDENTIALS_ISSUE, domains=(domain,))
        config = {
            "state_dir": str(tmp_path / "state"),
            "accounts": [lab_account(lab_domain, fresh_user)],
            **sensor_config(sensors, "svc"),
            "graph": {**graph_config(graph)["graph"], "enabled": True},
        }
        with running_lab(
            "socket", modules=MODULES, config=config, changes=initialised_changes, monitor=True
        ) as lab:
            view_id = open_modal(lab)
            lab.emulator.submit_view(view_id, values(CANARY))
            wait_for(lambda: "Saved." in view_text(lab, view_id), timeout=20)
            announcement = wait_for(lambda: [m for m in lab.emulator.messages(OPS) if m.thread_ts is None])[0]
            click_done(lab.emulator, announcement)  # the portal step: the follow-up checks start now

            def thread() -> list[str]:
                return [m.text for m in lab.emulator.messages(OPS) if m.thread_ts == announcement.ts]

            def checks_done() -> str | None:
                return next((t for t in thread() if "All 2 sensor(s)" in t), None)

            report = wait_for(checks_done, timeout=40)
            assert "unified sensor: does not use the directory service account: dcu1" in report

            scheduler = lab.runtime.services.scheduler
            assert scheduler is not None
            watch = sorted(j.id for j in scheduler.pending() if j.id.startswith(ISSUE_WATCH_PREFIX))
            assert len(watch) == 12  # 60 min, one poll every 5 min
            job = scheduler.aps.get_job(watch[0])
            changed_at = datetime.fromisoformat(job.args[2])
            graph.set_status(issue, "closed", at=changed_at + timedelta(minutes=3))
            scheduler.run_job_now(watch[0])
            closed = wait_for(lambda: next((t for t in thread() if "MDI closed" in t), None), timeout=10)
            assert f"MDI closed '{CREDENTIALS_ISSUE}' at" in closed and "3 min after the change" in closed
