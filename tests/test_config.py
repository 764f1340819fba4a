"""The configuration file: parsing, precise errors, secrets from env/files only, `config check`."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from bot.cli import main
from bot.config import AccountName, ConfigError, DomainController, Settings, load_settings, parse_settings
from bot.state import state_dir
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
