"""A model described by sections (encoder, decoder, audio tower, fusion, block, head, objective) instead of a name.

The ``model:`` section of an experiment YAML may describe its model; registry names are presets of the same
description (the sections then override the preset). Each section key maps onto one flat argument of the builders the
registry entries call, so an assembled model and its preset are the same module::

    model:
      encoder: {type: lgi_former, img_size: 64, patch_size: 16, num_frames: 8, embed_dim: 64, depth: 4,
                num_heads: 4, region_size: [2, 2, 4]}
      decoder: {embed_dim: 32, depth: 1, num_heads: 2}
      objective: {mask: part_window, mask_ratio: 0.75, frame_diff_group_size: 2}

Details: ``docs/modules.md``, section ``maedfer/models/assemble.py``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..layers import FLAT_BLOCK_NAMES
from .encoder import TokenEncoder
from .official import class_arguments
from .zoo import build_encoder, build_mae
from .zoo_audio_visual import VIDEO_TOWER_ARGUMENTS, VIDEO_TOWERS, build_hicmae_classifier, build_hicmae_pretrain

__all__ = [
    "ENCODER_TYPES",
    "MODEL_SECTIONS",
    "OBJECTIVE_SETTINGS",
    "ModelDescription",
    "assemble_model",
    "describe",
    "preset_overrides",
]

#: ``encoder.type`` values and their classes (the same names as HiCMAE's ``video_encoder``).
ENCODER_TYPES: dict[str, type[TokenEncoder]] = dict(VIDEO_TOWERS)

#: The sections a ``model:`` description may have besides ``name`` / ``kwargs`` / ``checkpoint`` ...
MODEL_SECTIONS = ("encoder", "decoder", "audio", "fusion", "block", "head", "objective")

#: ``objective`` keys that are training settings: key -> (experiment section, field).
OBJECTIVE_SETTINGS: dict[str, tuple[str, str]] = {
    "mask": ("data", "mask_type"),
    "mask_ratio": ("data", "mask_ratio"),
    "mask_window": ("data", "mask_window"),
    "audio_mask_ratio": ("data", "audio_mask_ratio"),
    "frame_diff_group_size": ("train", "frame_diff_group_size"),
    "target_diff_weight": ("train", "target_diff_weight"),
    "normalize_target": ("train", "normalize_target"),
    "contrastive_weight": ("train", "contrastive_weight"),
    "gather_negatives": ("train", "gather_negatives"),
}

_HEAD_KEYS = ("num_classes", "head_activation", "init_scale", "global_pool")
_SHARED_VIDEO_KEYS = ("img_size", "patch_size", "num_frames", "tubelet_size", "in_chans", "embed_dim", "num_heads",
                      "depth", "learnable_pos_embed")
# section key -> flat builder argument (a missing key is not accepted in that section).
_DECODER = {"embed_dim": "decoder_embed_dim", "depth": "decoder_depth", "num_heads": "decoder_num_heads",
            "pos_order": "decoder_pos_order"}
_AV_DECODER = {"embed_dim": "decoder_embed_dim", "num_heads": "decoder_num_heads", "depth": "decoder_depth"}
_AUDIO = {"embed_dim": "embed_dim_audio", "depth": "depth_audio", "num_heads": "num_heads_audio",
          "input_size": "audio_size", "patch_size": "audio_patch_size", "in_chans": "audio_in_chans",
          "decoder_embed_dim": "decoder_embed_dim_audio", "decoder_num_heads": "decoder_num_heads_audio",
          "decoder_depth": "decoder_depth_audio"}
_FUSION = {"depth": "fusion_depth", "num_heads": "fusion_num_heads"}
_BLOCK = {field: flat for flat, field in FLAT_BLOCK_NAMES.items()}
_AV_HEAD = {"num_classes": "num_classes", "head_activation": "head_activation", "init_scale": "init_scale",
            "head_init": "head_init", "modality": "modality"}
_AV_OBJECTIVE = {"taps": "return_intermediate_features", "temperature": "temperature"}


@dataclass
class ModelDescription:
    """A model as sections of settings (each ``None`` when absent); the fields of :class:`maedfer.config.ModelConfig`
    of the same names."""

    encoder: Mapping[str, Any] | None = None
    decoder: Mapping[str, Any] | None = None
    audio: Mapping[str, Any] | None = None
    fusion: Mapping[str, Any] | None = None
    block: Mapping[str, Any] | None = None
    head: Mapping[str, Any] | None = None
    objective: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, config: Any) -> ModelDescription:
        """The sections of a :class:`~maedfer.config.ModelConfig` (or anything with those attributes)."""
        return cls(**{name: getattr(config, name, None) for name in MODEL_SECTIONS})

    @property
    def given(self) -> bool:
        """Whether any section is set."""
        return any(getattr(self, name) is not None for name in MODEL_SECTIONS)

    @property
    def audio_visual(self) -> bool:
        """An audio tower (or fusion) makes it a HiCMAE model."""
        return self.audio is not None or self.fusion is not None


def _video_encoder_keys(encoder_type: str | None, audio_visual: bool, pretrain: bool) -> dict[str, str]:
    """Keys of the ``encoder`` section (each maps onto the flat argument of the same name); ``encoder_type=None``
    (a preset's own encoder) accepts the keys of every encoder and leaves the check to the preset."""
    types = list(ENCODER_TYPES) if encoder_type is None else [encoder_type]
    if audio_visual:
        keys = set(_SHARED_VIDEO_KEYS) | {key for name in types for key in VIDEO_TOWER_ARGUMENTS[name]}
    else:
        keys = set(class_arguments(*(ENCODER_TYPES[name] for name in types))) - set(FLAT_BLOCK_NAMES) - set(_HEAD_KEYS)
        if not pretrain:  # switches that only the (official) pre-training reads
            keys -= {"pretrain_context", "upsample"}
    return {key: key for key in sorted(keys)}


def _unknown(section: str, mapping: Mapping[str, Any], accepted: Mapping[str, str] | set[str], why: str = "") -> None:
    unknown = sorted(set(mapping) - set(accepted))
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, list(accepted), n=2)
        hints.append(f"model.{section}.{key}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    raise TypeError(f"unknown key(s) {', '.join(hints)}{why}; accepted in model.{section}: "
                    f"{', '.join(sorted(accepted)) or '(none)'}")


def describe(description: ModelDescription, *, kind: str, encoder_type: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """Flatten a description into the builders' flat arguments.

    Args:
        description: The sections.
        kind: ``"pretrain"`` or ``"finetune"``.
        encoder_type: The video encoder (``vit``, ``lgi_former``, ``tpsbt``).

    Returns:
        ``(flat arguments, {flat argument: YAML key path})``; the objective's training settings
        (:data:`OBJECTIVE_SETTINGS`) are not model arguments and are left out.

    Raises:
        TypeError: A key a section does not take (naming its YAML path, with close matches).
        ValueError: A section that does not fit the model (e.g. ``decoder`` for a fine-tuning model).
    """
    av, pretrain = description.audio_visual, kind == "pretrain"
    encoder = dict(description.encoder or {})
    encoder.pop("type", None)
    tables: list[tuple[str, Mapping[str, Any], Mapping[str, str]]] = [
        ("encoder", encoder, _video_encoder_keys(encoder_type, av, pretrain)),
        ("block", description.block or {}, _BLOCK),
    ]
    if description.decoder is not None and not pretrain:
        raise ValueError("model.decoder: a fine-tuning model has no decoder (the decoder makes a pre-training model)")
    if av:
        tables += [("audio", description.audio or {}, _AUDIO if pretrain else
                    {k: v for k, v in _AUDIO.items() if not k.startswith("decoder_")}),
                   ("fusion", description.fusion or {}, _FUSION),
                   ("decoder", description.decoder or {}, _AV_DECODER),
                   ("head", description.head or {}, {} if pretrain else _AV_HEAD),
                   ("objective", {k: v for k, v in (description.objective or {}).items() if k not in OBJECTIVE_SETTINGS},
                    _AV_OBJECTIVE if pretrain else {})]
        if encoder_type is not None:
            encoder["video_encoder"] = encoder_type
    else:
        tables += [("decoder", description.decoder or {}, _DECODER),
                   ("head", description.head or {}, {} if pretrain else {k: k for k in _HEAD_KEYS}),
                   ("objective", {k: v for k, v in (description.objective or {}).items() if k not in OBJECTIVE_SETTINGS},
                    {})]
    flat: dict[str, Any] = {}
    paths: dict[str, str] = {}
    for section, values, accepted in tables:
        why = ""
        if section == "head" and pretrain:
            why = " (a pre-training model has no head)"
        elif section == "objective":
            why = f" (training settings: {', '.join(OBJECTIVE_SETTINGS)})"
        _unknown(section, {k: v for k, v in values.items() if k != "video_encoder"}, accepted, why)
        for key, value in values.items():
            target = "video_encoder" if key == "video_encoder" else accepted[key]
            flat[target] = tuple(value) if isinstance(value, list) else value
            paths[target] = f"model.{section}.{key}" if key != "video_encoder" else "model.encoder.type"
    return flat, paths


def _name_paths(error: Exception, paths: Mapping[str, str]) -> str:
    """``error``'s message with the YAML key paths of the flat arguments it mentions."""
    message = str(error)
    named = [path for flat, path in paths.items() if re.search(rf"\b{re.escape(flat)}\b", message)]
    return f"{message} (set by {', '.join(named)})" if named else message


def assemble_model(description: ModelDescription, *, kind: str, encoder_type: str) -> nn.Module:
    """Build the model a description gives (no registry name).

    Args:
        description: The sections; ``encoder.type`` picks the video encoder.
        kind: ``"pretrain"`` (masked autoencoder; the audio-visual one with an ``audio`` section) or ``"finetune"``.
        encoder_type: ``"vit"``, ``"lgi_former"`` or ``"tpsbt"``.

    Raises:
        TypeError / ValueError: An unknown key or an impossible combination, naming the YAML key path.
    """
    if encoder_type not in ENCODER_TYPES:
        raise ValueError(f"model.encoder.type must be one of {', '.join(ENCODER_TYPES)}, got {encoder_type!r}")
    if kind not in ("pretrain", "finetune"):
        raise ValueError(f"model kind must be 'pretrain' or 'finetune', got {kind!r}")
    flat, paths = describe(description, kind=kind, encoder_type=encoder_type)
    try:
        if description.audio_visual:
            return (build_hicmae_pretrain if kind == "pretrain" else build_hicmae_classifier)(**flat)
        cls = ENCODER_TYPES[encoder_type]
        return build_mae(cls, flat) if kind == "pretrain" else build_encoder(cls, flat)
    except (TypeError, ValueError) as error:
        raise type(error)(_name_paths(error, paths)) from None


#: The video encoder of the clean presets of each video system.
_SYSTEM_ENCODER = {"videomae": "vit", "mae_dfer": "lgi_former", "svfap": "tpsbt"}


def preset_overrides(description: ModelDescription, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The flat overrides a description applies to the registry preset ``name`` (its own arguments stay).

    Returns:
        ``(flat overrides for create_model, {flat argument: YAML key path})``.

    Raises:
        TypeError / ValueError: A key the preset does not take, an official name (they take the official argument
            names: use ``model.kwargs``), or an ``encoder.type`` a video-only preset cannot switch to; each naming
            the YAML path.
    """
    from ..registry import model_entry
    from .official import check_model_kwargs

    entry = model_entry(name)
    if entry.official:
        raise ValueError(f"model.name={name!r} is an official name, which takes the official argument names: give "
                         "them in model.kwargs, or use a clean preset name with sections")
    encoder_type = (description.encoder or {}).get("type")
    av = entry.system == "hicmae"
    if av:
        description = ModelDescription(**{**description.__dict__, "audio": description.audio or {}})
    elif description.audio_visual:
        raise ValueError(f"model.audio / model.fusion: {name!r} is a video model; use a HiCMAE preset (hicmae_*) or "
                         "describe the model without model.name")
    elif encoder_type is not None and encoder_type != _SYSTEM_ENCODER.get(entry.system):
        raise ValueError(f"model.encoder.type={encoder_type!r}: the encoder of {name!r} is "
                         f"{_SYSTEM_ENCODER.get(entry.system)!r}; leave model.name out to assemble another encoder")
    flat, paths = describe(description, kind=entry.kind, encoder_type=encoder_type if av else None)
    try:
        check_model_kwargs(name, flat)
    except TypeError as error:
        raise TypeError(_name_paths(error, paths)) from None
    return flat, paths


#: The preset built when ``model:`` names nothing.
DEFAULT_PRESET = "mae_dfer_pretrain_base"


def description_kind(config: Any) -> str:
    """``"pretrain"`` when an assembled description has a ``decoder`` section, else ``"finetune"``; a preset's kind."""
    if config.name is not None:
        from ..registry import model_entry

        return model_entry(config.name).kind
    return "pretrain" if config.decoder is not None else "finetune"


def check_model_config(config: Any) -> None:
    """Validate a :class:`~maedfer.config.ModelConfig` and fill in the default preset name.

    An assembled description is also built once on the meta device, so an impossible combination (a region size
    that does not divide the token grid, taps beyond the depth ...) fails here, naming its YAML key path.

    Raises:
        TypeError / ValueError: The first problem, naming the key.
    """
    from ..registry import is_model
    from .official import check_model_kwargs

    description = ModelDescription.of(config)
    encoder_type = (config.encoder or {}).get("type")
    if config.name is None and encoder_type is None:
        if description.given:
            raise ValueError("model: give model.name (a registry preset the sections override) or model.encoder.type "
                             f"(one of {', '.join(ENCODER_TYPES)}) to assemble the model from its sections")
        config.name = DEFAULT_PRESET
    if config.name is not None:
        if not is_model(config.name):
            from ..registry import model_entry

            model_entry(config.name)  # KeyError with close matches
        try:
            check_model_kwargs(config.name, config.kwargs)
        except TypeError as err:
            raise TypeError(f"model.kwargs: {err}") from None
        if description.given:  # built once on the meta device: impossible combinations fail here
            _meta_model(config)
        return
    for key in ("kwargs", "official_behaviour", "width_from_checkpoint"):
        if getattr(config, key):
            raise ValueError(f"model.{key} applies to a registry preset (model.name); an assembled model takes its "
                             "settings in its sections")
    _meta_model(config)


_META_MODELS: dict[str, nn.Module] = {}


def _meta_model(config: Any) -> nn.Module:
    """The model of ``config`` built on the meta device (for checks only; the last few are kept by their settings, so
    reading a config builds it once)."""
    import torch

    key = repr((config.name, config.kwargs, ModelDescription.of(config)))
    if key not in _META_MODELS:
        with torch.device("meta"):
            model = model_from_config(config)
        while len(_META_MODELS) >= 4:
            _META_MODELS.pop(next(iter(_META_MODELS)))
        _META_MODELS[key] = model
    return _META_MODELS[key]


def model_from_config(config: Any) -> nn.Module:
    """Build (without weights) the model of a :class:`~maedfer.config.ModelConfig`: its preset with ``kwargs`` and
    the sections' overrides, or the model its sections assemble."""
    from ..registry import create_model

    description = ModelDescription.of(config)
    if config.name is None:
        model = assemble_model(description, kind=description_kind(config), encoder_type=config.encoder["type"])
        model.model_name = f"assembled {config.encoder['type']}"  # type: ignore[attr-defined]
        return model
    flat, paths = preset_overrides(description, config.name) if description.given else ({}, {})
    try:
        return create_model(config.name, **{**flat, **config.kwargs})
    except (TypeError, ValueError) as error:
        raise type(error)(_name_paths(error, paths)) from None


def apply_objective(experiment: Any, check_type: Any) -> None:
    """Copy the ``model.objective`` training settings into ``data`` / ``train`` (:data:`OBJECTIVE_SETTINGS`), and
    check that an assembled model's kind fits ``train.task``.

    Args:
        experiment: A :class:`~maedfer.config.ExperimentConfig`.
        check_type: ``check_type(value, annotation, key)`` of :mod:`maedfer.config` (typed values).

    Raises:
        ValueError: A setting given both in the objective and (differently) in its own section, or a pre-training
            description with a fine-tuning task (or the reverse).
    """
    import dataclasses
    import typing

    model = experiment.model
    if model.name is None:
        kind = description_kind(model)
        wants = "pretrain" if experiment.train.task == "pretrain" else "finetune"
        if kind != wants:
            raise ValueError(f"model: the description is a {kind} model ({'with' if model.decoder is not None else 'without'}"
                             f" model.decoder) but train.task is {experiment.train.task!r}")
    for key, value in (model.objective or {}).items():
        if key not in OBJECTIVE_SETTINGS:
            continue
        section_name, field_name = OBJECTIVE_SETTINGS[key]
        section = getattr(experiment, section_name)
        field = next(f for f in dataclasses.fields(section) if f.name == field_name)
        hint = typing.get_type_hints(type(section))[field_name]
        value = check_type(value, hint, f"model.objective.{key}")
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
        current = getattr(section, field_name)
        if current != default and current != value:
            raise ValueError(f"model.objective.{key}={value!r} conflicts with {section_name}.{field_name}={current!r}; "
                             "set it in one place")
        setattr(section, field_name, value)
    group = experiment.train.frame_diff_group_size
    if experiment.train.task == "pretrain" and group is not None and experiment.data.num_frames % group:
        raise ValueError(f"frame_diff_group_size={group} (model.objective / train.frame_diff_group_size) must divide "
                         f"data.num_frames={experiment.data.num_frames}: each group of frames keeps its first frame")
    if ModelDescription.of(model).given and experiment.train.task == "pretrain":
        from ..data.build import pretraining_mask

        built = _meta_model(model)
        try:
            pretraining_mask(built.encoder, experiment.data.mask_type, experiment.data.mask_window)
        except ValueError as err:
            raise ValueError(f"model.objective.mask (data.mask_type / data.mask_window): {err}") from None
