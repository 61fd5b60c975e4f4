"""The official training recipes of MAE-DFER, SVFAP and HiCMAE, as data.

Details: ``docs/modules.md``, section ``maedfer/recipes.py``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OFFICIAL_RECIPES", "RANDAUGMENT_POLICY", "recipe", "recipes_for"]

#: The RandAugment policy string of every official fine-tuning recipe (timm notation).
RANDAUGMENT_POLICY = "rand-m7-n4-mstd0.5-inc1"

# ------------------------------------------------------------------------------------------------ shared blocks
# Pre-training on VoxCeleb2, common to the three systems (the MAE-DFER and SVFAP papers/repositories, the HiCMAE paper/repository).
_PRETRAIN_COMMON: dict[str, Any] = {
    "stage": "pretrain",
    "task": "pretrain",
    "dataset": "VoxCeleb2",
    "num_frames": 16,
    "sampling_rate": 4,
    "input_size": 160,
    "fixed_crop": ((0, 160), (32, 192)),  # top-centre crop of the 224x224 VoxCeleb2 frames for 160-px models
    "base_lr": 3e-4,
    "min_lr": 1e-5,
    "epochs": 100,
    "warmup_epochs": 5,
    "warmup_start_lr": 0.0,
    "betas": (0.9, 0.95),
    "eps": 1e-8,
    "weight_decay": 0.05,
    "layer_decay": None,
    "drop_path": 0.0,
    "clip_grad": None,
    "mask_ratio": 0.9,
    "normalize_target": True,
    "target_diff_weight": None,  # one plain MSE over the whole target
    "save_every_epochs": 10,
    "seed": 0,
    "precision": "fp16 autocast + GradScaler",
}

# Fine-tuning, common to every official fine-tuning script (the MAE-DFER and SVFAP papers/repositories, the HiCMAE paper/repository).
_FINETUNE_COMMON: dict[str, Any] = {
    "stage": "finetune",
    "task": "classification",
    "num_frames": 16,
    "input_size": 160,
    "short_side_size": 160,
    "base_lr": 1e-3,
    "min_lr": 1e-6,
    "epochs": 100,
    "warmup_epochs": 5,
    "warmup_start_lr": 0.0,
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "weight_decay": 0.05,
    "layer_decay": 0.75,
    "drop_path": 0.1,
    "clip_grad": None,
    "mixup": 0.8,
    "cutmix": 1.0,
    "label_smoothing": 0.1,
    "rand_augment": RANDAUGMENT_POLICY,
    "reprob": 0.25,
    "test_num_segment": 2,
    "test_num_crop": 2,
    "test_aggregation": "softmax per view, mean over views, argmax",
    "val_every_epochs": 1,
    "val_metric": "acc1",
    "model_selection": "last-epoch model (the validation split is the test split)",
    "seed": 0,
    "precision": "fp16 autocast + GradScaler",
}

_VIDEO_FINETUNE: dict[str, Any] = {
    **_FINETUNE_COMMON,
    "audio": False,
    "head_init_scale": 0.001,  # head weight and bias multiplied by init_scale (trunc-normal 0.02 init)
}

_HICMAE_FINETUNE: dict[str, Any] = {
    **_FINETUNE_COMMON,
    "system": "hicmae",
    "model": "hicmae_base",
    "official_model": "avit_dim512_patch16_160_a256 --depth 10 --depth_audio 10 --fusion_depth 2",
    "audio": True,
    "audio_size": (256, 128),
    # init_scale 0.001 is passed by the scripts but never applied: the head keeps PyTorch's default Linear init.
    "head_init_scale": None,
    # roll_mag_aug: the random gain Beta(10, 10) + 0.5 is applied in every mode, validation and test included.
    "audio_random_gain": True,
    "pretrained_from": "hicmae_voxceleb2",
    "pretrained_checkpoint": "checkpoint-99.pth",
    "batch_per_gpu": 14,
    "gpus": 4,
    "total_batch": 56,
    "effective_lr": 2.1875e-4,
    "sampling_rate": 4,
    "file_ext": "jpg",
    "model_selection": "both last-epoch and best (by val_metric on the test split) are logged; which one the README "
    "reports is not stated",
}

_MAE_DFER_FINETUNE_MODEL = (
    "vit_base_dim512_no_depth_patch16_160 --depth 16 --attn_type local_global --lg_region_size 2 5 10 "
    "--lg_classify_token_type region"
)
_SVFAP_FINETUNE_MODEL = (
    "svfap_base_patch16_160 --stage_depths 12 6 3 --temporal_kernel_size 2 --num_bottleneck_tokens 8"
)

# ------------------------------------------------------------------------------------------------ the table
OFFICIAL_RECIPES: dict[str, dict[str, Any]] = {
    # ---------------------------------------------------------------- pre-training (VoxCeleb2 dev)
    "mae_dfer_voxceleb2": {
        **_PRETRAIN_COMMON,
        "system": "mae_dfer",
        "config": "pretrain/configs/mae_dfer_voxceleb2.yaml",
        "model": "mae_dfer_pretrain_base",
        "official_model": (
            "pretrain_videomae_base_dim512_no_depth_patch16_160 --encoder_depth 16 --decoder_depth 4 "
            "--attn_type local_global --lg_region_size 2 5 10"
        ),
        "num_params": 92_760_192,
        "mask_type": "part_window",
        "mask_window": (5, 10),
        "frame_diff_group_size": 2,
        "batch_per_gpu": None,
        "gpus": None,
        "total_batch": 160,
        "script_batch": (32, 2),
        "effective_lr": 1.875e-4,
        "effective_min_lr": 6.25e-6,
        "num_clips": 1_091_726,
        "released_checkpoint": "checkpoint-49.pth",
        "released_checkpoint_epoch": 49,
        "official_quirks": "decoder positions of the region-major visible tokens (40 of 80 shifted); "
        "maedfer model kwarg decoder_pos_order='official' reproduces it",
        "source": "MAE-DFER repository: pre-training script and log (peak LR 1.875e-4 => total batch 160); fine-tuning "
        "starts from checkpoint-49 of the 100-epoch schedule",
        "unverified": (
            "total batch 160 is inferred from the logged learning rates; the committed script says 32 per GPU x 2 "
            "GPUs = 64 and the per-GPU split of the real run is unknown",
        ),
        "notes": "the released weights are the state after 50 of the 100 scheduled epochs (the LR schedule spans 100)",
    },
    "svfap_voxceleb2": {
        **_PRETRAIN_COMMON,
        "system": "svfap",
        "config": "pretrain/configs/svfap_voxceleb2.yaml",
        "model": "svfap_pretrain_base",
        "official_model": (
            "pretrain_svfap_base_patch16_160 --stage_depths 12 6 3 --temporal_kernel_size 2 "
            "--num_bottleneck_tokens 8 --decoder_depth 4"
        ),
        "num_params": 85_517_200,  # with the 512-wide, 8-head encoder that fine-tuning uses
        "mask_type": "tube",
        "frame_diff_group_size": None,
        "batch_per_gpu": 64,
        "gpus": 4,
        "total_batch": 256,
        "effective_lr": 3e-4,
        "num_clips": 1_091_726,
        "released_checkpoint": "checkpoint-99.pth",
        "released_checkpoint_epoch": 99,
        "official_quirks": "reverse blocks attend to the full unmasked embedding (information leak) and the temporal "
        "up-sampling permutes tokens; maedfer kwargs pretrain_context='official', upsample='official' reproduce them",
        "source": "SVFAP repository: pre-training script, encoder width and official behaviour",
        "unverified": (
            "the registered official pre-training encoder is 768 wide / 12 heads, fine-tuning 512 / 8; the released "
            "checkpoint is most likely 512 / 8",
            "min_lr: the spec gives no SVFAP value; the MAE-DFER value 1e-5 is assumed",
        ),
        "notes": "fine-tuning uses checkpoint-99 (the end of the 100-epoch schedule)",
    },
    "hicmae_voxceleb2": {
        **_PRETRAIN_COMMON,
        "system": "hicmae",
        "config": "pretrain/configs/hicmae_voxceleb2.yaml",
        "model": "hicmae_pretrain_base",
        "official_model": (
            "pretrain_hicmae_dim512_patch16_160_a256 --encoder_depth 10 --encoder_depth_audio 10 --decoder_depth 4 "
            "--decoder_depth_audio 4 --encoder_fusion_depth 2 --return_intermediate_features 3 6 9"
        ),
        "num_params": 99_609_344,
        "mask_type": "tube",
        "audio_mask_ratio": 0.8,
        "audio_size": (256, 128),
        "frame_diff_group_size": 2,
        "contrastive_weight": 0.0025,
        "contrastive_temperature": 0.07,
        "contrastive_layers": (3, 6, 9),
        "contrastive_negatives": "per-GPU batch (no all-gather)",
        "audio_random_gain": True,
        "batch_per_gpu": 40,
        "gpus": 4,
        "total_batch": 160,
        "effective_lr": 1.875e-4,
        "effective_min_lr": 6.25e-6,
        "num_clips": 1_091_581,
        "steps_per_epoch": 6822,
        "released_checkpoint": "checkpoint-99.pth",
        "released_checkpoint_epoch": 99,
        "source": "HiCMAE repository: pre-training script, model, contrastive loss, targets, masks; "
        "released checkpoint-99",
        "unverified": (),
        "notes": "mask_token_audio is weight-decayed in the official run (mask_token is not)",
    },
    # ---------------------------------------------------------------- MAE-DFER fine-tuning
    "dfew_mae_dfer": {
        **_VIDEO_FINETUNE,
        "system": "mae_dfer",
        "dataset": "DFEW",
        "config": "finetune/configs/dfew_mae_dfer.yaml",
        "model": "mae_dfer_base",
        "official_model": _MAE_DFER_FINETUNE_MODEL,
        "num_classes": 7,
        "num_params": 84_878_343,
        "sampling_rate": 4,
        "file_ext": "jpg",
        "batch_per_gpu": 32,
        "gpus": 3,
        "total_batch": 96,
        "effective_lr": 3.75e-4,
        "iterations_per_epoch": {"split01": 97},
        "pretrained_from": "mae_dfer_voxceleb2",
        "pretrained_checkpoint": "checkpoint-49.pth",
        "folds_scripted": ("split01",),
        "reported": {"uar": 63.41, "war": 74.43, "over": "mean of the 5 folds"},
        "source": "MAE-DFER repository: fine-tuning scripts, classes, results and logs",
        "unverified": (),
        "notes": "the script runs split 1 (edit it for 2-5); val.csv is a copy of test.csv",
    },
    "ferv39k_mae_dfer": {
        **_VIDEO_FINETUNE,
        "system": "mae_dfer",
        "dataset": "FERV39k",
        "config": "finetune/configs/ferv39k_mae_dfer.yaml",
        "model": "mae_dfer_base",
        "official_model": _MAE_DFER_FINETUNE_MODEL,
        "num_classes": 7,
        "num_params": 84_878_343,
        "sampling_rate": 1,
        "file_ext": "jpg",
        "batch_per_gpu": 40,
        "gpus": 3,
        "total_batch": 120,
        "effective_lr": 4.6875e-4,
        "iterations_per_epoch": {"all_scenes": 259},
        "pretrained_from": "mae_dfer_voxceleb2",
        "pretrained_checkpoint": "checkpoint-49.pth",
        "folds_scripted": ("all_scenes",),
        "reported": {"uar": 43.12, "war": 52.07, "over": "the single split"},
        "source": "MAE-DFER / SVFAP repositories: fine-tuning scripts, classes and results",
        "unverified": (),
        "notes": "validation uses test.csv",
    },
    "mafw_mae_dfer": {
        **_VIDEO_FINETUNE,
        "system": "mae_dfer",
        "dataset": "MAFW",
        "config": "finetune/configs/mafw_mae_dfer.yaml",
        "model": "mae_dfer_base",
        "official_model": _MAE_DFER_FINETUNE_MODEL,
        "num_classes": 11,
        "num_params": 84_880_395,
        "sampling_rate": 4,
        "file_ext": "png",
        "batch_per_gpu": 32,
        "gpus": 3,
        "total_batch": 96,
        "effective_lr": 3.75e-4,
        "iterations_per_epoch": {"split03": 76},
        "pretrained_from": "mae_dfer_voxceleb2",
        "pretrained_checkpoint": "checkpoint-49.pth",
        "folds_scripted": ("split03",),
        "reported": {"uar": 41.62, "war": 54.31, "over": "mean of the 5 folds (paper)"},
        "source": "MAE-DFER / SVFAP repositories: fine-tuning scripts, classes and results",
        "unverified": (),
        "notes": "the script runs split 3 (edit it for the others); validation uses test.csv",
    },
    # ---------------------------------------------------------------- SVFAP fine-tuning
    "dfew_svfap": {
        **_VIDEO_FINETUNE,
        "system": "svfap",
        "dataset": "DFEW",
        "config": "finetune/configs/dfew_svfap.yaml",
        "model": "svfap_base",
        "official_model": _SVFAP_FINETUNE_MODEL,
        "num_classes": 7,
        "num_params": 77_635_351,
        "sampling_rate": 4,
        "file_ext": "jpg",
        "batch_per_gpu": 16,
        "gpus": 4,
        "total_batch": 64,
        "effective_lr": 2.5e-4,
        "pretrained_from": "svfap_voxceleb2",
        "pretrained_checkpoint": "checkpoint-99.pth",
        "folds_scripted": ("split01", "split02", "split03", "split04", "split05"),
        "reported": {"uar": 62.83, "war": 74.27, "over": "mean of the 5 folds (paper)"},
        "source": "MAE-DFER / SVFAP repositories: fine-tuning scripts, classes and results",
        "unverified": ("the released SVFAP pre-training checkpoint is most likely 512 wide (see svfap_voxceleb2)",),
        "notes": "val.csv is a copy of test.csv",
    },
    "ferv39k_svfap": {
        **_VIDEO_FINETUNE,
        "system": "svfap",
        "dataset": "FERV39k",
        "config": "finetune/configs/ferv39k_svfap.yaml",
        "model": "svfap_base",
        "official_model": _SVFAP_FINETUNE_MODEL,
        "num_classes": 7,
        "num_params": 77_635_351,
        "sampling_rate": 1,
        "file_ext": "jpg",
        "batch_per_gpu": 16,
        "gpus": 4,
        "total_batch": 64,
        "effective_lr": 2.5e-4,
        "pretrained_from": "svfap_voxceleb2",
        "pretrained_checkpoint": "checkpoint-99.pth",
        "folds_scripted": ("all_scenes",),
        "reported": {"uar": 42.14, "war": 52.29, "over": "the single split"},
        "source": "MAE-DFER / SVFAP repositories: fine-tuning scripts, classes and results",
        "unverified": ("the released SVFAP pre-training checkpoint is most likely 512 wide (see svfap_voxceleb2)",),
        "notes": "validation uses test.csv",
    },
    "mafw_svfap": {
        **_VIDEO_FINETUNE,
        "system": "svfap",
        "dataset": "MAFW",
        "config": "finetune/configs/mafw_svfap.yaml",
        "model": "svfap_base",
        "official_model": _SVFAP_FINETUNE_MODEL,
        "num_classes": 11,
        "num_params": None,  # not stated in the spec (77,635,351 for 7 classes)
        "sampling_rate": 4,
        "file_ext": "png",
        "batch_per_gpu": 16,
        "gpus": 4,
        "total_batch": 64,
        "effective_lr": 2.5e-4,
        "pretrained_from": "svfap_voxceleb2",
        "pretrained_checkpoint": "checkpoint-99.pth",
        "folds_scripted": ("split01", "split02", "split03", "split04", "split05"),
        "reported": {"uar": 41.19, "war": 54.28, "over": "mean of the 5 folds (paper)"},
        "source": "MAE-DFER / SVFAP repositories: fine-tuning scripts, classes and results",
        "unverified": ("the released SVFAP pre-training checkpoint is most likely 512 wide (see svfap_voxceleb2)",),
        "notes": "validation uses test.csv",
    },
    # ---------------------------------------------------------------- HiCMAE fine-tuning (audio-visual)
    "crema_d_hicmae": {
        **_HICMAE_FINETUNE,
        "dataset": "CREMA-D",
        "config": "finetune/configs/crema_d_hicmae.yaml",
        "num_classes": 6,
        "num_params": 80_792_602,
        "epochs": 50,
        "folds_scripted": ("split01", "split02", "split03", "split04", "split05"),
        "reported": {"uar": 84.94, "war": 84.91, "over": "5 folds (WAR pooled over the folds' test predictions)"},
        "source": "HiCMAE repository: cream-d/finetune_170.sh: lr 1e-3, 4 GPUs x 14, 50 epochs, sr 4",
        "unverified": (),
        "notes": "4 broken clips are excluded by the official fold builder; validation uses test.csv",
    },
    "mafw_hicmae": {
        **_HICMAE_FINETUNE,
        "dataset": "MAFW",
        "config": "finetune/configs/mafw_hicmae.yaml",
        "num_classes": 11,
        "num_params": None,  # not stated in the spec (80,792,602 for 6 classes)
        "file_ext": "png",
        "epochs": 100,
        "folds_scripted": ("split01", "split02", "split03", "split04", "split05"),
        "reported": {"uar": 42.69, "war": 56.21, "over": "5 folds (UAR: mean of folds, WAR: pooled)"},
        "source": "HiCMAE repository: mafw/finetune_170.sh: as CREMA-D but 100 epochs",
        "unverified": (),
        "notes": "the 21 clips without audio are dropped; validation uses test.csv",
    },
    "ravdess_hicmae": {
        **_HICMAE_FINETUNE,
        "dataset": "RAVDESS",
        "config": "finetune/configs/ravdess_hicmae.yaml",
        "num_classes": 8,
        "num_params": None,
        "epochs": 50,
        "folds_scripted": (),
        "reported": None,
        "source": "HiCMAE repository: no script: 'the argparse defaults plus the CREMA-D-style overrides apply'",
        "unverified": (
            "there is no official RAVDESS script: batch, GPUs, learning rate, epochs (50) and sampling rate (4) "
            "are copied from the CREMA-D script",
        ),
        "notes": "6 actor-independent folds; video from the 02-* clips, audio from the 03-* wavs",
    },
    "msp_improv_hicmae": {
        **_HICMAE_FINETUNE,
        "dataset": "MSP-IMPROV",
        "config": "finetune/configs/msp_improv_hicmae.yaml",
        "num_classes": 4,
        "num_params": None,
        "epochs": 50,
        "folds_scripted": (),
        "reported": None,
        "source": "HiCMAE repository: no script",
        "unverified": (
            "there is no official MSP-IMPROV script: batch, GPUs, learning rate, epochs (50) and sampling rate (4) "
            "are copied from the CREMA-D script",
        ),
        "notes": "6 leave-one-session-out folds; val.csv is byte-identical to test.csv",
    },
    "werewolf_xl_hicmae": {
        **_HICMAE_FINETUNE,
        "task": "regression",
        "dataset": "Werewolf-XL",
        "config": "finetune/configs/werewolf_xl_hicmae.yaml",
        "num_classes": 3,  # regression targets
        "num_params": None,
        "sampling_rate": 3,
        "epochs": 30,
        "batch_per_gpu": 32,
        "gpus": 4,
        "total_batch": 128,
        "effective_lr": 5e-4,
        # The regression runner has no mixup / cutmix (and so no label smoothing); RandAugment and erasing stay.
        "mixup": 0.0,
        "cutmix": 0.0,
        "label_smoothing": 0.0,
        "regression_loss": "mse",
        "val_metric": "ccc",
        "test_aggregation": "mean of the raw outputs over views",
        "folds_scripted": ("split01", "split02", "split03", "split04", "split05"),
        "reported": None,
        "source": "HiCMAE repository (werewolf-xl/finetune_170.sh: lr 1e-3, bs 32, nproc 4, 30 epochs, sr 3, mse, "
        "val_metric ccc), regression runner",
        "unverified": (
            "the script starts 4 processes with only 2 visible GPUs: 4 x 32 = 128 (LR 5e-4) is assumed; with 2 "
            "ranks the total would be 64 (LR 2.5e-4)",
            "the names and order of the 3 targets are not in the official code",
        ),
        "notes": "the README radar reports the valence dimension; no numbers are stated",
    },
}


def recipe(name: str) -> dict[str, Any]:
    """The official recipe ``name`` (a key of :data:`OFFICIAL_RECIPES`, e.g. ``"dfew_mae_dfer"``).

    Raises:
        KeyError: For an unknown name (the message lists the known ones).
    """
    try:
        return OFFICIAL_RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown recipe {name!r}; known: {', '.join(sorted(OFFICIAL_RECIPES))}") from None


def recipes_for(*, system: str | None = None, stage: str | None = None, dataset: str | None = None) -> list[str]:
    """Names of the recipes matching every given filter.

    Args:
        system: ``"mae_dfer"``, ``"svfap"`` or ``"hicmae"``.
        stage: ``"pretrain"`` or ``"finetune"``.
        dataset: A dataset name or alias as accepted by :func:`maedfer.data.registry.dataset_info` (``"DFEW"``,
            ``"crema-d"``, ``"cremad"`` ...).

    Returns:
        Sorted recipe names.

    Raises:
        KeyError: If ``dataset`` is not a known dataset.
    """
    from .data.registry import dataset_info

    wanted = dataset_info(dataset).name if dataset is not None else None
    names = []
    for name, entry in OFFICIAL_RECIPES.items():
        if system is not None and entry["system"] != system:
            continue
        if stage is not None and entry["stage"] != stage:
            continue
        if wanted is not None and entry["dataset"] != wanted:
            continue
        names.append(name)
    return sorted(names)
