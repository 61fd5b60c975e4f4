"""The label-efficiency command at toy size: it pre-trains, measures every cell and writes a well-formed JSON table,
a Markdown table and a PNG plot (the full study is run by hand; its numbers are in the README)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from maedfer.apps.label_efficiency import labelled_subset, main
from maedfer.checkpoint import read_checkpoint


def test_toy_study_writes_its_outputs(tmp_path: Path) -> None:
    out = tmp_path / "study"
    plot = tmp_path / "copy" / "plot.png"
    results = main(["--preset", "toy", "--out", str(out), "--plot", str(plot), "--labels", "1", "2", "--seeds", "2"])
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["runs"] == results["runs"]
    cells = {(r["protocol"], r["init"], r["labels_per_class"], r["seed"]) for r in on_disk["runs"]}
    assert cells == {(p, i, k, s) for p in ("linear_probe", "finetune") for i in ("pretrained", "random")
                     for k in (1, 2) for s in (0, 1)}
    assert all(0.0 <= r["uar"] <= 1.0 for r in on_disk["runs"])
    assert len(on_disk["summary"]) == 8 and all(row["seeds"] == 2 for row in on_disk["summary"])
    assert abs(on_disk["chance"] - 1 / 7) < 1e-9 and on_disk["timings"]["total_s"] > 0
    table = (out / "results.md").read_text()
    assert table.count("\n| ") == 4 and "linear probe, pretrained" in table and "finetune, random" in table
    for png in (out / "label_efficiency.png", plot):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    weights = read_checkpoint(out / "pretrain" / "checkpoint-last.pth")["model"]
    assert any(key.startswith("decoder.") for key in weights) and any(key.startswith("encoder.") for key in weights)


def test_labelled_subsets_are_balanced_and_seeded() -> None:
    labels = torch.arange(7).repeat_interleave(10)
    first, again, other = labelled_subset(labels, 3, 0), labelled_subset(labels, 3, 0), labelled_subset(labels, 3, 1)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.bincount(labels[first], minlength=7).tolist() == [3] * 7 and len(first.unique()) == 21
    assert len(labelled_subset(labels, 50, 0)) == 70  # a class with fewer clips gives all of them
