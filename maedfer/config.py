"""Typed experiment configuration: dataclasses loaded from YAML, with dotted command-line overrides.

Details: ``docs/modules.md``, section ``maedfer/config.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
]


class ConfigError(ValueError):
    """An invalid configuration file or override; the message names the key (and file)."""


@dataclass
class ModelConfig:
    """Which model to build.

    Attributes:
        name: Registered model name (``maedfer.list_models(include_official=True)``).
        kwargs: Constructor overrides passed to :func:`maedfer.create_model`: the arguments the registered model
            accepts (flat block settings such as ``drop_path_rate``, official names for official entries). A key the
            model does not accept is a :class:`ConfigError` naming it.
        checkpoint: Weights to start from (e.g. a pre-training checkpoint for fine-tuning); official ``.pth`` files,
            maedfer checkpoints and safetensors are accepted.
        width_from_checkpoint: Take the encoder width from ``checkpoint`` (SVFAP's 768-wide registration).
        grad_checkpointing: Recompute block activations in the backward pass (saves memory).
        official_behaviour: Reproduce the official pre-training quirks (MAE-DFER decoder positions, SVFAP context and
            up-sampling); needed to continue training a released pre-training checkpoint exactly.
        encoder, decoder, audio, fusion, block, head, objective: The model described by sections
            (:mod:`maedfer.models.assemble`): with ``name`` they override that preset; without it
            (``encoder.type`` set) they assemble the model, a pre-training one when ``decoder`` is given. Objective
            training settings (``mask``, ``frame_diff_group_size`` ...) fill in ``data`` / ``train``. A wrong key or
            an impossible combination is a :class:`ConfigError` naming its YAML key path.
    """

    name: str | None = None  # None: the default preset, unless encoder.type assembles the model
    kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    width_from_checkpoint: bool = False
    grad_checkpointing: bool = False
    official_behaviour: bool = False
    encoder: dict[str, Any] | None = None
    decoder: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    fusion: dict[str, Any] | None = None
    block: dict[str, Any] | None = None
    head: dict[str, Any] | None = None
    objective: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        from .models.assemble import check_model_config  # (lazy: the model zoo imports torch)

        try:
            check_model_config(self)
        except (TypeError, ValueError) as err:
            raise ConfigError(str(err)) from None


@dataclass
class DataConfig:
    """Where the clips come from and how they are sampled.

    Attributes:
        dataset: A registered dataset name (``maedfer.data.registry``), or ``"synthetic"`` for the embedded synthetic
            face world (generated under ``root`` when missing).
        root: Data root; for ``"synthetic"`` the folder of the generated world.
        train_file: Annotation file of the training split (``{fold}`` is replaced by the fold name).
        val_file: Validation annotation file (``None``: no validation during training).
        test_file: Test annotation file (evaluated with the test views at the end).
        path_map: Prefix replacements for paths inside annotation files (the official files carry the authors'
            absolute paths).
        num_frames: Frames per clip.
        sampling_rate: Frame stride.
        input_size: Network input size.
        short_side_size: Frames are resized to this square size before cropping (the official behaviour).
        test_num_segment: Temporal test views.
        test_num_crop: Spatial test views (identical for square frames; duplicates are dropped unless
            ``official_duplicate_crops``).
        official_duplicate_crops: Evaluate the duplicate spatial views like the official code (same predictions).
        file_ext: Frame file extension for frame folders (``png`` for MAFW).
        video_backend: ``"auto"``, ``"decord"`` or ``"pyav"`` (``auto``: decord with a PyAV fallback under the
            official pipeline, PyAV with skipped non-reference frames under the fast one; the same frames).
        image_decoder: JPEG decoder of frame folders: ``"auto"`` (under the fast pipeline torchvision's
            ``decode_jpeg`` when torchvision is installed, else OpenCV's ``imread`` when it is, else PIL; PIL under
            the official one), ``"pil"``, ``"torchvision"`` or ``"opencv"``.
        pipeline: ``"fast"`` (clip-wide uint8 augmentation, see ``maedfer.data.fast_pipeline``; the default) or
            ``"official"`` (the official pixel pipeline, bit for bit). Evaluation items are the official ones in
            both.
        batch_size: Clips per process per step.
        num_workers: DataLoader workers per process.
        pin_memory: Pin host memory (GPU).
        prefetch_factor: Batches loaded in advance by each worker (with ``num_workers > 0``).
        persistent_workers: Keep the workers between epochs; the sampler then hands every worker the epoch with
            each index, so the augmentation draws stay those of ``(seed, epoch, index)``.
        retain_freed_memory: Loader processes keep freed memory for the next clip instead of returning it to the
            kernel (glibc; see ``maedfer.data.allocator``): saves thousands of page faults per clip.
        mask_type: Video mask for pre-training (``"tube"``, ``"part_window"`` or ``"random"``; ``None``: the model's
            default). An encoder that cannot take the kind (e.g. a random mask for the LGI-Former) is an error
            saying why.
        mask_window: ``[h, w]`` window in token cells of a ``part_window`` mask (default: the LGI region's spatial
            size; required for other encoders).
        mask_ratio: Video mask ratio.
        audio_mask_ratio: Audio mask ratio (HiCMAE).
        num_samples: Clips sampled per decoded video in pre-training (repeated sampling).
        fixed_crop: Fixed ``((top, bottom), (left, right))`` crop of every decoded frame before augmentation
            (the official VoxCeleb2 top-centre crop is ``((0, 160), (32, 192))``).
        audio_random_gain: Apply the official random audio gain at evaluation time too.
        audio_path_replacements: Pre-training lists carry only video paths; each ``[old, new]`` substring
            replacement turns a video path into its wav path (default: the official VoxCeleb2 layout
            ``video/file~/dev/mp4 -> audio/file~/dev/aac`` and ``.mp4 -> .wav``).
        max_skip_fraction: Stop with an error when more than this fraction of clips could not be read.
        rand_augment: Use RandAugment (m7, n4) in fine-tuning.
        crop_scale: Area range of the fine-tuning RandomResizedCrop (official ``[0.08, 1.0]``).
        reprob: Random-erasing probability in fine-tuning.
        mixup: Mixup alpha (0 disables mixup and cutmix).
        cutmix: CutMix alpha.
        label_smoothing: Label smoothing of the (mixed) targets.
        synthetic: Generator settings for the synthetic world (identities, clips per class, frames, size).
        labels_per_class: Fine-tune on only the first N training clips of each class (label-scarce runs;
            classification only); ``None`` uses them all.
        label_names: Output names in label order (class names, or regression target names) for a dataset the
            registry does not know; one per model output (checked when the model is built). Stored in every
            checkpoint and exported model; ``None`` uses the registry's names of ``dataset``.
        format: Where training clips come from: ``"files"`` (``train_file``, one file or folder per clip) or
            ``"shards"`` (tar shards written by ``maedfer make-shards``, streamed; see ``maedfer.data.shards``).
        shards: With ``format: shards``: shard index files (``*-index.json``, paths or URLs) and/or brace patterns
            of shards listed in an index next to them.
        shard_shuffle_buffer: Clips in each stream's shuffle buffer (1: read order).
        shard_verify: Check every shard's sha256 against the index before its clips are used.
    """

    dataset: str = "synthetic"
    root: str | None = None
    train_file: str | None = None
    val_file: str | None = None
    test_file: str | None = None
    path_map: dict[str, str] = field(default_factory=dict)
    num_frames: int = 16
    sampling_rate: int = 4
    input_size: int = 160
    short_side_size: int = 160
    test_num_segment: int = 2
    test_num_crop: int = 2
    official_duplicate_crops: bool = False
    file_ext: str = "jpg"
    video_backend: str = "auto"
    image_decoder: str = "auto"
    pipeline: str = "fast"
    batch_size: int = 32
    num_workers: int = 8
    pin_memory: bool = True
    prefetch_factor: int = 2
    persistent_workers: bool = False
    retain_freed_memory: bool = True
    mask_type: str | None = None
    mask_window: list[int] | None = None
    mask_ratio: float = 0.9
    audio_mask_ratio: float = 0.8
    num_samples: int = 1
    fixed_crop: list[list[int]] | None = None
    audio_random_gain: bool = False
    audio_path_replacements: list[list[str]] | None = None
    max_skip_fraction: float = 0.01
    rand_augment: bool = True
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    reprob: float = 0.25
    mixup: float = 0.8
    cutmix: float = 1.0
    label_smoothing: float = 0.1
    synthetic: dict[str, Any] = field(default_factory=dict)
    labels_per_class: int | None = None
    label_names: list[str] | None = None
    format: str = "files"
    shards: list[str] | str | None = None
    shard_shuffle_buffer: int = 1000
    shard_verify: bool = True


@dataclass
class OptimConfig:
    """AdamW, parameter groups and the learning-rate schedule.

    Attributes:
        lr: Base learning rate for a total batch of 256 (scaled by total batch / 256 when ``scale_lr``).
        min_lr: Final learning rate of the cosine (also scaled).
        scale_lr: Scale ``lr`` and ``min_lr`` by total batch / 256 (the official rule).
        warmup_epochs: Linear warm-up from 0, in epochs.
        warmup_steps: Warm-up in iterations (overrides ``warmup_epochs`` when > 0).
        weight_decay: AdamW weight decay (constant).
        betas: AdamW betas.
        eps: AdamW epsilon.
        layer_decay: Layer-wise LR decay (fine-tuning; ``None`` disables).
        clip_grad: Gradient-norm clipping (``None``: off, as the official recipes).
        accum_steps: Gradient accumulation steps.
    """

    lr: float = 1e-3
    min_lr: float = 1e-6
    scale_lr: bool = True
    warmup_epochs: float = 5.0
    warmup_steps: int = -1
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    layer_decay: float | None = 0.75
    clip_grad: float | None = None
    accum_steps: int = 1


@dataclass
class TrainConfig:
    """The run.

    Attributes:
        task: ``"pretrain"``, ``"classification"`` or ``"regression"``.
        epochs: Training epochs.
        seed: Base seed (each process adds its rank).
        output_dir: Where checkpoints, logs, metrics and ``config.yaml`` go.
        backend: ``"auto"`` (DDP when several processes, else local), ``"local"``, ``"ddp"`` or ``"deepspeed"``.
        precision: ``"auto"`` (bf16 on CUDA, fp32 on CPU), ``"bf16"``, ``"fp16"`` or ``"fp32"``.
        compile: ``torch.compile`` the model (in place, after moving it to the device and before DDP / DeepSpeed
            wrap it; see :mod:`maedfer.compile`). The first steps are slow while it compiles; checkpoint keys are
            unchanged. Works with every backend (DeepSpeed runs the compiled module).
        compile_options: ``torch.compile`` arguments with ``compile`` (``{mode: max-autotune}``,
            ``{backend: aot_eager}`` ...).
        zero_stage: DeepSpeed ZeRO stage (0, 1, 2 or 3; 3 partitions the weights too, and the final weights are
            gathered into full tensors). ZeRO-3 does not combine with ``ema_decay``.
        deepspeed_config: A DeepSpeed JSON file merged over the generated DeepSpeed configuration (its entries win;
            batch sizes, accumulation, clipping, precision and ZeRO stage must agree with this configuration or be
            ``"auto"``; no ``optimizer``/``scheduler`` sections). Implies ``backend: deepspeed`` when ``backend`` is
            ``auto``. The launcher convention ``--deepspeed_config FILE`` sets it.
        find_unused_parameters: DDP option for models with parameters that get no gradient. No maedfer model needs
            it: the LGI 'region' head's dead last stage 3 and SVFAP's official-pre-training bottleneck are skipped and
            frozen. Turn it on only for your own models with unused branches (it costs an extra graph traversal).
        ema_decay: Keep an exponential moving average of the weights (``None``: off).
        save_every_epochs: Checkpoint period in epochs (the last epoch is always saved).
        save_every_steps: Also checkpoint every N optimizer steps within an epoch (0: off); the default keeps long
            epochs resumable mid-epoch (a resumed run repeats and skips no batch).
        keep_checkpoints: How many periodic checkpoints to keep (the newest; 0 keeps all).
        resume: ``"auto"`` (latest complete checkpoint in ``output_dir``), ``"none"`` or a checkpoint path.
        eval_every_epochs: Validation period (0: only at the end).
        max_steps_per_epoch: Cap on steps per epoch (demos and smoke tests; ``None``: the whole loader).
        max_nonfinite_steps: Consecutive non-finite losses tolerated (skipped and counted) before stopping.
        log_every_steps: Console / tensorboard period.
        tensorboard: Write tensorboard scalars (and reconstruction images in pre-training).
        frame_diff_group_size: Pre-training motion target group size (MAE-DFER: 2; ``None``: plain pixels).
        target_diff_weight: Weight of the frame-difference half of the loss (``None``: plain MSE).
        normalize_target: Per-patch normalised pixel targets.
        contrastive_weight: HiCMAE hierarchical contrastive loss weight.
        gather_negatives: HiCMAE: contrastive negatives from the whole global batch.
        regression_loss: ``"mse"``, ``"l1"``, ``"smooth_l1"``, ``"ccc"`` or ``"pcc"``.
        linear_probe: Classification / regression as a linear probe: the encoder (from ``model.checkpoint``) is
            frozen and only a BatchNorm (no affine) + linear head on its pooled feature trains
            (:mod:`maedfer.tasks.linear_probe`; no mixup, no label smoothing, no layer-wise decay).
        cache_features: With ``linear_probe``: compute the pooled features of the un-augmented training clips once
            and train the head on them every epoch (no training augmentation then).
    """

    task: str = "pretrain"
    epochs: int = 100
    seed: int = 0
    output_dir: str = "runs/default"
    backend: str = "auto"
    precision: str = "auto"
    compile: bool = False
    compile_options: dict[str, Any] = field(default_factory=dict)
    zero_stage: int = 0
    deepspeed_config: str | None = None
    find_unused_parameters: bool = False
    ema_decay: float | None = None
    save_every_epochs: int = 10
    save_every_steps: int = 1000
    keep_checkpoints: int = 2
    resume: str = "auto"
    eval_every_epochs: int = 1
    max_steps_per_epoch: int | None = None
    max_nonfinite_steps: int = 20
    log_every_steps: int = 10
    tensorboard: bool = True
    frame_diff_group_size: int | None = None
    target_diff_weight: float | None = None
    normalize_target: bool = True
    contrastive_weight: float = 0.0025
    gather_negatives: bool = False
    regression_loss: str = "mse"
    linear_probe: bool = False
    cache_features: bool = False


@dataclass
class ExperimentConfig:
    """A whole experiment."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        from .models.assemble import apply_objective  # (lazy: the model zoo imports torch)

        try:
            apply_objective(self, _check_type)
        except (TypeError, ValueError) as err:
            raise ConfigError(str(err)) from None


# ------------------------------------------------------------------------------------------------- conversion
def _check_type(value: Any, annotation: Any, key: str) -> Any:
    """Validate (and lightly coerce) a value against a dataclass field annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", ())):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected float, got {value!r}") from None
    if annotation in (int, float, str, bool):
        if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
            raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_check_type(v, args[0], f"{key}[{i}]") if args else v for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(prefix + k for k in unknown)}; valid: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}{name}: expected a mapping")
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(value, hint, prefix + name)
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any]) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from nested mappings; unknown keys and wrong types raise ConfigError."""
    return _build(ExperimentConfig, data or {}, "")


def config_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """Plain nested dict (YAML/JSON serialisable)."""
    return dataclasses.asdict(config)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if len(path) < 2:
        raise ConfigError(f"override {text!r}: the key must name a section and a field, e.g. train.epochs=3")
    value = yaml.safe_load(raw) if raw.strip() else None
    return path, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict; returns a new dict."""
    result = copy.deepcopy(data)
    for text in overrides:
        path, value = _parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return result


def load_config(path: str | os.PathLike[str] | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Load a YAML experiment file (or the defaults when ``path`` is None) and apply dotted overrides.

    ``path`` may also be the bare name of a shipped config (``mae_dfer_voxceleb2``, ``dfew_mae_dfer.yaml``) when no
    such file exists: :func:`maedfer.resources.resolve_config` finds it in the checkout or the installed package.

    Raises:
        ConfigError: For a missing/invalid file, unknown keys or wrong types (the message names the file).
    """
    data: dict[str, Any] = {}
    if path is not None:
        from .resources import ResourceNotFoundError, resolve_config

        try:
            file = resolve_config(path)
        except ResourceNotFoundError as err:
            raise ConfigError(str(err)) from None
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ConfigError(f"{file}: invalid YAML: {err}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the top level must be a mapping with model/data/optim/train sections")
        data = loaded or {}
    try:
        return config_from_dict(apply_overrides(data, overrides))
    except ConfigError as err:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{err}") from None


def dump_config(config: ExperimentConfig, path: str | os.PathLike[str]) -> Path:
    """Write the resolved configuration as YAML (atomically)."""
    from .checkpoint import atomic_write_text

    return atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
