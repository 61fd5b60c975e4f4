"""The installable package: a wheel built from this checkout carries the configs, model cards and ``py.typed``;
unpacked (or installed into a fresh virtual environment) away from the checkout it finds a config and a card by name,
and every console command answers ``--help``.

The wheel is built offline from a copy of the sources (``pip wheel --no-deps --no-build-isolation --no-index``, about
5 s). The fresh-environment test (``slow``) makes a ``venv --system-site-packages`` (torch is not reinstalled) and
installs the wheel with ``--no-deps``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from maedfer import cli, resources

ROOT = Path(__file__).resolve().parents[2]
#: What the build needs from the checkout (setup.py copies the resource folders into maedfer/_bundled).
SOURCES = ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "maedfer", *resources.BUNDLED_FOLDERS.values())
SHIPPED_SUFFIXES = (".yaml", ".yml", ".md", ".png")


def clean_env() -> dict[str, str]:
    """The environment without PYTHONPATH (conftest points it at this checkout, which would hide the wheel)."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_bundled", "*.egg-info"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300, env=clean_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob("maedfer-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_configs_cards_py_typed_and_console_scripts(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    expected = set()
    for key, folder in resources.BUNDLED_FOLDERS.items():
        files = [p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in SHIPPED_SUFFIXES]
        assert files, folder
        expected |= {f"maedfer/_bundled/{key}/{p.relative_to(ROOT / folder).as_posix()}" for p in files}
    assert expected <= names, sorted(expected - names)[:5]
    assert {"maedfer/_bundled/pretrain_configs/mae_dfer_voxceleb2.yaml", "maedfer/_bundled/finetune_configs/demo.yaml",
            "maedfer/_bundled/model_cards/mae_dfer/mae_dfer_dfew_fold1.md", "maedfer/py.typed",
            "maedfer/cli.py", "maedfer/__main__.py", "maedfer/resources.py"} <= names
    assert not [n for n in names if n.startswith(("tools/", "tests/", "pretrain/", "finetune/", "models/"))]
    for script in ("maedfer = maedfer.cli:main", "maedfer-pretrain = maedfer.cli:pretrain_main",
                   "maedfer-finetune = maedfer.cli:finetune_main"):
        assert script in entry_points
    requirements = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    timm = [line for line in requirements if line.split()[1].startswith("timm")]
    assert timm and all('extra == "official"' in line for line in timm)  # optional, never a core requirement
    for extra in ("audio", "shards", "official", "dev"):
        assert f"Provides-Extra: {extra}" in metadata


PROBE = """
import json, sys
import maedfer
from maedfer import resources
from maedfer.apps.model_cards import CARDS_FOLDER, find_card, load_model_cards
from maedfer.config import load_config
card = find_card("mae_dfer_dfew_fold1")
print(json.dumps({
    "package": maedfer.__file__,
    "pretrain": str(resources.config_path("mae_dfer_voxceleb2")),
    "demo": str(resources.config_path("demo", "finetune")),
    "model": load_config("dfew_mae_dfer").model.name,
    "cards_folder": str(CARDS_FOLDER),
    "card": str(card.path),
    "cards": len(load_model_cards()),
}))
"""


def _check_probe(output: str, site: Path) -> None:
    found = json.loads(output.strip().splitlines()[-1])
    for key in ("package", "pretrain", "demo", "cards_folder", "card"):
        assert Path(found[key]).resolve().is_relative_to(site.resolve()), (key, found[key])
    assert Path(found["pretrain"]).name == "mae_dfer_voxceleb2.yaml" and Path(found["card"]).is_file()
    assert found["model"] == "mae_dfer_base"
    cards = [p for p in (ROOT / "models").rglob("*.md") if p.name != "README.md"]
    assert found["cards"] == len(cards)


def test_unpacked_wheel_finds_configs_and_cards_by_name(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=elsewhere, capture_output=True, text=True, timeout=300,
                          env={**clean_env(), "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_probe(proc.stdout, site)


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_every_command_answers_help(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   timeout=300)
    python = venv / "bin" / "python"
    # the system pip (visible through --system-site-packages) installs into the venv's own site-packages
    proc = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=300, env=clean_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, env=clean_env()).stdout.strip())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), cwd=elsewhere, capture_output=True, text=True, timeout=300, env=clean_env())

    proc = run(str(python), "-c", PROBE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_probe(proc.stdout, site)

    maedfer = str(venv / "bin" / "maedfer")
    proc = run(maedfer, "--help")
    assert proc.returncode == 0 and all(f"  {name} " in proc.stdout for name in cli.COMMANDS), proc.stdout
    for name in cli.COMMANDS:
        proc = run(maedfer, name, "--help")
        assert proc.returncode == 0, (name, proc.stdout + proc.stderr)
        assert proc.stdout.startswith(f"usage: maedfer {name}"), (name, proc.stdout[:200])
    for alias, command in (("maedfer-pretrain", "pretrain"), ("maedfer-finetune", "finetune")):
        proc = run(str(venv / "bin" / alias), "--help")
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: maedfer {command}"), proc.stdout + proc.stderr
    # a config asked for by name, through the installed launcher: a near miss lists the shipped names
    proc = run(maedfer, "finetune", "--config", "dfew_mae_dfe")
    assert proc.returncode == 2 and "did you mean dfew_mae_dfer" in proc.stderr, proc.stderr
