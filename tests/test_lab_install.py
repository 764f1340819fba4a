"""`pip install .` without the lab (its own distribution, atp-bot-lab): `atp-bot lab` says how to install it
instead of `invalid choice`.

The wheel is built from a copy of this checkout and installed (without dependencies) into a fresh venv. The
product's dependencies come from this venv's site-packages, through a directory of links that leaves out
the lab (atp-bot-lab and its websockets, tomli-w) and this checkout's own editable install: what
`pip install .` gives.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_IN_PIP_INSTALL_DOT = ("websockets", "tomli_w", "atp_bot", "__editable__")


def _tracked_copy(destination: Path) -> Path:
    """The checkout's tracked files (a build writes build/ and *.egg-info next to its sources)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
    ).stdout.split("\0")
    for name in filter(None, files):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    return destination


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = _tracked_copy(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", out, source], check=True)
    (built,) = out.glob("atp_bot-*.whl")
    return built


@pytest.fixture(scope="module")
def venv_without_the_lab(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "--python", python]
    subprocess.run([*pip, "install", "--no-deps", "--no-index", wheel], check=True)
    product_dependencies = venv / "product-dependencies"
    product_dependencies.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(NOT_IN_PIP_INSTALL_DOT):
            (product_dependencies / entry.name).symlink_to(entry)
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.strip()
    (Path(site_packages) / "product-dependencies.pth").write_text(f"{product_dependencies}\n")
    return venv


def atp_bot(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [venv / "bin" / "atp-bot", *args], capture_output=True, text=True, check=False, timeout=60
    )


def test_lab_not_installed_says_how_to_install_it(venv_without_the_lab: Path) -> None:
    done = atp_bot(venv_without_the_lab, "lab", "demo", "--keep")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("atp-bot: the lab is not installed (")
    assert "In the atp-bot source checkout: pip install ./lab (or ./scripts/bootstrap" in done.stderr
    assert "invalid choice" not in done.stderr
    assert "Traceback" not in done.stderr
    listed = atp_bot(venv_without_the_lab, "--help")
    assert listed.returncode == 0
    assert "not installed: pip install ./lab" in listed.stdout
