"""``main(argv)``: the entry point behind ``pretrain/pretrain.py`` and ``finetune/finetune.py``.

Details: ``docs/modules.md``, section ``maedfer/apps/train.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..config import ExperimentConfig, dump_config, load_config
from ..engine.distributed import cleanup
from .experiment import (
    folds_summary_dir,
    parse_folds,
    resolve_label_names,
    start_process,
    with_fold,
    with_synthetic_world,
    write_folds_summary,
    write_test_results,
)

__all__ = ["main", "run", "parse_folds", "resolve_label_names", "write_folds_summary", "write_test_results"]

logger = logging.getLogger(__name__)



# ----------------------------------------------------------------------------------------------------- helpers


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
    from ..engine.backends import build_backend
    from ..engine.optim import param_groups, scaled_lr
    from ..engine.schedule import cosine_schedule
    from ..engine.trainer import Trainer, find_latest_checkpoint
    from .launchers import deepspeed_options, resolve_backend_name
    from ..tasks.evaluate import evaluate as evaluate_model

    process = start_process(cfg)
    env, is_main, output_dir = process.env, process.is_main, process.output_dir
    device, precision = process.device, process.precision
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
    had_group = dist.is_available() and dist.is_initialized()
    try:
        if args.eval or args.checkpoint is not None:
            return _evaluate_only(args, overrides, default_config)
        return _train(args, overrides, default_config)
    finally:
        if not had_group:  # the group this run created goes before the interpreter exits (gloo aborts otherwise)
            cleanup()


def _train(args: argparse.Namespace, overrides: Sequence[str], default_config: str | Path | None) -> dict[str, Any]:
    """Training: one configuration, or every fold of ``args.folds`` followed by the fold summary."""
    config = args.config if args.config is not None else default_config
    cfg = load_config(config, overrides)
    folds = parse_folds(args.folds)
    if not folds:
        return run(cfg)
    results: dict[str, Any] = {}
    for fold in folds:
        results[fold] = run(with_fold(cfg, fold))
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
