"""Masked video reconstruction pre-training (VideoMAE, MAE-DFER, SVFAP).

Details: ``docs/modules.md``, section ``maedfer/tasks/pretrain.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..masking import check_mask
from ..targets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    gather_masked,
    spectrogram_reconstruction_targets,
    video_reconstruction_targets,
)
from .base import Task, detach_logs

__all__ = [
    "AudioVisualPretrainOutputLike",
    "AudioVisualReconstructionObjective",
    "MaskedAudioVisualPretrainTask",
    "MaskedVideoPretrainTask",
    "VideoReconstructionObjective",
    "contrastive_logits",
    "hierarchical_contrastive_loss",
]

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


# ----------------------------------------------------------------------------------------------
# Audio-visual pre-training (HiCMAE)
# ----------------------------------------------------------------------------------------------


def _check_temperature(temperature: float) -> float:
    """Raise ``ValueError`` unless ``temperature`` is a positive finite number.

    Args:
        temperature: Softmax temperature.

    Returns:
        The temperature as a float.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
        0.0 < float(temperature) < float("inf")
    ):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    return float(temperature)


def contrastive_logits(
    video_embedding: torch.Tensor, audio_embedding: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Scaled video-to-audio similarity matrix.

    Args:
        video_embedding: ``(B, D)`` L2-normalised video embeddings.
        audio_embedding: ``(B', D)`` L2-normalised audio embeddings.
        temperature: Softmax temperature (> 0).

    Returns:
        ``(B, B')`` logits ``video @ audio.T / temperature``; row ``i`` scores video ``i`` against
        every audio. The transpose gives the audio-to-video logits.

    Raises:
        ValueError: If the embeddings are not 2-D with the same width, or the temperature is invalid.
    """
    temperature = _check_temperature(temperature)
    for name, emb in (("video_embedding", video_embedding), ("audio_embedding", audio_embedding)):
        if not isinstance(emb, torch.Tensor) or emb.dim() != 2:
            shape = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
            raise ValueError(f"{name} must be a (B, D) tensor, got {shape}")
    if video_embedding.shape[1] != audio_embedding.shape[1]:
        raise ValueError(
            f"video and audio embeddings must have the same width, got {video_embedding.shape[1]} "
            f"and {audio_embedding.shape[1]}"
        )
    return video_embedding @ audio_embedding.transpose(0, 1) / temperature


def _distributed_world() -> tuple[int, int]:
    """Rank and world size of the default process group, ``(0, 1)`` without one.

    Returns:
        ``(rank, world_size)``.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather_with_local_grad(local: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Concatenate ``local`` of every process along dim 0; gradient flows into the local shard only.

    The gathered copies of the other processes are constants; the slot of this rank is replaced by
    ``local`` itself so autograd reaches it.

    Args:
        local: ``(B, K)`` tensor, the same shape on every process.
        rank: This process's rank.
        world_size: Number of processes.

    Returns:
        ``(world_size * B, K)``; rows ``rank * B`` to ``(rank + 1) * B - 1`` are ``local``.

    Raises:
        ValueError: If the processes hold different batch sizes.
    """
    sizes = [torch.zeros(2, dtype=torch.long, device=local.device) for _ in range(world_size)]
    dist.all_gather(sizes, torch.tensor(list(local.shape), dtype=torch.long, device=local.device))
    shapes = [tuple(int(v) for v in size.tolist()) for size in sizes]
    if any(shape != shapes[0] for shape in shapes):
        raise ValueError(
            f"gathering contrastive negatives needs the same (B, D) on every process (use drop_last); got {shapes}"
        )
    shards = [torch.empty_like(local) for _ in range(world_size)]
    dist.all_gather(shards, local.detach().contiguous())
    shards[rank] = local
    return torch.cat(shards, dim=0)


def hierarchical_contrastive_loss(
    video_embeddings: Sequence[torch.Tensor],
    audio_embeddings: Sequence[torch.Tensor],
    temperature: float,
    *,
    gather: bool = False,
) -> torch.Tensor:
    """Symmetric InfoNCE between video and audio embeddings, summed over encoder levels.

    For each level ``l``: ``logits = v_l @ a_l.T / temperature`` and
    ``loss_l = 0.5 * (CE(logits, arange(B)) + CE(logits.T, arange(B)))``; the result is
    ``sum_l loss_l`` (a sum, not a mean, as in HiCMAE). Computed in float32 with autocast off.

    With ``gather=True`` inside an initialised process group of world size ``W > 1``, the
    negatives come from the global batch: the embeddings of all processes are all-gathered (the
    gradient flows through this process's shard only), and this rank's ``B`` rows of the global
    ``(W * B, W * B)`` similarity are used in both directions (local video against all audio, local
    audio against all video), with labels ``arange(B) + rank * B``. Every process must hold the
    same ``B``. Without a process group, or with ``W = 1``, ``gather=True`` equals the local loss.

    Args:
        video_embeddings: One ``(B, D_l)`` L2-normalised video embedding per level.
        audio_embeddings: One ``(B, D_l)`` L2-normalised audio embedding per level, paired with
            ``video_embeddings`` (row ``i`` of both is the same clip).
        temperature: Softmax temperature (> 0).
        gather: Use the negatives of all processes.

    Returns:
        Scalar float32 loss, attached to the graph of the local embeddings.

    Raises:
        ValueError: If the levels are missing or unpaired, or shapes disagree.
    """
    temperature = _check_temperature(temperature)
    video_embeddings = list(video_embeddings)
    audio_embeddings = list(audio_embeddings)
    if not video_embeddings:
        raise ValueError("hierarchical_contrastive_loss needs at least one level of embeddings")
    if len(video_embeddings) != len(audio_embeddings):
        raise ValueError(
            f"got {len(video_embeddings)} video levels but {len(audio_embeddings)} audio levels; they must be paired"
        )
    batch: int | None = None
    for level, (video, audio) in enumerate(zip(video_embeddings, audio_embeddings)):
        for name, emb in (("video", video), ("audio", audio)):
            if not isinstance(emb, torch.Tensor) or emb.dim() != 2 or not emb.is_floating_point():
                shape = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
                raise ValueError(f"{name} embedding of level {level} must be a floating (B, D) tensor, got {shape}")
        if video.shape != audio.shape:
            raise ValueError(
                f"level {level}: video embedding {tuple(video.shape)} and audio embedding {tuple(audio.shape)} "
                "must have the same (B, D)"
            )
        if batch is None:
            batch = video.shape[0]
        elif video.shape[0] != batch:
            raise ValueError(f"level {level} has batch size {video.shape[0]}, level 0 has {batch}")
    if batch == 0:
        raise ValueError("hierarchical_contrastive_loss needs a non-empty batch")
    assert batch is not None

    rank, world_size = _distributed_world() if gather else (0, 1)
    device = video_embeddings[0].device
    with torch.autocast(device_type=device.type, enabled=False):
        videos = [emb.float() for emb in video_embeddings]
        audios = [emb.float() for emb in audio_embeddings]
        if world_size > 1:
            # One collective for every level and both modalities: pack along the feature axis.
            widths = [emb.shape[1] for emb in videos + audios]
            packed = _all_gather_with_local_grad(torch.cat(videos + audios, dim=1), rank, world_size)
            pieces = list(torch.split(packed, widths, dim=1))
            all_videos, all_audios = pieces[: len(videos)], pieces[len(videos) :]
        else:
            all_videos, all_audios = videos, audios
        labels = torch.arange(batch, device=device) + rank * batch
        total = torch.zeros((), dtype=torch.float32, device=device)
        for video, audio, all_video, all_audio in zip(videos, audios, all_videos, all_audios):
            video_to_audio = contrastive_logits(video, all_audio, temperature)  # (B, W * B)
            audio_to_video = contrastive_logits(audio, all_video, temperature)  # (B, W * B)
            total = total + 0.5 * (F.cross_entropy(video_to_audio, labels) + F.cross_entropy(audio_to_video, labels))
    return total


@runtime_checkable
class AudioVisualPretrainOutputLike(Protocol):
    """What an audio-visual masked autoencoder returns for :class:`AudioVisualReconstructionObjective`.

    Attributes:
        pred_video: ``(B, Nv_masked, Dv)`` predictions of the masked video tokens, raster order.
        pred_audio: ``(B, Na_masked, Da)`` predictions of the masked audio tokens, raster order.
        video_embeddings: One ``(B, D)`` L2-normalised pooled video feature per tapped encoder level.
        audio_embeddings: One ``(B, D)`` L2-normalised pooled audio feature per tapped encoder level.
    """

    pred_video: torch.Tensor
    pred_audio: torch.Tensor
    video_embeddings: Sequence[torch.Tensor]
    audio_embeddings: Sequence[torch.Tensor]


@dataclass
class AudioVisualReconstructionObjective:
    """Targets and loss of HiCMAE audio-visual masked pre-training.

    ``loss = loss_video + loss_audio + contrastive_weight * loss_contrastive`` where ``loss_video``
    is the video objective's loss, ``loss_audio`` the MSE against the spectrogram targets and
    ``loss_contrastive`` the :func:`hierarchical_contrastive_loss` of the pooled encoder taps.

    Args:
        video: Video targets and loss.
        audio_patch_size: Square patch size of the spectrogram tokens.
        normalize_audio_target: Normalise every audio target token (official ``normlize_target_audio``).
        contrastive_weight: Weight of the contrastive term (official ``loss_weight``: 0.0025 in the
            released pre-training script; the official argparse default is 0.1).
        temperature: Contrastive softmax temperature (official ``inter_contrastive_temperature``).
        gather_negatives: Use the negatives of all processes when training distributed.
    """

    video: VideoReconstructionObjective
    audio_patch_size: int = 16
    normalize_audio_target: bool = True
    contrastive_weight: float = 0.0025
    temperature: float = 0.07
    gather_negatives: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.video, VideoReconstructionObjective):
            raise ValueError(f"video must be a VideoReconstructionObjective, got {type(self.video).__name__}")
        p = self.audio_patch_size
        if isinstance(p, bool) or not isinstance(p, int) or p <= 0:
            raise ValueError(f"audio_patch_size must be a positive integer, got {p!r}")
        if self.normalize_audio_target and p < 2:
            raise ValueError("normalize_audio_target needs audio_patch_size >= 2 (an unbiased std of one value)")
        w = self.contrastive_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= float(w) < float("inf"):
            raise ValueError(f"contrastive_weight must be a finite number >= 0, got {w!r}")
        _check_temperature(self.temperature)

    @property
    def audio_target_dim(self) -> int:
        """Audio target width per token for single-channel spectrograms: ``p * p``."""
        return self.audio_patch_size * self.audio_patch_size

    def targets(
        self,
        video: torch.Tensor,
        mask: torch.Tensor,
        audio: torch.Tensor,
        mask_audio: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction targets of the masked video and audio tokens.

        Args:
            video: ``(B, 3, T, H, W)`` normalised clip.
            mask: ``(B, Nv)`` bool, True = masked; equal masked counts per sample.
            audio: ``(B, C, Ta, F)`` filter bank (``C = 1`` in HiCMAE).
            mask_audio: ``(B, Na)`` bool, True = masked, ``Na = (Ta / p) * (F / p)``.

        Returns:
            ``(video_targets, audio_targets)``: ``(B, Nv_masked, Dv)`` and ``(B, Na_masked, p * p * C)``,
            float32 without gradient, masked tokens in raster order.

        Raises:
            ValueError: If a mask does not fit its input.
        """
        video_targets = self.video.targets(video, mask)
        full = spectrogram_reconstruction_targets(
            audio, patch_size=self.audio_patch_size, normalize=self.normalize_audio_target
        )
        if not isinstance(mask_audio, torch.Tensor) or mask_audio.shape != full.shape[:2]:
            shape = tuple(mask_audio.shape) if isinstance(mask_audio, torch.Tensor) else type(mask_audio).__name__
            raise ValueError(
                f"mask_audio must have shape (B, Na) = {tuple(full.shape[:2])} for this spectrogram, got {shape}"
            )
        return video_targets, gather_masked(full, mask_audio)

    def loss(
        self,
        output: AudioVisualPretrainOutputLike,
        video_targets: torch.Tensor,
        audio_targets: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Total loss and its components, in float32.

        Args:
            output: Model output with ``pred_video`` ``(B, Nv_masked, Dv)``, ``pred_audio``
                ``(B, Na_masked, Da)`` and the per-level ``(B, D)`` ``video_embeddings`` /
                ``audio_embeddings``.
            video_targets: ``(B, Nv_masked, Dv)`` from :meth:`targets`.
            audio_targets: ``(B, Na_masked, Da)`` from :meth:`targets`.

        Returns:
            ``{"loss", "loss_video", "loss_audio", "loss_contrastive"}`` scalars attached to the
            graph; with a video ``target_diff_weight`` also ``"loss_video_org"`` and ``"loss_video_diff"``.

        Raises:
            ValueError: If ``output`` lacks an attribute or shapes disagree.
        """
        if not isinstance(output, AudioVisualPretrainOutputLike):
            missing = [
                name
                for name in ("pred_video", "pred_audio", "video_embeddings", "audio_embeddings")
                if not hasattr(output, name)
            ]
            raise ValueError(f"model output {type(output).__name__} lacks attribute(s) {missing}")
        video_losses = self.video.loss(output.pred_video, video_targets)
        pred_audio = output.pred_audio
        if not isinstance(pred_audio, torch.Tensor) or pred_audio.shape != audio_targets.shape:
            shape = tuple(pred_audio.shape) if isinstance(pred_audio, torch.Tensor) else type(pred_audio).__name__
            raise ValueError(f"pred_audio shape {shape} must equal audio targets shape {tuple(audio_targets.shape)}")
        loss_audio = F.mse_loss(pred_audio.float(), audio_targets.float())
        loss_contrastive = hierarchical_contrastive_loss(
            output.video_embeddings, output.audio_embeddings, self.temperature, gather=self.gather_negatives
        )
        loss_video = video_losses["loss"]
        result = {
            "loss": loss_video + loss_audio + float(self.contrastive_weight) * loss_contrastive,
            "loss_video": loss_video,
            "loss_audio": loss_audio,
            "loss_contrastive": loss_contrastive,
        }
        if "loss_org" in video_losses:
            result["loss_video_org"] = video_losses["loss_org"]
            result["loss_video_diff"] = video_losses["loss_diff"]
        return result


class MaskedAudioVisualPretrainTask(Task):
    """Audio-visual masked autoencoder pre-training with hierarchical contrastive learning (HiCMAE).

    Batch keys:
        ``"video"``: ``(B, 3, T, H, W)`` normalised clip.
        ``"mask"``: ``(B, Nv)`` bool video mask, True = masked, the same masked count in every sample.
        ``"audio"``: ``(B, 1, Ta, F)`` filter bank.
        ``"mask_audio"``: ``(B, Na)`` bool audio mask, True = masked, the same masked count in every sample.

    The model is called as ``output = model(video, mask, audio, mask_audio)`` and must return an
    object matching :class:`AudioVisualPretrainOutputLike`.

    Args:
        model: Audio-visual masked autoencoder.
        objective: Targets and loss.
    """

    def __init__(self, model: nn.Module, objective: AudioVisualReconstructionObjective) -> None:
        super().__init__(model)
        if not isinstance(objective, AudioVisualReconstructionObjective):
            raise ValueError(
                f"objective must be an AudioVisualReconstructionObjective, got {type(objective).__name__}"
            )
        self.objective = objective

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Compute the pre-training loss of a batch.

        Args:
            batch: Dict with ``"video"``, ``"mask"``, ``"audio"`` and ``"mask_audio"`` (see the class).

        Returns:
            ``{"loss": scalar}`` (attached) plus detached ``"loss_video"``, ``"loss_audio"``,
            ``"loss_contrastive"`` (and ``"loss_video_org"``, ``"loss_video_diff"`` with a video
            ``target_diff_weight``).

        Raises:
            ValueError: If keys are missing, a mask is malformed or the output does not fit.
        """
        self.require(batch, "video", "mask", "audio", "mask_audio")
        video: torch.Tensor = batch["video"]
        mask: torch.Tensor = batch["mask"]
        audio: torch.Tensor = batch["audio"]
        mask_audio: torch.Tensor = batch["mask_audio"]
        check_mask(mask)
        check_mask(mask_audio)
        if mask.device != video.device:
            mask = mask.to(video.device, non_blocking=True)
        if mask_audio.device != audio.device:
            mask_audio = mask_audio.to(audio.device, non_blocking=True)
        video_targets, audio_targets = self.objective.targets(video, mask, audio, mask_audio)
        output = self.model(video, mask, audio, mask_audio)
        return detach_logs(self.objective.loss(output, video_targets, audio_targets))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, objective={self.objective})"
