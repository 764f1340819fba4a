"""The gMSA verdicts and the migration plan, without peers (the pure functions), and the refusals that
need no directory."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import tomllib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tomli_w
from pydantic import SecretStr

import commands.gmsa
from bot.change import ChangeStatus, open_changes
from bot.config import ConfigError, Settings, parse_settings, password_refusal
from bot.gmsa import gmsa_alert_verdicts, migration_plan, report_exit_code, sensor_scope
from bot.gmsa.core import (
    Check,
    GmsaFacts,
    GmsaObject,
    GmsaReport,
    KdsKeys,
    MembershipUnreadable,
    Status,
    decode_membership,
    mentions_gmsa,
)
from bot.gmsa.verdicts import check_kds, check_object
from bot.monitor.expiry import run_expiry_check
from bot.sensors.checks import CredentialErrors, SensorResult
from bot.store.embedded import init_embedded_store
from commands import MODULES
from commands.password.validation import validate
from commands.password.views import Action, Block, PasswordModalOrigin
from lab.gmsa import SYSTEM_PYTHON, allow_sddl, security_descriptor
from lab.graph import GraphEmulator
from tests.conftest import CANARY, run_cli
from tests.monitor_tools import Clock, RecordingNotifier, make_runtime, monitor_settings
from tests.slack_lab import running_lab, wait_for
from tests.test_sensor_inventory import GRAPH_SECRET
from tests.test_sensor_inventory_slack import graph_config

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
GMSA = """
[winrm]
username = "CONTOSO\\\\atp-winrm"
password_env = "ATP_BOT_TEST_GMSA_WINRM"

[[accounts]]
id = "corp"
kind = "gmsa"
username = "mdisvc$"
domain = "corp.contoso.com"
domain_controllers = ["ldaps://dc1.corp.contoso.com"]
lookup_username = "atp-lookup@corp.contoso.com"
lookup_password_env = "ATP_BOT_TEST_GMSA_LOOKUP"

[[accounts]]
id = "contoso"
username = "svc-atp@contoso.local"
domain_controllers = ["ldaps://dc1.contoso.local"]

[[sensors]]
name = "sensor01"
endpoint = "https://sensor01.contoso.local:5986/wsman"
account = "contoso"

[[sensors]]
name = "dc02.contoso.local"
endpoint = "https://10.0.0.2:5986/wsman"
account = "contoso"
"""


def settings() -> Settings:
    return parse_settings(GMSA)


def facts(**gmsa: object) -> GmsaFacts:
    values: dict[str, object] = {
        "dn": "CN=mdisvc,CN=Managed Service Accounts,DC=corp",
        "user_account_control": 0x1000,
        "pwd_last_set": NOW - timedelta(days=3),
        "encryption_types": 0x18,
        "interval_days": 30,
        "membership": None,
    }
    return GmsaFacts(GmsaObject(**{**values, **gmsa}), "DC=corp")  # type: ignore[arg-type]


def test_config_kind_gmsa_needs_the_dollar_the_domain_and_the_lookup_account() -> None:
    account = settings().account("corp")
    assert (account.kind, account.username, account.domain) == ("gmsa", "mdisvc$", "corp.contoso.com")
    assert settings().account("contoso").kind == "user"
    base = 'id = "x"\nkind = "gmsa"\ndomain_controllers = ["ldaps://dc"]\n'
    lookup = 'lookup_username = "r@corp.test"\nlookup_password_env = "X"\n'

    def problems(text: str) -> list[str]:
        with pytest.raises(ConfigError) as error:
            parse_settings("[[accounts]]\n" + text)
        return error.value.problems

    assert any(
        "ending in `$`" in p
        for p in problems(base + 'username = "mdisvc@corp.test"\ndomain = "corp.test"\n' + lookup)
    )
    assert any("needs domain" in p for p in problems(base + 'username = "mdisvc$"\n' + lookup))
    assert any(
        "needs lookup_username" in p for p in problems(base + 'username = "mdisvc$"\ndomain = "corp.test"\n')
    )


def test_a_pwd_last_set_in_the_future_needs_a_new_gmsa() -> None:
    """Samba refuses any pwdLastSet but 0 or -1, so this branch is proven on the verdict itself."""
    account = settings().account("corp")
    check = check_object(account, facts(pwd_last_set=NOW + timedelta(days=40)), NOW)
    assert check.status is Status.PROBLEM
    assert "in the future" in check.detail
    assert "atp-bot gmsa plan --account corp --gmsa NEWNAME" in check.fix
    assert check_object(account, facts(), NOW).status is Status.OK


def test_kds_root_key_verdicts() -> None:
    young = GmsaFacts(None, "DC=corp", kds=KdsKeys(True, (NOW - timedelta(hours=2),)))
    check = check_kds(young, NOW)
    assert check.status is Status.PROBLEM
    assert "Wait until 2026-11-30 20:00 UTC" in check.fix
    both = GmsaFacts(None, "DC=corp", kds=KdsKeys(True, (NOW - timedelta(days=9), NOW - timedelta(hours=2))))
    assert check_kds(both, NOW).status is Status.OK
    assert check_kds(GmsaFacts(None, "DC=corp", kds=KdsKeys(False)), NOW).status is Status.PROBLEM
    hidden = check_kds(GmsaFacts(None, "DC=corp", kds=KdsKeys(True, hidden=2)), NOW)
    assert (hidden.status, "2 KDS root key(s) exist" in hidden.detail) == (Status.UNKNOWN, True)


@pytest.mark.skipif(not Path(SYSTEM_PYTHON).exists(), reason="needs Samba's Python bindings")
def test_descriptors_encoded_by_samba_decode_to_their_principals() -> None:
    domain = "S-1-5-21-1-2-3"
    try:
        blob = security_descriptor(allow_sddl([f"{domain}-1105", "S-1-5-11"], [f"{domain}-1106"]), domain)
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"Samba's bindings unavailable: {exc}")
    membership = decode_membership(blob)
    assert membership.allowed == (f"{domain}-1105", "S-1-5-11")
    assert membership.denied == (f"{domain}-1106",)
    with pytest.raises(MembershipUnreadable):
        decode_membership(b"\x01\x00garbage")


def test_the_migration_plan_is_powershell_a_domain_admin_can_follow() -> None:
    config = settings()
    account = config.account("contoso")
    lines = migration_plan(account, sensor_scope(config, account), "mdisvc", "MDI-gMSA-Sensors")
    text = "\n".join(lines)
    assert "if (-not (Get-KdsRootKey)) { Add-KdsRootKey -EffectiveImmediately }" in lines
    assert "New-ADGroup -Name 'MDI-gMSA-Sensors' -GroupScope Universal -GroupCategory Security" in lines
    assert (
        "Add-ADGroupMember -Identity 'MDI-gMSA-Sensors' -Members (Get-ADComputer -Identity 'sensor01')"
        in lines
    )
    assert (
        "Add-ADGroupMember -Identity 'MDI-gMSA-Sensors' -Members "
        "(Get-ADComputer -Filter \"DNSHostName -eq 'dc02.contoso.local'\")"
    ) in lines
    assert (
        "-PrincipalsAllowedToRetrieveManagedPassword 'MDI-gMSA-Sensors' -KerberosEncryptionType AES128,AES256"
        in text
    )
    assert "generation unknown" in text  # atp-bot cannot tell a unified 3.x sensor yet: it says so
    assert 'tick "Group managed service account"' in text
    # Every line is either PowerShell to run or a comment.
    assert all(line.startswith(("#", "if ", "New-AD", "Add-AD")) for line in lines)


def test_the_plan_tells_unified_sensors_from_graph_and_leaves_them_out_of_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Graph's version tells the generation; a Graph-only sensor is planned too; Graph down: exit 3."""
    monkeypatch.setenv("ATP_BOT_TEST_GRAPH_SECRET", GRAPH_SECRET)
    path = tmp_path / "atp-bot.toml"
    with GraphEmulator(tmp_path / "graph", client_secret=GRAPH_SECRET) as graph:
        graph.add_sensor("sensor01", domain="contoso.local", version="3.1.0.0")
        graph.add_sensor("dc03", domain="contoso.local", version="3.0.1234.0")
        graph.add_sensor("dc04", domain="contoso.local")
        graph.add_sensor("dc09", domain="fabrikam.test")
        path.write_text(tomli_w.dumps(tomllib.loads(GMSA) | graph_config(graph)))
        result = run_cli(path, "gmsa", "plan", "--account", "contoso", "--gmsa", "mdisvc")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    members = [line for line in lines if line.startswith("Add-ADGroupMember")]
    assert members == [
        "Add-ADGroupMember -Identity 'MDI-gMSA-Sensors' -Members (Get-ADComputer -Identity 'dc04')",
        "Add-ADGroupMember -Identity 'MDI-gMSA-Sensors' -Members "
        "(Get-ADComputer -Filter \"DNSHostName -eq 'dc02.contoso.local'\")",
    ]
    assert "#   dc04: classic 2.x sensor: uses the gMSA (in MDI-gMSA-Sensors above)" in lines
    for unified in ("sensor01", "dc03"):
        assert (
            f"#   {unified}: unified 3.x sensor: runs as LocalSystem and needs no DSA at all "
            "(not added to MDI-gMSA-Sensors)"
        ) in lines
    assert any(line.startswith("#   dc02.contoso.local: generation unknown") for line in lines)
    assert "dc09" not in result.stdout  # another domain's sensor
    down = run_cli(path, "gmsa", "plan", "--account", "contoso", "--gmsa", "mdisvc")
    assert down.returncode == 3, down.stderr
    assert "atp-bot: Graph: cannot sign in" in down.stderr
    assert "Graph's sensor list could not be read" in down.stdout
    assert "(Get-ADComputer -Identity 'sensor01')" in down.stdout  # [[sensors]] still planned
    assert GRAPH_SECRET not in result.stdout + result.stderr + down.stdout + down.stderr


def test_password_changes_of_a_gmsa_are_refused_everywhere(tmp_path: Path) -> None:
    config = settings()
    refusal = password_refusal(config.account("corp"))
    assert refusal is not None and "Active Directory rotates its password" in refusal
    assert password_refusal(config.account("contoso")) is None
    path = tmp_path / "atp-bot.toml"
    path.write_text(GMSA)
    for command in ("set-password", "test-connection"):
        result = run_cli(path, command, "--account", "corp", "--password-stdin", stdin="Whatever-1\n")
        assert result.returncode == 2, result.stderr
        assert "atp-bot gmsa check --account corp" in result.stderr
    values = {
        Block.PASSWORD: {Action.PASSWORD: {"value": "Whatever-1x!"}},
        Block.CONFIRM: {Action.CONFIRM: {"value": "Whatever-1x!"}},
    }
    errors = validate(values, PasswordModalOrigin(account_id="corp", channel_id="C1"), config)
    assert isinstance(errors, dict) and errors[Block.ACCOUNT] == refusal


def test_gmsa_cli_usage_errors(tmp_path: Path) -> None:
    path = tmp_path / "atp-bot.toml"
    path.write_text(GMSA)
    shown = run_cli(path, "config", "check").stdout
    assert "gMSA of corp.contoso.com, read as atp-lookup@corp.contoso.com" in shown
    result = run_cli(path, "gmsa", "check", "--account", "contoso")
    assert (result.returncode, 'account contoso is not a gMSA (kind = "user")' in result.stderr) == (2, True)
    result = run_cli(path, "gmsa", "plan", "--account", "contoso", "--gmsa", "bad name!")
    assert (result.returncode, "--gmsa 'bad name!'" in result.stderr) == (2, True)
    result = run_cli(path, "gmsa", "plan", "--account", "contoso", "--gmsa", "mdisvc")
    assert result.returncode == 0
    assert "New-ADServiceAccount -Name 'mdisvc'" in result.stdout


def test_an_unexpected_failure_of_the_slack_check_is_told_not_left_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hourglass reply is replaced by one line, whatever breaks on the executor."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a check bug")

    monkeypatch.setattr(commands.gmsa, "check_gmsa", broken)
    config = tomllib.loads(GMSA) | {"state_dir": str(tmp_path / "state")}
    with running_lab("http", modules=MODULES, config=config) as lab:
        assert "Checking the gMSA mdisvc$" in lab.emulator.slash_command("gmsa").text

        def told() -> str | None:
            texts = [c.args.get("text", "") for c in lab.emulator.calls("response_url")]
            return next((t for t in texts if "Something went wrong" in t), None)

        assert wait_for(told, timeout=30) == ":warning: Something went wrong: RuntimeError: a check bug."


def test_the_change_path_itself_refuses_a_gmsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: whatever face calls it, the change path never tests or saves a gMSA password."""
    monkeypatch.setenv("ATP_BOT_STORE_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    config = parse_settings(f'state_dir = "{tmp_path / "state"}"\n' + GMSA)
    init_embedded_store(config)
    outcome = open_changes(config).change("corp", SecretStr(CANARY), "cli:test")
    assert (outcome.status, outcome.saved_ok) == (ChangeStatus.NOT_STARTED, False)
    assert outcome.message == password_refusal(config.account("corp"))


def test_the_monitor_says_why_a_gmsa_verdict_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATP_BOT_TEST_GMSA_LOOKUP", raising=False)
    config = parse_settings(GMSA.replace('account = "contoso"', 'account = "corp"'))
    now = datetime.now(UTC)
    errors = CredentialErrors(1, now, now, "GMSA password could not be retrieved [errorCode=AccessDenied]",
                              "x.log", 10, True, False, False)  # fmt: skip
    result = SensorResult("sensor01", "https://sensor01:5986/wsman", "mdi", "corp", now, 0.1, (), errors)
    verdicts = gmsa_alert_verdicts(config, [result])
    assert verdicts == {
        "corp": "`gmsa check` cannot run: account corp: lookup_password: environment variable "
        "ATP_BOT_TEST_GMSA_LOOKUP is not set"
    }
    assert mentions_gmsa(errors.sample) and not mentions_gmsa("The supplied credential is invalid.")
    # The host shows the unified sensor (its process, no classic service): it retrieves no gMSA password,
    # so its log line is no reason to read AD for a verdict.
    unified = replace(result, sense_identity=True)
    assert gmsa_alert_verdicts(config, [unified]) == {}


def test_exit_codes_problem_first_then_unreachable_then_unknown() -> None:
    ok, problem = Check("object", Status.OK, ""), Check("object", Status.PROBLEM, "")
    down = Check("host:s1", Status.UNKNOWN, "", unreachable=True)
    unknown = Check("kds_root_key", Status.UNKNOWN, "")

    def code(*checks: Check) -> int:
        return report_exit_code([GmsaReport("corp", checks)])

    assert (code(ok), code(ok, problem, down), code(ok, down, unknown), code(ok, unknown)) == (0, 1, 3, 1)


def test_the_expiry_check_leaves_a_gmsa_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """AD rotates a gMSA's password: no daily expiry read (it would only fail: a gMSA is no person)."""
    monkeypatch.delenv("ATP_BOT_STORE_KEY", raising=False)
    account = (
        '[[accounts]]\nid = "svc"\nkind = "gmsa"\nusername = "mdisvc$"\ndomain = "corp.test"\n'
        'domain_controllers = ["ldaps://127.0.0.1:1"]\nlookup_username = "r@corp.test"\n'
        'lookup_password_env = "ATP_BOT_TEST_GMSA_LOOKUP"\n'
    )
    runtime = make_runtime(monitor_settings(tmp_path, None, account=account), RecordingNotifier(), Clock())
    caplog.set_level(logging.INFO)
    assert run_expiry_check(runtime) == []
    assert not [r for r in caplog.records if "expiry" in r.getMessage()]
