"""Masked video reconstruction pre-training (VideoMAE, MAE-DFER, SVFAP).

The objective reproduces the official pre-training engines: targets come from
:func:`maedfer.targets.video_reconstruction_targets`, restricted to the masked tokens in raster
order, and the loss is a mean squared error, optionally split into an appearance half and a
frame-difference half (MAE-DFER's ``target_diff_weight``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..masking import check_mask
from ..targets import IMAGENET_MEAN, IMAGENET_STD, gather_masked, video_reconstruction_targets
from .base import Task, detach_logs

__all__ = ["MaskedVideoPretrainTask", "VideoReconstructionObjective"]

logger = logging.getLogger(__name__)


@dataclass
class VideoReconstructionObjective:
    """Targets and loss of masked video reconstruction.

    Args:
        patch_size: Spatial patch size p.
        tubelet_size: Frames per token (2 in all official models).
        normalize_target: Normalise every target token per channel (official ``normlize_target``).
        frame_diff_group_size: ``None`` for plain VideoMAE targets; ``g`` to replace, in each group
            of ``g`` frames, every frame but the first by its difference to the first
            (MAE-DFER uses 2).
        target_diff_weight: ``None`` for a plain MSE over all target elements. A weight ``w`` in
            ``[0, 1]`` gives ``(1 - w) * MSE(first halves) + w * MSE(second halves)`` of each target
            vector; with ``g = tubelet_size = 2`` the halves are the appearance frame and the frame
            difference. Requires ``frame_diff_group_size``.
        mean: Per-channel mean the input clips were normalised with.
        std: Per-channel std the input clips were normalised with.
    """

    patch_size: int
    tubelet_size: int = 2
    normalize_target: bool = True
    frame_diff_group_size: int | None = None
    target_diff_weight: float | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        for name in ("patch_size", "tubelet_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        g = self.frame_diff_group_size
        if g is not None and (isinstance(g, bool) or not isinstance(g, int) or g < 2):
            raise ValueError(f"frame_diff_group_size must be an integer >= 2 or None, got {g!r}")
        w = self.target_diff_weight
        if w is not None:
            if g is None:
                raise ValueError("target_diff_weight needs frame_diff_group_size (the frame-difference target)")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= float(w) <= 1.0:
                raise ValueError(f"target_diff_weight must be a float in [0, 1] or None, got {w!r}")
            if g != self.tubelet_size:
                logger.warning(
                    "target_diff_weight splits each target vector in halves; with frame_diff_group_size=%d != "
                    "tubelet_size=%d the halves are not exactly appearance vs. frame difference",
                    g,
                    self.tubelet_size,
                )
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean and std must have the same length, got {len(self.mean)} and {len(self.std)}")

    @property
    def target_dim(self) -> int:
        """Target width D per token for the configured channels: ``tubelet * p * p * C``."""
        return self.tubelet_size * self.patch_size * self.patch_size * len(self.mean)

    def targets(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruction targets of the masked tokens.

        Args:
            video: ``(B, C, T, H, W)`` normalised clip.
            mask: ``(B, N)`` bool, True = masked; equal masked counts per sample.

        Returns:
            ``(B, N_masked, tubelet * p * p * C)`` float32 (no gradient), masked tokens in raster order.

        Raises:
            ValueError: If the mask does not fit the clip.
        """
        full = video_reconstruction_targets(
            video,
            patch_size=self.patch_size,
            tubelet_size=self.tubelet_size,
            normalize=self.normalize_target,
            frame_diff_group_size=self.frame_diff_group_size,
            mean=self.mean,
            std=self.std,
        )
        if not isinstance(mask, torch.Tensor) or mask.shape != full.shape[:2]:
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"mask must have shape (B, N) = {tuple(full.shape[:2])} for this video, got {shape}")
        return gather_masked(full, mask)

    def loss(self, pred: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruction loss, computed in float32.

        Args:
            pred: ``(B, N_masked, D)`` predictions (any float dtype).
            targets: ``(B, N_masked, D)`` from :meth:`targets`.

        Returns:
            ``{"loss": scalar}``; with ``target_diff_weight`` also ``"loss_org"`` (MSE of the first
            halves) and ``"loss_diff"`` (MSE of the second halves). All attached to ``pred``'s graph.

        Raises:
            ValueError: If the shapes differ, or D is odd with ``target_diff_weight``.
        """
        if pred.shape != targets.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} must equal targets shape {tuple(targets.shape)}")
        pred32 = pred.float()
        targets32 = targets.float()
        w = self.target_diff_weight
        if w is None:
            return {"loss": F.mse_loss(pred32, targets32)}
        dim = pred32.shape[-1]
        if dim % 2:
            raise ValueError(f"target_diff_weight needs an even target width, got D={dim}")
        half = dim // 2
        loss_org = F.mse_loss(pred32[..., :half], targets32[..., :half])
        loss_diff = F.mse_loss(pred32[..., half:], targets32[..., half:])
        loss = (1.0 - w) * loss_org + w * loss_diff
        return {"loss": loss, "loss_org": loss_org, "loss_diff": loss_diff}


class MaskedVideoPretrainTask(Task):
    """Masked video autoencoder pre-training.

    Batch keys:
        ``"video"``: ``(B, 3, T, H, W)`` normalised clip.
        ``"mask"``: ``(B, N)`` bool, True = masked, the same masked count in every sample.

    The model is called as ``pred = model(video, mask)`` and must return ``(B, N_masked, D)``, the
    predictions of the masked tokens in raster order.

    Args:
        model: Masked autoencoder.
        objective: Targets and loss.
    """

    def __init__(self, model: nn.Module, objective: VideoReconstructionObjective) -> None:
        super().__init__(model)
        if not isinstance(objective, VideoReconstructionObjective):
            raise ValueError(f"objective must be a VideoReconstructionObjective, got {type(objective).__name__}")
        self.objective = objective

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Compute the pre-training loss of a batch.

        Args:
            batch: Dict with ``"video"`` ``(B, 3, T, H, W)`` and ``"mask"`` ``(B, N)`` bool.

        Returns:
            ``{"loss": scalar}`` (attached), plus detached ``"loss_org"`` and ``"loss_diff"`` when the
            objective has a ``target_diff_weight``.

        Raises:
            ValueError: If keys are missing, the mask is malformed or the prediction has the wrong shape.
        """
        self.require(batch, "video", "mask")
        video: torch.Tensor = batch["video"]
        mask: torch.Tensor = batch["mask"]
        check_mask(mask)
        if mask.device != video.device:
            mask = mask.to(video.device, non_blocking=True)
        targets = self.objective.targets(video, mask)
        pred = self.model(video, mask)
        if not isinstance(pred, torch.Tensor) or pred.shape != targets.shape:
            shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
            raise ValueError(
                f"model(video, mask) must return (B, N_masked, D) = {tuple(targets.shape)} predictions, got {shape}"
            )
        return detach_logs(self.objective.loss(pred, targets))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, objective={self.objective})"
