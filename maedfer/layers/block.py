"""Pre-norm transformer blocks shared by every encoder and decoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .attention import Attention
from .drop import DropPath, layer_scale_parameter
from .mlp import Mlp
from .settings import BlockSettings

__all__ = ["Block", "BlockSettings", "CrossSelfBlock", "residual"]


def residual(x: torch.Tensor, branch: torch.Tensor, gamma: torch.Tensor | None, drop: nn.Module) -> torch.Tensor:
    """``x + drop(gamma * branch)`` (``gamma`` omitted when layer scale is off)."""
    return x + drop(branch if gamma is None else gamma * branch)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    State-dict keys match the official ``Block`` (``norm1``, ``attn.{qkv,q_bias,v_bias,proj}``, ``norm2``,
    ``mlp.{fc1,fc2}``, and ``gamma_1``/``gamma_2`` with layer scale).

    Args:
        dim: Token width C.
        num_heads: Attention heads.
        settings: Block settings; ``drop_path`` is this block's stochastic-depth rate.
        **changes: :class:`BlockSettings` fields replacing those of ``settings`` (e.g. ``init_values=0.1``).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        settings: BlockSettings = BlockSettings(),
        **changes: Any,
    ) -> None:
        super().__init__()
        s = settings.replace(**changes) if changes else settings
        self.norm1 = nn.LayerNorm(dim, eps=s.norm_eps)
        self.attn = Attention(
            dim, num_heads=num_heads, qkv_bias=s.qkv_bias, qk_scale=s.qk_scale, attn_drop=s.attn_drop, proj_drop=s.drop
        )
        self.drop_path = DropPath(s.drop_path) if s.drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=s.norm_eps)
        self.mlp = Mlp(dim, int(dim * s.mlp_ratio), drop=s.drop)
        self.gamma_1 = layer_scale_parameter(dim, s.init_values)
        self.gamma_2 = layer_scale_parameter(dim, s.init_values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` -> ``(B, N, C)``."""
        x = residual(x, self.attn(self.norm1(x)), self.gamma_1, self.drop_path)
        return residual(x, self.mlp(self.norm2(x)), self.gamma_2, self.drop_path)


class CrossSelfBlock(nn.Module):
    """Cross-attention to a context, then self-attention, then MLP (all pre-norm).

    ``x + cross_attn(cross_norm1(x), cross_norm2(context))`` -> ``x + attn(norm1(x))`` -> ``x + mlp(norm2(x))``.
    Keys match the official ``CSBlock`` of SVFAP and HiCMAE (layer scale: ``gamma_0``, ``gamma_1``, ``gamma_2``).

    Args:
        dim: Token width C.
        num_heads: Heads of both attentions.
        context_dim: Width of the context tokens (defaults to C).
        settings, **changes: As in :class:`Block`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        settings: BlockSettings = BlockSettings(),
        *,
        context_dim: int | None = None,
        **changes: Any,
    ) -> None:
        super().__init__()
        s = settings.replace(**changes) if changes else settings
        context_dim = context_dim or dim
        self.cross_attn = Attention(
            dim,
            num_heads=num_heads,
            qkv_bias=s.qkv_bias,
            qk_scale=s.qk_scale,
            attn_drop=s.attn_drop,
            proj_drop=s.drop,
            context_dim=context_dim,
            layout="split",
        )
        self.cross_norm1 = nn.LayerNorm(dim, eps=s.norm_eps)
        self.cross_norm2 = nn.LayerNorm(context_dim, eps=s.norm_eps)
        self.norm1 = nn.LayerNorm(dim, eps=s.norm_eps)
        self.attn = Attention(
            dim, num_heads=num_heads, qkv_bias=s.qkv_bias, qk_scale=s.qk_scale, attn_drop=s.attn_drop, proj_drop=s.drop
        )
        self.drop_path = DropPath(s.drop_path) if s.drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=s.norm_eps)
        self.mlp = Mlp(dim, int(dim * s.mlp_ratio), drop=s.drop)
        self.gamma_0 = layer_scale_parameter(dim, s.init_values)
        self.gamma_1 = layer_scale_parameter(dim, s.init_values)
        self.gamma_2 = layer_scale_parameter(dim, s.init_values)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Update ``x (B, N, C)`` from ``context (B, M, context_dim)``; returns ``(B, N, C)``."""
        cross = self.cross_attn(self.cross_norm1(x), self.cross_norm2(context))
        x = residual(x, cross, self.gamma_0, self.drop_path)
        x = residual(x, self.attn(self.norm1(x)), self.gamma_1, self.drop_path)
        return residual(x, self.mlp(self.norm2(x)), self.gamma_2, self.drop_path)
