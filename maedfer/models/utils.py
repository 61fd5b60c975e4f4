"""Finding the parts of a model: the one place that unwraps training wrappers and finds the video encoder."""

from __future__ import annotations

import sys

from torch import nn

from .encoder import TokenEncoder

__all__ = ["unwrap_model", "video_encoder"]


def _is_deepspeed_engine(model: nn.Module) -> bool:
    """Whether ``model`` is a ``deepspeed.DeepSpeedEngine`` (without importing DeepSpeed)."""
    deepspeed = sys.modules.get("deepspeed")
    engine = getattr(deepspeed, "DeepSpeedEngine", None) if deepspeed is not None else None
    return isinstance(engine, type) and isinstance(model, engine)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` / DeepSpeed engine (``.module``) and
    ``torch.compile`` (``._orig_mod``) wrappers, however nested."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) or _is_deepspeed_engine(model):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod  # type: ignore[assignment]
        else:
            return model


def video_encoder(model: nn.Module) -> TokenEncoder | None:
    """The video :class:`~maedfer.models.encoder.TokenEncoder` of a (possibly wrapped) model: the model itself (a
    fine-tuning encoder), its ``encoder`` (masked autoencoders, HiCMAE), or ``None`` (audio-only models, or no
    encoder)."""
    model = unwrap_model(model)
    for candidate in (model, getattr(model, "encoder", None)):
        if isinstance(candidate, TokenEncoder) and hasattr(candidate.patch_embed, "tubelet_size"):
            return candidate
    return None
