"""Per-iteration warm-up + half-cosine schedules (learning rate, weight decay), as the official recipes.

``video_models.md`` §9.4 / ``hicmae.md`` §7.1: with ``W`` warm-up iterations and ``T = epochs * iters_per_epoch``
iterations in all, the value at iteration ``t`` is

* ``linspace(start_warmup_value, base, W)[t]`` for ``t < W`` (both end points included, so iterations ``W - 1`` and
  ``W`` both have the value ``base``);
* ``final + 0.5 * (base - final) * (1 + cos(pi * i / (T - W)))`` with ``i = t - W`` for ``W <= t < T``.

``W = warmup_steps`` when ``warmup_steps > 0``, else ``round(warmup_epochs * iters_per_epoch)``. The schedule is a
pure function of the iteration, so resuming only needs the global step (:func:`schedule_value` computes one value
without building the array; :class:`ScheduleState` bundles the settings).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ScheduleState", "cosine_schedule", "schedule_value", "warmup_iterations"]

logger = logging.getLogger(__name__)


def _check_count(name: str, value: int, minimum: int) -> int:
    """Raise ``ValueError`` unless ``value`` is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


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
    epochs = _check_count("epochs", epochs, 1)
    iters_per_epoch = _check_count("iters_per_epoch", iters_per_epoch, 1)
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


def schedule_value(
    step: int,
    base: float,
    final: float,
    epochs: int,
    iters_per_epoch: int,
    warmup_epochs: float = 0,
    warmup_steps: int = -1,
    start_warmup_value: float = 0.0,
) -> float:
    """The value :func:`cosine_schedule` has at iteration ``step``, computed without building the array.

    Steps past the end keep the last value (as the trainer clamps), so a run extended by a few iterations does not
    crash.

    Args:
        step: Global iteration (>= 0).
        base, final, epochs, iters_per_epoch, warmup_epochs, warmup_steps, start_warmup_value: As
            :func:`cosine_schedule`.

    Returns:
        The value (float).

    Raises:
        ValueError: If ``step`` is negative or the settings are invalid.
    """
    step = _check_count("step", step, 0)
    epochs = _check_count("epochs", epochs, 1)
    iters_per_epoch = _check_count("iters_per_epoch", iters_per_epoch, 1)
    total = epochs * iters_per_epoch
    warmup = warmup_iterations(iters_per_epoch, warmup_epochs, warmup_steps)
    if warmup >= total:
        raise ValueError(f"warm-up of {warmup} iterations must be shorter than the schedule ({total} iterations)")
    step = min(step, total - 1)
    if step < warmup:
        # Same arithmetic as numpy.linspace: start + t * (stop - start) / (W - 1), last point exactly ``base``
        # (a one-point linspace is just ``start``).
        if warmup == 1:
            return float(start_warmup_value)
        if step == warmup - 1:
            return float(base)
        return float(start_warmup_value + step * ((base - start_warmup_value) / (warmup - 1)))
    i = step - warmup
    return float(final + 0.5 * (base - final) * (1.0 + math.cos(math.pi * i / (total - warmup))))


@dataclass(frozen=True)
class ScheduleState:
    """A warm-up + cosine schedule's settings; ``state(step)`` gives the value at a global iteration.

    Attributes:
        base: Peak value.
        final: Final value of the cosine.
        epochs: Number of epochs.
        iters_per_epoch: Optimizer steps per epoch.
        warmup_epochs: Warm-up length in epochs.
        warmup_steps: Warm-up length in iterations (overrides ``warmup_epochs`` when > 0).
        start_warmup_value: First warm-up value.
    """

    base: float
    final: float
    epochs: int
    iters_per_epoch: int
    warmup_epochs: float = 0
    warmup_steps: int = -1
    start_warmup_value: float = 0.0

    def __post_init__(self) -> None:
        _check_count("epochs", self.epochs, 1)
        _check_count("iters_per_epoch", self.iters_per_epoch, 1)
        if self.warmup_iters >= self.total_iters:
            raise ValueError(
                f"warm-up of {self.warmup_iters} iterations must be shorter than the schedule ({self.total_iters})"
            )

    @property
    def total_iters(self) -> int:
        """``epochs * iters_per_epoch``."""
        return self.epochs * self.iters_per_epoch

    @property
    def warmup_iters(self) -> int:
        """Number of warm-up iterations W."""
        return warmup_iterations(self.iters_per_epoch, self.warmup_epochs, self.warmup_steps)

    def __call__(self, step: int) -> float:
        """Value at global iteration ``step`` (clamped to the last iteration)."""
        return schedule_value(
            step,
            self.base,
            self.final,
            self.epochs,
            self.iters_per_epoch,
            self.warmup_epochs,
            self.warmup_steps,
            self.start_warmup_value,
        )

    def values(self) -> np.ndarray:
        """The whole schedule, ``(total_iters,)`` float64 (:func:`cosine_schedule`)."""
        return cosine_schedule(
            self.base,
            self.final,
            self.epochs,
            self.iters_per_epoch,
            self.warmup_epochs,
            self.warmup_steps,
            self.start_warmup_value,
        )
