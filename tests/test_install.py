"""scripts/install is the one production install: the README's real-domain path, docs/operations.md and the
image run it, and the systemd unit runs what it installs. scripts/bootstrap says it is for development,
and its editable installs print no setuptools banner. Offline: the script's own checks run, pip does not.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from bot.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "scripts" / "install"
BOOTSTRAP = ROOT / "scripts" / "bootstrap"
OPERATIONS = ROOT / "docs" / "operations.md"


def script_default(name: str) -> str:
    """A NAME="${1:-value}" or NAME="value" assignment of scripts/install."""
    match = re.search(rf'^{name}="(?:\$\{{1:-)?([^"}}]*)\}}?"$', INSTALL.read_text(encoding="utf-8"), re.M)
    assert match, f"no {name}= in scripts/install"
    return match[1]


PREFIX = script_default("PREFIX")
BUILD_PACKAGES = script_default("DEBIAN_BUILD_PACKAGES").split()


def code_blocks(markdown: str) -> list[list[str]]:
    """The lines of each ```sh block, comments and blank lines dropped."""
    blocks = re.findall(r"^```sh\n(.*?)^```", markdown, re.M | re.S)
    stripped = [[line.strip() for line in block.splitlines()] for block in blocks]
    return [[line for line in block if line and not line.startswith("#")] for block in stripped]


def command(line: str) -> str:
    return line.split("  #", 1)[0].strip()


def readme_blocks() -> list[list[str]]:
    return code_blocks((ROOT / "README.md").read_text(encoding="utf-8"))


def real_domain_path() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = code_blocks(text[text.index("**Quick start for a real domain**") :])[:1]
    return [command(line) for line in block]


def apt_packages(line: str) -> list[str]:
    assert line.startswith("apt-get update && apt-get install -y --no-install-recommends "), line
    return line.split("--no-install-recommends", 1)[1].split()


def test_the_readme_still_starts_with_the_demo_and_the_tests() -> None:
    first = [command(line) for line in readme_blocks()[0]]
    assert first == ["./scripts/demo", "./scripts/test"]


def test_the_real_domain_path_builds_atp_bot_alone_with_the_packages_the_script_names() -> None:
    lines = real_domain_path()
    assert apt_packages(lines[0]) == BUILD_PACKAGES
    assert lines[1] == "./scripts/install"
    assert lines[2] == f'export PATH="{PREFIX}/bin:$PATH"'
    joined = "\n".join(lines)
    assert "bootstrap" not in joined and ".venv" not in joined and "pip install" not in joined


def test_every_atp_bot_command_of_the_real_domain_path_parses() -> None:
    """Each command after the install is one the installed atp-bot accepts, as written."""
    invocations = [shlex.split(line) for line in real_domain_path() if re.search(r"(^|\s)atp-bot\s", line)]
    assert len(invocations) >= 6
    for words in invocations:
        args = [word for word in words if not re.fullmatch(r"[A-Z_]+=.*", word)]
        assert args[0] == "atp-bot", words
        build_parser().parse_args(args[1:])  # exits 2 (SystemExit) on anything it does not know


def test_operations_installs_the_same_way_for_pip_and_systemd() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    pip_section = text[text.index("### pip and a virtual environment") : text.index("### Docker")]
    (block,) = code_blocks(pip_section)
    assert apt_packages(command(block[0])) == BUILD_PACKAGES
    assert command(block[1]) == "./scripts/install"
    systemd_section = text[text.index("### systemd") : text.index("### Kubernetes")]
    assert "./scripts/install" in [command(line) for line in code_blocks(systemd_section)[0]]
    assert "python3 -m venv" not in text and "-r requirements.lock" not in text  # no second recipe


def test_the_image_and_the_unit_run_the_production_install() -> None:
    runs = [
        i["value"]
        for i in DockerfileParser(path=str(ROOT / "deploy" / "Dockerfile")).structure
        if i["instruction"] == "RUN"
    ]
    (install,) = [run for run in runs if "scripts/install" in run]
    assert install.split("&&")[0].strip() == f"./scripts/install {PREFIX}"
    assert not [run for run in runs if "requirements.lock" in run or " -m venv " in run]
    unit = (ROOT / "deploy" / "atp-bot.service").read_text(encoding="utf-8")
    assert re.findall(r"^ExecStart=(.*)$", unit, re.M) == [f"{PREFIX}/bin/atp-bot run"]


def test_the_script_installs_the_hash_checked_lock_then_atp_bot_alone() -> None:
    pip_lines = [line for line in INSTALL.read_text(encoding="utf-8").splitlines() if "pip install" in line]
    assert [line.split("pip install", 1)[1].strip() for line in pip_lines] == [
        "--no-cache-dir --require-hashes --no-deps -r requirements.lock",
        "--no-cache-dir --no-deps .",
    ]


def minimal_path(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only the named tools (each found on this machine's PATH)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found, f"{tool} not found"
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(Path(sys.executable).resolve())
    return str(bin_dir)


def run_install(prefix: Path, path: str) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash
    env = {"PATH": path, "LANG": "C.UTF-8", "PYTHON": "python3"}
    return subprocess.run(
        [bash, str(INSTALL), str(prefix)], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_install_names_the_missing_build_packages_and_changes_nothing(tmp_path: Path) -> None:
    prefix = tmp_path / "atp-bot"
    done = run_install(prefix, minimal_path(tmp_path, "dirname", "ls"))  # no gcc, no krb5-config
    assert done.returncode == 1, done.stderr
    assert "a C compiler (gcc)" in done.stderr and "krb5-config" in done.stderr
    assert f"apt-get install -y --no-install-recommends {' '.join(BUILD_PACKAGES)}" in done.stderr
    assert not prefix.exists()


def test_install_refuses_a_directory_that_is_not_a_virtual_environment(tmp_path: Path) -> None:
    if not (shutil.which("gcc") and shutil.which("krb5-config")):
        pytest.skip("gcc and krb5-config (Debian: gcc libkrb5-dev) are needed to get past the first check")
    prefix = tmp_path / "etc"
    prefix.mkdir()
    (prefix / "passwd").write_text("root:x:0:0::/root:/bin/sh\n", encoding="utf-8")
    done = run_install(prefix, os.environ["PATH"])
    assert done.returncode == 2, done.stderr
    assert "is not a virtual environment" in done.stderr
    assert sorted(p.name for p in prefix.iterdir()) == ["passwd"]


def test_bootstrap_says_it_is_for_development_before_it_does_anything() -> None:
    lines = BOOTSTRAP.read_text(encoding="utf-8").splitlines()
    assert "For development only, not for a production host" in lines[1]
    commands = [line for line in lines if line and not line.startswith("#")]
    first_action = commands[commands.index('cd "$(dirname "$0")/.."') + 1]
    assert first_action.startswith("echo ") and "not for a production host" in first_action
    assert "./scripts/install" in first_action


def editable_install(tmp_path: Path, name: str, warnings: str | None) -> str:
    """bootstrap's editable install of the lab (offline, no build isolation) into a throwaway prefix."""
    source = tmp_path / name / "lab"
    shutil.copytree(ROOT / "lab", source, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    if warnings is not None:
        env["PYTHONWARNINGS"] = warnings
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        "--no-build-isolation",
    ]
    done = subprocess.run(
        [*pip, "--prefix", str(tmp_path / name / "prefix"), "-e", str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_bootstraps_editable_install_prints_no_setuptools_banner(tmp_path: Path) -> None:
    text = BOOTSTRAP.read_text(encoding="utf-8")
    match = re.search(r'PYTHONWARNINGS="([^"]+)" \\\n\s+\.venv/bin/python -m pip install --quiet -e ', text)
    assert match, "scripts/bootstrap's editable install does not filter setuptools' banner"
    assert "Editable installation" in editable_install(tmp_path, "control", None)  # what is filtered
    assert "Editable installation" not in editable_install(tmp_path, "bootstrap", match[1])
