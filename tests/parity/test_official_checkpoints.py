"""Official checkpoint files end to end: Namespace-pickled .pth -> create_model(checkpoint=...) -> same outputs."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

import maedfer
from maedfer.checkpoint import load_safetensors

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "official" / "mae_dfer_pretrain_to_finetune.pt"


def _official_file(tmp_path: Path) -> tuple[dict, Path]:
    fx = torch.load(FIXTURE, weights_only=True)
    checkpoint = dict(fx["checkpoint"])
    checkpoint["args"] = argparse.Namespace(**checkpoint["args"])  # as in the released files
    path = tmp_path / "checkpoint-49.pth"
    torch.save(checkpoint, path)
    return fx, path


def test_create_model_from_official_pretraining_file(tmp_path: Path) -> None:
    fx, path = _official_file(tmp_path)
    model = maedfer.create_model(fx["official_name"], checkpoint=str(path), **fx["overrides"]).eval()
    with torch.no_grad():
        features = model.forward_features(fx["inputs"]["video"])
    torch.testing.assert_close(features, fx["outputs"]["features"], atol=fx["atol"], rtol=fx["rtol"])


def test_clean_name_loads_the_same_file(tmp_path: Path) -> None:
    fx, path = _official_file(tmp_path)
    tiny = {"img_size": 32, "patch_size": 8, "num_frames": 16, "embed_dim": 32, "num_heads": 4, "depth": 2}
    model = maedfer.create_model("mae_dfer_base", checkpoint=str(path), region_size=(2, 2, 4), **tiny).eval()
    with torch.no_grad():
        features = model.forward_features(fx["inputs"]["video"])
    torch.testing.assert_close(features, fx["outputs"]["features"], atol=fx["atol"], rtol=fx["rtol"])


def test_convert_tool_writes_loadable_safetensors(tmp_path: Path) -> None:
    fx, path = _official_file(tmp_path)
    raw = tmp_path / "raw.safetensors"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "convert_checkpoint.py"), str(path), str(raw)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    weights = load_safetensors(raw)
    assert set(weights) == set(fx["checkpoint"]["model"])
    model = maedfer.create_model(fx["official_name"], **fx["overrides"]).eval()
    report = maedfer.load_checkpoint(model, raw)
    assert sorted(report.missing_keys) == sorted(fx["missing_keys"])
    with torch.no_grad():
        features = model.forward_features(fx["inputs"]["video"])
    torch.testing.assert_close(features, fx["outputs"]["features"], atol=fx["atol"], rtol=fx["rtol"])
