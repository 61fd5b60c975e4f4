"""Stochastic depth and layer scale."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DropPath", "drop_path", "layer_scale_parameter", "drop_path_rates"]


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Zero whole samples of a residual branch with probability ``drop_prob`` and rescale the survivors.

    The unit that is dropped is one index along **dim 0** of ``x``, whatever that dimension means for the caller (a
    clip, or a (clip, region) row in the LGI-Former).

    Args:
        x: Branch output ``(B, ...)``.
        drop_prob: Probability of dropping a sample.
        training: No-op when ``False``.

    Returns:
        Tensor of the same shape as ``x``.
    """
    if drop_prob <= 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = x.new_empty(shape).bernoulli_(keep)
    return x * mask.div_(keep)


class DropPath(nn.Module):
    """Module form of :func:`drop_path` (per-sample stochastic depth on the residual branch)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, ...)`` -> ``(B, ...)``."""
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


def layer_scale_parameter(dim: int, init_values: float | None) -> nn.Parameter | None:
    """Per-channel residual scale (``gamma``), or ``None`` when layer scale is off.

    Blocks register the result under the official names (``gamma_1``, ``gamma_2``, ...) so that checkpoints trained
    with layer scale keep their key names.

    Args:
        dim: Channel count C.
        init_values: Initial value of every entry; ``None`` or ``<= 0`` disables layer scale.
    """
    if not init_values or init_values <= 0:
        return None
    return nn.Parameter(torch.full((dim,), float(init_values)))


def drop_path_rates(drop_path_rate: float, depth: int) -> list[float]:
    """Stochastic-depth rate of each block: a linear ramp from 0 to ``drop_path_rate`` over ``depth`` blocks."""
    return [x.item() for x in torch.linspace(0, drop_path_rate, depth, device="cpu")] if depth > 0 else []
