"""Finding the parts of a model: the video encoder (and, re-exported, :func:`unwrap_model`)."""

from __future__ import annotations

from torch import nn

from .encoder import TokenEncoder
from .wrappers import unwrap_model

__all__ = ["unwrap_model", "video_encoder"]


def video_encoder(model: nn.Module) -> TokenEncoder | None:
    """The video :class:`~maedfer.models.encoder.TokenEncoder` of a (possibly wrapped) model: the model itself (a
    fine-tuning encoder), its ``encoder`` (masked autoencoders, HiCMAE), or ``None`` (audio-only models, or no
    encoder)."""
    model = unwrap_model(model)
    for candidate in (model, getattr(model, "encoder", None)):
        if isinstance(candidate, TokenEncoder) and hasattr(candidate.patch_embed, "tubelet_size"):
            return candidate
    return None
