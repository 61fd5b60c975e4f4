"""Per-iteration warm-up + half-cosine schedules (learning rate, weight decay), as the official recipes.

Details: ``docs/modules.md``, section ``maedfer/engine/schedule.py``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..utils import check_int

__all__ = ["cosine_schedule", "warmup_iterations"]

logger = logging.getLogger(__name__)


def warmup_iterations(iters_per_epoch: int, warmup_epochs: float = 0, warmup_steps: int = -1) -> int:
    """Number of warm-up iterations W.

    Args:
        iters_per_epoch: Optimizer steps per epoch.
        warmup_epochs: Warm-up length in epochs (may be fractional; rounded to whole iterations).
        warmup_steps: Warm-up length in iterations; overrides ``warmup_epochs`` when > 0.

    Returns:
        W >= 0.

    Raises:
        ValueError: If ``warmup_epochs`` is negative or not finite.
    """
    if warmup_steps is not None and warmup_steps > 0:
        return int(warmup_steps)
    if not (math.isfinite(float(warmup_epochs)) and float(warmup_epochs) >= 0.0):
        raise ValueError(f"warmup_epochs must be a finite number >= 0, got {warmup_epochs!r}")
    return int(round(float(warmup_epochs) * iters_per_epoch))


def cosine_schedule(
    base: float,
    final: float,
    epochs: int,
    iters_per_epoch: int,
    warmup_epochs: float = 0,
    warmup_steps: int = -1,
    start_warmup_value: float = 0.0,
) -> np.ndarray:
    """Linear warm-up then half-cosine decay, one value per iteration (the official ``cosine_scheduler``).

    Args:
        base: Peak value (end of warm-up, start of the cosine), e.g. the scaled learning rate.
        final: Value the cosine decays to (approached at the last iteration, never reached).
        epochs: Number of epochs.
        iters_per_epoch: Optimizer steps per epoch.
        warmup_epochs: Warm-up length in epochs.
        warmup_steps: Warm-up length in iterations (overrides ``warmup_epochs`` when > 0).
        start_warmup_value: First warm-up value (the official runs start from 0; ``--warmup_lr`` is unused).

    Returns:
        ``(epochs * iters_per_epoch,)`` float64 array.

    Raises:
        ValueError: If the counts are not positive integers or the warm-up is longer than the schedule.

    Note:
        The official function only builds the warm-up when ``warmup_epochs > 0``, so ``warmup_steps > 0`` with
        ``warmup_epochs = 0`` makes its length check fail; here ``warmup_steps`` alone is enough.
    """
    epochs = check_int(epochs, "epochs")
    iters_per_epoch = check_int(iters_per_epoch, "iters_per_epoch")
    total = epochs * iters_per_epoch
    warmup = warmup_iterations(iters_per_epoch, warmup_epochs, warmup_steps)
    if warmup >= total:
        raise ValueError(
            f"warm-up of {warmup} iterations must be shorter than the schedule ({epochs} epochs x "
            f"{iters_per_epoch} iterations = {total})"
        )
    warm = np.linspace(start_warmup_value, base, warmup, dtype=np.float64)
    steps = np.arange(total - warmup, dtype=np.float64)
    cosine = final + 0.5 * (base - final) * (1.0 + np.cos(np.pi * steps / (total - warmup)))
    return np.concatenate([warm, cosine])
