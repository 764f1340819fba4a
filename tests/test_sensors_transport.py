"""Transports and certificate validation as configured in `[winrm]` / `[[sensors]]`."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from bot.config import ConfigError, parse_settings, sensor_transport_warnings
from bot.sensors.checks import FailureKind, check_sensors
from lab.tlsca import TlsFiles, issue_client_cert
from lab.winrm.model import Host
from lab.winrm.server import WinRMEmulator
from tests.winrm_lab import USERNAME, make_settings, settings_toml


def test_ntlm_over_http(emulator: WinRMEmulator) -> None:
    """NTLM seals the messages over http:// (allowed, with a warning); basic there is refused by the
    configuration (tests/test_config.py)."""
    endpoint = emulator.add_host(Host.sensor("s1"))
    (result,) = check_sensors(
        make_settings([{"name": "s1", "endpoint": endpoint}], winrm={"transport": "ntlm"})
    )
    assert result.healthy


@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_https_with_ca_bundle(tls_emulator: WinRMEmulator, tls_files: TlsFiles, transport: str) -> None:
    endpoint = tls_emulator.add_host(Host.sensor("s1"))
    winrm = {"transport": transport, "ca_file": tls_files.ca_file}
    (result,) = check_sensors(make_settings([{"name": "s1", "endpoint": endpoint}], winrm=winrm))
    assert result.healthy


def test_https_without_the_ca_fails_clearly(tls_emulator: WinRMEmulator) -> None:
    endpoint = tls_emulator.add_host(Host.sensor("s1"))
    (result,) = check_sensors(make_settings([{"name": "s1", "endpoint": endpoint}]))
    assert result.failure is not None
    assert result.failure.kind is FailureKind.TLS


def test_validation_off_works_and_warns(tls_emulator: WinRMEmulator) -> None:
    """The warning is the command's, once at its start (bot.cli.context), not one per check."""
    endpoint = tls_emulator.add_host(Host.sensor("s1"))
    settings = make_settings([{"name": "s1", "endpoint": endpoint, "cert_validation": False}])
    (result,) = check_sensors(settings)
    assert result.healthy
    assert sensor_transport_warnings(settings) == [
        "sensor s1: WinRM certificate validation is disabled (cert_validation = false)"
    ]


def test_public_config_contract() -> None:
    text = settings_toml([]) + (
        '\n[[sensors]]\nname = "sensor01"\nendpoint = "https://sensor01.contoso.local:5986/wsman"\n'
        'kind = "mdi"\naccount = "contoso"\n'
        '\n[[sensors]]\nname = "gw01"\nendpoint = "gw01.contoso.local"\nkind = "ata"\n'
        '\n[[sensors]]\nname = "old"\nendpoint = "http://old.contoso.local"\n'
    )
    settings = parse_settings(text)
    assert [s.endpoint for s in settings.sensors] == [
        "https://sensor01.contoso.local:5986/wsman",
        "https://gw01.contoso.local:5986/wsman",
        "http://old.contoso.local:5985/wsman",
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('endpoint = "ftp://x/wsman"', "sensors[0].endpoint"),
        ('endpoint = "https://x/wsman"\nkind = "xdr"', "sensors[0].kind"),
        ('endpoint = "https://x/wsman"\naccount = "nope"', "sensors[0].account: no account with id 'nope'"),
        ('endpoint = "https://x/wsman"\nlog_dir = "C:\\\\*\\\\*"', "sensors[0].log_dir"),
        ('endpoint = "https://x/wsman"\ntransport = "telnet"', "sensors[0].transport"),
    ],
)
def test_bad_sensor_config_is_located(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(settings_toml([]) + f'\n[[sensors]]\nname = "s"\n{extra}\n')
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


def test_certificate_authentication(winrm_password: str, tls_files: TlsFiles, tmp_path: Path) -> None:
    client = issue_client_cert(tmp_path / "client", "atp-checker")
    stranger = issue_client_cert(tmp_path / "stranger", "someone-else")
    with WinRMEmulator(
        username=USERNAME,
        password=winrm_password,
        auth=("certificate",),
        tls=tls_files,
        client_ca=client.ca_file,
    ) as lab:
        endpoint = lab.add_host(Host.sensor("s1"))
        winrm = {
            "transport": "certificate",
            "ca_file": tls_files.ca_file,
            "cert_pem": client.cert_file,
            "cert_key_pem": client.key_file,
        }
        (result,) = check_sensors(make_settings([{"name": "s1", "endpoint": endpoint}], winrm=winrm))
        assert result.healthy
        winrm |= {"cert_pem": stranger.cert_file, "cert_key_pem": stranger.key_file}
        (refused,) = check_sensors(make_settings([{"name": "s1", "endpoint": endpoint}], winrm=winrm))
        assert refused.failure is not None
        assert refused.failure.kind is FailureKind.TLS  # signed by a CA the host does not trust


def test_certificate_transport_needs_the_key_pair() -> None:
    with pytest.raises(ConfigError, match="cert_pem and cert_key_pem go together"):
        make_settings([{"name": "s1", "endpoint": "https://s1/wsman"}], winrm={"cert_pem": "/x.pem"})


def test_sensors_ignore_the_environments_proxy(
    emulator: WinRMEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sensors are reached directly, even where the process has a proxy for Slack or Graph."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    endpoint = emulator.add_host(Host.sensor("s1"))
    (result,) = check_sensors(make_settings([{"name": "s1", "endpoint": endpoint}]))
    assert result.healthy


def test_concurrent_checks_never_touch_the_environment(
    emulator: WinRMEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests rewrites `os.environ["no_proxy"]` around each request when a session's proxies name
    `no_proxy` (psf/requests#4997), which is not thread-safe: another thread iterating the environment
    fails with KeyError, and a race can leave the change behind for every other client in the process."""
    monkeypatch.delenv("no_proxy", raising=False)
    names = [f"s{i}" for i in range(24)]
    sensors = [{"name": n, "endpoint": emulator.add_host(Host.sensor(n))} for n in names]
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(k for k in list(os.environ) if k.lower() == "no_proxy")

    watcher = threading.Thread(target=watch)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so that a short-lived change would be seen
    watcher.start()
    try:
        results = check_sensors(make_settings(sensors, checks={"pool_size": 24}))
    finally:
        done.set()
        watcher.join()
        sys.setswitchinterval(interval)
    assert [r.healthy for r in results] == [True] * len(names)
    assert seen == set()
