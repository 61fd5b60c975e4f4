"""The :class:`Task` interface: a model plus an objective, driven by the trainer.

A task turns one collated batch (a ``dict`` of tensors) into a dict of results. The trainer
back-propagates ``out["loss"]`` and logs every other entry, so those must be detached tensors
(usually scalars) or plain numbers.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["Task", "detach_logs"]

logger = logging.getLogger(__name__)


def detach_logs(values: Mapping[str, Any]) -> dict[str, Any]:
    """Detach every tensor in a result dict except ``"loss"``.

    Args:
        values: Result entries; tensors of any shape or other values.

    Returns:
        A new dict: ``"loss"`` unchanged, other tensors detached, non-tensors unchanged.
    """
    return {
        key: value.detach() if key != "loss" and isinstance(value, torch.Tensor) else value
        for key, value in values.items()
    }


class Task(ABC):
    """Base class of training tasks.

    A task owns the model (``self.model``, an :class:`torch.nn.Module` the trainer optimises,
    moves to devices and checkpoints) and the objective that turns the model output into a loss.
    It is deliberately not an ``nn.Module`` itself, so the model's ``state_dict`` keys stay
    unprefixed.

    Subclasses implement :meth:`__call__`.

    Args:
        model: The network to train.

    Attributes:
        model: The network to train.
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model

    @abstractmethod
    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Run the model on a batch and compute the objective.

        Args:
            batch: Collated batch; the keys a task reads are documented by the subclass.

        Returns:
            A dict with ``"loss"`` (scalar tensor attached to the graph) and any number of
            detached logging values.
        """

    def train(self, mode: bool = True) -> Task:
        """Put the model in training (or evaluation) mode.

        Args:
            mode: ``True`` for training mode, ``False`` for evaluation mode.

        Returns:
            ``self``.
        """
        self.model.train(mode)
        return self

    def eval(self) -> Task:
        """Put the model in evaluation mode.

        Returns:
            ``self``.
        """
        return self.train(False)

    @staticmethod
    def require(batch: Mapping[str, Any], *keys: str) -> None:
        """Raise a clear ``ValueError`` if ``batch`` lacks any of ``keys``.

        Args:
            batch: Collated batch.
            *keys: Required keys.
        """
        missing = [key for key in keys if key not in batch]
        if missing:
            raise ValueError(f"batch is missing key(s) {missing}; it has {sorted(batch)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__})"
