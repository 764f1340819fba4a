"""How tests treat a missing peer: a clear skip on a developer machine, a failure in CI."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def peer_missing(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"test peer missing in CI (CI=true): {reason}", pytrace=False)
    pytest.skip(reason)
