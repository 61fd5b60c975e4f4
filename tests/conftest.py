"""Test-session setup shared by every tier: scripts started in subprocesses (tools, launchers, torchrun workers) import
this checkout's ``maedfer``, whatever copy of the package is installed, and each test is marked with its tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[1])
_paths = os.environ.get("PYTHONPATH", "")
if ROOT not in _paths.split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, _paths]) if _paths else ROOT


# Test tiers, by folder: tests/unit (fast, in-process), tests/integration (subprocesses, launchers, trainer runs, tool
# command lines), tests/parity (comparisons with the official code's golden fixtures). Select one with `-m <tier>`.
TIERS = ("unit", "integration", "parity")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = Path(__file__).resolve().parent
    for item in items:
        folder = Path(str(item.path)).resolve().relative_to(tests).parts[0]
        if folder in TIERS:
            item.add_marker(getattr(pytest.mark, folder))
