"""Exponential moving average of model weights."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEma"]


class ModelEma:
    """Keeps ``ema = decay * ema + (1 - decay) * weights`` after every optimizer step (buffers are copied).

    Args:
        model: The (unwrapped) model to track; a frozen copy is kept on the same device.
        decay: EMA decay, e.g. 0.9999.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        # The average is kept in fp32 even when the training weights are bf16 (DeepSpeed bf16).
        self.module = copy.deepcopy(model).float().eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the current weights of ``model`` into the average."""
        # parameters()/buffers() list shared tensors once (state_dict() would repeat them under every alias).
        for target, value in zip(self.module.parameters(), model.parameters()):
            target.lerp_(value.detach().to(target.dtype), 1.0 - self.decay)
        for target, value in zip(self.module.buffers(), model.buffers()):
            target.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "model": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.module.load_state_dict(state["model"])
