"""The input contract of the models: ``model.input_modalities`` names the data a model consumes.

Fine-tuning models (video encoders, the audio ViT, :class:`~maedfer.models.AudioVisualClassifier`) take their inputs
by keyword, the modality a model lacks left out::

    logits = model(**{key: batch[key] for key in input_modalities(model)})   # model(video=...), model(video=..., audio=...)

Positional calls keep working, in the order of ``input_modalities`` (``model(video)``, ``model(video, audio)``,
``model(fbank)`` for an audio-only model). The masked autoencoders also state ``input_modalities`` (the data they
read); their forward takes masks as well and is not part of the keyword contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .wrappers import unwrap_model

__all__ = ["MODALITIES", "bind_inputs", "input_modalities", "modality_name", "model_inputs"]

#: Every modality a model can take, in the positional order.
MODALITIES = ("video", "audio")


def input_modalities(model: nn.Module) -> tuple[str, ...]:
    """``model.input_modalities``, looking through DDP / DataParallel / DeepSpeed / compiled wrappers.

    Raises:
        TypeError: If the model states no input modalities.
    """
    model = unwrap_model(model)
    modalities = getattr(model, "input_modalities", None)
    if not modalities or any(m not in MODALITIES for m in modalities):
        raise TypeError(f"{type(model).__name__} states no input_modalities (a subset of {MODALITIES}), got {modalities!r}")
    return tuple(modalities)


def modality_name(modalities: Sequence[str]) -> str:
    """``("video", "audio")`` -> ``"audio_visual"``; ``("video",)`` -> ``"video"``; ``("audio",)`` -> ``"audio"``."""
    return "audio_visual" if len(modalities) > 1 else modalities[0]


def model_inputs(model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The keyword inputs of ``model`` taken from a batch: ``{"video": (B, 3, T, H, W), "audio": (B, 1, T_a, F)}``
    restricted to :func:`input_modalities`.

    Raises:
        KeyError: If the batch lacks a modality the model needs.
    """
    wanted = input_modalities(model)
    missing = [key for key in wanted if key not in batch]
    if missing:
        raise KeyError(f"{type(model).__name__} needs batch key(s) {missing}; the batch has {sorted(batch)}")
    return {key: batch[key] for key in wanted}


def bind_inputs(
    model: nn.Module, positional: Sequence[torch.Tensor], **keywords: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Bind a forward call's inputs to ``model.input_modalities``: positional ones in that order, then keywords.

    Args:
        model: The called model (for its ``input_modalities`` and name in errors).
        positional: Positional inputs.
        **keywords: ``video=`` / ``audio=`` (``None`` means not given).

    Returns:
        ``{modality: tensor}`` with exactly the model's modalities.

    Raises:
        TypeError: On too many positional inputs, a modality the model does not take, or one given twice.
        ValueError: If a modality the model needs is missing.
    """
    name, wanted = type(model).__name__, tuple(model.input_modalities)
    if len(positional) > len(wanted):
        raise TypeError(f"{name} takes {len(wanted)} positional input(s) {wanted}, got {len(positional)}")
    bound = dict(zip(wanted, positional))
    for key, value in keywords.items():
        if value is None:
            continue
        if key not in wanted:
            raise TypeError(f"{name} takes {' and '.join(wanted)} input only, got {key}=")
        if key in bound:
            raise TypeError(f"{name} got its {key} input twice (positionally and as {key}=)")
        bound[key] = value
    missing = [key for key in wanted if key not in bound]
    if missing:
        needs = " and ".join(("an " if key == "audio" else "a ") + key for key in missing)
        raise ValueError(f"{name} needs {needs} input (it takes {' and '.join(wanted)})")
    return bound
