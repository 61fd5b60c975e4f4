"""Training wrappers around a model (DDP, DataParallel, DeepSpeed engine, ``torch.compile``) and how to see through
them."""

from __future__ import annotations

import sys

from torch import nn

__all__ = ["unwrap_model"]


def _is_deepspeed_engine(model: nn.Module) -> bool:
    """Whether ``model`` is a ``deepspeed.DeepSpeedEngine`` (without importing DeepSpeed)."""
    deepspeed = sys.modules.get("deepspeed")
    engine = getattr(deepspeed, "DeepSpeedEngine", None) if deepspeed is not None else None
    return isinstance(engine, type) and isinstance(model, engine)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` / DeepSpeed engine (``.module``) and
    ``torch.compile`` (``._orig_mod``) wrappers, however nested."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) or _is_deepspeed_engine(model):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod  # type: ignore[assignment]
        else:
            return model
