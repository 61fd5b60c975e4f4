"""The lightweight transformer decoder of the video masked autoencoders."""

from __future__ import annotations

import torch
from torch import nn

from ..layers import Block, drop_path_rates

__all__ = ["MAEDecoder"]


class MAEDecoder(nn.Module):
    """Transformer decoder that predicts the pixels of masked tokens.

    Keys match the official decoder: ``blocks.{j}``, ``norm``, ``head``.

    Args:
        embed_dim: Decoder width (384 in every released model).
        depth: Number of blocks (4 in the official recipes).
        num_heads: Attention heads.
        out_dim: Values predicted per token, ``in_chans * tubelet * patch ** 2`` (1536 for 2x16x16 RGB tubelets).
        mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate, init_values, norm_eps: As in
            :class:`~maedfer.layers.Block`.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 384,
        depth: int = 4,
        num_heads: int = 6,
        out_dim: int = 1536,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        init_values: float | None = None,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=rate,
                init_values=init_values,
                norm_eps=norm_eps,
            )
            for rate in drop_path_rates(drop_path_rate, depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.head = nn.Linear(embed_dim, out_dim)

    def forward(self, x: torch.Tensor, num_predict: int) -> torch.Tensor:
        """Decode.

        Args:
            x: ``(B, N, D)`` decoder tokens; the last ``num_predict`` rows are the ones to predict.
            num_predict: How many trailing tokens to predict.

        Returns:
            ``(B, num_predict, out_dim)``.
        """
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, -num_predict:]))
