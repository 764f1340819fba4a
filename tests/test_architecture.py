"""The package layout of issue 13: flat modules stay out of bot/, modules stay short, the import contract
holds (lint-imports), and value objects that replaced hand-built copies behave like them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import grimp
import pytest

from bot.config import SensorConfig
from bot.sensors import Failure, SensorResult
from bot.sensors.winrm_runner import FailureKind

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 400


def product_modules() -> list[Path]:
    return sorted(p for package in ("bot", "commands") for p in (ROOT / package).rglob("*.py"))


def test_only_init_and_main_sit_directly_in_bot() -> None:
    flat = sorted(p.name for p in (ROOT / "bot").glob("*.py"))
    assert flat == ["__init__.py", "__main__.py"]


@pytest.mark.parametrize("module", product_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_product_module_is_longer_than_400_lines(module: Path) -> None:
    lines = len(module.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{lines} lines"


def test_import_contract_holds() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is in the dev extra"
    done = subprocess.run([lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_import_cycle_between_any_two_modules() -> None:
    """Stronger than the contract's sibling rule: no chain of imports (TYPE_CHECKING ones included) leads
    from a module of bot or commands back to itself."""
    graph = grimp.build_graph("bot", "commands", cache_dir=None)
    cycles = [
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    ]
    assert cycles == []


def test_the_product_wheel_carries_bot_and_commands_only(tmp_path: Path) -> None:
    """The lab is its own distribution (lab/pyproject.toml): built from a copy of the whole source tree,
    the product's wheel holds no test peer and plugs no lab command in."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in ("bot", "commands", "lab"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    built = subprocess.run(
        [*pip_wheel, "--wheel-dir", str(wheels), str(source)], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("atp_bot-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        plugged_in = archive.read(entry_points).decode()
    assert {name.split("/")[0] for name in names} == {
        "bot",
        "commands",
        wheel.name.split("-")[0] + "-0.1.0.dist-info",
    }
    assert "bot/sensors/ps1/check_sensor.ps1" in names  # the templates travel beside their loader
    assert "lab" not in plugged_in and "atp-bot = bot.cli:main" in plugged_in


def test_failed_result_carries_only_the_sensor_and_why() -> None:
    sensor = SensorConfig(name="s1", endpoint="https://s1:5986/wsman", kind="ata", account="dsa")
    result = SensorResult.failed(sensor, Failure(FailureKind.CONFIG, "no password"))
    assert (result.name, result.endpoint, result.kind, result.account) == (
        "s1",
        sensor.endpoint,
        "ata",
        "dsa",
    )
    assert not result.reachable and not result.healthy
    assert result.duration == 0.0 and result.services == ()
    assert result.to_json()["error"] == f"{FailureKind.CONFIG}: no password"
