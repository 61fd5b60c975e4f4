"""The synthetic world as the demo's data source: per-split clip counts, regeneration on new settings, and the
label-scarce training subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maedfer.data.annotations import AnnotationRow
from maedfer.data.build import first_rows_per_class
from maedfer.synthetic import ensure_synthetic_world
from maedfer.synthetic import make_synthetic_world

SMALL = {"num_identities": 6, "num_frames": 4, "size": 32, "formats": ("frames", "mp4"), "preview": False}


def _info(root: Path) -> dict:
    return json.loads((root / "info.json").read_text())


def test_clips_per_class_can_differ_between_splits(tmp_path: Path) -> None:
    world = make_synthetic_world(tmp_path / "w", clips_per_class={"train": 3, "val": 1, "test": 2}, **SMALL)
    assert world.num_clips == {"train": 21, "val": 7, "test": 14}
    lines = (tmp_path / "w" / "pretrain" / "train.csv").read_text().splitlines()
    assert len(lines) == 21
    with pytest.raises(ValueError, match="splits"):
        make_synthetic_world(tmp_path / "x", clips_per_class={"train": 3, "val": 1}, **SMALL)


def test_world_is_reused_or_regenerated_by_its_settings(tmp_path: Path) -> None:
    settings = {**SMALL, "clips_per_class": {"train": 2, "val": 1, "test": 1}}
    settings.pop("preview")
    root = ensure_synthetic_world(tmp_path / "w", settings)
    first = (root / "info.json").stat().st_mtime_ns
    assert _info(root)["splits"]["train"]["num_clips"] == 14
    ensure_synthetic_world(root, dict(settings, formats=["mp4", "frames"]))  # same world, other spelling
    assert (root / "info.json").stat().st_mtime_ns == first
    ensure_synthetic_world(root, {})  # no settings: whatever is there
    assert (root / "info.json").stat().st_mtime_ns == first
    ensure_synthetic_world(root, dict(settings, clips_per_class=1))
    assert _info(root)["splits"]["train"]["num_clips"] == 7
    assert _info(root)["settings"]["clips_per_class"] == {"train": 1, "val": 1, "test": 1}


def test_first_rows_per_class_keeps_file_order() -> None:
    labels = [0, 1, 0, 0, 1, 2, 2, 2]
    rows = [AnnotationRow(f"clip{i}", label) for i, label in enumerate(labels)]
    kept = first_rows_per_class(rows, 2)
    assert [row.path for row in kept] == ["clip0", "clip1", "clip2", "clip4", "clip5", "clip6"]
    with pytest.raises(ValueError, match="labels_per_class"):
        first_rows_per_class(rows, 0)
