"""Build datasets and data loaders from an :class:`~maedfer.config.ExperimentConfig`.

The split files come from ``data.train_file`` / ``val_file`` / ``test_file``; for the embedded default
(``data.dataset: synthetic``) the runner (:mod:`maedfer.apps.train`) generates the synthetic world and fills them in.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..audio import FbankConfig
from ..models.contract import input_modalities
from .allocator import worker_init_for
from .augment import FinetuneTrainTransform, Mixup
from .fast_pipeline import FastFinetuneTrainTransform, check_pipeline
from .pretrain_datasets import MaskSpec, PretrainAudioConfig, PretrainClipDataset, collate_pretrain
from .video_datasets import AudioConfig, VideoClipDataset, skip_bad_samples_collate

__all__ = [
    "DataBundle",
    "ResumableDistributedSampler",
    "build_data",
    "build_mixup",
    "build_test_loader",
]

logger = logging.getLogger(__name__)



class ResumableDistributedSampler(DistributedSampler):
    """A :class:`DistributedSampler` (also used with one process) that can start an epoch after ``start_index``
    samples, so a run resumed from a mid-epoch checkpoint sees exactly the batches it had not seen yet."""

    def __init__(self, *args: Any, with_epoch: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start_index = 0
        #: Yield ``(epoch, index)`` pairs: persistent workers never see ``set_epoch`` of their dataset copy, so the
        #: epoch travels with each index (the datasets accept both forms).
        self.with_epoch = with_epoch

    def __iter__(self):
        indices = list(super().__iter__())
        start, self.start_index = self.start_index, 0
        if self.with_epoch:
            return iter([(self.epoch, index) for index in indices[start:]])
        return iter(indices[start:])

    def __len__(self) -> int:
        return self.num_samples - self.start_index


@dataclass
class DataBundle:
    """Datasets and loaders of one run.

    Attributes:
        train_loader: Training loader (``drop_last``; a :class:`ResumableDistributedSampler`).
        train_sampler: Its sampler (``set_epoch`` / ``start_index``).
        train_dataset: The training dataset (``set_epoch`` for per-epoch augmentation draws).
        val_loader: Single-view validation loader, or ``None``.
        test_loader: Test-view loader, or ``None``.
        num_classes: Classes (0 for pre-training / regression).
        audio: Whether items carry audio.
        train_batches: Training batches per epoch on every rank when the data decides it (``format: shards``);
            ``None``: ``len(train_dataset)`` split over ranks (the per-file sampler).
    """

    train_loader: DataLoader
    train_sampler: ResumableDistributedSampler
    train_dataset: Dataset
    val_loader: DataLoader | None
    test_loader: DataLoader | None
    num_classes: int
    audio: bool
    train_batches: int | None = None


def _loader(dataset: Dataset, batch_size: int, *, sampler, num_workers: int, pin_memory: bool, drop_last: bool,
            collate, prefetch_factor: int = 2, persistent_workers: bool = False,
            retain_freed_memory: bool = True) -> DataLoader:
    workers = num_workers > 0
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory and torch.cuda.is_available(),
        drop_last=drop_last,
        collate_fn=collate,
        # Its own generator: creating an iterator must not consume the global torch RNG (exact resume).
        generator=torch.Generator().manual_seed(0),
        prefetch_factor=prefetch_factor if workers else None,
        # Persistent workers keep their dataset copy (and its epoch): the training sampler then sends
        # (epoch, index) pairs, so the draws do not depend on it (see ResumableDistributedSampler.with_epoch).
        persistent_workers=persistent_workers and workers,
        worker_init_fn=worker_init_for(retain_freed_memory, num_workers),
    )


def pretraining_mask(
    encoder: torch.nn.Module, mask_type: str | None = None, window: Sequence[int] | None = None
) -> tuple[str, tuple[int, int] | None]:
    """The mask kind a video encoder is pre-trained with, and its window, checked against the encoder.

    Args:
        encoder: The video encoder of a masked autoencoder.
        mask_type: ``"tube"``, ``"part_window"`` or ``"random"``; ``None`` picks the default: ``"part_window"`` for
            the LGI-Former (MAE-DFER), ``"tube"`` otherwise.
        window: ``(h, w)`` part-window in token cells (``data.mask_window``); default: the LGI region's ``(h, w)``.

    Returns:
        ``(kind, window)``; ``window`` is ``None`` unless the kind is ``"part_window"``.

    Raises:
        ValueError: A combination the encoder cannot take, saying why (:meth:`TokenEncoder.check_mask_kind`), or
            ``"part_window"`` without a window for an encoder without LGI regions.
    """
    region = getattr(encoder, "region_size", None)
    kind = mask_type or ("part_window" if region is not None else "tube")
    if kind != "part_window":
        if window is not None:
            raise ValueError(f"data.mask_window only applies to mask kind 'part_window', not {kind!r}")
        encoder.check_mask_kind(kind)
        return kind, None
    if window is None:
        if region is None:
            raise ValueError("mask kind 'part_window' needs data.mask_window [h, w] (token cells) for an encoder "
                             "without LGI regions")
        window = region[1:]
    cells = (int(window[0]), int(window[1])) if len(window) == 2 else tuple(window)
    encoder.check_mask_kind(kind, cells)
    return kind, cells  # type: ignore[return-value]


def audio_fbank_config(model: torch.nn.Module) -> FbankConfig | None:
    """Filter-bank settings matching the spectrogram size of the model's audio encoder (``None`` without one).

    The audio encoder's ``patch_embed.input_size`` is ``(time frames, mel bins)``; the other settings keep the
    HiCMAE defaults (16 kHz, 10 ms hop, AudioSet normalisation).
    """
    encoder = getattr(model, "encoder_audio", None)
    if encoder is None:
        return None
    frames, bins = (int(v) for v in encoder.patch_embed.input_size)
    return FbankConfig(num_mel_bins=bins, target_length=frames)


def first_rows_per_class(rows: list[Any], per_class: int) -> list[Any]:
    """The first ``per_class`` rows of every label, in file order (a fixed, reproducible labelled subset)."""
    if per_class < 1:
        raise ValueError(f"data.labels_per_class must be >= 1, got {per_class}")
    taken: dict[Any, int] = {}
    kept = []
    for row in rows:
        if taken.get(row.label, 0) < per_class:
            taken[row.label] = taken.get(row.label, 0) + 1
            kept.append(row)
    return kept


def build_mixup(cfg: Any, num_classes: int) -> Mixup | None:
    """The official batch Mixup/CutMix with label smoothing, or ``None`` when both alphas are 0."""
    data = cfg.data
    if num_classes <= 0 or (data.mixup <= 0 and data.cutmix <= 0):
        return None
    return Mixup(mixup_alpha=data.mixup, cutmix_alpha=data.cutmix, label_smoothing=data.label_smoothing,
                 num_classes=num_classes)


def build_data(cfg: Any, model: torch.nn.Module, *, rank: int = 0, world_size: int = 1) -> DataBundle:
    """Datasets and loaders for ``cfg.train.task`` (``pretrain``, ``classification`` or ``regression``)."""
    data, train = cfg.data, cfg.train
    task = train.task
    audio = "audio" in input_modalities(model)
    files = {"train": data.train_file, "val": data.val_file, "test": data.test_file}
    if data.format not in ("files", "shards"):
        raise ValueError(f"data.format must be 'files' or 'shards', got {data.format!r}")
    sharded = data.format == "shards"
    if sharded and not data.shards:
        raise ValueError("data.format is 'shards' but data.shards is not set (a *-index.json written by make-shards)")
    if not sharded and files["train"] is None:
        raise ValueError("data.train_file is not set")
    seed = train.seed
    num_classes = 0
    pipeline = check_pipeline(data.pipeline)
    loader_options = dict(num_workers=data.num_workers, pin_memory=data.pin_memory,
                          prefetch_factor=data.prefetch_factor, persistent_workers=data.persistent_workers,
                          retain_freed_memory=data.retain_freed_memory)
    if task == "pretrain":
        embed = model.encoder.patch_embed
        kind, window = pretraining_mask(model.encoder, data.mask_type, data.mask_window)
        mask = MaskSpec(kind=kind, ratio=data.mask_ratio, window=window, tubelet_size=embed.tubelet_size,
                        patch_size=embed.patch_size)
        audio_cfg = None
        if audio:
            replacements = None
            if data.audio_path_replacements:
                replacements = tuple((str(old), str(new)) for old, new in data.audio_path_replacements)
            audio_cfg = PretrainAudioConfig(
                mask_ratio=data.audio_mask_ratio, fbank=audio_fbank_config(model),
                mask_grid=tuple(model.encoder_audio.grid_size),  # the model's audio token grid, not the default
                **({"path_replacements": replacements} if replacements else {}),
            )
        fixed_crop = tuple(tuple(pair) for pair in data.fixed_crop) if data.fixed_crop else None
        from .annotations import read_annotations

        rows = (_shard_placeholder_rows(audio) if sharded
                else read_annotations(files["train"], kind="pretrain", path_map=data.path_map or None))
        train_ds: Dataset = PretrainClipDataset(
            rows, num_frames=data.num_frames, sampling_rate=data.sampling_rate, input_size=data.input_size,
            mask=mask, audio=audio_cfg, fixed_crop=fixed_crop, num_samples=data.num_samples,
            backend=data.video_backend, seed=seed, frame_ext=data.file_ext, max_skip_fraction=data.max_skip_fraction,
            pipeline=pipeline, image_decoder=data.image_decoder,
        )
        collate = collate_pretrain
        val_ds = test_ds = None
    else:
        dataset_task = "regression" if task == "regression" else "classification"
        transform_class = FastFinetuneTrainTransform if pipeline == "fast" else FinetuneTrainTransform
        transform = transform_class(
            input_size=data.input_size, short_side_size=data.short_side_size,
            rand_augment="rand-m7-n4-mstd0.5-inc1" if data.rand_augment else None, reprob=data.reprob,
            scale=(float(data.crop_scale[0]), float(data.crop_scale[1])),
        )
        common = _clip_dataset_options(cfg, model)
        train_source = _shard_placeholder_rows(audio) if sharded else files["train"]
        train_ds = VideoClipDataset(train_source, "train", train_transform=transform, pipeline=pipeline, **common)
        if data.labels_per_class is not None and sharded:
            raise ValueError("data.labels_per_class needs data.format 'files' (shards are read as a stream)")
        if data.labels_per_class is not None:
            if dataset_task != "classification":
                raise ValueError("data.labels_per_class only applies to classification fine-tuning")
            rows = first_rows_per_class(train_ds.rows, data.labels_per_class)
            logger.info("label-scarce fine-tuning: %d of %d training clips (%d per class)", len(rows),
                        len(train_ds.rows), data.labels_per_class)
            train_ds = VideoClipDataset(rows, "train", train_transform=transform, pipeline=pipeline, **common)
        val_ds = VideoClipDataset(files["val"], "validation", **common) if files["val"] else None
        test_ds = VideoClipDataset(files["test"], "test", **common) if files["test"] else None
        collate = skip_bad_samples_collate
        if dataset_task == "classification":
            num_classes = int(getattr(model, "num_classes", 0))
    if sharded:
        return _sharded_bundle(cfg, train_ds, collate, rank=rank, world_size=world_size, num_classes=num_classes,
                               audio=audio, val_ds=val_ds, test_ds=test_ds)
    sampler = ResumableDistributedSampler(train_ds, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                          drop_last=True, with_epoch=data.persistent_workers and data.num_workers > 0)
    train_loader = _loader(train_ds, data.batch_size, sampler=sampler, drop_last=True, collate=collate,
                           **loader_options)

    def eval_loader(ds: Dataset | None) -> DataLoader | None:
        return None if ds is None else _eval_loader(ds, data, collate=collate, rank=rank, world_size=world_size)

    return DataBundle(
        train_loader=train_loader,
        train_sampler=sampler,
        train_dataset=train_ds,
        val_loader=eval_loader(val_ds),
        test_loader=eval_loader(test_ds),
        num_classes=num_classes,
        audio=audio,
    )


def _clip_dataset_options(cfg: Any, model: torch.nn.Module) -> dict[str, Any]:
    """The :class:`VideoClipDataset` arguments every fine-tuning split shares (geometry, test views, audio, task)."""
    data = cfg.data
    audio = "audio" in input_modalities(model)
    return dict(
        num_frames=data.num_frames, sampling_rate=data.sampling_rate, input_size=data.input_size,
        short_side_size=data.short_side_size, test_num_segment=data.test_num_segment,
        test_num_crop=data.test_num_crop, file_ext=data.file_ext,
        audio=AudioConfig(fbank=audio_fbank_config(model), random_gain=data.audio_random_gain) if audio else None,
        task="regression" if cfg.train.task == "regression" else "classification",
        path_map=data.path_map or None, official_duplicate_crops=data.official_duplicate_crops,
        video_backend=data.video_backend, seed=cfg.train.seed, max_skip_fraction=data.max_skip_fraction,
        image_decoder=data.image_decoder,
    )


def _eval_loader(ds: Dataset, data: Any, *, collate: Any, rank: int, world_size: int) -> DataLoader:
    """An in-order loader over every item (a non-shuffling :class:`DistributedSampler` without ``drop_last``)."""
    sampler = DistributedSampler(ds, num_replicas=world_size, rank=rank, shuffle=False, drop_last=False)
    return _loader(ds, data.batch_size, sampler=sampler, drop_last=False, collate=collate,
                   num_workers=data.num_workers, pin_memory=data.pin_memory, prefetch_factor=data.prefetch_factor,
                   persistent_workers=data.persistent_workers, retain_freed_memory=data.retain_freed_memory)


def build_test_loader(cfg: Any, model: torch.nn.Module, *, rank: int = 0, world_size: int = 1) -> DataLoader:
    """The test-view loader of a fine-tuning config alone (evaluation without training: no training split needed).

    Same items, order and batches as :func:`build_data`'s ``test_loader``: every (segment, crop) view of
    ``data.test_file``, split over ``world_size`` processes in order.

    Raises:
        ValueError: ``data.test_file`` is not set, or ``train.task`` is ``pretrain``.
    """
    if cfg.train.task == "pretrain":
        raise ValueError("a pre-training config has no test set to evaluate (train.task is 'pretrain')")
    if cfg.data.test_file is None:
        raise ValueError("data.test_file is not set: nothing to evaluate")
    dataset = VideoClipDataset(cfg.data.test_file, "test", **_clip_dataset_options(cfg, model))
    return _eval_loader(dataset, cfg.data, collate=skip_bad_samples_collate, rank=rank, world_size=world_size)


def _shard_placeholder_rows(audio: bool) -> list[Any]:
    """One stand-in row for a per-file dataset that decodes shard clips (its rows are replaced clip by clip)."""
    from .annotations import AnnotationRow

    return [AnnotationRow(path="<shard clip>", label=0, audio_path="<shard audio>" if audio else None)]


def _sharded_bundle(cfg: Any, decoder: Dataset, collate, *, rank: int, world_size: int, num_classes: int,
                    audio: bool, val_ds: Dataset | None, test_ds: Dataset | None) -> DataBundle:
    """The data of a ``data.format: shards`` run: a :class:`~maedfer.data.shards.ShardLoader` over the shards,
    decoding with ``decoder``; evaluation sets stay per-file."""
    from .shards import ShardClipDataset, ShardLoader, resolve_shards, shard_steps_per_epoch

    data = cfg.data
    shards, index = resolve_shards(data.shards)
    if audio and not index.get("has_audio", False):
        raise ValueError(f"the model takes audio but the shards of {data.shards} hold none (make-shards --with-audio)")
    dataset = ShardClipDataset(shards, decoder, rank=rank, world_size=world_size, seed=cfg.train.seed,
                               shuffle_buffer=data.shard_shuffle_buffer, verify=data.shard_verify)
    batches = shard_steps_per_epoch(dataset.counts, world_size=world_size, num_workers=data.num_workers,
                                    batch_size=data.batch_size, seed=cfg.train.seed, epochs=cfg.train.epochs)
    if data.persistent_workers:
        logger.info("data.persistent_workers is ignored with shards (every epoch starts its streams anew)")
    loader = ShardLoader(dataset, batch_size=data.batch_size, collate=collate, num_workers=data.num_workers,
                         batches_per_epoch=batches, pin_memory=data.pin_memory, prefetch_factor=data.prefetch_factor,
                         retain_freed_memory=data.retain_freed_memory)
    logger.info("%d shards, %d clips; %d batches of %d per rank per epoch (%d rank(s) x %d stream(s))", len(shards),
                len(dataset), batches, data.batch_size, world_size, max(data.num_workers, 1))

    def eval_loader(ds: Dataset | None) -> DataLoader | None:
        return None if ds is None else _eval_loader(ds, data, collate=collate, rank=rank, world_size=world_size)

    return DataBundle(train_loader=loader, train_sampler=loader, train_dataset=dataset,  # type: ignore[arg-type]
                      val_loader=eval_loader(val_ds), test_loader=eval_loader(test_ds), num_classes=num_classes,
                      audio=audio, train_batches=batches)
