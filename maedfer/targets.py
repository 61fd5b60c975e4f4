"""Reconstruction targets for video masked autoencoders.

Details: ``docs/modules.md``, section ``maedfer/targets.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from einops import rearrange

from .utils import check_int

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "gather_masked",
    "patchify_spectrogram",
    "patchify_video",
    "spectrogram_reconstruction_targets",
    "unpatchify_spectrogram",
    "unpatchify_video",
    "video_reconstruction_targets",
]

logger = logging.getLogger(__name__)

#: ImageNet per-channel mean (RGB) used to normalise input clips.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: ImageNet per-channel standard deviation (RGB) used to normalise input clips.
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _check_video(video: torch.Tensor, patch_size: int, tubelet_size: int) -> None:
    """Validate a ``(B, C, T, H, W)`` clip against the token size.

    Args:
        video: Clip tensor.
        patch_size: Spatial patch size p.
        tubelet_size: Frames per token.

    Raises:
        ValueError: If the clip is not 5-D or its sizes are not divisible by the token size.
    """
    check_int(patch_size, "patch_size")
    check_int(tubelet_size, "tubelet_size")
    if not isinstance(video, torch.Tensor) or video.dim() != 5:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video must be a (B, C, T, H, W) tensor, got {shape}")
    _, _, frames, height, width = video.shape
    if frames % tubelet_size or height % patch_size or width % patch_size:
        raise ValueError(
            f"video of shape {tuple(video.shape)} cannot be split into tokens of "
            f"tubelet_size={tubelet_size} x patch_size={patch_size} x patch_size={patch_size}: "
            "T must be divisible by tubelet_size and H, W by patch_size"
        )


def patchify_video(video: torch.Tensor, patch_size: int, tubelet_size: int = 2) -> torch.Tensor:
    """Cut a clip into non-overlapping ``tubelet x p x p`` tokens.

    Args:
        video: ``(B, C, T, H, W)``.
        patch_size: Spatial patch size p.
        tubelet_size: Frames per token.

    Returns:
        ``(B, N, tubelet * p * p, C)`` with ``N = (T / tubelet) * (H / p) * (W / p)`` in raster
        order, and pixel index ``(tau * p + i) * p + j`` inside each token.

    Raises:
        ValueError: If the shape does not fit the token size.
    """
    _check_video(video, patch_size, tubelet_size)
    return rearrange(
        video, "b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c", p0=tubelet_size, p1=patch_size, p2=patch_size
    )


def unpatchify_video(
    patches: torch.Tensor,
    grid: tuple[int, int, int],
    patch_size: int,
    tubelet_size: int = 2,
    channels: int = 3,
) -> torch.Tensor:
    """Exact inverse of :func:`patchify_video` (also accepts flattened, channel-fastest tokens).

    Args:
        patches: ``(B, N, tubelet * p * p * C)`` with element index ``pixel * C + c``, or
            ``(B, N, tubelet * p * p, C)``.
        grid: Token grid ``(T', H', W')`` with ``N = T' * H' * W'``.
        patch_size: Spatial patch size p.
        tubelet_size: Frames per token.
        channels: Channels C.

    Returns:
        ``(B, C, T' * tubelet, H' * p, W' * p)``.

    Raises:
        ValueError: If the shape of ``patches`` does not match the arguments.
    """
    check_int(patch_size, "patch_size")
    check_int(tubelet_size, "tubelet_size")
    check_int(channels, "channels")
    if len(grid) != 3:
        raise ValueError(f"grid must be (T', H', W'), got {grid!r}")
    for size in grid:
        check_int(size, "grid entries")
    frames, height, width = grid
    pixels = tubelet_size * patch_size * patch_size
    num_tokens = frames * height * width
    if not isinstance(patches, torch.Tensor):
        raise ValueError(f"patches must be a tensor, got {type(patches).__name__}")
    if patches.dim() == 3:
        if patches.shape[1:] != (num_tokens, pixels * channels):
            raise ValueError(
                f"flattened patches must have shape (B, {num_tokens}, {pixels * channels}) for grid {tuple(grid)}, "
                f"patch_size={patch_size}, tubelet_size={tubelet_size}, channels={channels}; "
                f"got {tuple(patches.shape)}"
            )
        patches = patches.reshape(patches.shape[0], num_tokens, pixels, channels)
    elif patches.dim() == 4:
        if patches.shape[1:] != (num_tokens, pixels, channels):
            raise ValueError(
                f"patches must have shape (B, {num_tokens}, {pixels}, {channels}) for grid {tuple(grid)}, "
                f"patch_size={patch_size}, tubelet_size={tubelet_size}, channels={channels}; "
                f"got {tuple(patches.shape)}"
            )
    else:
        raise ValueError(f"patches must be 3-D or 4-D, got shape {tuple(patches.shape)}")
    return rearrange(
        patches,
        "b (t h w) (p0 p1 p2) c -> b c (t p0) (h p1) (w p2)",
        t=frames,
        h=height,
        w=width,
        p0=tubelet_size,
        p1=patch_size,
        p2=patch_size,
    )


def _channel_constant(values: Sequence[float], name: str, channels: int, like: torch.Tensor) -> torch.Tensor:
    """Turn per-channel statistics into a ``(1, C, 1, 1, 1)`` tensor.

    Args:
        values: C floats.
        name: Argument name for messages.
        channels: Expected number of channels C.
        like: Tensor whose device and dtype to use.

    Returns:
        ``(1, C, 1, 1, 1)`` tensor.

    Raises:
        ValueError: If the number of values differs from C.
    """
    const = torch.as_tensor(values, dtype=torch.float32).to(device=like.device, dtype=like.dtype).flatten()
    if const.numel() != channels:
        raise ValueError(f"{name} has {const.numel()} values but the video has {channels} channels")
    return const.view(1, channels, 1, 1, 1)


def _normalize_tokens(tokens: torch.Tensor, eps: float) -> torch.Tensor:
    """Normalise every token and channel over its pixels with the unbiased std plus ``eps``.

    Args:
        tokens: ``(B, N, P, C)``; the statistics are taken over the ``P`` pixels.
        eps: Added to the standard deviation.

    Returns:
        ``(B, N, P, C)``: ``(v - mean) / (std_unbiased + eps)``.
    """
    centred = tokens - tokens.mean(dim=-2, keepdim=True)
    scale = tokens.var(dim=-2, unbiased=True, keepdim=True).sqrt() + eps
    return centred / scale


def video_reconstruction_targets(
    video: torch.Tensor,
    *,
    patch_size: int,
    tubelet_size: int = 2,
    normalize: bool = True,
    frame_diff_group_size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Per-token reconstruction targets of a normalised clip, for every token.

    Computed without gradient. Half-precision inputs (bf16, fp16) are upcast, so the targets are
    float32 (float64 input stays float64). The statistics are first rounded to float32, as in the
    official engines.

    Args:
        video: ``(B, C, T, H, W)`` clip normalised with ``mean`` and ``std``.
        patch_size: Spatial patch size p.
        tubelet_size: Frames per token.
        normalize: Normalise each token and channel over its ``tubelet * p * p`` pixels:
            ``(v - mean) / (std_unbiased + eps)``.
        frame_diff_group_size: If set to ``g``, in every group of ``g`` consecutive frames the
            first frame is kept and every other frame is replaced by its difference to the first
            (applied after the per-token normalisation). ``T`` must be divisible by ``g``.
        mean: Per-channel mean used to normalise ``video``.
        std: Per-channel std used to normalise ``video``.
        eps: Added to the per-token standard deviation.

    Returns:
        ``(B, N, tubelet * p * p * C)``, tokens in raster order, element index ``pixel * C + c``.

    Raises:
        ValueError: On malformed arguments.
    """
    _check_video(video, patch_size, tubelet_size)
    batch, channels, frames, height, width = video.shape
    if frame_diff_group_size is not None:
        if isinstance(frame_diff_group_size, bool) or not isinstance(frame_diff_group_size, int) or (
            frame_diff_group_size < 2
        ):
            raise ValueError(
                f"frame_diff_group_size must be an integer >= 2 (or None to disable), got {frame_diff_group_size!r}"
            )
        if frames % frame_diff_group_size:
            raise ValueError(
                f"the number of frames T={frames} must be divisible by frame_diff_group_size={frame_diff_group_size}"
            )
    grid = (frames // tubelet_size, height // patch_size, width // patch_size)
    dtype = torch.promote_types(video.dtype, torch.float32)

    with torch.no_grad():
        x = video.detach().to(dtype)
        x = x * _channel_constant(std, "std", channels, x) + _channel_constant(mean, "mean", channels, x)
        tokens = patchify_video(x, patch_size, tubelet_size)  # (B, N, P, C)
        if normalize:
            tokens = _normalize_tokens(tokens, eps)
        if frame_diff_group_size is not None:
            g = frame_diff_group_size
            clip = unpatchify_video(tokens, grid, patch_size, tubelet_size, channels)
            groups = clip.reshape(batch, channels, frames // g, g, height, width)
            first = groups[:, :, :, :1]
            groups = torch.cat([first, groups[:, :, :, 1:] - first], dim=3)
            tokens = patchify_video(groups.reshape(batch, channels, frames, height, width), patch_size, tubelet_size)
        return tokens.reshape(batch, tokens.shape[1], -1)


def gather_masked(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Select the masked tokens of each sample, keeping raster order.

    Args:
        tokens: ``(B, N, D)``.
        mask: ``(B, N)`` bool, True = masked; every sample must have the same number of masked tokens.

    Returns:
        ``(B, N_masked, D)``.

    Raises:
        ValueError: If the shapes disagree, ``mask`` is not bool, or the masked counts differ.
    """
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be a (B, N, D) tensor, got {shape}")
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a torch.bool tensor (True = masked), got "
            f"{mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__}"
        )
    if mask.shape != tokens.shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal tokens (B, N) = {tuple(tokens.shape[:2])}")
    counts = mask.sum(dim=1)
    if counts.numel() and bool((counts != counts[0]).any()):
        raise ValueError(f"every sample must have the same number of masked tokens; got {counts.tolist()}")
    mask = mask.to(tokens.device)
    return tokens[mask].reshape(tokens.shape[0], -1, tokens.shape[2])


# ----------------------------------------------------------------------------------------------
# Spectrogram (audio) targets
# ----------------------------------------------------------------------------------------------


def _check_spectrogram(spec: torch.Tensor, patch_size: int) -> None:
    """Validate a ``(B, C, T, F)`` spectrogram against the patch size.

    Args:
        spec: Spectrogram tensor.
        patch_size: Square patch size p.

    Raises:
        ValueError: If the tensor is not 4-D or ``T``, ``F`` are not divisible by ``p``.
    """
    check_int(patch_size, "patch_size")
    if not isinstance(spec, torch.Tensor) or spec.dim() != 4:
        shape = tuple(spec.shape) if isinstance(spec, torch.Tensor) else type(spec).__name__
        raise ValueError(f"spectrogram must be a (B, C, T, F) tensor, got {shape}")
    _, _, frames, bins = spec.shape
    if frames % patch_size or bins % patch_size:
        raise ValueError(
            f"spectrogram of shape {tuple(spec.shape)} cannot be split into {patch_size} x {patch_size} "
            "patches: T and F must be divisible by patch_size"
        )


def patchify_spectrogram(spec: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut a spectrogram into non-overlapping ``p x p`` tokens.

    Args:
        spec: ``(B, C, T, F)`` (time, then frequency).
        patch_size: Square patch size p.

    Returns:
        ``(B, N, p * p, C)`` with ``N = (T / p) * (F / p)``, token ``n = t * (F / p) + f`` (time
        slowest) and pixel index ``i * p + j`` inside a token (``i`` along time, ``j`` along frequency).

    Raises:
        ValueError: If the shape does not fit the patch size.
    """
    _check_spectrogram(spec, patch_size)
    return rearrange(spec, "b c (t p1) (f p2) -> b (t f) (p1 p2) c", p1=patch_size, p2=patch_size)


def unpatchify_spectrogram(
    patches: torch.Tensor,
    grid: tuple[int, int],
    patch_size: int,
    channels: int = 1,
) -> torch.Tensor:
    """Exact inverse of :func:`patchify_spectrogram` (also accepts flattened, channel-fastest tokens).

    Args:
        patches: ``(B, N, p * p * C)`` with element index ``pixel * C + c``, or ``(B, N, p * p, C)``.
        grid: Token grid ``(T', F')`` with ``N = T' * F'``.
        patch_size: Square patch size p.
        channels: Channels C.

    Returns:
        ``(B, C, T' * p, F' * p)``.

    Raises:
        ValueError: If the shape of ``patches`` does not match the arguments.
    """
    check_int(patch_size, "patch_size")
    check_int(channels, "channels")
    if len(grid) != 2:
        raise ValueError(f"grid must be (T', F'), got {grid!r}")
    for size in grid:
        check_int(size, "grid entries")
    frames, bins = grid
    pixels = patch_size * patch_size
    num_tokens = frames * bins
    if not isinstance(patches, torch.Tensor):
        raise ValueError(f"patches must be a tensor, got {type(patches).__name__}")
    if patches.dim() == 3:
        if patches.shape[1:] != (num_tokens, pixels * channels):
            raise ValueError(
                f"flattened patches must have shape (B, {num_tokens}, {pixels * channels}) for grid {tuple(grid)}, "
                f"patch_size={patch_size}, channels={channels}; got {tuple(patches.shape)}"
            )
        patches = patches.reshape(patches.shape[0], num_tokens, pixels, channels)
    elif patches.dim() == 4:
        if patches.shape[1:] != (num_tokens, pixels, channels):
            raise ValueError(
                f"patches must have shape (B, {num_tokens}, {pixels}, {channels}) for grid {tuple(grid)}, "
                f"patch_size={patch_size}, channels={channels}; got {tuple(patches.shape)}"
            )
    else:
        raise ValueError(f"patches must be 3-D or 4-D, got shape {tuple(patches.shape)}")
    return rearrange(
        patches, "b (t f) (p1 p2) c -> b c (t p1) (f p2)", t=frames, f=bins, p1=patch_size, p2=patch_size
    )


def spectrogram_reconstruction_targets(
    spec: torch.Tensor,
    *,
    patch_size: int,
    normalize: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Per-token reconstruction targets of a spectrogram, for every token (HiCMAE audio branch).

    The spectrogram is used as it is: unlike the video targets there is no un-normalisation.
    Computed without gradient; half-precision inputs are upcast, so the targets are float32
    (float64 input stays float64).

    Args:
        spec: ``(B, C, T, F)`` input filter bank (time, then frequency).
        patch_size: Square patch size p.
        normalize: Normalise each token and channel over its ``p * p`` values:
            ``(v - mean) / (std_unbiased + eps)``.
        eps: Added to the per-token standard deviation.

    Returns:
        ``(B, N, p * p * C)``, tokens raster-ordered over ``(T / p, F / p)`` with time slowest,
        element index ``pixel * C + c``.

    Raises:
        ValueError: On malformed arguments.
    """
    _check_spectrogram(spec, patch_size)
    if patch_size * patch_size < 2 and normalize:
        raise ValueError("normalize=True needs at least 2 values per token (patch_size >= 2)")
    dtype = torch.promote_types(spec.dtype, torch.float32)
    with torch.no_grad():
        tokens = patchify_spectrogram(spec.detach().to(dtype), patch_size)  # (B, N, p*p, C)
        if normalize:
            tokens = _normalize_tokens(tokens, eps)
        return tokens.reshape(tokens.shape[0], tokens.shape[1], -1)
