"""Transformer block settings: one typed value shared by every block, encoder, decoder and fusion constructor."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .drop import drop_path_rates

__all__ = ["BlockSettings", "FLAT_BLOCK_NAMES"]

# Flat (registry / official) argument name -> BlockSettings field.
FLAT_BLOCK_NAMES: dict[str, str] = {
    "mlp_ratio": "mlp_ratio",
    "qkv_bias": "qkv_bias",
    "qk_scale": "qk_scale",
    "drop_rate": "drop",
    "attn_drop_rate": "attn_drop",
    "drop_path_rate": "drop_path",
    "init_values": "init_values",
    "norm_eps": "norm_eps",
}


@dataclass(frozen=True)
class BlockSettings:
    """Settings of a pre-norm transformer block.

    Attributes:
        mlp_ratio: Hidden width of the MLP relative to the token width C.
        qkv_bias: Learned q/v biases.
        qk_scale: Attention logit scale (``None``: ``head_dim ** -0.5``).
        drop: Dropout after the attention and MLP projections.
        attn_drop: Dropout on attention weights.
        drop_path: Stochastic-depth rate: a block's own rate, or the end of the linear ramp over a stack of blocks.
        init_values: Layer-scale initial value (``None``/0 disables it).
        norm_eps: LayerNorm epsilon (1e-6 in every released model).
    """

    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop: float = 0.0
    attn_drop: float = 0.0
    drop_path: float = 0.0
    init_values: float | None = None
    norm_eps: float = 1e-6

    def replace(self, **changes: Any) -> BlockSettings:
        """A copy with some fields changed (``TypeError`` naming an unknown field)."""
        return dataclasses.replace(self, **changes)

    def ramp(self, depth: int) -> list[BlockSettings]:
        """Settings of a stack of ``depth`` blocks: the drop-path rate ramps linearly from 0 to :attr:`drop_path`."""
        return [self.replace(drop_path=rate) for rate in drop_path_rates(self.drop_path, depth)]

    @classmethod
    def pop_flat(cls, kwargs: dict[str, Any], base: BlockSettings | None = None) -> BlockSettings:
        """Remove the flat names of :data:`FLAT_BLOCK_NAMES` (``drop_path_rate``, ...) from ``kwargs`` and return
        ``base`` (default: the defaults) with them applied."""
        changes = {field: kwargs.pop(flat) for flat, field in FLAT_BLOCK_NAMES.items() if flat in kwargs}
        return (base or cls()).replace(**changes)
