"""The configuration file: parsing, precise errors, secrets from env/files only, `config check`."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import get_args

import pytest
import yaml
from pydantic import BaseModel

from bot.cli import main
from bot.config import AccountName, ConfigError, DomainController, Settings, load_settings, parse_settings
from bot.config.messages import TomlLines
from bot.infra.state_dir import state_dir
from lab.tlsca import TlsFiles, issue_ca_and_server_cert, issue_client_cert

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "atp-bot.toml"

MINIMAL = """
[[accounts]]
id = "contoso"
username = "svc-atp@contoso.local"
domain_controllers = ["ldaps://dc01.contoso.local:636", "ldaps://dc02.contoso.local:636"]
ca_file = "/etc/atp-bot/contoso-ca.pem"
tls_verify = true
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text)
    return caught.value.problems


def test_the_public_contract_shape_parses() -> None:
    settings = parse_settings(MINIMAL)
    account = settings.account("contoso")
    assert account.name == AccountName("svc-atp@contoso.local", "svc-atp", "contoso.local", "upn")
    assert [dc.port for dc in account.dcs] == [636, 636]
    assert account.ca_file == Path("/etc/atp-bot/contoso-ca.pem")


def test_the_example_config_is_valid() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.accounts[0].id == "contoso"


def test_down_level_names_and_starttls_urls() -> None:
    assert AccountName.parse("CONTOSO\\svc-atp").domain == "CONTOSO"
    dc = DomainController.parse("ldap://dc01.contoso.local")
    assert (dc.port, dc.use_ssl) == (389, False)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            'domain_controllers = ["http://dc01"]',
            "accounts[0].domain_controllers: 'http://dc01': scheme must be",
        ),
        ("domain_controllers = []", "accounts[0].domain_controllers: must have at least 1 item(s)"),
        (
            'domain_controllers = ["ldaps://dc01:99999"]',
            "accounts[0].domain_controllers: 'ldaps://dc01:99999': invalid port",
        ),
        ('domain_controllers = ["ldaps://dc01/base"]', "only scheme, host and port"),
    ],
)
def test_bad_domain_controllers_are_located(snippet: str, expected: str) -> None:
    text = f'[[accounts]]\nid = "a"\nusername = "u@d"\n{snippet}\n'
    assert any(expected in p for p in problems(text)), problems(text)


def test_every_problem_is_reported_at_once() -> None:
    text = """
[[accounts]]
id = "Bad Id"
username = "no-domain"
domain_controllers = ["ldaps://dc"]
tls_verfy = false
"""
    found = problems(text)
    assert any(p.startswith("accounts[0].id:") for p in found)
    assert any(p.startswith("accounts[0].username:") and "UPN" in p for p in found)
    assert any(p.startswith("accounts[0].tls_verfy:") for p in found)


def test_a_password_key_is_refused() -> None:
    found = problems(MINIMAL + 'password = "hunter2"\n')
    assert len(found) == 1
    assert found[0].startswith("accounts[0].password: unknown key (secrets are never written in this file")
    assert found[0].endswith("(<config>, line 8)")


def test_duplicate_account_ids_and_unknown_sensor_accounts() -> None:
    assert any("account id used twice: contoso" in p for p in problems(MINIMAL + MINIMAL))
    sensor = '\n[[sensors]]\nname = "s1"\nendpoint = "https://s1:5986/wsman"\naccount = "nope"\n'
    assert any("no account with id 'nope'" in p for p in problems(MINIMAL + sensor))


def test_lookup_credential_must_be_complete() -> None:
    assert any("go together" in p for p in problems(MINIMAL + 'lookup_username = "r@contoso.local"\n'))


def test_invalid_toml_is_a_clear_error() -> None:
    assert problems("[[accounts]\n")[0].startswith("<config>: not valid TOML")


def test_lookup_password_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "lookup"
    secret_file.write_text("from-file\n")
    settings = parse_settings(
        MINIMAL + f'lookup_username = "r@contoso.local"\nlookup_password_file = "{secret_file}"\n'
    )
    assert settings.accounts[0].lookup_password().get_secret_value() == "from-file"
    settings = parse_settings(
        MINIMAL + 'lookup_username = "r@contoso.local"\nlookup_password_env = "LK_PW"\n'
    )
    with pytest.raises(ConfigError, match="environment variable LK_PW is not set"):
        settings.accounts[0].lookup_password()
    monkeypatch.setenv("LK_PW", "from-env")
    assert settings.accounts[0].lookup_password().get_secret_value() == "from-env"


def test_state_dir_is_created_private(tmp_path: Path) -> None:
    settings = Settings.model_validate({**parse_settings(MINIMAL).model_dump(), "state_dir": tmp_path / "s"})
    path = state_dir(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_state_dir_defaults_to_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_dir(parse_settings(MINIMAL)) == tmp_path / "atp-bot"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[TlsFiles, TlsFiles]:
    """A CA bundle (with a server certificate) and a client certificate with its key, as real PEM files."""
    directory = tmp_path_factory.mktemp("pki")
    return issue_ca_and_server_cert(directory, ["localhost"], []), issue_client_cert(directory, "atp")


def with_real_ca(text: str, pki: tuple[TlsFiles, TlsFiles]) -> str:
    return text.replace("/etc/atp-bot/contoso-ca.pem", str(pki[0].ca_file))


def test_config_check_summarises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pki: tuple[TlsFiles, TlsFiles]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(with_real_ca(MINIMAL, pki).replace("tls_verify = true", "tls_verify = false"))
    assert main(["--config", str(path), "config", "check"]) == 0
    out, err = capsys.readouterr()
    assert "configuration OK" in out
    assert "contoso: svc-atp@contoso.local (TLS NOT VERIFIED" in out
    assert "ldaps://dc02.contoso.local:636" in out
    assert "TLS certificate verification is disabled" in err


def test_config_path_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pki: tuple[TlsFiles, TlsFiles]
) -> None:
    path = tmp_path / "from-env.toml"
    path.write_text(with_real_ca(MINIMAL, pki))
    monkeypatch.setenv("ATP_BOT_CONFIG", str(path))
    assert main(["config", "check"]) == 0


def test_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[accounts]]\nid = "a"\nusername = "x"\ndomain_controllers = ["ldaps://dc"]\n')
    assert main(["--config", str(path), "config", "check"]) == 2
    assert "configuration error: accounts[0].username:" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.toml"), "config", "check"]) == 2


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["test-connection", "--help"], ["config", "check", "--help"], ["--version"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0
    assert "atp-bot" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["no-such-command"])
    assert done.value.code == 2


def _field_names(model: type[BaseModel]) -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        names.add(name)
        for inner in get_args(field.annotation) or (field.annotation,):
            for candidate in get_args(inner) or (inner,):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    names |= _field_names(candidate)
    return names


def test_the_example_config_mentions_every_key() -> None:
    """examples/atp-bot.toml documents every key (commented or not), so it never falls behind the code."""
    text = EXAMPLE.read_text()
    keys = re.findall(r"\b([a-z_]+) = ", text)
    tables = re.findall(r"\[+([a-z_.]+)\]+", text)
    mentioned = {*keys, *(part for table in tables for part in table.split("."))}
    assert _field_names(Settings) - mentioned == set()


# --- config check as a gate: everything that can fail later, refused now with key, file and line -------

GATE_ENV = {"ATP_TEST_WINRM_PW": "w", "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pki: tuple[TlsFiles, TlsFiles]) -> dict[str, Path]:
    """A configuration that passes `config check --strict`, and the files its variants point at."""
    for name, value in GATE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ATP_TEST_UNSET_VAR", raising=False)
    files = {
        "ca": pki[0].ca_file,
        "cert": pki[1].cert_file,
        "key": pki[1].key_file,
        "other_key": pki[0].key_file,
    }
    for name, content, mode in (
        ("secret", "s3cret\n", 0o600),
        ("open_secret", "s\n", 0o644),
        ("empty", "", 0o600),
    ):
        files[name] = tmp_path / name
        files[name].write_text(content)
        files[name].chmod(mode)
    files["config"] = tmp_path / "atp-bot.toml"
    files["config"].write_text(gate_text(tmp_path, files))
    return files


def gate_text(tmp_path: Path, files: dict[str, Path]) -> str:
    return "\n".join(
        [
            f'state_dir = "{tmp_path / "state"}"',  # line 1
            "[[accounts]]",
            'id = "corp"',
            'username = "svc@corp.test"',
            'domain_controllers = ["ldaps://dc1.corp.test"]',  # line 5
            f'ca_file = "{files["ca"]}"',
            "tls_verify = true",
            "connect_timeout = 5.0",
            'lookup_username = "ro@corp.test"',
            f'lookup_password_file = "{files["secret"]}"',  # line 10
            "[sensor_checks]",
            "pool_size = 32",
            "[store]",
            'backend = "embedded"',
            "[winrm]",  # line 15
            "username = 'CORP\\checker'",
            'password_env = "ATP_TEST_WINRM_PW"',
            'transport = "ntlm"',
            "[[sensors]]",
            'name = "s1"',  # line 20
            'endpoint = "https://s1.corp.test:5986/wsman"',
            'account = "corp"',
            "[slack]",  # Socket Mode with the defaults
        ]
    )


def check(config: Path, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), "config", "check", *options])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_gate_configuration_passes_strict(
    gate: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(gate["config"], capsys, "--strict") == (0, check(gate["config"], capsys)[1], "")


CLIENT_CERT = 'transport = "certificate"\ncert_pem = "{cert}"\ncert_key_pem = "{key}"'
BROKEN = {
    "ca_file missing": (
        "{ca}",
        "/nonexistent/ca.pem",
        "accounts[0].ca_file: /nonexistent/ca.pem does not exist",
        6,
    ),
    "ca_file not PEM": ("{ca}", "{secret}", "accounts[0].ca_file: {secret} holds no PEM certificate", 6),
    "secret file missing": (
        "{secret}",
        "/nonexistent/pw",
        "accounts[0].lookup_password_file: /nonexistent/pw does not exist",
        10,
    ),
    "secret file empty": ("{secret}", "{empty}", "accounts[0].lookup_password_file: {empty} is empty", 10),
    "secret file readable by others": (
        "{secret}",
        "{open_secret}",
        "accounts[0].lookup_password_file: {open_secret} is accessible by others (mode 0644): a secret "
        "must be readable by the service's user only; fix it with: chmod 600 {open_secret}",
        10,
    ),
    "relative state_dir": (
        'state_dir = "',
        'state_dir = "state" #',
        "state_dir: 'state' is relative: use an absolute path",
        1,
    ),
    "string for a bool": (
        "tls_verify = true",
        'tls_verify = "yes"',
        "accounts[0].tls_verify: must be true or false, without quotes",
        7,
    ),
    "string for a number": (
        "connect_timeout = 5.0",
        'connect_timeout = "5"',
        "accounts[0].connect_timeout: must be a number, without quotes",
        8,
    ),
    "string for an int": (
        "pool_size = 32",
        'pool_size = "32"',
        "sensor_checks.pool_size: must be a whole number, without quotes",
        12,
    ),
    "unknown backend": (
        '"embedded"',
        '"vault"',
        "store.backend: must be one of embedded, ata-center, command",
        14,
    ),
    "misspelt key": (
        "connect_timeout = 5.0",
        "connect_timout = 5.0",
        "accounts[0].connect_timout: unknown key; did you mean `connect_timeout`?",
        8,
    ),
    "unset variable": (
        "ATP_TEST_WINRM_PW",
        "ATP_TEST_UNSET_VAR",
        "winrm.password_env: environment variable ATP_TEST_UNSET_VAR is not set: set it where the service "
        "gets its environment",
        17,
    ),
    "basic over http": (
        'transport = "ntlm"',
        'transport = "basic"',
        "sensors[0].endpoint: transport 'basic' over http:// is refused: it sends the WinRM password in "
        "clear text",
        21,
    ),
    "certificate over http": (
        'transport = "ntlm"',
        CLIENT_CERT,
        "sensors[0].endpoint: transport 'certificate' over http:// is refused",
        23,
    ),
    "client certificate missing": (
        "{cert}",
        "/nonexistent/cert.pem",
        "winrm.cert_pem: /nonexistent/cert.pem does not exist",
        19,
    ),
    "client certificate and another key": (
        "{key}",
        "{other_key}",
        "winrm.cert_pem: {cert} and {other_key} are not a PEM certificate and its matching, unencrypted "
        "private key",
        19,
    ),
    "unknown sensor account": (
        'account = "corp"',
        'account = "nope"',
        "sensors[0].account: no account with id 'nope'",
        22,
    ),
    "sensor without a WinRM username": (
        "username = 'CORP\\checker'",
        "",
        "sensors[s1]: no WinRM username (set [winrm].username)",
        None,
    ),
    "TOML syntax": (
        "tls_verify = true",
        "tls_verify = yes",
        "not valid TOML: Invalid value (at line 7, column 14)",
        None,
    ),
}


@pytest.mark.parametrize(("old", "new", "expected", "line"), BROKEN.values(), ids=BROKEN.keys())
def test_config_check_strict_refuses_what_would_fail_later(
    gate: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    old: str,
    new: str,
    expected: str,
    line: int | None,
) -> None:
    config = gate["config"]
    text = config.read_text()
    if "certificate" in new or "{cert}" in old or "{key}" in old:
        text = text.replace('transport = "ntlm"', CLIENT_CERT.format(**gate))
    if "http://" in expected:
        text = text.replace("https://s1.corp.test:5986", "http://s1.corp.test:5985")
    config.write_text(text.replace(old.format(**gate), new.format(**gate), 1))
    code, out, err = check(config, capsys, "--strict")
    assert (code, out) == (2, "")
    problem = next(p for p in err.splitlines() if p.startswith("atp-bot: configuration error: "))
    assert expected.format(**gate) in problem
    if line is not None:
        assert problem.endswith(f"({config}, line {line})"), problem
    assert "Traceback" not in err


def test_without_strict_the_environment_is_a_warning(
    gate: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator's shell may lack the service's environment: only --strict fails on it."""
    monkeypatch.delenv("SLACK_APP_TOKEN")
    config = gate["config"]
    config.write_text(config.read_text().replace(str(gate["secret"]), str(gate["open_secret"])))
    code, out, err = check(config, capsys)
    assert code == 0
    assert "configuration OK" in out
    assert "atp-bot: warning: slack: environment variable SLACK_APP_TOKEN is not set" in err
    assert f"chmod 600 {gate['open_secret']}" in err
    assert err.count("(an error with --strict)") == 2
    code, out, err = check(config, capsys, "--strict")
    assert (code, out) == (2, "")
    assert err.count("atp-bot: configuration error:") == 2


SLACK_FACES = {
    "no face": (None, set()),
    "socket mode": ("[slack]", {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"}),
    "http mode": ('[slack]\nmode = "http"', {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"}),
}


@pytest.mark.parametrize(("table", "needed"), SLACK_FACES.values(), ids=SLACK_FACES.keys())
def test_config_check_strict_needs_the_tokens_of_the_configured_faces_only(
    gate: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    table: str | None,
    needed: set[str],
) -> None:
    """A [slack] table makes Slack a face, in its mode's tokens; without one the command line only."""
    config = gate["config"]
    config.write_text(config.read_text().replace("[slack]", table or ""))
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = check(config, capsys, "--strict")
    missing = {name for name in re.findall(r"environment variable (SLACK_\w+) is not set", err)}
    assert (code, missing) == (2 if needed else 0, needed), err
    for name in needed:
        monkeypatch.setenv(name, "xoxb-1")
    code, out, err = check(config, capsys, "--strict")
    assert (code, err) == (0, "")
    shown = next(line for line in out.splitlines() if line.startswith("slack: "))
    if table is None:
        assert shown == "slack: not configured (no [slack] table: the command line only; atp-bot run refuses)"
    else:
        assert shown.startswith("slack: socket mode" if "http" not in table else "slack: http mode")


def test_run_without_a_slack_face_refuses_to_start(
    gate: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = gate["config"]
    config.write_text(config.read_text().replace("[slack]", ""))
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name)
    assert main(["--config", str(config), "run"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "atp-bot: configuration error: slack: atp-bot run serves Slack, and the file has no [slack] table "
        "(without one only the command line is used); add [slack] with its settings (an empty table means "
        "Socket Mode with the defaults)\n"
    )
    assert not (gate["config"].parent / "state").exists()  # nothing started


def test_every_command_refuses_a_missing_file_with_the_same_message(
    gate: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = gate["config"]
    config.write_text(config.read_text().replace(str(gate["ca"]), "/nonexistent/ca.pem"))
    _, _, checked = check(config, capsys)
    refusal = next(line for line in checked.splitlines() if "ca_file" in line)
    for command in (["store", "status"], ["history"], ["test-connection", "--account", "corp"], ["run"]):
        assert main(["--config", str(config), *command]) == 2, command
        assert capsys.readouterr().err == refusal + "\n", command


def test_config_check_warns_of_a_sensor_without_account_among_several(
    gate: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = gate["config"]
    second = (
        '[[accounts]]\nid = "lab"\nusername = "svc@lab.test"\ndomain_controllers = ["ldaps://dc1.lab.test"]\n'
    )
    text = (
        config.read_text()
        .replace('account = "corp"', "")
        .replace("[sensor_checks]", second + "[sensor_checks]")
    )
    config.write_text(text)
    code, _, err = check(config, capsys, "--strict")
    assert code == 0
    assert (
        "atp-bot: warning: sensors[0]: sensor s1 names no account while 2 are configured: it is checked "
        'after a change of any of them; set account = "<id>" to the one it uses'
    ) in err
    assert f"({config}, line 23)" in err


def test_insecure_settings_are_printed_by_config_check_and_logged_at_every_start(
    gate: dict[str, Path], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    config = gate["config"]
    text = config.read_text().replace("tls_verify = true", "tls_verify = false")
    text = text.replace("https://s1.corp.test:5986", "http://s1.corp.test:5985")
    text += (
        '\n[[sensors]]\nname = "s2"\nendpoint = "https://s2.corp.test:5986/wsman"\ncert_validation = false\n'
    )
    text += '[store.ata_center]\nurl = "https://center"\nusername = "C\\\\u"\n'
    text += 'password_env = "ATP_TEST_WINRM_PW"\ntls_verify = false\n'
    config.write_text(text.replace('backend = "embedded"', 'backend = "ata-center"'))
    expected = [
        "account corp: TLS certificate verification is disabled (tls_verify = false)",
        "sensor s1: NTLM over http:// (http://s1.corp.test:5985/wsman); messages are sealed, but the host is "
        "not authenticated: prefer https://",
        "sensor s2: WinRM certificate validation is disabled (cert_validation = false)",
        "store.ata_center: TLS certificate verification is disabled (tls_verify = false)",
    ]
    code, _, err = check(config, capsys, "--strict")
    assert code == 0
    told = [line.removeprefix("atp-bot: warning: ") for line in err.splitlines()]
    assert told[0].startswith('store.backend: "ata-center": Microsoft ATA\'s extended support ended')
    assert told[1:] == expected
    main(["--config", str(config), "history"])  # contacts no sensor: not their transport
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        line for line in expected if not line.startswith("sensor ")
    ]


def test_config_check_warns_that_the_ata_center_is_out_of_support(
    gate: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """ATA's extended support ended in January 2026: `config check` says so, and names the way out, but
    (with `--strict` too) refuses nothing, so that a running ATA keeps its credential store."""
    config = gate["config"]
    text = config.read_text().replace('backend = "embedded"', 'backend = "ata-center"')
    text += '\n[store.ata_center]\nurl = "https://center"\nusername = "C\\\\u"\n'
    text += 'password_env = "ATP_TEST_WINRM_PW"\n'
    config.write_text(text)
    for options in ((), ("--strict",)):
        code, out, err = check(config, capsys, *options)
        assert (code, out.splitlines()[:1]) == (0, ["configuration OK"])
        assert err == (
            'atp-bot: warning: store.backend: "ata-center": Microsoft ATA\'s extended support ended in '
            "January 2026 (no security updates since); migrate to Microsoft Defender for Identity, and this "
            f'store to backend "embedded" or "command" (docs/store.md) ({config}, line 14)\n'
        )
    config.write_text(gate_text(config.parent, gate))
    assert "January 2026" not in check(config, capsys)[2]


def test_deployments_gate_the_bot_on_config_check_strict() -> None:
    """systemd's ExecStartPre, Compose's one-shot service and Kubernetes' init container run the gate."""
    deploy = EXAMPLE.parent.parent / "deploy"
    unit = (deploy / "atp-bot.service").read_text(encoding="utf-8").splitlines()
    assert "ExecStartPre=/opt/atp-bot/bin/atp-bot config check --strict" in unit
    compose = yaml.safe_load((deploy / "compose.yaml").read_text(encoding="utf-8"))["services"]
    assert compose["config-check"]["command"] == ["config", "check", "--strict"]
    assert compose["config-check"]["image"] == compose["atp-bot"]["image"]
    assert compose["config-check"]["env_file"] == compose["atp-bot"]["env_file"]
    assert compose["atp-bot"]["depends_on"] == {
        "config-check": {"condition": "service_completed_successfully"}
    }
    pod = yaml.safe_load((deploy / "kubernetes" / "deployment.yaml").read_text(encoding="utf-8"))
    pod = pod["spec"]["template"]["spec"]
    (gate,), (bot,) = pod["initContainers"], pod["containers"]
    assert gate["args"] == ["config", "check", "--strict"]
    for key in ("image", "envFrom", "env", "securityContext"):
        assert gate[key] == bot[key], key


def test_a_secret_file_only_the_service_sees_is_a_warning_in_a_shell(
    gate: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """systemd's credentials directory exists only inside the service: from a shell, one-shot commands
    work and `config check` warns; `--strict` (ExecStartPre, inside the service's view) refuses."""
    config = gate["config"]
    service_only = "/run/credentials/atp-bot.service/lookup-password"
    config.write_text(config.read_text().replace(str(gate["secret"]), service_only))
    code, _, err = check(config, capsys)
    assert code == 0
    assert f"accounts[0].lookup_password_file: {service_only} does not exist" in err
    assert "(an error with --strict)" in err
    assert main(["--config", str(config), "history"]) == 0
    assert check(config, capsys, "--strict")[0] == 2


def test_lines_are_found_in_sub_tables_of_array_elements_and_not_inside_multi_line_strings() -> None:
    text = (
        '[[sensors]]\nname = "a"\n[[sensors]]\nname = "b"\nlog_dir = """\nkind = "x"\n"""\n'
        '[store.ata_center]\nurl = "https://c"\n[[accounts]]\n[accounts.extra]\nkey = 1\n'
    )
    lines = TomlLines(text)
    assert lines.line(("sensors", 1, "name")) == 4
    assert lines.line(("sensors", 1, "log_dir")) == 5
    assert lines.line(("sensors", 1, "kind")) == 3  # not the line inside the string: its table's line
    assert lines.line(("store", "ata_center", "url")) == 9
    assert lines.line(("accounts", 0, "extra", "key")) == 12
    assert lines.line(("graph", "enabled")) is None
