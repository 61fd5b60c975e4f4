"""Label names stored with a model (checkpoint key, config field, safetensors header) and the fold helpers of the
evaluate-only path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from maedfer.apps.experiment import folds_summary_dir, resolve_label_names, with_fold
from maedfer.checkpoint import CheckpointError, read_safetensors_metadata, save_safetensors, stored_label_names
from maedfer.config import ConfigError, load_config


def test_safetensors_header_keeps_the_names(tmp_path: Path) -> None:
    path = save_safetensors({"w": torch.zeros(2)}, tmp_path / "m.safetensors", metadata={"format": "pt"},
                            label_names=["a", "b"])
    metadata = read_safetensors_metadata(path)
    assert metadata["format"] == "pt" and json.loads(metadata["label_names"]) == ["a", "b"]
    assert stored_label_names(safetensors.torch.load_file(path), path) == ["a", "b"]
    with pytest.raises(TypeError, match="label_names must be strings"):
        save_safetensors({"w": torch.zeros(2)}, tmp_path / "bad.safetensors", label_names=["a", 1])  # type: ignore[list-item]


def test_stored_names_in_order_of_precedence(tmp_path: Path) -> None:
    config = {"data": {"label_names": ["from_config"]}}
    assert stored_label_names({"model": {}, "label_names": ["top"], "config": config}) == ["top"]
    assert stored_label_names({"model": {}, "label_names": None, "config": config}) == ["from_config"]
    assert stored_label_names({"model": {}}) is None
    plain = save_safetensors({"w": torch.zeros(1)}, tmp_path / "plain.safetensors")
    assert stored_label_names({"w": torch.zeros(1)}, plain) is None


def test_malformed_stored_names_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "odd.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(1)}, str(path), metadata={"label_names": "[not json"})
    with pytest.raises(CheckpointError, match="odd.safetensors: the label_names metadata is not JSON"):
        stored_label_names({}, path)
    with pytest.raises(CheckpointError, match="must be a list of strings"):
        stored_label_names({"label_names": "abc"}, tmp_path / "x.pth")


def test_config_names_are_checked_against_the_model() -> None:
    model = torch.nn.Linear(2, 3)
    model.num_classes = 3  # type: ignore[assignment]
    cfg = load_config(None, ["train.task=classification", "data.dataset=custom", "data.label_names=[x,y,z]"])
    assert resolve_label_names(cfg, model) == ["x", "y", "z"]
    with pytest.raises(ConfigError, match="2 names .* 3 classes"):
        resolve_label_names(load_config(None, ["train.task=classification", "data.label_names=[x,y]"]), model)
    with pytest.raises(ConfigError, match="distinct, x repeated"):
        resolve_label_names(load_config(None, ["train.task=classification", "data.label_names=[x,y,x]"]), model)
    # no names in the config: the registry's, when one per output; none for an unknown dataset or pre-training
    model.num_classes = 7  # type: ignore[assignment]
    assert resolve_label_names(load_config(None, ["train.task=classification", "data.dataset=DFEW"]), model)[0] == "Happy"
    assert resolve_label_names(load_config(None, ["train.task=classification", "data.dataset=custom"]), model) is None
    assert resolve_label_names(load_config(None, ["train.task=pretrain"]), model) is None


def test_fold_output_folders_and_summary_folder() -> None:
    cfg = load_config(None, ["train.output_dir=runs/x/{fold}", "data.dataset=DFEW"])
    assert with_fold(cfg, "1").train.output_dir == "runs/x/split01"
    assert folds_summary_dir("runs/x/{fold}") == Path("runs/x")
    assert folds_summary_dir("runs/x/fold{fold}") == Path("runs/x")
    plain = load_config(None, ["train.output_dir=runs/y"])
    assert with_fold(plain, "2").train.output_dir == str(Path("runs/y/fold2"))
    assert folds_summary_dir("runs/y") == Path("runs/y")
