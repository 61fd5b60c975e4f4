"""Pictures of what the models do: masked-autoencoder reconstructions as frame grids.

Predictions of a pre-training model are per-patch normalised pixels (and, for MAE-DFER, frame differences). To show
them as images, each masked patch is mapped back to pixels with the mean and standard deviation of the original
patch (as the MAE papers do for their figures); visible patches show the input.
"""

from __future__ import annotations

import numpy as np
import torch

from .targets import IMAGENET_MEAN, IMAGENET_STD, patchify_video, unpatchify_video

__all__ = ["reconstruct_video", "video_grid"]


def reconstruct_video(
    video: torch.Tensor,
    mask: torch.Tensor,
    pred: torch.Tensor,
    *,
    patch_size: int,
    tubelet_size: int = 2,
    frame_diff_group_size: int | None = None,
    normalize_target: bool = True,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn MAE predictions back into pixels.

    Args:
        video: ``(B, 3, T, H, W)`` ImageNet-normalised input.
        mask: ``(B, N)`` bool, True = masked.
        pred: ``(B, N_masked, tubelet * p * p * 3)`` predictions in raster order of the masked tokens.
        patch_size: Spatial patch size p.
        tubelet_size: Frames per token.
        frame_diff_group_size: 2 if the targets were MAE-DFER frame differences (``tubelet_size`` must equal it).
        normalize_target: Whether the targets were per-patch normalised.
        eps: The epsilon of the target normalisation.

    Returns:
        ``(original, masked, reconstruction)``, each ``(B, 3, T, H, W)`` in ``[0, 1]``: the input, the input with
        masked patches greyed out, and the input with masked patches replaced by the prediction.
    """
    mean = torch.tensor(IMAGENET_MEAN, device=video.device)[None, :, None, None, None]
    std = torch.tensor(IMAGENET_STD, device=video.device)[None, :, None, None, None]
    pixels = (video.float() * std + mean).clamp(0, 1)
    batch, _, frames, height, width = pixels.shape
    grid = (frames // tubelet_size, height // patch_size, width // patch_size)
    patches = patchify_video(pixels, patch_size, tubelet_size)  # (B, N, P, C)
    values = pred.detach().float().reshape(batch, -1, patches.shape[2], patches.shape[3])
    if frame_diff_group_size is not None:
        if frame_diff_group_size != tubelet_size:
            raise ValueError("frame-difference reconstructions need frame_diff_group_size == tubelet_size")
        half = values.shape[2] // 2
        values = torch.cat((values[:, :, :half], values[:, :, half:] + values[:, :, :half]), dim=2)
    if normalize_target:
        target_patches = patches[mask]
        mu = target_patches.mean(dim=1, keepdim=True)
        sigma = target_patches.var(dim=1, unbiased=True, keepdim=True).sqrt() + eps
        values = values.reshape(-1, *values.shape[2:]) * sigma + mu
    else:
        values = values.reshape(-1, *values.shape[2:])
    recon_patches = patches.clone()
    recon_patches[mask] = values.to(recon_patches.dtype)
    grey_patches = patches.clone()
    grey_patches[mask] = 0.5
    to_video = lambda p: unpatchify_video(p, grid, patch_size, tubelet_size, channels=3).clamp(0, 1)  # noqa: E731
    return pixels, to_video(grey_patches), to_video(recon_patches)


def video_grid(rows: list[torch.Tensor], *, max_frames: int = 8, pad: int = 2) -> np.ndarray:
    """Tile clips into one image: one row per clip, ``max_frames`` evenly spaced frames per row.

    Args:
        rows: Clips ``(3, T, H, W)`` in ``[0, 1]`` (same size).
        max_frames: Frames shown per row.
        pad: White pixels between tiles.

    Returns:
        ``uint8 (H_total, W_total, 3)`` image.
    """
    frames = rows[0].shape[1]
    chosen = np.linspace(0, frames - 1, num=min(max_frames, frames)).round().astype(int)
    height, width = rows[0].shape[2:]
    canvas = np.full(
        (len(rows) * (height + pad) + pad, len(chosen) * (width + pad) + pad, 3), 255, dtype=np.uint8
    )
    for r, clip in enumerate(rows):
        for c, t in enumerate(chosen):
            tile = (clip[:, t].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
            y, x = pad + r * (height + pad), pad + c * (width + pad)
            canvas[y : y + height, x : x + width] = tile
    return canvas
