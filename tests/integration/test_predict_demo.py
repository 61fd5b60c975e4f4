"""Issue acceptance, end to end (slow: about 8 minutes on 2 cores): the README's demo pre-training and fine-tuning,
then ``tools/predict.py`` on labelled synthetic mp4 clips writes CSV + PNG and most windows get the clip's label."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from maedfer.data.annotations import read_annotations
from maedfer.data.build import first_rows_per_class
from maedfer.apps.train import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_predict_on_demo_checkpoint_matches_most_labels(tmp_path: Path) -> None:
    world = tmp_path / "world"
    main(["--config", str(ROOT / "pretrain" / "configs" / "demo.yaml"), f"data.root={world}",
          f"train.output_dir={tmp_path / 'pre'}"])
    main(["--config", str(ROOT / "finetune" / "configs" / "demo.yaml"), f"data.root={world}",
          f"train.output_dir={tmp_path / 'ft'}", f"model.checkpoint={tmp_path / 'pre' / 'checkpoint-last.pth'}"])
    rows = read_annotations(world / "classification" / "train.csv", kind="classification")
    labelled = first_rows_per_class(rows, 16)[::8]  # 14 clips the demo fine-tuned on, two per class
    videos = [str(world / "videos" / f"{Path(row.path).name}.mp4") for row in labelled]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "predict.py"), *videos, "--checkpoint",
         str(tmp_path / "ft" / "checkpoint-last.pth"), "--no-face-detect", "--window", "24", "--stride", "4",
         "--out", str(tmp_path / "pred"), "--quiet"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    matched = total = 0
    for video in videos:
        stem = Path(video).stem
        assert (tmp_path / "pred" / f"{stem}.png").stat().st_size > 1000
        with open(tmp_path / "pred" / f"{stem}.csv") as handle:
            windows = list(csv.DictReader(handle))
        assert len(windows) == 3  # 32 frames, windows of 24 every 4
        matched += sum(window["label"] == stem.split("_")[2] for window in windows)
        total += len(windows)
    assert matched > total / 2, f"{matched} of {total} windows match their clip's label"
