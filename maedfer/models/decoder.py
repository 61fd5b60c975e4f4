"""The lightweight transformer decoder of the masked autoencoders, and how its input is assembled."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layers import Block, BlockSettings, CrossSelfBlock
from ..masking import visible_first_order

__all__ = ["MAEDecoder", "decode_masked_tokens"]


class MAEDecoder(nn.Module):
    """Transformer decoder that predicts the masked tokens' pixels (or spectrogram patches).

    Keys match the official decoders: ``blocks.{j}``, ``norm``, ``head``.

    With ``num_skip_blocks = s > 0`` (HiCMAE's hierarchical skip connections) the last ``s`` blocks are
    :class:`~maedfer.layers.CrossSelfBlock` s: block ``k`` cross-attends to ``skips[-k]`` (deep encoder layers feed
    shallow decoder layers, U-Net style).

    Args:
        embed_dim: Decoder width (384 in every released model).
        depth: Number of blocks (4 in the official recipes).
        num_heads: Attention heads.
        out_dim: Values predicted per token, e.g. ``3 * tubelet * patch ** 2`` (1536) for video, ``patch ** 2`` (256)
            for a spectrogram.
        num_skip_blocks: How many trailing blocks read skip features.
        block: Block settings (:class:`~maedfer.layers.BlockSettings`); ``block.drop_path`` is the end of the linear
            drop-path ramp over the blocks.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 384,
        depth: int = 4,
        num_heads: int = 6,
        out_dim: int = 1536,
        num_skip_blocks: int = 0,
        block: BlockSettings = BlockSettings(),
    ) -> None:
        super().__init__()
        if not 0 <= num_skip_blocks < max(depth, 1):
            raise ValueError(f"num_skip_blocks={num_skip_blocks} must be below the decoder depth {depth}")
        self.embed_dim = embed_dim
        self.num_skip_blocks = num_skip_blocks
        first_skip = depth - num_skip_blocks
        self.blocks = nn.ModuleList(
            (CrossSelfBlock if index >= first_skip else Block)(embed_dim, num_heads, settings)
            for index, settings in enumerate(block.ramp(depth))
        )
        self.norm = nn.LayerNorm(embed_dim, eps=block.norm_eps)
        self.head = nn.Linear(embed_dim, out_dim)

    def forward(self, x: torch.Tensor, num_predict: int, skips: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Decode.

        Args:
            x: ``(B, N, D)`` decoder tokens; the last ``num_predict`` rows are the ones to predict.
            num_predict: How many trailing tokens to predict.
            skips: Skip features ``(B, N_visible, D)``, one per skip block (block ``k`` reads ``skips[-k]``).

        Returns:
            ``(B, num_predict, out_dim)``.
        """
        first_skip = len(self.blocks) - self.num_skip_blocks
        if self.num_skip_blocks and (skips is None or len(skips) != self.num_skip_blocks):
            raise ValueError(f"this decoder needs {self.num_skip_blocks} skip features, got {0 if skips is None else len(skips)}")
        for index, block in enumerate(self.blocks):
            x = block(x, skips[first_skip - 1 - index]) if index >= first_skip else block(x)
        return self.head(self.norm(x[:, -num_predict:]))


def decode_masked_tokens(
    decoder: MAEDecoder,
    encoder_to_decoder: nn.Module,
    mask_token: torch.Tensor,
    pos_table: torch.Tensor,
    tokens: torch.Tensor,
    visible_positions: torch.Tensor,
    mask: torch.Tensor,
    skips: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Assemble the decoder input ``[visible tokens + their positions ; mask token + masked positions]`` and decode.

    Args:
        decoder: The decoder.
        encoder_to_decoder: Projection from encoder to decoder width (no bias in the official models).
        mask_token: Learned ``(1, 1, D)`` token for every masked position.
        pos_table: Decoder position table ``(N, D)``.
        tokens: Encoder output for the visible tokens ``(B, N_visible, C)`` (any order).
        visible_positions: Raster index whose decoder position each visible token gets, ``(B, N_visible)``.
        mask: ``(B, N)`` bool, ``True`` = masked.
        skips: Encoder features for skip blocks (``(B, N_visible, C)`` each, in the order of ``tokens``); they are
            projected with ``encoder_to_decoder`` and get the same positions.

    Returns:
        ``(B, N_masked, out_dim)`` predictions in raster order of the masked tokens.
    """
    x = encoder_to_decoder(tokens)
    pos_visible = pos_table[visible_positions].to(x.dtype)
    masked = visible_first_order(mask)[:, visible_positions.shape[1] :]
    pos_masked = pos_table[masked].to(x.dtype)
    decoder_input = torch.cat((x + pos_visible, mask_token.to(x.dtype) + pos_masked), dim=1)
    projected_skips = None if skips is None else [encoder_to_decoder(s) + pos_visible for s in skips]
    return decoder(decoder_input, masked.shape[1], projected_skips)
