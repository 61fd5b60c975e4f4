"""Supervised fine-tuning tasks: clip classification and continuous-label regression.

Both tasks feed a batch to the model by keyword, per its ``input_modalities`` (:mod:`maedfer.models.contract`):
``model(video=...)``, ``model(audio=...)`` or ``model(video=..., audio=...)``. Evaluation over test views lives in
:mod:`maedfer.tasks.evaluate`.

Classification (the MAE-DFER and SVFAP papers/repositories, the HiCMAE paper/repository): with Mixup/CutMix the loss is the soft-target
cross-entropy against the mixed, smoothed targets; without it, the cross-entropy with label smoothing (0.1 in the
official recipes, which equals timm's ``LabelSmoothingCrossEntropy``). Regression (the HiCMAE paper/repository): MSE
(official default), L1, smooth L1, or the batch-level CCC / PCC losses of :mod:`maedfer.engine.metrics`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.metrics import ccc_loss, pcc_loss
from ..models.contract import input_modalities, model_inputs
from .base import Task, detach_logs

__all__ = ["ClassificationTask", "RegressionTask", "soft_target_cross_entropy"]

logger = logging.getLogger(__name__)

def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against target distributions: ``mean_b sum_k -targets[b, k] * log_softmax(logits)[b, k]``.

    Args:
        logits: ``(B, K)`` scores (computed in float32).
        targets: ``(B, K)`` non-negative rows summing to 1 (e.g. mixed, smoothed one-hot vectors).

    Returns:
        Scalar float32 loss.

    Raises:
        ValueError: If the shapes differ or are not 2-D.
    """
    if logits.dim() != 2 or logits.shape != targets.shape:
        raise ValueError(
            f"logits and targets must both be (B, K), got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    log_probs = F.log_softmax(logits.float(), dim=-1)
    return -(targets.to(log_probs) * log_probs).sum(dim=-1).mean()


class _SupervisedTask(Task):
    """Shared input handling of the fine-tuning tasks."""

    def inputs(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The model's keyword inputs of a batch (``video`` and/or ``audio``, per its ``input_modalities``).

        Raises:
            ValueError: If a needed key is missing.
        """
        self.require(batch, *input_modalities(self.model))
        return model_inputs(self.model, batch)

    def _check_output(self, output: Any, batch_size: int, width: int | None) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != batch_size or (
            width is not None and output.shape[1] != width
        ):
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            expected = f"({batch_size}, {width if width is not None else 'K'})"
            raise ValueError(f"the model must return {expected} outputs, got {shape}")
        return output


class ClassificationTask(_SupervisedTask):
    """Clip classification with optional Mixup/CutMix.

    Batch keys:
        ``"video"``: ``(B, 3, T, H, W)`` normalised clip (not for audio-only models).
        ``"audio"``: ``(B, 1, T_audio, F)`` normalised filter bank (audio-visual and audio-only models).
        ``"label"``: ``(B,)`` int64 class indices, or ``(B, K)`` float target distributions.

    Args:
        model: Classifier returning ``(B, num_classes)`` logits.
        num_classes: Number of classes K.
        mixup: Optional batch mixer called as ``mixup(video, labels, audio)`` (``audio=None`` for video models)
            and returning ``(video, soft_targets, audio, ...)`` (e.g. :class:`maedfer.data.augment.Mixup`); used only
            while the model is in training mode. Its targets already carry the label smoothing. For audio-only
            models the filter bank is passed in place of the video.
        label_smoothing: Label smoothing of the plain cross-entropy (without ``mixup``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        num_classes: int,
        mixup: Callable[..., Any] | None = None,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__(model)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if mixup is not None and not callable(mixup):
            raise ValueError(f"mixup must be callable or None, got {type(mixup).__name__}")
        if isinstance(label_smoothing, bool) or not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.num_classes = num_classes
        self.mixup = mixup
        self.label_smoothing = float(label_smoothing)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Loss and accuracy of a training batch.

        Args:
            batch: See the class.

        Returns:
            ``{"loss": scalar float32 (attached), "acc": detached scalar}``; ``acc`` is the top-1 accuracy against
            the hard labels (omitted when the batch only has soft labels).

        Raises:
            ValueError: If keys are missing or shapes do not fit.
        """
        self.require(batch, "label")
        inputs = self.inputs(batch)
        labels: torch.Tensor = batch["label"]
        device = next(iter(inputs.values())).device
        labels = labels.to(device, non_blocking=True)
        hard = labels if labels.dim() == 1 else None
        soft = labels.float() if labels.dim() == 2 else None
        if hard is not None and hard.is_floating_point():
            hard = hard.long()
        if hard is None and soft is None:
            raise ValueError(f"label must be (B,) class indices or (B, K) distributions, got {tuple(labels.shape)}")
        if self.mixup is not None and self.model.training:
            if hard is None:
                raise ValueError("mixup needs (B,) class-index labels")
            primary = "video" if "video" in inputs else "audio"
            mixed = self.mixup(inputs[primary], hard, inputs.get("audio") if primary == "video" else None)
            inputs[primary], soft = mixed[0], mixed[1]
            if primary == "video" and "audio" in inputs:
                inputs["audio"] = mixed[2]
        batch_size = labels.shape[0]
        logits = self._check_output(self.model(**inputs), batch_size, self.num_classes)
        if soft is not None:
            if soft.shape != logits.shape:
                raise ValueError(f"soft targets {tuple(soft.shape)} do not match the logits {tuple(logits.shape)}")
            loss = soft_target_cross_entropy(logits, soft)
        else:
            loss = F.cross_entropy(logits.float(), hard, label_smoothing=self.label_smoothing)
        result: dict[str, Any] = {"loss": loss}
        if hard is not None:
            result["acc"] = (logits.argmax(dim=-1) == hard).float().mean()
        return detach_logs(result)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, num_classes={self.num_classes}, "
            f"mixup={self.mixup!r}, label_smoothing={self.label_smoothing})"
        )


#: Regression losses by name: ``fn(preds (B, K), targets (B, K)) -> scalar``.
REGRESSION_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "smooth_l1": F.smooth_l1_loss,
    "ccc": ccc_loss,
    "pcc": pcc_loss,
}


class RegressionTask(_SupervisedTask):
    """Continuous-label regression (HiCMAE on Werewolf-XL).

    Batch keys:
        ``"video"`` / ``"audio"``: as :class:`ClassificationTask`.
        ``"label"``: ``(B, K)`` (or ``(B,)`` for K = 1) float targets.

    Args:
        model: Regressor returning ``(B, K)`` outputs.
        loss: ``"mse"`` (official default), ``"l1"``, ``"smooth_l1"`` (beta 1), ``"ccc"`` or ``"pcc"`` (1 - mean
            batch correlation; need batches of at least 2).
    """

    def __init__(self, model: nn.Module, *, loss: str = "mse") -> None:
        super().__init__(model)
        if loss not in REGRESSION_LOSSES:
            raise ValueError(f"loss must be one of {sorted(REGRESSION_LOSSES)}, got {loss!r}")
        self.loss_name = loss
        self.loss_fn = REGRESSION_LOSSES[loss]

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Loss of a training batch.

        Args:
            batch: See the class.

        Returns:
            ``{"loss": scalar float32 (attached), "mae": detached scalar}``.

        Raises:
            ValueError: If keys are missing or the output does not match the targets.
        """
        self.require(batch, "label")
        inputs = self.inputs(batch)
        targets: torch.Tensor = batch["label"]
        device = next(iter(inputs.values())).device
        targets = targets.to(device, non_blocking=True).float()
        if targets.dim() == 1:
            targets = targets[:, None]
        if targets.dim() != 2:
            raise ValueError(f"label must be (B, K) or (B,) float targets, got {tuple(targets.shape)}")
        outputs = self._check_output(self.model(**inputs), targets.shape[0], targets.shape[1]).float()
        loss = self.loss_fn(outputs, targets)
        return detach_logs({"loss": loss, "mae": (outputs - targets).abs().mean()})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, loss={self.loss_name!r})"
