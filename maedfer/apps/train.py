"""``main(argv)``: the entry point behind ``pretrain/pretrain.py`` and ``finetune/finetune.py``.

Details: ``docs/modules.md``, section ``maedfer/apps/train.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import atomic_write_text
from ..config import ExperimentConfig, dump_config, load_config

__all__ = ["main", "run", "parse_folds", "resolve_label_names", "write_folds_summary", "write_test_results"]

logger = logging.getLogger(__name__)

#: Where the synthetic world is generated when `data.root` is not set.
SYNTHETIC_DEFAULT_ROOT = "runs/synthetic_world"


# ----------------------------------------------------------------------------------------------------- helpers
def parse_folds(text: str | None) -> list[str]:
    """``"1-5"`` -> ``["1", "2", "3", "4", "5"]``; ``"1,3"`` -> ``["1", "3"]``; names pass through."""
    if not text:
        return []
    folds: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part and all(p.strip().isdigit() for p in part.split("-", 1)):
            low, high = (int(p) for p in part.split("-", 1))
            folds.extend(str(i) for i in range(low, high + 1))
        elif part:
            folds.append(part)
    return folds


def fold_name(dataset: str, fold: str) -> str:
    """A numeric fold ``"i"`` becomes the dataset's i-th fold name (``"1"`` -> ``"split01"`` for DFEW), as written by
    ``datasets/<name>/prepare.py``; other names pass through."""
    if not fold.isdigit():
        return fold
    try:
        from ..data.registry import dataset_info

        folds = dataset_info(dataset).folds
    except (KeyError, ValueError):
        return fold
    index = int(fold) - 1
    if folds and 0 <= index < len(folds) and fold not in folds:
        return folds[index]
    return fold


def folds_summary_dir(output_dir: str) -> Path:
    """Where the fold summary of a run whose ``train.output_dir`` is ``output_dir`` goes: the folder the fold outputs
    share (``runs/x`` for ``runs/x/{fold}`` and ``runs/x/fold{fold}``; ``output_dir`` itself when it has no ``{fold}``,
    the folds then going to ``output_dir/fold<i>``)."""
    if "{fold}" not in output_dir:
        return Path(output_dir)
    prefix = output_dir.split("{fold}")[0]
    return Path(prefix) if not prefix or prefix.endswith(("/", os.sep)) else Path(prefix).parent


def _with_fold(cfg: ExperimentConfig, fold: str) -> ExperimentConfig:
    import copy

    cfg = copy.deepcopy(cfg)
    fold = fold_name(cfg.data.dataset, fold)
    for name in ("train_file", "val_file", "test_file"):
        value = getattr(cfg.data, name)
        if value is not None:
            setattr(cfg.data, name, value.replace("{fold}", fold))
    placeholder = "{fold}" in cfg.train.output_dir
    cfg.train.output_dir = cfg.train.output_dir.replace("{fold}", fold)
    if not placeholder and fold:
        cfg.train.output_dir = str(Path(cfg.train.output_dir) / f"fold{fold}")
    if cfg.model.checkpoint is not None:
        cfg.model.checkpoint = cfg.model.checkpoint.replace("{fold}", fold)
    return cfg


def with_synthetic_world(cfg: ExperimentConfig, model: nn.Module, *, rank: int = 0, world_size: int = 1) -> ExperimentConfig:
    """``cfg`` with the synthetic world's split files filled in when ``data.dataset`` is ``synthetic``.

    The world is generated under ``data.root`` (default ``runs/synthetic_world``) on first use, by rank 0 only (the
    other ranks wait), so every command runs on a fresh machine without licensed data. Explicit files win.
    """
    import dataclasses

    from ..models.contract import input_modalities
    from ..synthetic import ensure_synthetic_world

    data, task = cfg.data, cfg.train.task
    if data.dataset != "synthetic":
        return cfg
    root = ensure_synthetic_world(data.root or SYNTHETIC_DEFAULT_ROOT, data.synthetic, is_main=rank == 0)
    if world_size > 1:
        torch.distributed.barrier()
    audio = "audio" in input_modalities(model)
    if task == "pretrain":
        sub = {"train": "pretrain/train.csv"}
    else:
        kind = "regression" if task == "regression" else ("audio_visual" if audio else "classification")
        sub = {split: f"{kind}/{split}.csv" for split in ("train", "val", "test")}
    files = {f"{split}_file": getattr(data, f"{split}_file") or str(root / rel) for split, rel in sub.items()}
    if task == "pretrain" and audio and not data.audio_path_replacements:
        # the synthetic world keeps videos/<clip>.mp4 next to audio/<clip>.wav
        files["audio_path_replacements"] = [["/videos/", "/audio/"], [".mp4", ".wav"]]
    return dataclasses.replace(cfg, data=dataclasses.replace(data, **files))


def setup_logging(output_dir: Path, is_main: bool) -> None:
    """Rank 0 logs INFO to the console and ``output_dir/log.txt``; other ranks log warnings only."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_maedfer", False):
            root.removeHandler(handler)
    level = logging.INFO if is_main else logging.WARNING
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(output_dir / "log.txt"))
    for handler in handlers:
        handler.setFormatter(fmt)
        handler.setLevel(level)
        handler._maedfer = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(min(root.level or logging.WARNING, level) if root.level else level)


# -------------------------------------------------------------------------------------------------- building
def build_model(cfg: ExperimentConfig) -> nn.Module:
    """The model of ``cfg.model`` (weights from ``cfg.model.checkpoint`` if given)."""
    from ..models.assemble import ModelDescription, model_from_config, preset_overrides
    from ..registry import OFFICIAL_BEHAVIOUR, create_model, model_entry

    checkpoint: Any = cfg.model.checkpoint
    if checkpoint is not None:  # a file, or a card id / hf://owner/repo/file / https link (downloaded once, cached)
        from ..hub import resolve_checkpoint

        checkpoint = resolve_checkpoint(checkpoint)
    if cfg.model.name is None:  # assembled from its sections (maedfer.models.assemble)
        model = model_from_config(cfg.model)
        if checkpoint is not None:
            from ..checkpoint import load_checkpoint

            logger.info("%s: loaded %s", model.model_name, load_checkpoint(model, checkpoint).source)
    else:
        entry = model_entry(cfg.model.name)
        description = ModelDescription.of(cfg.model)
        kwargs = {**(preset_overrides(description, cfg.model.name)[0] if description.given else {}), **cfg.model.kwargs}
        if cfg.model.official_behaviour and entry.kind == "pretrain":
            for key, value in OFFICIAL_BEHAVIOUR.get(entry.system, {}).items():
                kwargs.setdefault(key, value)
        model = create_model(
            cfg.model.name, checkpoint=checkpoint, width_from_checkpoint=cfg.model.width_from_checkpoint, **kwargs
        )
    if cfg.model.grad_checkpointing:
        # Every encoder inside the model (the model itself for a classifier; encoder / encoder_audio otherwise).
        for module in model.modules():
            if hasattr(module, "set_grad_checkpointing"):
                module.set_grad_checkpointing(True)
    return model


def build_task(cfg: ExperimentConfig, model: nn.Module, num_classes: int, mixup: Any) -> Any:
    """The task object for ``cfg.train.task``."""
    train = cfg.train
    if train.task == "pretrain":
        from ..tasks import (
            AudioVisualReconstructionObjective,
            MaskedAudioVisualPretrainTask,
            MaskedVideoPretrainTask,
            VideoReconstructionObjective,
        )

        encoder = model.encoder
        video = VideoReconstructionObjective(
            patch_size=encoder.patch_embed.patch_size,
            tubelet_size=encoder.patch_embed.tubelet_size,
            normalize_target=train.normalize_target,
            frame_diff_group_size=train.frame_diff_group_size,
            target_diff_weight=train.target_diff_weight,
        )
        if getattr(model, "encoder_audio", None) is not None:
            objective = AudioVisualReconstructionObjective(
                video=video,
                audio_patch_size=model.encoder_audio.patch_embed.patch_size,
                normalize_audio_target=train.normalize_target,
                contrastive_weight=train.contrastive_weight,
                temperature=model.temperature,
                gather_negatives=train.gather_negatives,
            )
            return MaskedAudioVisualPretrainTask(model, objective)
        return MaskedVideoPretrainTask(model, video)
    from ..tasks.finetune import ClassificationTask, RegressionTask

    if train.cache_features and not train.linear_probe:
        raise ValueError("train.cache_features needs train.linear_probe: true (only a frozen encoder can be cached)")
    if train.linear_probe:
        from ..tasks.linear_probe import LinearProbeRegressionTask, LinearProbeTask

        if mixup is not None or cfg.data.label_smoothing:
            logger.info("linear probe: plain cross-entropy (data.mixup / cutmix / label_smoothing are not used)")
        if train.task == "classification":
            return LinearProbeTask(model, num_classes=num_classes)
        if train.task == "regression":
            return LinearProbeRegressionTask(model, loss=train.regression_loss)
        raise ValueError(f"train.linear_probe needs train.task 'classification' or 'regression', got {train.task!r}")
    if train.task == "classification":
        return ClassificationTask(model, num_classes=num_classes, mixup=mixup, label_smoothing=cfg.data.label_smoothing)
    if train.task == "regression":
        return RegressionTask(model, loss=train.regression_loss)
    raise ValueError(f"train.task must be 'pretrain', 'classification' or 'regression', got {train.task!r}")


def _cached_feature_data(cfg: ExperimentConfig, probe: nn.Module, data: Any, device: torch.device, *, rank: int,
                         world_size: int) -> Any:
    """``data`` with a training loader over the pooled features of the un-augmented training clips, computed once
    (every process computes all of them)."""
    import dataclasses

    from ..data.build import ResumableDistributedSampler
    from ..tasks.linear_probe import cache_features, unaugmented

    plain = data.train_loader
    source = torch.utils.data.DataLoader(
        unaugmented(data.train_dataset), batch_size=cfg.data.batch_size, shuffle=False, num_workers=plain.num_workers,
        collate_fn=plain.collate_fn,
    )
    cached = cache_features(probe, source, device)
    sampler = ResumableDistributedSampler(cached, num_replicas=world_size, rank=rank, shuffle=True,
                                          seed=cfg.train.seed, drop_last=True)
    loader = torch.utils.data.DataLoader(cached, batch_size=cfg.data.batch_size, sampler=sampler, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    return dataclasses.replace(data, train_loader=loader, train_sampler=sampler, train_dataset=cached)


def iterations_per_epoch(num_samples: int, batch_size: int, world_size: int, accum: int, cap: int | None) -> int:
    """Optimizer steps per epoch (``drop_last`` loaders, as the official recipes)."""
    batches = num_samples // world_size // batch_size
    steps = max(batches // accum, 1)
    return min(steps, cap) if cap else steps


# ------------------------------------------------------------------------------------------------------ run
def run(cfg: ExperimentConfig) -> dict[str, Any]:
    """Train (and evaluate) one configuration; returns the final metrics (rank 0) and the output paths."""
    from ..compile import compile_model
    from ..data.build import build_data, build_mixup
    from ..data.video_datasets import SkipCounter
    from ..engine.backends import build_backend, resolve_precision
    from ..engine.distributed import init_distributed, seed_everything
    from ..engine.optim import param_groups, scaled_lr
    from ..engine.schedule import cosine_schedule
    from ..engine.trainer import Trainer, find_latest_checkpoint
    from .launchers import deepspeed_options, resolve_backend_name
    from ..tasks.evaluate import evaluate as evaluate_model

    env = init_distributed()
    is_main = env.rank == 0
    output_dir = Path(cfg.train.output_dir)
    setup_logging(output_dir, is_main)
    seed_everything(cfg.train.seed, env.rank)
    device = torch.device(env.device)
    precision = resolve_precision(cfg.train.precision, device)
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, output_dir / "config.yaml")
        logger.info("output: %s; %d process(es) on %s; precision %s", output_dir, env.world_size, device, precision)

    model = build_model(cfg).to(device)
    label_names = resolve_label_names(cfg, model)
    data_cfg = with_synthetic_world(cfg, model, rank=env.rank, world_size=env.world_size)
    data = build_data(data_cfg, model, rank=env.rank, world_size=env.world_size)
    num_classes = data.num_classes
    mixup = build_mixup(cfg, num_classes) if cfg.train.task == "classification" else None
    task = build_task(cfg, model, num_classes, mixup)
    if cfg.train.linear_probe:
        model = task.model  # the frozen model wrapped with its probe head: what the backend trains and saves
        if cfg.train.cache_features:
            data = _cached_feature_data(cfg, task.model, data, device, rank=env.rank, world_size=env.world_size)

    accum = max(1, cfg.optim.accum_steps)
    total_batch = cfg.data.batch_size * env.world_size * accum
    lr = scaled_lr(cfg.optim.lr, total_batch) if cfg.optim.scale_lr else cfg.optim.lr
    min_lr = scaled_lr(cfg.optim.min_lr, total_batch) if cfg.optim.scale_lr else cfg.optim.min_lr
    steps_per_epoch = iterations_per_epoch(
        len(data.train_dataset), cfg.data.batch_size, env.world_size, accum, cfg.train.max_steps_per_epoch
    )
    if data.train_batches is not None:  # streamed shards: the batches every rank gets, from the shard index
        steps_per_epoch = iterations_per_epoch(data.train_batches, 1, 1, accum, cfg.train.max_steps_per_epoch)
    schedule = cosine_schedule(
        lr, min_lr, cfg.train.epochs, steps_per_epoch, warmup_epochs=cfg.optim.warmup_epochs,
        warmup_steps=cfg.optim.warmup_steps,
    )
    pretraining = cfg.train.task == "pretrain"
    groups = param_groups(
        model,
        weight_decay=cfg.optim.weight_decay,
        layer_decay=None if pretraining or cfg.train.linear_probe else cfg.optim.layer_decay,
        exact_name_skip=pretraining,
    )
    backend_name = resolve_backend_name(cfg, env.world_size)
    options: dict[str, Any] = {"precision": precision}
    if backend_name == "ddp":
        options["find_unused_parameters"] = cfg.train.find_unused_parameters
    if backend_name == "deepspeed":
        options.update(deepspeed_options(cfg))
    num_parameters = sum(p.numel() for p in model.parameters())  # before ZeRO-3 partitions them
    if cfg.train.compile:
        # In place, on the device, before DDP / DeepSpeed wrap it: state_dict keys stay clean.
        compile_model(model, **cfg.train.compile_options)
        logger.info("torch.compile: the model is compiled on its first steps (slow), then runs compiled")
    backend = build_backend(backend_name, env, **options)
    backend.setup(
        model,
        groups,
        {"lr": lr, "betas": tuple(cfg.optim.betas), "eps": cfg.optim.eps, "weight_decay": cfg.optim.weight_decay,
         "clip_grad": cfg.optim.clip_grad, "accum_steps": accum},
    )
    task.model = backend.model
    if is_main:
        logger.info(
            "%s: %.2fM parameters; total batch %d; lr %.3g (base %.3g); %d steps/epoch x %d epochs",
            cfg.model.name or "assembled model", num_parameters / 1e6, total_batch, lr, cfg.optim.lr,
            steps_per_epoch, cfg.train.epochs,
        )

    writer = None
    if is_main and cfg.train.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(output_dir / "tensorboard"))
        except ImportError:
            logger.warning("tensorboard is not installed (pip install tensorboard); no tensorboard logs")

    scoring = dict(task=cfg.train.task, num_classes=num_classes, device=device, label_names=label_names,
                   autocast=backend.autocast, world_size=env.world_size)
    evaluate = None
    if data.val_loader is not None:
        def evaluate(epoch: int) -> dict[str, Any]:
            scores = evaluate_model(backend.module, data.val_loader, **scoring).scalars()
            task.model.train()
            return scores

    # Rank 0 alone runs the model for the pictures; ZeRO-3 would wait for the other ranks to gather the weights.
    zero3 = backend_name == "deepspeed" and cfg.train.zero_stage == 3
    on_step = _reconstruction_logger(cfg, model) if (pretraining and writer is not None and not zero3) else None
    trainer = Trainer(
        cfg,
        task=task,
        backend=backend,
        train_loader=data.train_loader,
        train_sampler=data.train_sampler,
        train_dataset=data.train_dataset,
        lr_schedule=schedule,
        steps_per_epoch=steps_per_epoch,
        output_dir=output_dir,
        is_main=is_main,
        evaluate=evaluate,
        on_step=on_step,
        writer=writer,
        skip_counter=SkipCounter(len(data.train_dataset), cfg.data.max_skip_fraction, name="training set"),
        label_names=label_names,
    )
    resume = cfg.train.resume
    source = None
    if resume == "auto":
        source = find_latest_checkpoint(output_dir)
    elif resume not in ("none", "", None):
        source = Path(resume)
    trainer.resume(source)
    state = trainer.fit()

    result: dict[str, Any] = {"output_dir": str(output_dir), "epochs": state.epoch, "steps": state.global_step,
                              "nonfinite_losses": state.nonfinite_losses, "skipped_steps": state.skipped_steps}
    if data.test_loader is not None:
        scores = evaluate_model(backend.module, data.test_loader, **scoring)
        result["test"] = scores.metrics
        if is_main:
            write_test_results(output_dir, scores, label_names)
    if writer is not None:
        writer.close()
    return result


def resolve_label_names(cfg: ExperimentConfig, model: nn.Module) -> list[str] | None:
    """The output names of a fine-tuning model: ``data.label_names`` when set (checked: one distinct name per
    output), else the registry's names of ``data.dataset`` when they fit (``valence`` / ``arousal`` for two
    regression outputs), else ``None``. ``None`` for pre-training.

    Raises:
        ConfigError: ``data.label_names`` does not give one distinct name per model output.
    """
    from ..config import ConfigError
    from .inference import label_names_for

    task = cfg.train.task
    if task not in ("classification", "regression"):
        return None
    num_outputs = int(getattr(model, "num_classes", 0) or 0)
    names = cfg.data.label_names
    if names is None:
        return label_names_for(cfg.data.dataset, num_outputs, task)
    if len(names) != num_outputs:
        what = "classes" if task == "classification" else "regression outputs"
        raise ConfigError(
            f"data.label_names has {len(names)} names ({', '.join(names)}) but the model {cfg.model.name} has "
            f"{num_outputs} {what}: give one name per output, in label order (or set model.kwargs.num_classes)"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"data.label_names: names must be distinct, {', '.join(repeated)} repeated")
    return list(names)


def write_test_results(output_dir: Path, scores: Any, label_names: Sequence[str] | None) -> None:
    """``test_metrics.json`` and, for classification, ``confusion_matrix.csv`` / ``.png`` (atomically, rank 0).

    Args:
        output_dir: Target folder.
        scores: The :class:`maedfer.tasks.evaluate.Evaluation` of the test set.
        label_names: Class names in label order (``None``: the class indices).
    """
    atomic_write_text(output_dir / "test_metrics.json", json.dumps(scores.metrics, indent=2, default=_json_default))
    if scores.confusion is not None:
        from ..engine.metrics import save_confusion_matrix

        names = list(label_names or [str(i) for i in range(len(scores.confusion))])
        save_confusion_matrix(scores.confusion, names, output_dir / "confusion_matrix.csv",
                              output_dir / "confusion_matrix.png")
    logger.info("test: %s", ", ".join(f"{k} {v:.4g}" for k, v in scores.scalars().items()))


def write_folds_summary(summary_dir: Path, folds: Sequence[str], results: Mapping[str, Mapping[str, Any]]) -> Path:
    """``folds_summary.json`` / ``.md`` (per-fold test metrics and their mean +- std) in ``summary_dir``, atomically.

    Args:
        summary_dir: Target folder.
        folds: Fold names in order.
        results: Per fold, a result with the test metrics under ``"test"`` (what :func:`run` returns).

    Returns:
        The Markdown table's path.
    """
    from ..engine.metrics import format_fold_table, summarize_folds
    from ..tasks.evaluate import scalar_metrics

    per_fold = [scalar_metrics(results[f].get("test", {})) for f in folds]
    table = format_fold_table(folds, per_fold) if per_fold and per_fold[0] else "(no test metrics)"
    summary = {"folds": list(folds), "per_fold": per_fold,
               "summary": summarize_folds(per_fold) if per_fold and per_fold[0] else {}}
    atomic_write_text(summary_dir / "folds_summary.json", json.dumps(summary, indent=2, default=_json_default))
    path = atomic_write_text(summary_dir / "folds_summary.md", table + "\n")
    logger.info("fold summary written to %s\n%s", path, table)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)


def _reconstruction_logger(cfg: ExperimentConfig, model: nn.Module):
    """Every ``50 x log_every_steps`` steps, add an input / masked / reconstruction frame grid to tensorboard."""
    from .visualize import reconstruct_video, video_grid

    period = max(1, 50 * cfg.train.log_every_steps)
    embed = model.encoder.patch_embed

    def on_step(trainer: Any, batch: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        if trainer.state.global_step % period or trainer.writer is None or "video" not in batch:
            return
        module = trainer.backend.module
        video, mask = batch["video"][:1], batch["mask"][:1].bool()
        device = next(module.parameters()).device
        with torch.no_grad():
            if getattr(module, "encoder_audio", None) is not None:
                pred = module(video.to(device), mask.to(device), batch["audio"][:1].to(device),
                              batch["mask_audio"][:1].to(device)).pred_video
            else:
                pred = module(video.to(device), mask.to(device))
        original, masked, recon = reconstruct_video(
            video.to(device), mask.to(device), pred, patch_size=embed.patch_size, tubelet_size=embed.tubelet_size,
            frame_diff_group_size=cfg.train.frame_diff_group_size, normalize_target=cfg.train.normalize_target,
        )
        image = video_grid([original[0], masked[0], recon[0]])
        trainer.writer.add_image("reconstruction", image, trainer.state.global_step, dataformats="HWC")

    return on_step


# ------------------------------------------------------------------------------------------------------ CLI
def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description or __doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML experiment file")
    parser.add_argument("--folds", default=None, help="folds to run one after another, e.g. 1-5 or 1,3")
    evaluation = parser.add_argument_group("evaluate only (no training)")
    evaluation.add_argument("--eval", action="store_true",
                            help="score --checkpoint on the config's test set (official test views) and write "
                                 "test_metrics.json, the confusion matrix and test_predictions.csv")
    evaluation.add_argument("--checkpoint", default=None, metavar="FILE|CARD_ID",
                            help="with --eval: a maedfer checkpoint (checkpoint-last.pth or a checkpoint folder), an "
                                 "official .pth, a .safetensors file or a model card id; {fold} is filled in with "
                                 "--folds. Without --config a maedfer checkpoint's own config is used")
    evaluation.add_argument("--model", default=None, metavar="NAME|CARD_ID",
                            help="with --eval: registry model or model card id of a file that holds no maedfer "
                                 "config (default: the config's model.name)")
    evaluation.add_argument("--output-dir", default=None,
                            help="with --eval: where the results go (default: train.output_dir)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=3 optim.lr=1e-4")
    from .launchers import add_launcher_arguments

    add_launcher_arguments(parser)
    return parser


def main(
    argv: Sequence[str] | None = None, *, default_config: str | Path | None = None, config_kind: str | None = None
) -> dict[str, Any]:
    """Parse arguments, run one configuration or every fold, and return the results (also written to disk).

    Args:
        argv: Command-line arguments (``sys.argv[1:]`` when None).
        default_config: YAML file used when ``--config`` is not given (the launchers pass their demo config).
        config_kind: ``pretrain`` or ``finetune``: a bare ``--config NAME`` is that kind's shipped config
            (:func:`maedfer.resources.resolve_config`; ``demo`` exists for both).
    """
    args = build_parser().parse_intermixed_args(argv)
    if args.config is not None and config_kind is not None:
        from ..config import ConfigError
        from ..resources import ResourceNotFoundError, resolve_config

        try:
            args.config = str(resolve_config(args.config, config_kind))
        except ResourceNotFoundError as err:
            raise ConfigError(str(err)) from None
    from .launchers import launcher_overrides

    overrides = [*launcher_overrides(args), *args.overrides]
    if args.eval or args.checkpoint is not None:
        return _evaluate_only(args, overrides, default_config)
    config = args.config if args.config is not None else default_config
    cfg = load_config(config, overrides)
    folds = parse_folds(args.folds)
    if not folds:
        return run(cfg)
    results: dict[str, Any] = {}
    for fold in folds:
        results[fold] = run(_with_fold(cfg, fold))
    if int(os.environ.get("RANK", "0")) == 0:
        write_folds_summary(folds_summary_dir(cfg.train.output_dir), folds, results)
    return results


def _evaluate_only(args: argparse.Namespace, overrides: Sequence[str], default_config: str | Path | None) -> Any:
    """``--eval``: :func:`maedfer.apps.eval_checkpoint.run_evaluation`; a bad request exits with a one-line error."""
    from .eval_checkpoint import EXPECTED_ERRORS, run_evaluation

    if not args.eval or args.checkpoint is None:
        raise SystemExit(f"{Path(sys.argv[0]).name}: error: --eval and --checkpoint go together "
                         "(--eval --checkpoint FILE|CARD_ID)")
    try:
        return run_evaluation(args, overrides, default_config)
    except EXPECTED_ERRORS as error:
        from .inference import error_message

        raise SystemExit(f"{Path(sys.argv[0]).name}: error: {error_message(error)}") from error


def pretrain_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``maedfer pretrain`` / ``pretrain/pretrain.py``: :func:`main` with the pre-training configs (default: demo)."""
    from ..resources import config_path

    return main(argv, default_config=config_path("demo", "pretrain"), config_kind="pretrain")


def finetune_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``maedfer finetune`` / ``finetune/finetune.py``: :func:`main` with the fine-tuning configs (default: demo)."""
    from ..resources import config_path

    return main(argv, default_config=config_path("demo", "finetune"), config_kind="finetune")
