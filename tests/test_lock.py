"""requirements.lock, the deployments' install (deploy/Dockerfile, docs/operations.md), matches
pyproject.toml: every runtime dependency pinned to a version its specifier allows, every pin with the
sha256 of its files, nothing unpinned, nothing of the dev extra. Offline: `./scripts/lock` rebuilds it."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def entries() -> list[str]:
    """Each requirement of the lock as one line (its continuation lines joined), comments dropped."""
    text = LOCK.read_text(encoding="utf-8")
    lines = [
        line.split(" #", 1)[0].rstrip() for line in text.splitlines() if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\s*\\\n\s*", " ", "\n".join(lines))
    return [line.strip() for line in joined.splitlines() if line.strip()]


def pinned() -> dict[str, Version]:
    found = {}
    for entry in entries():
        match = PIN.match(entry)
        assert match, f"not an exact pin: {entry[:120]}"
        found[canonicalize_name(match[1])] = Version(match[2])
    return found


def project() -> dict[str, list[Requirement]]:
    table = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        "runtime": [Requirement(r) for r in table["dependencies"]],
        "dev": [Requirement(r) for r in table["optional-dependencies"]["dev"]],
    }


def test_every_runtime_dependency_is_pinned_to_a_version_it_allows() -> None:
    locked = pinned()
    for requirement in project()["runtime"]:
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in requirements.lock: run ./scripts/lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {name}=={locked[name]}, which {requirement} excludes: run ./scripts/lock"
        )


def test_every_pin_carries_its_hashes_and_nothing_is_unpinned() -> None:
    found = entries()
    assert found
    for entry in found:
        assert PIN.match(entry), f"not an exact pin: {entry[:120]}"
        assert HASH.search(entry), f"no --hash=sha256: for {entry.split()[0]}"
        assert not re.search(r"(^|\s)(-e|--editable|-i|--index-url|--extra-index-url|--find-links)\b", entry)
        assert "://" not in entry and "@ " not in entry  # no URL or local path


def test_the_lock_holds_no_development_tool() -> None:
    runtime = {canonicalize_name(r.name) for r in project()["runtime"]}
    dev_only = {canonicalize_name(r.name) for r in project()["dev"]} - runtime
    assert "pip-tools" in dev_only  # the lock's builder is a dev tool
    assert not dev_only & set(pinned())


@pytest.mark.parametrize("name", sorted(pinned()))
def test_what_a_locked_package_needs_is_locked_too(name: str) -> None:
    """`pip install --no-deps` installs only what the lock names: each pin's own runtime requirements
    must be there (read from the installed package when it is the locked version)."""
    try:
        installed = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{name} is not installed here")
    if Version(installed.version) != pinned()[name]:
        pytest.skip(f"{name} {installed.version} is installed here, {pinned()[name]} is locked")
    environment = {"extra": ""}
    needed = [Requirement(r) for r in installed.requires or []]
    missing = [
        str(r)
        for r in needed
        if (r.marker is None or r.marker.evaluate(environment)) and canonicalize_name(r.name) not in pinned()
    ]
    assert missing == []
