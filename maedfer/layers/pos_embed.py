"""Fixed sinusoidal position tables."""

from __future__ import annotations

import torch

__all__ = ["sinusoid_table_1d"]


def sinusoid_table_1d(num_positions: int, dim: int) -> torch.Tensor:
    """Fixed 1-D sinusoid table over a flattened token index, as used by VideoMAE-style encoders and decoders.

    Channel ``j`` of position ``pos`` holds ``sin`` (even j) or ``cos`` (odd j) of ``pos / 10000 ** (2 * (j // 2) / dim)``:
    the two functions are interleaved, not split into halves. Computed in float64 and rounded to float32.

    Args:
        num_positions: Number of rows N.
        dim: Channels D.

    Returns:
        ``(N, D)`` float32 table.
    """
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]
    exponent = 2.0 * torch.div(torch.arange(dim), 2, rounding_mode="floor").to(torch.float64) / dim
    angle = position / torch.pow(10000.0, exponent)[None, :]
    table = torch.empty_like(angle)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.to(torch.float32)
