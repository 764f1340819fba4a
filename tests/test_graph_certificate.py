"""Graph sign-in with a certificate (MSAL's certificate credential) against the Graph emulator, which checks
the client assertion as Entra ID does (lab.graph_assertion)."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bot.cli import main
from lab.graph import GraphEmulator
from lab.graph_assertion import AppCertificate, assertion_refusal, issue_app_certificate
from tests.conftest import CANARY, assert_no_canary
from tests.monitor_tools import toml_str
from tests.test_sensor_inventory import write_config


@pytest.fixture
def app(tmp_path: Path) -> AppCertificate:
    return issue_app_certificate(tmp_path / "app")


@pytest.fixture
def graph(tmp_path: Path, app: AppCertificate, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphEmulator]:
    monkeypatch.setenv("ATP_BOT_TEST_WINRM", "unused")
    with GraphEmulator(tmp_path / "graph", client_certificate=app.pem) as emulator:
        emulator.add_sensor("DC1")
        yield emulator


def certificate_toml(graph: GraphEmulator, cert: Path, key: Path, extra: str = "") -> str:
    return (
        "[graph]\ndiscover_sensors = true\n"
        f"tenant_id = {toml_str(graph.tenant_id)}\nclient_id = {toml_str(graph.client_id)}\n"
        f"client_certificate_file = {toml_str(cert)}\nclient_certificate_key_file = {toml_str(key)}\n"
        f"authority_url = {toml_str(graph.authority_url)}\ngraph_url = {toml_str(graph.graph_url)}\n"
        f"ca_file = {toml_str(graph.tls.ca_file)}\ntimeout = 10\n{extra}"
    )


def key_lines(certificate: AppCertificate) -> list[str]:
    """The base64 lines of the private key: none may appear anywhere."""
    return [line for line in certificate.key_file.read_text().splitlines() if not line.startswith("-----")]


def sensors(config: Path, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, str, str]:
    code = main(["-v", "--config", str(config), "sensors", *options])
    out, err = capsys.readouterr()
    return code, out, err


def test_atp_bot_sensors_signs_in_with_the_certificate(
    tmp_path: Path,
    graph: GraphEmulator,
    app: AppCertificate,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    config = write_config(tmp_path, certificate_toml(graph, app.cert_file, app.key_file))
    code, out, err = sensors(config, capsys)
    assert code == 0, err
    assert out.splitlines()[1].split()[:3] == ["DC1", "contoso.test", "graph"]
    assert [(r.method, r.status) for r in graph.records if r.path == graph.token_path] == [("POST", 200)]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for line in key_lines(app):
        assert line not in out + err + logged


def test_a_certificate_entra_does_not_know_is_refused_clearly(
    tmp_path: Path, graph: GraphEmulator, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A pair that is not the app's registered certificate (say, a renewal never uploaded): AADSTS700027,
    told with what to check; Graph could not be used, so exit 3 like a wrong client secret."""
    caplog.set_level("DEBUG")
    other = issue_app_certificate(tmp_path / "other", "renewed")
    config = write_config(tmp_path, certificate_toml(graph, other.cert_file, other.key_file))
    code, out, err = sensors(config, capsys)
    assert code == 3, err
    assert (
        "refused: invalid_client AADSTS700027 (check tenant_id, client_id and the certificate registered for "
        "the app (client_certificate_file))"
    ) in err
    assert "Traceback" not in err
    logged = "\n".join(r.getMessage() + str(r.exc_text or "") for r in caplog.records)
    for line in key_lines(other):
        assert line not in out + err + logged


def test_a_key_that_is_not_the_certificates_is_a_configuration_error(
    tmp_path: Path, graph: GraphEmulator, app: AppCertificate, capsys: pytest.CaptureFixture[str]
) -> None:
    other = issue_app_certificate(tmp_path / "other", "other")
    config = write_config(tmp_path, certificate_toml(graph, app.cert_file, other.key_file))
    expected = (
        f"{app.cert_file} and {other.key_file} are not a PEM certificate and its matching, unencrypted "
        "private key"
    )
    code, _, err = sensors(config, capsys)
    assert code == 2 and expected in err, err
    assert graph.records == []  # refused before anything was sent
    assert main(["--config", str(config), "config", "check"]) == 2
    assert expected in capsys.readouterr().err


def test_the_key_file_is_the_service_users_alone(
    tmp_path: Path, graph: GraphEmulator, app: AppCertificate, capsys: pytest.CaptureFixture[str]
) -> None:
    app.key_file.chmod(0o640)
    config = write_config(tmp_path, certificate_toml(graph, app.cert_file, app.key_file))
    code, _, err = sensors(config, capsys)
    assert code == 2, err
    assert (
        f"graph.client_certificate_key_file: {app.key_file} is accessible by group or others (mode 0640)"
        in err
    )
    assert f"chmod 600 {app.key_file}" in err
    assert graph.records == []
    assert main(["--config", str(config), "config", "check", "--strict"]) == 2
    assert f"chmod 600 {app.key_file}" in capsys.readouterr().err


def test_a_malformed_key_never_shows_what_it_holds(
    tmp_path: Path,
    graph: GraphEmulator,
    app: AppCertificate,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    app.key_file.write_text(f"-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n")
    config = write_config(tmp_path, certificate_toml(graph, app.cert_file, app.key_file))
    code, out, err = sensors(config, capsys)
    assert code == 2 and "are not a PEM certificate and its matching, unencrypted private key" in err
    assert_no_canary(caplog, out, err)


CONFIG_ERRORS = {
    "secret and certificate": (
        'client_secret_env = "ATP_BOT_TEST_GRAPH_SECRET"\n',
        "graph: sign in with a client secret (client_secret_env or client_secret_file) or a certificate "
        "(client_certificate_file and client_certificate_key_file), not both",
    ),
    "certificate without key": (
        None,
        "graph: client_certificate_file and client_certificate_key_file go together",
    ),
}


@pytest.mark.parametrize(("extra", "expected"), CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
def test_one_way_to_sign_in_or_a_clear_configuration_error(
    tmp_path: Path,
    graph: GraphEmulator,
    app: AppCertificate,
    capsys: pytest.CaptureFixture[str],
    extra: str | None,
    expected: str,
) -> None:
    text = certificate_toml(graph, app.cert_file, app.key_file, extra or "")
    if extra is None:
        text = text.replace(f"client_certificate_key_file = {toml_str(app.key_file)}\n", "")
    config = write_config(tmp_path, text)
    assert main(["--config", str(config), "config", "check"]) == 2
    assert expected in capsys.readouterr().err
    without = text.replace(f"client_certificate_file = {toml_str(app.cert_file)}\n", "")
    without = without.replace(f"client_certificate_key_file = {toml_str(app.key_file)}\n", "")
    config.write_text(config.read_text().replace(text, without.replace(extra or "", "")))
    assert main(["--config", str(config), "config", "check"]) == 2
    assert (
        "discover_sensors = true needs client_secret_env or client_secret_file (or client_certificate_file "
        "and client_certificate_key_file)"
    ) in capsys.readouterr().err


# --- the emulator refuses what Entra ID refuses -------------------------------------------------------

ENDPOINT = "https://login.test/tenant/oauth2/v2.0/token"
CLIENT = "11111111-2222-3333-4444-555555555555"


def signed(app: AppCertificate, *, headers: dict[str, str] | None = None, **claims: object) -> str:
    der = x509.load_pem_x509_certificate(app.pem).public_bytes(serialization.Encoding.DER)
    x5t = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    payload = {"aud": ENDPOINT, "iss": CLIENT, "sub": CLIENT, "exp": time.time() + 600, **claims}
    return jwt.encode(payload, app.key_file.read_bytes(), "PS256", headers=headers or {"x5t#S256": x5t})


def test_the_emulator_checks_the_assertion_as_entra_does(tmp_path: Path, app: AppCertificate) -> None:
    other = issue_app_certificate(tmp_path / "other", "other")
    assert assertion_refusal(signed(app), app.pem, CLIENT, ENDPOINT) is None
    refusals = {
        "unknown certificate": assertion_refusal(signed(other), app.pem, CLIENT, ENDPOINT),
        "no certificate registered": assertion_refusal(signed(app), None, CLIENT, ENDPOINT),
        "expired": assertion_refusal(signed(app, exp=time.time() - 3600), app.pem, CLIENT, ENDPOINT),
        "another audience": assertion_refusal(
            signed(app, aud="https://elsewhere/token"), app.pem, CLIENT, ENDPOINT
        ),
        "another client": assertion_refusal(
            signed(app, iss="someone", sub="someone"), app.pem, CLIENT, ENDPOINT
        ),
        "not a JWT": assertion_refusal("not-a-jwt", app.pem, CLIENT, ENDPOINT),
    }
    header, _, signature = signed(app).split(".")
    forged = jwt.encode(
        jwt.decode(signed(app), options={"verify_signature": False}) | {"sub": "x"}, "k" * 32, "HS256"
    )
    refusals["signature of another payload"] = assertion_refusal(
        f"{header}.{forged.split('.')[1]}.{signature}", app.pem, CLIENT, ENDPOINT
    )
    assert refusals["unknown certificate"] == refusals["no certificate registered"]
    assert (refusals["unknown certificate"] or "").startswith("AADSTS700027:")
    assert (refusals["signature of another payload"] or "").startswith("AADSTS700027:")
    assert (refusals["expired"] or "").startswith("AADSTS700024:")
    assert (refusals["another client"] or "").startswith("AADSTS700021:")
    assert (refusals["another audience"] or "").startswith("AADSTS50027:")
    assert (refusals["not a JWT"] or "").startswith("AADSTS50027:")
