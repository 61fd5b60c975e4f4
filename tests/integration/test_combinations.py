"""The combination matrix: every encoder x objective x modality, assembled from a config at tiny size, trains one step
through the trainer (maedfer.apps.train.run on the synthetic world), saves, reloads from its saved config, and counts
its FLOPs; a combination that cannot work is a ConfigError saying why.

The default tier runs a covering subset (every encoder, target, mask and modality at least once; every incompatible
mask once); the whole product is ``@pytest.mark.slow``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from maedfer.apps.profiling import count_macs
from maedfer.apps.inference import load_inference_model
from maedfer.apps.train import run
from maedfer.checkpoint import load_checkpoint, read_checkpoint
from maedfer.config import ConfigError, config_from_dict, load_config
from maedfer.models import example_inputs
from maedfer.models.assemble import model_from_config
from maedfer.synthetic import make_synthetic_world

GEOMETRY = {"img_size": 32, "patch_size": 8, "num_frames": 8, "embed_dim": 32, "num_heads": 2}
ENCODERS = {  # 4 blocks each; token grid (4, 4, 4)
    "vit": {"depth": 4},
    "lgi_former": {"depth": 4, "region_size": [2, 2, 4]},
    "tpsbt": {"stage_depths": [2, 1, 1], "num_bottleneck_tokens": [2]},
}
TARGETS = {"pixel": None, "frame_diff_2": 2, "frame_diff_4": 4}
MASKS = {"tube": {}, "part_window": {"mask_window": [2, 2]}, "random": {}}
MODALITIES = ("video", "audio_visual")
# What the encoders cannot take, and the reason the error must give.
REFUSED = {("lgi_former", "tube"): "tube mask .* different numbers of visible tokens",
           ("lgi_former", "random"): "random mask leaves its 4 regions",
           ("tpsbt", "random"): "TPSBT: a random mask"}

PRETRAIN = [(e, t, m, mod) for e, t, m, mod in itertools.product(ENCODERS, TARGETS, MASKS, MODALITIES)
            if (e, m) not in REFUSED]
# Covering subset: each encoder, modality, target and mask kind at least once (the rest is the slow tier).
PRETRAIN_FAST = [
    ("vit", "pixel", "random", "video"),
    ("lgi_former", "frame_diff_2", "part_window", "audio_visual"),
    ("tpsbt", "frame_diff_4", "tube", "audio_visual"),
    ("tpsbt", "pixel", "part_window", "video"),
]
FINETUNE = list(itertools.product(ENCODERS, MODALITIES))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world") / "synthetic"
    make_synthetic_world(root, num_identities=6, clips_per_class=2, num_frames=16, size=32, preview=False)
    return root


def _model(encoder: str, modality: str, pretrain: bool) -> dict:
    model: dict = {"encoder": {"type": encoder, **GEOMETRY, **ENCODERS[encoder]}}
    if modality == "audio_visual":
        model["audio"] = {"input_size": [32, 16], "patch_size": 8, "depth": 4}
        model["fusion"] = {"depth": 1}
    if pretrain:
        model["decoder"] = {"embed_dim": 16, "num_heads": 2}
        if modality == "video":
            model["decoder"]["depth"] = 1
        else:
            model["objective"] = {"taps": [1, 2, 3]}
    else:
        model["head"] = {"num_classes": 7}
    return model


def _config(world: Path, out: Path, model: dict, task: str) -> dict:
    return {
        "model": model,
        "data": {"root": str(world), "synthetic": {}, "num_frames": 8, "input_size": 32, "short_side_size": 32,
                 "batch_size": 2, "num_workers": 0, "test_num_segment": 1, "test_num_crop": 1},
        "optim": {"warmup_epochs": 0, "layer_decay": None if task == "pretrain" else 0.75},
        "train": {"task": task, "epochs": 1, "max_steps_per_epoch": 1, "output_dir": str(out), "tensorboard": False,
                  "resume": "none", "eval_every_epochs": 0},
    }


def _train_save_reload_count(config: dict, out: Path) -> None:
    result = run(config_from_dict(config))
    assert result["steps"] == 1 and result["nonfinite_losses"] == 0
    saved = read_checkpoint(out / "checkpoint-last.pth")["model"]
    # Rebuild from the config the run wrote, load strictly, and find the trained weights.
    cfg = load_config(out / "config.yaml")
    assert cfg.model.name is None and cfg.model.encoder == config["model"]["encoder"]
    model = model_from_config(cfg.model)
    report = load_checkpoint(model, out / "checkpoint-last.pth")
    assert not report.missing_keys and not report.unexpected_keys
    state = model.state_dict()
    assert all(torch.equal(state[key], saved[key]) for key in saved)
    if config["train"]["task"] != "pretrain":  # the inference loader rebuilds a described model from its checkpoint
        loaded = load_inference_model(out / "checkpoint-last.pth")
        assert loaded.kind == "finetune" and loaded.modality == ("audio_visual" if "audio" in config["model"] else "video")
        assert all(torch.equal(value, saved[key]) for key, value in loaded.model.state_dict().items())
    model.eval()
    inputs = example_inputs(model, 1)
    with torch.no_grad():
        count = count_macs(lambda: model(*inputs))
    assert count.macs > 0 and count.by_operator.get("mm", 0) + count.by_operator.get("addmm", 0) > 0


def _pretrain(world: Path, tmp_path: Path, encoder: str, target: str, mask: str, modality: str) -> None:
    model = _model(encoder, modality, pretrain=True)
    model.setdefault("objective", {}).update({"mask": mask, "mask_ratio": 0.5, "frame_diff_group_size": TARGETS[target],
                                              **MASKS[mask]})
    if encoder == "lgi_former" and mask == "part_window":
        model["objective"].pop("mask_window")  # the region's own window, (2, 4)
    config = _config(world, tmp_path / "run", model, "pretrain")
    _train_save_reload_count(config, tmp_path / "run")


@pytest.mark.parametrize("encoder,target,mask,modality", PRETRAIN_FAST)
def test_pretraining_combination(world: Path, tmp_path: Path, encoder: str, target: str, mask: str, modality: str) -> None:
    _pretrain(world, tmp_path, encoder, target, mask, modality)


@pytest.mark.slow
@pytest.mark.parametrize("encoder,target,mask,modality", [c for c in PRETRAIN if c not in PRETRAIN_FAST])
def test_pretraining_combination_exhaustive(world: Path, tmp_path: Path, encoder: str, target: str, mask: str,
                                           modality: str) -> None:
    _pretrain(world, tmp_path, encoder, target, mask, modality)


@pytest.mark.parametrize("encoder,mask", list(REFUSED))
@pytest.mark.parametrize("modality", MODALITIES)
def test_a_refused_mask_is_a_config_error_saying_why(tmp_path: Path, encoder: str, mask: str, modality: str) -> None:
    model = _model(encoder, modality, pretrain=True)
    model.setdefault("objective", {})["mask"] = mask
    with pytest.raises(ConfigError, match=rf"model\.objective\.mask .*{REFUSED[encoder, mask]}"):
        config_from_dict(_config(tmp_path, tmp_path / "run", model, "pretrain"))


def _finetune(world: Path, tmp_path: Path, encoder: str, modality: str) -> None:
    config = _config(world, tmp_path / "run", _model(encoder, modality, pretrain=False), "classification")
    # Validation and test on two clips of the world's test split (the step, not the evaluation, is under test).
    split = world / ("audio_visual" if modality == "audio_visual" else "classification") / "test.csv"
    few = tmp_path / "two_clips.csv"
    few.write_text("".join(split.read_text().splitlines(keepends=True)[:2]))
    config["data"].update(val_file=str(few), test_file=str(few))
    _train_save_reload_count(config, tmp_path / "run")


FINETUNE_FAST = [("tpsbt", "audio_visual")]


@pytest.mark.parametrize("encoder,modality", FINETUNE_FAST)
def test_finetuning_combination(world: Path, tmp_path: Path, encoder: str, modality: str) -> None:
    _finetune(world, tmp_path, encoder, modality)


@pytest.mark.slow
@pytest.mark.parametrize("encoder,modality", [c for c in FINETUNE if c not in FINETUNE_FAST])
def test_finetuning_combination_exhaustive(world: Path, tmp_path: Path, encoder: str, modality: str) -> None:
    _finetune(world, tmp_path, encoder, modality)
