"""Supervised fine-tuning tasks: clip classification and continuous-label regression.

Both tasks feed a batch to the model according to its modality:

* audio-visual models (``model.modality == "audio_visual"``, HiCMAE): ``model(video, audio)``;
* single-modality audio-visual classifiers: ``model(video=...)`` (``"video"``) or ``model(audio=...)`` (``"audio"``);
* video models (no ``modality`` attribute: VideoMAE, MAE-DFER, SVFAP): ``model(video)``.

Classification (``video_models.md`` §9.2, ``hicmae.md`` §4.2): with Mixup/CutMix the loss is the soft-target
cross-entropy against the mixed, smoothed targets; without it, the cross-entropy with label smoothing (0.1 in the
official recipes, which equals timm's ``LabelSmoothingCrossEntropy``). Regression (``hicmae.md`` §4.2-§4.3): MSE
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
from .base import Task, detach_logs

__all__ = ["ClassificationTask", "RegressionTask", "model_modality", "soft_target_cross_entropy"]

logger = logging.getLogger(__name__)

#: Batch keys copied unchanged into :meth:`ClassificationTask.evaluate` / :meth:`RegressionTask.evaluate` results.
PASSTHROUGH_KEYS = ("index", "id", "path", "segment", "crop")


def model_modality(model: nn.Module) -> str | None:
    """The inputs a model takes: ``"audio_visual"``, ``"video"``, ``"audio"`` or ``None`` (a plain video model).

    ``DistributedDataParallel`` / ``DataParallel`` wrappers are looked through.

    Args:
        model: The network.

    Returns:
        The model's ``modality`` attribute, or ``None`` if it has none.
    """
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    modality = getattr(model, "modality", None)
    if modality is not None and modality not in ("audio_visual", "video", "audio"):
        raise ValueError(f"model.modality must be 'audio_visual', 'video' or 'audio', got {modality!r}")
    return modality


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

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.modality = model_modality(model)

    def input_keys(self) -> tuple[str, ...]:
        """Batch keys the model needs: ``("video", "audio")``, ``("video",)`` or ``("audio",)``."""
        if self.modality == "audio_visual":
            return ("video", "audio")
        if self.modality == "audio":
            return ("audio",)
        return ("video",)

    def inputs(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(video, audio)`` of a batch, ``None`` for the modality the model does not take.

        Raises:
            ValueError: If a needed key is missing.
        """
        keys = self.input_keys()
        self.require(batch, *keys)
        return (batch["video"] if "video" in keys else None, batch["audio"] if "audio" in keys else None)

    def forward_model(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> torch.Tensor:
        """Call the model with the inputs its modality takes.

        Args:
            video: ``(B, 3, T, H, W)`` clip (``None`` for audio-only models).
            audio: ``(B, 1, T_audio, F)`` filter bank (``None`` for video models).

        Returns:
            ``(B, K)`` model output.
        """
        if self.modality == "audio_visual":
            return self.model(video, audio)
        if self.modality == "video":
            return self.model(video=video)
        if self.modality == "audio":
            return self.model(audio=audio)
        return self.model(video)

    @staticmethod
    def passthrough(batch: Mapping[str, Any]) -> dict[str, Any]:
        """The sample identifiers of a batch (``index``, ``id``, ``path``, ``segment``, ``crop`` when present)."""
        return {key: batch[key] for key in PASSTHROUGH_KEYS if key in batch}

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
        video, audio = self.inputs(batch)
        labels: torch.Tensor = batch["label"]
        device = (video if video is not None else audio).device
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
            mixed = self.mixup(video if video is not None else audio, hard, audio if video is not None else None)
            if video is not None:
                video, soft, audio = mixed[0], mixed[1], mixed[2]
            else:
                audio, soft = mixed[0], mixed[1]
        batch_size = labels.shape[0]
        logits = self._check_output(self.forward_model(video, audio), batch_size, self.num_classes)
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

    @torch.no_grad()
    def evaluate(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Logits of a batch without gradients (the caller sets evaluation mode).

        Args:
            batch: See the class; ``"label"`` is optional.

        Returns:
            ``{"logits": (B, K) float32, "label": ...}`` plus the batch's ``index`` / ``id`` / ``path`` /
            ``segment`` / ``crop`` entries when present.
        """
        video, audio = self.inputs(batch)
        batch_size = (video if video is not None else audio).shape[0]
        logits = self._check_output(self.forward_model(video, audio), batch_size, self.num_classes).float()
        result: dict[str, Any] = {"logits": logits}
        if "label" in batch:
            result["label"] = batch["label"]
        result.update(self.passthrough(batch))
        return result

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
        video, audio = self.inputs(batch)
        targets: torch.Tensor = batch["label"]
        device = (video if video is not None else audio).device
        targets = targets.to(device, non_blocking=True).float()
        if targets.dim() == 1:
            targets = targets[:, None]
        if targets.dim() != 2:
            raise ValueError(f"label must be (B, K) or (B,) float targets, got {tuple(targets.shape)}")
        outputs = self._check_output(self.forward_model(video, audio), targets.shape[0], targets.shape[1]).float()
        loss = self.loss_fn(outputs, targets)
        return detach_logs({"loss": loss, "mae": (outputs - targets).abs().mean()})

    @torch.no_grad()
    def evaluate(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Outputs of a batch without gradients (the caller sets evaluation mode).

        Args:
            batch: See the class; ``"label"`` is optional.

        Returns:
            ``{"outputs": (B, K) float32, "label": ...}`` plus the batch's ``index`` / ``id`` / ``path`` /
            ``segment`` / ``crop`` entries when present.
        """
        video, audio = self.inputs(batch)
        batch_size = (video if video is not None else audio).shape[0]
        outputs = self._check_output(self.forward_model(video, audio), batch_size, None).float()
        result: dict[str, Any] = {"outputs": outputs}
        if "label" in batch:
            result["label"] = batch["label"]
        result.update(self.passthrough(batch))
        return result

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, loss={self.loss_name!r})"
