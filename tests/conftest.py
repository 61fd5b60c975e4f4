"""Test-session setup: scripts started in subprocesses (tools, launchers, torchrun workers) import this checkout's
``maedfer``, whatever copy of the package is installed in the environment."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
_paths = os.environ.get("PYTHONPATH", "")
if ROOT not in _paths.split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, _paths]) if _paths else ROOT
