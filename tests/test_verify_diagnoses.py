"""`atp-bot verify` sends the operator the right way, against the real Samba AD DC: atp-bot's own rejected
tests are not blamed on the sensors, a DC reached at two URLs is one DC, an account with nothing saved
is "nothing to compare", and every account with a lookup account is read (the others are named)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.domain import LabDomain, new_password
from lab.samba import LabUser
from tests.conftest import run_cli
from tests.test_drift import save, verify, write_config

pytestmark = pytest.mark.samba

SENSORS_BLAMED = "sensors are sending a wrong password"


@pytest.fixture
def user(lab_domain: LabDomain) -> LabUser:
    return lab_domain.dc.create_user(f"svc-diag-{new_password()[4:10].lower()}", new_password())


def test_atp_bots_own_rejected_tests_are_not_blamed_on_the_sensors(
    lab_domain: LabDomain, user: LabUser, tmp_path: Path, env: None
) -> None:
    config = write_config(tmp_path, lab_domain, user)
    assert run_cli(config, "store", "init").returncode == 0
    save(config, user.password)
    wrong = run_cli(config, "test-connection", "--account", "acct", "--password-stdin", stdin="Wr0ng-Pass!")
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert lab_domain.dc.user_state(user.name)["badPwdCount"] == 1, "AD counted atp-bot's own test"

    code, [report] = verify(config)

    assert code == 0, report
    assert report["in_sync"] is True and report["bad_password_count"] == 1
    assert not any(SENSORS_BLAMED in f for f in report["findings"]), report["findings"]
    assert any("atp-bot's own" in f and "lockout guard" in f for f in report["findings"]), report["findings"]

    lab_domain.dc.attempt_bind(user, "the-sensors-old-password")  # now a sensor adds one of its own
    code, [report] = verify(config)
    assert code == 1
    [blamed] = [f for f in report["findings"] if SENSORS_BLAMED in f]
    assert "badPwdCount 2" in blamed and "besides 1 rejected test(s) of atp-bot's own" in blamed


def test_a_dc_reached_at_two_urls_is_one_dc(
    lab_domain: LabDomain, user: LabUser, tmp_path: Path, env: None
) -> None:
    config = write_config(tmp_path, lab_domain, user, dcs=[lab_domain.dc.ldaps_url, lab_domain.dc.ldap_url])
    assert run_cli(config, "store", "init").returncode == 0
    save(config, user.password)
    lab_domain.dc.attempt_bind(user, "the-sensors-old-password")

    code, [report] = verify(config)

    assert code == 1
    [blamed] = [f for f in report["findings"] if SENSORS_BLAMED in f]
    assert f"on {lab_domain.dc.ldaps_url} (also {lab_domain.dc.ldap_url})" in blamed


def test_nothing_saved_yet_is_nothing_to_compare_not_drift(
    lab_domain: LabDomain, user: LabUser, tmp_path: Path, env: None
) -> None:
    config = write_config(tmp_path, lab_domain, user)
    assert run_cli(config, "store", "init").returncode == 0
    lab_domain.dc.attempt_bind(user, "some-other-password")

    code, [report] = verify(config)
    assert code == 0, report
    assert report["in_sync"] is None and report["saved_at"] is None
    assert any("nothing to compare" in f for f in report["findings"]), report["findings"]

    done = run_cli(config, "verify")
    assert done.returncode == 0
    assert done.stdout.startswith("NOTHING TO COMPARE: account acct"), done.stdout
    assert "DRIFT" not in done.stdout


def test_every_account_with_a_lookup_account_is_read_without_a_store(
    lab_domain: LabDomain, user: LabUser, tmp_path: Path, env: None
) -> None:
    config = write_config(tmp_path, lab_domain, user)
    config.write_text(
        config.read_text() + f'[[accounts]]\nid = "bare"\nusername = "other@contoso.test"\n'
        f'domain_controllers = ["{lab_domain.dc.ldaps_url}"]\n'
    )  # no `store init`: the embedded store does not exist

    done = run_cli(config, "verify")

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("NOTHING TO COMPARE: account acct"), done.stdout
    assert "skipped account bare: it has no lookup account" in done.stdout
    assert "the store cannot be opened" in done.stdout and "store init" in done.stdout
    code, reports = verify(config)
    assert code == 0 and [r["account"] for r in reports] == ["acct"]
    done = run_cli(config, "verify", "--account", "bare")
    assert done.returncode == 2 and "lookup_username" in done.stderr
