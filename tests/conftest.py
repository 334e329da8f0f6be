"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# ../shared/data/ct beside the checkout, or DRTOOL_SHARED_CT to point elsewhere.
SHARED_CT = Path(
    os.environ.get("DRTOOL_SHARED_CT", REPO_ROOT.parent / "shared" / "data" / "ct")
)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_ct() -> Path:
    """The real CT slices of ../shared/data/ct; skips, saying why, where absent."""
    if not (SHARED_CT / "covidx" / "data.txt").is_file():
        pytest.skip(f"real CT slices not found at {SHARED_CT} (a fresh clone has none)")
    return SHARED_CT


def pytest_report_header(config: pytest.Config) -> str:
    found = (SHARED_CT / "covidx" / "data.txt").is_file()
    state = "found" if found else "NOT found: tests on them are skipped"
    return f"real CT slices at {SHARED_CT}: {state}"
