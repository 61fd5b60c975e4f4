"""The experiment YAML files under pretrain/configs and finetune/configs, and the official-recipe table.

* Every file loads with :func:`maedfer.config.load_config` (unknown keys are errors), names a registered model and a
  known dataset, and its model builds (at the registry's tiny size; the demo files at their own size).
* Every official-recipe file equals its entry of :data:`maedfer.recipes.OFFICIAL_RECIPES`, field by field. The mapping
  from recipe fields to configuration fields (:data:`CONFIG_VALUE`) is part of the test: every recipe field is either
  mapped or listed in :data:`DESCRIPTIVE_FIELDS`.
* The recipe table itself equals facts typed in here from the specs (the MAE-DFER and SVFAP papers/repositories, the HiCMAE paper/repository).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import maedfer
from maedfer.config import ExperimentConfig, config_to_dict, load_config
from maedfer.data.build import pretraining_mask
from maedfer.data.registry import dataset_info
from maedfer.masking import build_mask_generator
from maedfer.recipes import OFFICIAL_RECIPES

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIRS = (REPO / "pretrain" / "configs", REPO / "finetune" / "configs")
ALL_CONFIGS = sorted(path for folder in CONFIG_DIRS for path in folder.glob("*.yaml"))
DEMO_CONFIGS = {
    REPO / "pretrain" / "configs" / "demo.yaml",
    REPO / "finetune" / "configs" / "demo.yaml",
    REPO / "finetune" / "configs" / "demo_scratch.yaml",
    REPO / "finetune" / "configs" / "demo_linear_probe.yaml",
}
OFFICIAL_CONFIGS = [path for path in ALL_CONFIGS if path not in DEMO_CONFIGS]


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _ids(paths: list[Path]) -> list[str]:
    return [_rel(path) for path in paths]


def _recipe_of(path: Path) -> dict[str, Any]:
    return OFFICIAL_RECIPES[path.stem]


def _gpus_comment(path: Path) -> int:
    """The ``# gpus: N`` line every official-recipe file carries (the official number of processes)."""
    found = re.findall(r"^#\s*gpus:\s*(\d+)\s*$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert len(found) == 1, f"{_rel(path)}: expected exactly one '# gpus: N' comment line, found {len(found)}"
    return int(found[0])


def _video_encoder(model: nn.Module) -> nn.Module:
    """The video token encoder of a model: ``model.encoder`` for autoencoders and HiCMAE, else the model."""
    encoder = getattr(model, "encoder", None)
    return encoder if isinstance(encoder, nn.Module) else model


@functools.lru_cache(maxsize=None)
def _full_model(path: Path) -> nn.Module:
    """The configuration's model at full size, built on the meta device (shapes only, no memory, fast)."""
    cfg = load_config(path)
    with torch.device("meta"):
        return maedfer.create_model(cfg.model.name, **cfg.model.kwargs)


@dataclass
class Ctx:
    """What a recipe field is compared against: the loaded file, its path and the official GPU count."""

    path: Path
    cfg: ExperimentConfig
    gpus: int

    @property
    def total_batch(self) -> int:
        return self.cfg.data.batch_size * self.gpus * self.cfg.optim.accum_steps

    @property
    def model(self) -> nn.Module:
        return _full_model(self.path)


def _audio_size(ctx: Ctx) -> tuple[int, int]:
    audio = ctx.model.encoder_audio
    return tuple(g * audio.patch_embed.patch_size for g in audio.grid_size)  # type: ignore[return-value]


def _audio_random_gain(ctx: Ctx) -> bool:
    if ctx.cfg.train.task == "pretrain":  # the pre-training dataset always uses its default (not configurable)
        from maedfer.data.pretrain_datasets import PretrainAudioConfig

        return PretrainAudioConfig().random_gain
    return ctx.cfg.data.audio_random_gain


def _head_init_scale(ctx: Ctx) -> float | None:
    kwargs = ctx.cfg.model.kwargs
    return None if kwargs.get("head_init") == "pytorch" else kwargs["init_scale"]


def _fixed_crop(ctx: Ctx) -> tuple[tuple[int, ...], ...] | None:
    crop = ctx.cfg.data.fixed_crop
    return None if crop is None else tuple(tuple(pair) for pair in crop)


#: Recipe field -> the value the configuration (or the model it builds) gives that field.
CONFIG_VALUE: dict[str, Callable[[Ctx], Any]] = {
    "config": lambda c: _rel(c.path),
    "stage": lambda c: "pretrain" if c.path.parent.parent.name == "pretrain" else "finetune",
    "system": lambda c: maedfer.model_entry(c.cfg.model.name).system,
    "model": lambda c: c.cfg.model.name,
    "task": lambda c: c.cfg.train.task,
    "dataset": lambda c: dataset_info(c.cfg.data.dataset).name,
    "num_classes": lambda c: c.cfg.model.kwargs["num_classes"],
    "num_params": lambda c: sum(p.numel() for p in c.model.parameters()),
    "audio": lambda c: getattr(c.model, "encoder_audio", None) is not None,
    # geometry
    "num_frames": lambda c: c.cfg.data.num_frames,
    "sampling_rate": lambda c: c.cfg.data.sampling_rate,
    "input_size": lambda c: c.cfg.data.input_size,
    "short_side_size": lambda c: c.cfg.data.short_side_size,
    "fixed_crop": _fixed_crop,
    "file_ext": lambda c: c.cfg.data.file_ext,
    "audio_size": _audio_size,
    # batch and learning rate
    "gpus": lambda c: c.gpus,
    "batch_per_gpu": lambda c: c.cfg.data.batch_size,
    "total_batch": lambda c: c.total_batch,
    "base_lr": lambda c: c.cfg.optim.lr,
    "min_lr": lambda c: c.cfg.optim.min_lr,
    "effective_lr": lambda c: c.cfg.optim.lr * c.total_batch / 256,
    "effective_min_lr": lambda c: c.cfg.optim.min_lr * c.total_batch / 256,
    "epochs": lambda c: c.cfg.train.epochs,
    "warmup_epochs": lambda c: c.cfg.optim.warmup_epochs,
    "betas": lambda c: tuple(c.cfg.optim.betas),
    "eps": lambda c: c.cfg.optim.eps,
    "weight_decay": lambda c: c.cfg.optim.weight_decay,
    "layer_decay": lambda c: c.cfg.optim.layer_decay,
    "clip_grad": lambda c: c.cfg.optim.clip_grad,
    "drop_path": lambda c: c.cfg.model.kwargs["drop_path_rate"],
    "seed": lambda c: c.cfg.train.seed,
    # fine-tuning augmentation and evaluation
    "mixup": lambda c: c.cfg.data.mixup,
    "cutmix": lambda c: c.cfg.data.cutmix,
    "label_smoothing": lambda c: c.cfg.data.label_smoothing,
    "rand_augment": lambda c: "rand-m7-n4-mstd0.5-inc1" if c.cfg.data.rand_augment else None,
    "reprob": lambda c: c.cfg.data.reprob,
    "test_num_segment": lambda c: c.cfg.data.test_num_segment,
    "test_num_crop": lambda c: c.cfg.data.test_num_crop,
    "val_every_epochs": lambda c: c.cfg.train.eval_every_epochs,
    "head_init_scale": _head_init_scale,
    "audio_random_gain": _audio_random_gain,
    "regression_loss": lambda c: c.cfg.train.regression_loss,
    "pretrained_from": lambda c: Path(c.cfg.model.checkpoint).parent.name,
    "pretrained_checkpoint": lambda c: Path(c.cfg.model.checkpoint).name,
    # pre-training objective
    "mask_type": lambda c: c.cfg.data.mask_type,
    "mask_ratio": lambda c: c.cfg.data.mask_ratio,
    "mask_window": lambda c: tuple(_video_encoder(c.model).region_size[1:]),
    "audio_mask_ratio": lambda c: c.cfg.data.audio_mask_ratio,
    "normalize_target": lambda c: c.cfg.train.normalize_target,
    "frame_diff_group_size": lambda c: c.cfg.train.frame_diff_group_size,
    "target_diff_weight": lambda c: c.cfg.train.target_diff_weight,
    "contrastive_weight": lambda c: c.cfg.train.contrastive_weight,
    "contrastive_temperature": lambda c: c.model.temperature,
    "contrastive_layers": lambda c: tuple(c.model.return_intermediate_features),
    "contrastive_negatives": lambda c: (
        "global batch (all-gather)" if c.cfg.train.gather_negatives else "per-GPU batch (no all-gather)"
    ),
    "save_every_epochs": lambda c: c.cfg.train.save_every_epochs,
}

#: Recipe fields that describe the official run but have no configuration counterpart (checked elsewhere or not
#: at all): provenance, notes, results, official names, schedule facts the trainer fixes.
DESCRIPTIVE_FIELDS = {
    "source", "unverified", "notes", "official_model", "official_quirks", "reported", "precision", "script_batch",
    "num_clips", "steps_per_epoch", "iterations_per_epoch", "released_checkpoint", "released_checkpoint_epoch",
    "test_aggregation", "val_metric", "model_selection", "folds_scripted", "warmup_start_lr",
}

#: Fields whose recipe value ``None`` means "not known from the spec": any configuration value is accepted.
NONE_MEANS_UNKNOWN = {"gpus", "batch_per_gpu", "num_params"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(actual: Any, expected: Any) -> bool:
    if _is_number(expected) and _is_number(actual):  # 5 epochs of warm-up == 5.0; LRs compared to 1e-9
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=0.0)
    if isinstance(expected, tuple) and isinstance(actual, (tuple, list)):
        return len(actual) == len(expected) and all(_same(a, e) for a, e in zip(actual, expected))
    return type(actual) is type(expected) and actual == expected or (actual is None and expected is None)


# --------------------------------------------------------------------------------------- every configuration
def test_config_files_are_the_expected_ones() -> None:
    names = set(_ids(ALL_CONFIGS))
    for demo in DEMO_CONFIGS:
        assert _rel(demo) in names
    assert {path.stem for path in OFFICIAL_CONFIGS} == set(OFFICIAL_RECIPES)
    for name, entry in OFFICIAL_RECIPES.items():
        assert entry["config"] in names, f"recipe {name}: {entry['config']} is missing"
        assert Path(entry["config"]).stem == name
    assert not (REPO / "pretrain" / "__init__.py").exists() and not (REPO / "finetune" / "__init__.py").exists()


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=_ids(ALL_CONFIGS))
def test_config_loads_with_a_registered_model_and_dataset(path: Path) -> None:
    cfg = load_config(path)  # unknown keys or wrong types raise ConfigError
    assert maedfer.is_model(cfg.model.name), f"{_rel(path)}: model {cfg.model.name!r} is not registered"
    entry = maedfer.model_entry(cfg.model.name)
    assert not entry.official, "configs use maedfer's clean model names"
    assert entry.kind == ("pretrain" if cfg.train.task == "pretrain" else "finetune")
    assert path.parent.parent.name == ("pretrain" if cfg.train.task == "pretrain" else "finetune")
    if cfg.data.dataset != "synthetic":
        info = dataset_info(cfg.data.dataset)
        assert info.name == cfg.data.dataset, "configs spell the registry's canonical dataset name"
    assert cfg.train.precision == "auto" and cfg.train.backend == "auto"
    assert cfg.optim.warmup_steps == -1 and cfg.optim.accum_steps == 1


@pytest.mark.parametrize("path", OFFICIAL_CONFIGS, ids=_ids(OFFICIAL_CONFIGS))
def test_official_config_model_builds_at_tiny_size(path: Path) -> None:
    cfg = load_config(path)
    tiny = maedfer.model_entry(cfg.model.name).tiny_overrides
    assert tiny, f"{cfg.model.name} has no tiny overrides"
    model = maedfer.create_model(cfg.model.name, **{**cfg.model.kwargs, **tiny})
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    if "num_classes" in cfg.model.kwargs:
        assert model.num_classes == cfg.model.kwargs["num_classes"]


# ------------------------------------------------------------------------------------ official recipe files
@pytest.mark.parametrize("path", OFFICIAL_CONFIGS, ids=_ids(OFFICIAL_CONFIGS))
def test_official_config_equals_its_recipe(path: Path) -> None:
    entry = _recipe_of(path)
    unmapped = set(entry) - set(CONFIG_VALUE) - DESCRIPTIVE_FIELDS
    assert not unmapped, f"recipe fields without a config mapping: {sorted(unmapped)}"
    ctx = Ctx(path=path, cfg=load_config(path), gpus=_gpus_comment(path))
    wrong = []
    for field, expected in entry.items():
        if field in DESCRIPTIVE_FIELDS or (expected is None and field in NONE_MEANS_UNKNOWN):
            continue
        actual = CONFIG_VALUE[field](ctx)
        if not _same(actual, expected):
            wrong.append(f"{field}: config gives {actual!r}, recipe says {expected!r}")
    assert not wrong, f"{_rel(path)} differs from OFFICIAL_RECIPES[{path.stem!r}]:\n  " + "\n  ".join(wrong)
    assert ctx.cfg.optim.scale_lr, "official configs give the base LR per 256 clips"


@pytest.mark.parametrize("path", OFFICIAL_CONFIGS, ids=_ids(OFFICIAL_CONFIGS))
def test_official_model_geometry_matches_the_data(path: Path) -> None:
    cfg = load_config(path)
    encoder = _video_encoder(_full_model(path))
    tubelet, patch = encoder.patch_embed.tubelet_size, encoder.patch_embed.patch_size
    assert (tubelet, patch) == (2, 16)
    grid = (cfg.data.num_frames // tubelet, cfg.data.input_size // patch, cfg.data.input_size // patch)
    assert tuple(encoder.grid_size) == grid == (8, 10, 10)
    if cfg.data.fixed_crop is not None:  # the crop must give input_size x input_size frames
        (top, bottom), (left, right) = cfg.data.fixed_crop
        assert bottom - top == right - left == cfg.data.input_size


# Reference parameter counts stated in the specs (official code, 16x160x160): (K of the count, count, head input).
SPEC_PARAMS = {
    "mae_dfer_base": (7, 84_878_343, 512),  # the MAE-DFER and SVFAP papers/repositories
    "svfap_base": (7, 77_635_351, 512),  # the MAE-DFER and SVFAP papers/repositories
    "hicmae_base": (6, 80_792_602, 2048),  # the HiCMAE paper/repository (head 2048 * 6 + 6 = 12,294)
}
SPEC_PRETRAIN_PARAMS = {
    "mae_dfer_pretrain_base": 92_760_192,  # the MAE-DFER and SVFAP papers/repositories (matches the log)
    "svfap_pretrain_base": 85_517_200,  # the MAE-DFER and SVFAP papers/repositories, the 512-wide encoder
    "hicmae_pretrain_base": 99_609_344,  # the HiCMAE paper/repository
}


@pytest.mark.parametrize("path", OFFICIAL_CONFIGS, ids=_ids(OFFICIAL_CONFIGS))
def test_official_model_has_the_official_parameter_count(path: Path) -> None:
    cfg = load_config(path)
    count = sum(p.numel() for p in _full_model(path).parameters())
    if cfg.train.task == "pretrain":
        assert count == SPEC_PRETRAIN_PARAMS[cfg.model.name]
    else:
        ref_classes, ref_count, features = SPEC_PARAMS[cfg.model.name]
        classes = cfg.model.kwargs["num_classes"]
        assert count == ref_count + (classes - ref_classes) * (features + 1)


@pytest.mark.parametrize("path", OFFICIAL_CONFIGS, ids=_ids(OFFICIAL_CONFIGS))
def test_official_config_paths_follow_the_prepared_layout(path: Path) -> None:
    cfg = load_config(path)
    info = dataset_info(cfg.data.dataset)
    files = [cfg.data.train_file] + ([] if cfg.train.task == "pretrain" else [cfg.data.val_file, cfg.data.test_file])
    splits = ["train"] if cfg.train.task == "pretrain" else ["train", "val", "test"]
    multi_fold = len(info.folds) > 1
    for file, split in zip(files, splits):
        assert file is not None
        if multi_fold:
            assert "{fold}" in file and "{fold}" in cfg.train.output_dir
            for fold in info.folds:
                resolved = Path(file.replace("{fold}", fold))
                assert resolved.parts[0] == "data" and resolved.parent.name == fold and resolved.name == f"{split}.csv"
        else:
            resolved = Path(file)
            assert "{fold}" not in file and "{fold}" not in cfg.train.output_dir
            assert resolved.parts[0] == "data" and resolved.parent.name == info.folds[0]
            assert resolved.name == f"{split}.csv"
    assert cfg.train.output_dir.startswith(f"runs/{path.stem}")
    if cfg.train.task != "pretrain":
        assert cfg.model.checkpoint is not None and cfg.model.checkpoint.startswith("checkpoints/")
        # an audio-visual model needs the audio-visual (or regression) annotation files of an AV dataset
        if _recipe_of(path)["audio"]:
            assert info.modality == "audio_visual"


@pytest.mark.parametrize(
    "name", [n for n, e in OFFICIAL_RECIPES.items() if e["stage"] == "pretrain"]
)
def test_released_pretraining_checkpoint_is_kept(name: str) -> None:
    """The checkpoint the fine-tuning recipes start from (official 0-based epoch) is written and never pruned."""
    entry = OFFICIAL_RECIPES[name]
    cfg = load_config(REPO / entry["config"])
    epochs_done = entry["released_checkpoint_epoch"] + 1
    assert epochs_done % cfg.train.save_every_epochs == 0 and epochs_done <= cfg.train.epochs
    assert cfg.train.keep_checkpoints == 0
    assert entry["released_checkpoint"] == f"checkpoint-{entry['released_checkpoint_epoch']}.pth"
    users = [n for n, e in OFFICIAL_RECIPES.items() if e.get("pretrained_from") == name]
    assert users and all(OFFICIAL_RECIPES[u]["pretrained_checkpoint"] == entry["released_checkpoint"] for u in users)


# ------------------------------------------------------------------------------------ the recipe table itself
def test_recipes_are_internally_consistent() -> None:
    for name, entry in OFFICIAL_RECIPES.items():
        assert entry["effective_lr"] == pytest.approx(entry["base_lr"] * entry["total_batch"] / 256, rel=1e-12), name
        if "effective_min_lr" in entry:
            assert entry["effective_min_lr"] == pytest.approx(entry["min_lr"] * entry["total_batch"] / 256), name
        if entry["gpus"] is not None:
            assert entry["batch_per_gpu"] * entry["gpus"] == entry["total_batch"], name
        assert isinstance(entry["source"], str) and any(k in entry["source"].lower() for k in ("mae-dfer", "svfap", "hicmae")), name
        assert dataset_info(entry["dataset"]).name == entry["dataset"], name
        assert maedfer.model_entry(entry["model"]).system == entry["system"], name
        if entry["stage"] == "finetune":
            info = dataset_info(entry["dataset"])
            assert entry["num_classes"] == info.num_classes, name
            assert entry["task"] == info.task, name
            assert name == f"{entry['dataset'].lower().replace('-', '_')}_{entry['system']}"
            assert entry["pretrained_from"] == f"{entry['system']}_voxceleb2"
        else:
            assert name == f"{entry['system']}_voxceleb2"


def test_recipe_numbers_equal_the_spec() -> None:
    r = OFFICIAL_RECIPES
    # the MAE-DFER and SVFAP papers/repositories: MAE-DFER pre-training, peak LR 1.875e-4 = 3e-4 x 160 / 256 (log).
    assert r["mae_dfer_voxceleb2"]["effective_lr"] == 1.875e-4
    assert r["mae_dfer_voxceleb2"]["total_batch"] == 160
    assert r["mae_dfer_voxceleb2"]["mask_type"] == "part_window" and r["mae_dfer_voxceleb2"]["mask_window"] == (5, 10)
    assert r["mae_dfer_voxceleb2"]["frame_diff_group_size"] == 2
    assert r["mae_dfer_voxceleb2"]["betas"] == (0.9, 0.95)
    assert r["mae_dfer_voxceleb2"]["released_checkpoint"] == "checkpoint-49.pth"
    # SVFAP pre-training: 64 x 4 = 256, LR 3e-4, tube masking, checkpoint-99.
    assert (r["svfap_voxceleb2"]["batch_per_gpu"], r["svfap_voxceleb2"]["gpus"]) == (64, 4)
    assert r["svfap_voxceleb2"]["effective_lr"] == 3e-4 and r["svfap_voxceleb2"]["mask_type"] == "tube"
    assert r["svfap_voxceleb2"]["released_checkpoint"] == "checkpoint-99.pth"
    # the HiCMAE paper/repository: 40 x 4 = 160, peak 1.875e-4, min 6.25e-6, lambda 0.0025, audio mask 0.8.
    hic = r["hicmae_voxceleb2"]
    assert (hic["batch_per_gpu"], hic["gpus"]) == (40, 4)
    assert (hic["effective_lr"], hic["effective_min_lr"]) == (1.875e-4, 6.25e-6)
    assert hic["contrastive_weight"] == 0.0025 and hic["audio_mask_ratio"] == 0.8 and hic["mask_ratio"] == 0.9
    assert hic["contrastive_layers"] == (3, 6, 9) and hic["contrastive_temperature"] == 0.07
    # the MAE-DFER and SVFAP papers/repositories per-dataset table.
    assert (r["dfew_mae_dfer"]["batch_per_gpu"], r["dfew_mae_dfer"]["gpus"]) == (32, 3)
    assert r["dfew_mae_dfer"]["effective_lr"] == 3.75e-4
    assert r["ferv39k_mae_dfer"]["sampling_rate"] == 1 and r["ferv39k_svfap"]["sampling_rate"] == 1
    assert r["ferv39k_mae_dfer"]["effective_lr"] == 4.6875e-4 and r["ferv39k_mae_dfer"]["total_batch"] == 120
    assert r["mafw_mae_dfer"]["num_classes"] == 11 and r["mafw_mae_dfer"]["file_ext"] == "png"
    for name in ("dfew_svfap", "ferv39k_svfap", "mafw_svfap"):
        assert (r[name]["batch_per_gpu"], r[name]["gpus"], r[name]["effective_lr"]) == (16, 4, 2.5e-4)
    for name in ("dfew_mae_dfer", "ferv39k_mae_dfer", "mafw_mae_dfer", "dfew_svfap", "mafw_svfap"):
        entry = r[name]
        assert (entry["epochs"], entry["warmup_epochs"]) == (100, 5)
        assert (entry["layer_decay"], entry["drop_path"]) == (0.75, 0.1)
        assert (entry["mixup"], entry["cutmix"], entry["label_smoothing"], entry["reprob"]) == (0.8, 1.0, 0.1, 0.25)
        assert (entry["test_num_segment"], entry["test_num_crop"], entry["betas"]) == (2, 2, (0.9, 0.999))
        assert entry["weight_decay"] == 0.05 and entry["rand_augment"] == "rand-m7-n4-mstd0.5-inc1"
    # the HiCMAE paper/repository: CREMA-D 4 x 14 = 56 -> 2.1875e-4, 50 epochs; MAFW 100 epochs; Werewolf-XL sr 3, 30 epochs.
    assert (r["crema_d_hicmae"]["total_batch"], r["crema_d_hicmae"]["effective_lr"]) == (56, 2.1875e-4)
    assert r["crema_d_hicmae"]["epochs"] == 50 and r["mafw_hicmae"]["epochs"] == 100
    assert (r["werewolf_xl_hicmae"]["sampling_rate"], r["werewolf_xl_hicmae"]["epochs"]) == (3, 30)
    assert r["werewolf_xl_hicmae"]["task"] == "regression" and r["werewolf_xl_hicmae"]["regression_loss"] == "mse"
    assert r["werewolf_xl_hicmae"]["mixup"] == 0.0 and r["werewolf_xl_hicmae"]["unverified"]
    for name in ("ravdess_hicmae", "msp_improv_hicmae"):  # no official script
        assert r[name]["unverified"]
    # Reported results (the MAE-DFER and SVFAP papers/repositories, the HiCMAE paper/repository).
    assert (r["dfew_mae_dfer"]["reported"]["uar"], r["dfew_mae_dfer"]["reported"]["war"]) == (63.41, 74.43)
    assert (r["crema_d_hicmae"]["reported"]["uar"], r["crema_d_hicmae"]["reported"]["war"]) == (84.94, 84.91)
    # Parameter counts: the K=11 MAE-DFER figure is the K=7 one plus 4 more 513-input head rows.
    assert r["mafw_mae_dfer"]["num_params"] == r["dfew_mae_dfer"]["num_params"] + 4 * 513 == 84_880_395


def test_recipe_accessors() -> None:
    from maedfer.recipes import recipe, recipes_for

    assert recipe("dfew_mae_dfer") is OFFICIAL_RECIPES["dfew_mae_dfer"]
    with pytest.raises(KeyError, match="known"):
        recipe("dfew_unknown")
    assert recipes_for(stage="pretrain") == ["hicmae_voxceleb2", "mae_dfer_voxceleb2", "svfap_voxceleb2"]
    assert recipes_for(system="hicmae", dataset="mafw") == ["mafw_hicmae"]
    assert recipes_for(dataset="cremad") == ["crema_d_hicmae"]
    assert len(recipes_for(stage="finetune")) == 11


# -------------------------------------------------------------------------------------------- demo configs
def test_demo_pretraining_model_runs_with_its_part_window_mask_and_motion_target() -> None:
    cfg = load_config(REPO / "pretrain" / "configs" / "demo.yaml")
    assert cfg.data.dataset == "synthetic" and cfg.train.task == "pretrain"
    # MAE-DFER at demo size: an LGI-Former with its part-window mask and appearance + frame-difference target.
    assert cfg.model.name == "mae_dfer_pretrain_base" and cfg.train.frame_diff_group_size == 2
    torch.manual_seed(0)
    model = maedfer.create_model(cfg.model.name, **cfg.model.kwargs)
    encoder = model.encoder
    patch, tubelet = encoder.patch_embed.patch_size, encoder.patch_embed.tubelet_size
    grid = (cfg.data.num_frames // tubelet, cfg.data.input_size // patch, cfg.data.input_size // patch)
    assert tuple(encoder.grid_size) == grid == (4, 4, 4)
    assert tuple(encoder.region_size) == (2, 2, 4)  # 4 regions of 16 tokens
    kind, window = pretraining_mask(encoder, cfg.data.mask_type)
    assert (kind, window) == ("part_window", (2, 4))
    generator = build_mask_generator(kind, grid, cfg.data.mask_ratio, window=window)
    mask = generator.batch(2, torch.Generator().manual_seed(0))
    assert generator.num_masked == 48  # 75 % of 64 tokens
    video = torch.randn(2, 3, cfg.data.num_frames, cfg.data.input_size, cfg.data.input_size)
    prediction = model(video, mask)
    assert prediction.shape == (2, generator.num_masked, 3 * tubelet * patch * patch)
    assert torch.isfinite(prediction).all()


def test_demo_finetuning_is_label_scarce_on_a_larger_pretraining_pool() -> None:
    pre = load_config(REPO / "pretrain" / "configs" / "demo.yaml")
    fine = load_config(REPO / "finetune" / "configs" / "demo.yaml")
    assert pre.data.synthetic == fine.data.synthetic  # the same world
    train_clips = 7 * pre.data.synthetic["clips_per_class"]["train"]
    assert fine.data.labels_per_class is not None and 7 * fine.data.labels_per_class < train_clips


@pytest.mark.parametrize("name", ["demo.yaml", "demo_scratch.yaml", "demo_linear_probe.yaml"])
def test_demo_finetuning_model_matches_the_demo_pretraining(name: str, tmp_path: Path) -> None:
    pre = load_config(REPO / "pretrain" / "configs" / "demo.yaml")
    cfg = load_config(REPO / "finetune" / "configs" / name)
    assert cfg.data.dataset == "synthetic" and cfg.train.task == "classification"
    from maedfer.synthetic import EMOTION_CLASSES

    assert cfg.model.kwargs["num_classes"] == len(EMOTION_CLASSES) == 7
    encoder_kwargs = {
        k: v for k, v in pre.model.kwargs.items() if not k.startswith("decoder_") and k != "drop_path_rate"
    }
    assert {k: cfg.model.kwargs[k] for k in encoder_kwargs} == encoder_kwargs
    for key in ("num_frames", "sampling_rate", "input_size", "short_side_size", "root"):
        assert getattr(cfg.data, key) == getattr(pre.data, key), key
    # The demo pre-training's weights load into the demo fine-tuning model.
    torch.manual_seed(0)
    pretrained = maedfer.create_model(pre.model.name, **pre.model.kwargs)
    file = tmp_path / "checkpoint-last.pth"
    torch.save({"model": pretrained.state_dict()}, file)
    model = maedfer.create_model(cfg.model.name, checkpoint=file, **cfg.model.kwargs)
    assert torch.equal(model.patch_embed.proj.weight, pretrained.encoder.patch_embed.proj.weight)
    assert torch.equal(model.lg_region_tokens, pretrained.encoder.lg_region_tokens)  # the messengers too
    logits = model(torch.randn(2, 3, cfg.data.num_frames, cfg.data.input_size, cfg.data.input_size))
    assert logits.shape == (2, 7)


def test_demo_scratch_differs_from_demo_only_in_checkpoint_and_output() -> None:
    demo = config_to_dict(load_config(REPO / "finetune" / "configs" / "demo.yaml"))
    scratch = config_to_dict(load_config(REPO / "finetune" / "configs" / "demo_scratch.yaml"))
    pre = load_config(REPO / "pretrain" / "configs" / "demo.yaml")
    assert demo["model"]["checkpoint"] == str(Path(pre.train.output_dir) / "checkpoint-last.pth")
    assert scratch["model"]["checkpoint"] is None
    assert demo["train"]["output_dir"] != scratch["train"]["output_dir"] != pre.train.output_dir
    for config in (demo, scratch):
        config["model"]["checkpoint"] = None
        config["train"]["output_dir"] = ""
    assert demo == scratch
