"""Pre-norm transformer blocks shared by every encoder and decoder."""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention
from .drop import DropPath, layer_scale_parameter
from .mlp import Mlp

__all__ = ["Block", "CrossSelfBlock", "residual"]


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
        mlp_ratio: Hidden width of the MLP relative to C.
        qkv_bias: Learned q/v biases.
        qk_scale: Attention logit scale (default ``head_dim ** -0.5``).
        drop: Dropout after the attention and MLP projections.
        attn_drop: Dropout on attention weights.
        drop_path: Stochastic-depth rate of this block.
        init_values: Layer-scale initial value (``None``/0 disables it).
        norm_eps: LayerNorm epsilon (1e-6 in every released model).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        init_values: float | None = None,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(
            dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=drop
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.gamma_1 = layer_scale_parameter(dim, init_values)
        self.gamma_2 = layer_scale_parameter(dim, init_values)

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
        mlp_ratio, qkv_bias, qk_scale, drop, attn_drop, drop_path, init_values, norm_eps: as in :class:`Block`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        context_dim: int | None = None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        init_values: float | None = None,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        context_dim = context_dim or dim
        self.cross_attn = Attention(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop,
            proj_drop=drop,
            context_dim=context_dim,
            layout="split",
        )
        self.cross_norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.cross_norm2 = nn.LayerNorm(context_dim, eps=norm_eps)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(
            dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=drop
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.gamma_0 = layer_scale_parameter(dim, init_values)
        self.gamma_1 = layer_scale_parameter(dim, init_values)
        self.gamma_2 = layer_scale_parameter(dim, init_values)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Update ``x (B, N, C)`` from ``context (B, M, context_dim)``; returns ``(B, N, C)``."""
        cross = self.cross_attn(self.cross_norm1(x), self.cross_norm2(context))
        x = residual(x, cross, self.gamma_0, self.drop_path)
        x = residual(x, self.attn(self.norm1(x)), self.gamma_1, self.drop_path)
        return residual(x, self.mlp(self.norm2(x)), self.gamma_2, self.drop_path)
