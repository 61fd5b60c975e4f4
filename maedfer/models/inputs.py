"""Random inputs of the right shapes for any maedfer model (benchmarks, FLOP counts, smoke tests)."""

from __future__ import annotations

import torch
from torch import nn

from ..masking import PartWindowMaskGenerator, RandomMaskGenerator, TubeMaskGenerator
from .audio_visual import AudioVisualClassifier, AudioVisualMaskedAutoencoder
from .encoder import TokenEncoder
from .lgi_former import LGIFormer
from .mae import MaskedVideoAutoencoder

__all__ = ["example_inputs"]


def _clip(encoder: TokenEncoder, batch: int, generator: torch.Generator | None) -> torch.Tensor:
    embed = encoder.patch_embed
    if hasattr(embed, "input_size"):  # spectrogram
        return torch.randn(batch, embed.proj.in_channels, *embed.input_size, generator=generator)
    size = (batch, embed.proj.in_channels, embed.num_frames, embed.img_size, embed.img_size)
    return torch.randn(size, generator=generator)


def _video_mask(encoder: TokenEncoder, batch: int, ratio: float, generator: torch.Generator | None) -> torch.Tensor:
    if isinstance(encoder, LGIFormer):
        return PartWindowMaskGenerator(encoder.grid_size, ratio, encoder.region_size[1:]).batch(batch, generator)
    return TubeMaskGenerator(encoder.grid_size, ratio).batch(batch, generator)


def example_inputs(
    model: nn.Module,
    batch: int = 1,
    *,
    mask_ratio: float = 0.9,
    audio_mask_ratio: float = 0.8,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, ...]:
    """Positional inputs for ``model(*inputs)``.

    * video classifier: ``(clip,)`` with ``clip (B, 3, T, H, W)``;
    * fine-tuning model: its ``input_modalities`` in order (:mod:`maedfer.models.contract`): ``(clip, fbank)`` for
      HiCMAE, ``(fbank,)`` for an audio-only one; ``model(*inputs)`` and keyword calls give the same output;
    * video MAE: ``(clip, mask)`` with the system's mask (part-window for the LGI-Former, tube otherwise);
    * audio-visual MAE: ``(clip, mask, fbank, audio_mask)`` (tube and random masks).

    Args:
        model: A maedfer model.
        batch: Batch size B.
        mask_ratio: Video mask ratio (0.9 in every official recipe).
        audio_mask_ratio: Audio mask ratio (0.8).
        generator: Optional RNG for reproducible inputs.
    """
    if isinstance(model, AudioVisualClassifier):
        inputs = []
        if model.encoder is not None:
            inputs.append(_clip(model.encoder, batch, generator))
        if model.encoder_audio is not None:
            inputs.append(_clip(model.encoder_audio, batch, generator))
        return tuple(inputs)
    if isinstance(model, AudioVisualMaskedAutoencoder):
        audio_mask = RandomMaskGenerator(model.encoder_audio.grid_size, audio_mask_ratio).batch(batch, generator)
        return (
            _clip(model.encoder, batch, generator),
            _video_mask(model.encoder, batch, mask_ratio, generator),
            _clip(model.encoder_audio, batch, generator),
            audio_mask,
        )
    if isinstance(model, MaskedVideoAutoencoder):
        return _clip(model.encoder, batch, generator), _video_mask(model.encoder, batch, mask_ratio, generator)
    if isinstance(model, TokenEncoder):
        return (_clip(model, batch, generator),)
    raise TypeError(f"no example inputs for {type(model).__name__}")
