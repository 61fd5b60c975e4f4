"""Feed-forward network of the transformer blocks."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Mlp"]


class Mlp(nn.Module):
    """Two-layer MLP: ``fc1 -> GELU (exact erf form) -> fc2 -> dropout``.

    There is deliberately no dropout between ``fc1`` and ``fc2`` (the official models have none).

    Args:
        in_features: Input width C.
        hidden_features: Hidden width (``4 C`` in every released model); defaults to ``in_features``.
        out_features: Output width; defaults to ``in_features``.
        drop: Dropout probability after ``fc2``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        *,
        act_layer: type[nn.Module] = nn.GELU,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_features)`` -> ``(..., out_features)``."""
        return self.drop(self.fc2(self.act(self.fc1(x))))
