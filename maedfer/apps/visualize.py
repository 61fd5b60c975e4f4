"""Pictures of what the models do: masked-autoencoder reconstructions and attention maps as frame grids.

Details: ``docs/modules.md``, section ``maedfer/apps/visualize.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..audio import FbankConfig
from ..masking import build_mask_generator
from ..targets import IMAGENET_MEAN, IMAGENET_STD, patchify_video, unpatchify_video
from .inference import (
    INPUT_ERRORS,
    InferenceModel,
    add_model_source_arguments,
    checkpoint_from_args,
    clip_to_input,
    error_message,
    load_inference_model,
    read_video_frames,
)

__all__ = [
    "LABEL_WIDTH",
    "attention_maps",
    "attention_overlay",
    "centre_clip_audio",
    "centre_clip_indices",
    "default_video_mask",
    "input_to_frames",
    "label_rows",
    "reconstruct_video",
    "reconstruction_figure",
    "save_png",
    "video_grid",
]

logger = logging.getLogger(__name__)

#: Default width in pixels of the label column on the left of the figures.
LABEL_WIDTH = 96
#: Font size of the row labels.
_LABEL_FONT_SIZE = 12


# ------------------------------------------------------------------------------------------ reconstructions
def _reconstructed_patches(
    video: torch.Tensor,
    mask: torch.Tensor,
    pred: torch.Tensor,
    *,
    patch_size: int,
    tubelet_size: int,
    frame_diff_group_size: int | None,
    normalize_target: bool,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
    """Input pixels and the reconstruction as tokens, before any clamping.

    Args:
        video: ``(B, 3, T, H, W)`` ImageNet-normalised input.
        mask: ``(B, N)`` bool, True = masked.
        pred: ``(B, N_masked, tubelet * p * p * 3)`` predictions in raster order of the masked tokens.
        patch_size: Spatial patch size p.
        tubelet_size: Frames per token.
        frame_diff_group_size: 2 if the targets were frame differences (must equal ``tubelet_size``).
        normalize_target: Whether the targets were per-patch normalised.
        eps: The epsilon of the target normalisation.

    Returns:
        ``(patches, recon_patches, grid)``: the input pixels clamped to ``[0, 1]`` as ``(B, N, tubelet * p * p, 3)``
        tokens, the reconstruction tokens of the same shape (visible tokens = input, masked tokens = de-normalised
        prediction, not clamped), and the token grid ``(T', H', W')``.
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
    return patches, recon_patches, grid


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
    patches, recon_patches, grid = _reconstructed_patches(
        video, mask, pred, patch_size=patch_size, tubelet_size=tubelet_size,
        frame_diff_group_size=frame_diff_group_size, normalize_target=normalize_target, eps=eps,
    )
    grey_patches = patches.clone()
    grey_patches[mask] = 0.5
    to_video = lambda p: unpatchify_video(p, grid, patch_size, tubelet_size, channels=3).clamp(0, 1)  # noqa: E731
    return to_video(patches), to_video(grey_patches), to_video(recon_patches)


def _group_differences(clip: torch.Tensor, group_size: int) -> torch.Tensor:
    """Per-frame difference to the first frame of its group of ``g`` frames, for display.

    Frame ``j > 0`` of a group shows ``x[j] - x[0]`` (what the MAE-DFER target holds); the first frame of a group,
    whose own difference is zero by definition, shows the group's first difference ``x[1] - x[0]``, so that every
    displayed tile shows motion.

    Args:
        clip: ``(C, T, H, W)`` pixels, ``T`` divisible by ``group_size``.
        group_size: g >= 2.

    Returns:
        ``(C, T, H, W)`` signed differences.
    """
    channels, frames, height, width = clip.shape
    groups = clip.reshape(channels, frames // group_size, group_size, height, width)
    diffs = groups - groups[:, :, :1]
    diffs[:, :, 0] = diffs[:, :, 1]
    return diffs.reshape(channels, frames, height, width)


def default_video_mask(
    model: nn.Module,
    *,
    mask_ratio: float = 0.9,
    mask_kind: str | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """One video mask of the kind the model was pre-trained with, drawn from a seeded generator.

    The kind follows the trainer (:func:`maedfer.data.build.pretraining_mask`): ``"part_window"`` with the encoder's
    region ``(h, w)`` as window for the LGI-Former (MAE-DFER), ``"tube"`` otherwise (VideoMAE, SVFAP, HiCMAE).

    Args:
        model: A masked autoencoder (with ``.encoder``) or a video encoder.
        mask_ratio: Fraction of masked tokens (official 0.9).
        mask_kind: ``"tube"`` or ``"part_window"``; ``None`` picks the model's default.
        seed: Seed of the torch generator the mask is drawn from.

    Returns:
        ``(1, N)`` bool mask (True = masked) on the CPU, raster token order.

    Raises:
        ValueError: If the model has no video encoder or the kind does not fit it.
    """
    from ..data.build import pretraining_mask

    encoder = _video_encoder(model)
    kind, window = pretraining_mask(encoder, mask_kind)
    generator = torch.Generator().manual_seed(int(seed))
    return build_mask_generator(kind, tuple(encoder.grid_size), mask_ratio, window).batch(1, generator)


def _video_encoder(model: nn.Module) -> nn.Module:
    """The video encoder of a model (:func:`maedfer.models.utils.video_encoder`); a ``ValueError`` without one."""
    from ..models.utils import video_encoder

    encoder = video_encoder(model)
    if encoder is None:
        raise ValueError(f"{type(model).__name__} has no video encoder")
    return encoder


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode without gradients; restore its training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _check_clip(video: torch.Tensor, encoder: nn.Module) -> None:
    """Raise ``ValueError`` unless ``video`` is one ``(1, 3, T, H, W)`` clip of the encoder's geometry."""
    if not isinstance(video, torch.Tensor) or video.dim() != 5 or video.shape[0] != 1 or video.shape[1] != 3:
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video must be one (1, 3, T, H, W) clip, got {shape}")
    embed = encoder.patch_embed
    expected = (embed.grid_size[0] * embed.tubelet_size, embed.grid_size[1] * embed.patch_size,
                embed.grid_size[2] * embed.patch_size)
    if tuple(video.shape[2:]) != expected:
        raise ValueError(f"the model takes (T, H, W) = {expected} clips, got {tuple(video.shape[2:])}")


def reconstruction_figure(
    model: nn.Module,
    video: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    frame_diff_group_size: int | None = None,
    normalize_target: bool = True,
    max_frames: int = 8,
    mask_ratio: float = 0.9,
    seed: int = 0,
    audio: torch.Tensor | None = None,
    audio_mask_ratio: float = 0.8,
    diff_gain: float = 1.0,
    pad: int = 2,
    label_width: int = LABEL_WIDTH,
) -> np.ndarray:
    """Run a masked video autoencoder on one clip and draw input, masked input and reconstruction.

    Rows (top to bottom), each with ``min(max_frames, T)`` evenly spaced frames (as :func:`video_grid`) and a label on
    the left:

    1. ``original``: the input;
    2. ``masked``: the input with masked patches grey (0.5);
    3. ``reconstruction``: visible patches from the input, masked patches from the prediction (see
       :func:`reconstruct_video`);
    4. ``target diff`` (only with ``frame_diff_group_size``): the frame-difference target in pixel units, drawn as
       ``clamp(0.5 + diff_gain * (x[j] - x[0]), 0, 1)`` per channel, where ``x[0]`` is the first frame of the frame's
       group (mid grey = no change; the first frame of a group shows the group's first difference);
    5. ``predicted diff`` (only with ``frame_diff_group_size``): the same for the reconstruction, i.e. the true
       difference on visible patches and the predicted difference (de-normalised by the patch's standard deviation)
       on masked patches.

    Args:
        model: A pre-training model: :class:`~maedfer.models.MaskedVideoAutoencoder` (VideoMAE, MAE-DFER's
            LGI-Former, SVFAP's TPSBT) or :class:`~maedfer.models.audio_visual.AudioVisualMaskedAutoencoder` (HiCMAE).
        video: ``(1, 3, T, H, W)`` float, ImageNet-normalised (e.g. :func:`maedfer.apps.inference.clip_to_input`).
        mask: ``(1, N)`` or ``(N,)`` bool, True = masked; default :func:`default_video_mask` with ``mask_ratio`` and
            ``seed`` (the model's training mask kind).
        frame_diff_group_size: The training config's ``train.frame_diff_group_size`` (2 for MAE-DFER / HiCMAE
            frame-difference targets, ``None`` for plain pixels).
        normalize_target: The training config's ``train.normalize_target``.
        max_frames: Frames shown per row.
        mask_ratio: Ratio of the default mask.
        seed: Seed of the default masks.
        audio: HiCMAE only, and required there: ``(1, 1, T_audio, F)`` (or ``(1, T_audio, F)``) normalised filter
            bank of the clip's audio (:func:`centre_clip_audio`). Ignored by video-only models.
        audio_mask_ratio: HiCMAE only: ratio of the random audio mask.
        diff_gain: Multiplier of the frame differences in the difference rows.
        pad: White pixels between tiles.
        label_width: Width of the label column in pixels (0: no labels).

    Returns:
        ``uint8 (R * (H + pad) + pad, label_width + n * (W + pad) + pad, 3)`` with ``R = 3`` (5 with frame
        differences) and ``n = min(max_frames, T)``.

    Raises:
        ValueError: If ``model`` is not a masked autoencoder, the clip, mask, audio or settings do not fit it, or a
            HiCMAE model gets no audio (silence would make its reconstruction meaningless).
    """
    from ..models.audio_visual import AudioVisualMaskedAutoencoder
    from ..models.mae import MaskedVideoAutoencoder

    if not isinstance(model, (MaskedVideoAutoencoder, AudioVisualMaskedAutoencoder)):
        raise ValueError(
            f"reconstruction needs a pre-training masked autoencoder, got {type(model).__name__} "
            "(a fine-tuned model has no decoder)"
        )
    encoder = model.encoder
    _check_clip(video, encoder)
    embed = encoder.patch_embed
    if mask is None:
        mask = default_video_mask(model, mask_ratio=mask_ratio, seed=seed)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ValueError("mask must be a bool tensor (True = masked)")
    mask = mask.reshape(1, -1)
    if mask.shape[1] != embed.num_patches:
        raise ValueError(f"mask has {mask.shape[1]} tokens, the model has {embed.num_patches}")
    if frame_diff_group_size is not None and frame_diff_group_size != embed.tubelet_size:
        raise ValueError(
            f"frame_diff_group_size={frame_diff_group_size} must equal the tubelet size {embed.tubelet_size}"
        )
    device = next(model.parameters()).device
    video = video.to(device=device, dtype=torch.float32)
    mask = mask.to(device)
    with _evaluating(model):
        if isinstance(model, AudioVisualMaskedAutoencoder):
            audio_embed = model.encoder_audio.patch_embed
            expected_audio = (1, audio_embed.proj.in_channels, *audio_embed.input_size)
            if audio is None:
                raise ValueError(
                    "an audio-visual model needs the clip's audio filter bank (audio=...; see centre_clip_audio)"
                )
            if audio.dim() == 3:
                audio = audio[None]
            if tuple(audio.shape) != expected_audio:
                raise ValueError(f"audio must be a {expected_audio} filter bank, got {tuple(audio.shape)}")
            generator = torch.Generator().manual_seed(int(seed) + 1)
            mask_audio = build_mask_generator("random", tuple(audio_embed.grid_size), audio_mask_ratio).batch(
                1, generator
            )
            pred = model(video, mask, audio.to(device=device, dtype=torch.float32), mask_audio.to(device)).pred_video
        else:
            pred = model(video, mask)
    patch, tubelet = embed.patch_size, embed.tubelet_size
    patches, recon_patches, grid = _reconstructed_patches(
        video, mask, pred, patch_size=patch, tubelet_size=tubelet, frame_diff_group_size=frame_diff_group_size,
        normalize_target=normalize_target, eps=1e-6,
    )
    grey_patches = patches.clone()
    grey_patches[mask] = 0.5
    clips = [unpatchify_video(p, grid, patch, tubelet, channels=3)[0] for p in (patches, grey_patches, recon_patches)]
    rows = [clip.clamp(0, 1) for clip in clips]
    labels = ["original", "masked", "reconstruction"]
    if frame_diff_group_size is not None:
        for name, clip in (("target diff", clips[0]), ("predicted diff", clips[2])):
            rows.append((0.5 + diff_gain * _group_differences(clip, frame_diff_group_size)).clamp(0, 1))
            labels.append(name)
    image = video_grid(rows, max_frames=max_frames, pad=pad)
    height = int(video.shape[3])
    return label_rows(image, labels, row_height=height, pad=pad, label_width=label_width)


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


def label_rows(
    image: np.ndarray,
    labels: Sequence[str],
    *,
    row_height: int,
    pad: int = 2,
    label_width: int = LABEL_WIDTH,
) -> np.ndarray:
    """Add a white column with one text label per row on the left of a :func:`video_grid` image.

    Args:
        image: ``uint8 (H, W, 3)`` grid whose rows are ``row_height`` pixels high with ``pad`` pixels around them.
        labels: One label per row, top to bottom.
        row_height: Tile height in pixels.
        pad: The grid's padding.
        label_width: Width of the label column (0 returns ``image`` unchanged).

    Returns:
        ``uint8 (H, label_width + W, 3)``.
    """
    from PIL import Image, ImageDraw, ImageFont

    if label_width <= 0:
        return image
    canvas = Image.new("RGB", (label_width + image.shape[1], image.shape[0]), (255, 255, 255))
    canvas.paste(Image.fromarray(image), (label_width, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=_LABEL_FONT_SIZE)
    for row, text in enumerate(labels):
        _, top, _, bottom = draw.textbbox((0, 0), text, font=font)
        y = pad + row * (row_height + pad) + (row_height - (bottom - top)) // 2 - top
        draw.text((4, y), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas, dtype=np.uint8).copy()


# ------------------------------------------------------------------------------------------------- attention
@contextlib.contextmanager
def _recording_attention(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the attention probabilities of every call of an :class:`~maedfer.layers.Attention` module."""
    calls: list[torch.Tensor] = []
    previous = module.keep_attention

    def hook(mod: nn.Module, args: Any, output: Any) -> None:
        calls.append(mod.last_attention)

    module.keep_attention = True
    handle = module.register_forward_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()
        module.keep_attention = previous
        module.last_attention = None


def _resolve_layer(layer: int, num_blocks: int) -> int:
    """Turn a Python-style block index into a non-negative one."""
    if not -num_blocks <= layer < num_blocks:
        raise ValueError(f"layer {layer} is out of range for an encoder with {num_blocks} blocks")
    return layer % num_blocks


def attention_maps(model: nn.Module, video: torch.Tensor, *, layer: int = -1) -> dict[str, Any]:
    """Attention maps of one encoder block, on the ``(T', H', W')`` token grid.

    LGI-Former (MAE-DFER): the map shown is the **messenger attention of stage 1** of block ``layer``
    (``LGIBlock.first_attn``, the intra-region attention over each region's messenger token and its local tokens):
    the attention probabilities of the messenger (query) over its region's local tokens (keys), averaged over the
    heads. With ``first_attn="self"`` the messenger also attends to itself; that entry is dropped and the remaining
    weights are renormalised, so each region's values sum to 1 (``first_attn="cross"`` already gives that). The
    stage-2 (messenger to messenger) and stage-3 (local to messenger) attentions have no per-token keys and are not
    shown.

    Every encoder (plain ViT, TPSBT, LGI-Former): ``mean_received`` is the attention each token receives, averaged
    over the heads and over all queries, in the self-attention of block ``layer`` (``Block.attn`` /
    ``CrossSelfBlock.attn``; the stage-1 attention for the LGI-Former, renormalised per region without the
    messenger). No attention rollout. It sums to 1 over the grid (per region for the LGI-Former). In the later
    TPSBT stages the tokens cover ``k ** s`` frames each; their value is spread evenly over those frames.

    Args:
        model: A video encoder (classifier or pre-training encoder) or a model with one as ``.encoder``
            (masked autoencoders, HiCMAE classifiers).
        video: ``(1, 3, T, H, W)`` ImageNet-normalised clip.
        layer: Block index (negative counts from the end).

    Returns:
        Dict with ``"map"`` (float32 ``(T', H', W')``, the messenger map for an LGI-Former, else
        ``mean_received``), ``"kind"`` (``"messenger"`` or ``"mean_received"``), ``"mean_received"`` (float32
        ``(T', H', W')``), ``"messenger"`` (float32 ``(T', H', W')``, LGI-Former only), ``"layer"`` (the
        non-negative block index), ``"grid"`` ``(T', H', W')``, ``"tubelet_size"``, ``"patch_size"`` and
        ``"region_size"`` (``(t, h, w)`` or ``None``).

    Raises:
        ValueError: If the model has no video encoder, the clip does not fit or ``layer`` is out of range.
    """
    from ..models.lgi_former import LGIFormer

    encoder = _video_encoder(model)
    _check_clip(video, encoder)
    index = _resolve_layer(int(layer), len(encoder.blocks))
    block = encoder.blocks[index]
    grid = tuple(int(g) for g in encoder.grid_size)
    device = next(encoder.parameters()).device
    video = video.to(device=device, dtype=torch.float32)
    is_lgi = isinstance(encoder, LGIFormer)
    attention_module = block.first_attn if is_lgi else getattr(block, "attn", None)
    if attention_module is None or not hasattr(attention_module, "keep_attention"):
        raise ValueError(f"block {index} ({type(block).__name__}) has no self-attention module to read")
    with _evaluating(encoder), _recording_attention(attention_module) as calls:
        encoder.forward_encoder(video)
    if not calls:
        raise ValueError(f"block {index} of {type(encoder).__name__} did not run its attention")
    weights = calls[0].float()  # the first call of a shared LGI module is stage 1
    result: dict[str, Any] = {
        "layer": index,
        "grid": grid,
        "tubelet_size": int(encoder.patch_embed.tubelet_size),
        "patch_size": int(encoder.patch_embed.patch_size),
        "region_size": tuple(encoder.region_size) if is_lgi else None,
    }
    if is_lgi:
        messenger, received = _messenger_weights(weights)
        order = encoder.full_grid_order.cpu()
        result["messenger"] = _scatter_to_grid(messenger, order, grid)
        result["mean_received"] = _scatter_to_grid(received, order, grid)
        result["map"], result["kind"] = result["messenger"], "messenger"
    else:
        received = weights[0].mean(dim=(0, 1))  # (K,)
        result["mean_received"] = _received_to_grid(received, grid)
        result["map"], result["kind"] = result["mean_received"], "mean_received"
    return result


def _messenger_weights(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Messenger and mean received attention over the local tokens of each region.

    Args:
        weights: ``(M, heads, Q, K)`` stage-1 attention of one clip: ``Q = K = 1 + R`` (self, messenger at slot 0) or
            ``Q = 1, K = R`` (cross, the messenger reads its locals).

    Returns:
        ``(messenger, received)``, each ``(M, R)`` with rows summing to 1.
    """
    if weights.shape[2] == 1:  # cross: only the messenger queries, the keys are the local tokens
        messenger = weights[:, :, 0].mean(dim=1)
        return messenger, messenger.clone()
    messenger = weights[:, :, 0, 1:].mean(dim=1)
    received = weights[:, :, :, 1:].mean(dim=(1, 2))
    return messenger / messenger.sum(dim=1, keepdim=True), received / received.sum(dim=1, keepdim=True)


def _scatter_to_grid(values: torch.Tensor, order: torch.Tensor, grid: tuple[int, int, int]) -> np.ndarray:
    """Put region-major values ``(M, R)`` back at their raster positions ``order`` ``(M * R,)``: ``(T', H', W')``."""
    flat = torch.zeros(int(np.prod(grid)), dtype=torch.float32)
    flat[order] = values.reshape(-1).cpu()
    return flat.reshape(grid).numpy()


def _received_to_grid(received: torch.Tensor, grid: tuple[int, int, int]) -> np.ndarray:
    """Map per-key attention ``(K,)`` (time-major, raster inside a frame) onto the token grid ``(T', H', W')``.

    ``K`` may cover fewer frames than ``T'`` (later TPSBT stages); each value is then spread evenly over the frames
    its token covers.
    """
    frames, height, width = grid
    per_frame = height * width
    keys = received.numel()
    if keys % per_frame or frames % (keys // per_frame):
        raise ValueError(f"cannot map {keys} attention keys onto the token grid {grid}")
    key_frames = keys // per_frame
    factor = frames // key_frames
    values = received.cpu().reshape(key_frames, height, width).repeat_interleave(factor, dim=0) / factor
    return values.float().numpy()


def attention_overlay(
    frames: np.ndarray,
    token_map: np.ndarray,
    tubelet_size: int,
    *,
    alpha: float = 0.5,
    max_frames: int = 8,
    pad: int = 2,
    colormap: str = "jet",
    label_width: int = LABEL_WIDTH,
) -> np.ndarray:
    """Blend a token-grid map over the frames it belongs to.

    The map is min-max normalised over the whole clip (so tiles are comparable), frame ``t`` uses map slice
    ``t // tubelet_size``, upsampled bilinearly to the frame size, coloured with the matplotlib colour map and blended
    as ``(1 - alpha) * frame + alpha * colour``. Two rows: the frames (``input``) and the overlay (``attention``).

    Args:
        frames: ``uint8 (T, H, W, 3)`` RGB.
        token_map: ``(T', H', W')`` values with ``T' * tubelet_size == T``.
        tubelet_size: Frames per token.
        alpha: Weight of the colour.
        max_frames: Frames shown per row.
        pad: White pixels between tiles.
        colormap: A :data:`matplotlib.colormaps` name.
        label_width: Width of the label column (0: no labels).

    Returns:
        ``uint8 (2 * (H + pad) + pad, label_width + n * (W + pad) + pad, 3)`` with ``n = min(max_frames, T)``.

    Raises:
        ValueError: If the shapes do not fit.
    """
    from matplotlib import colormaps

    frames = np.asarray(frames)
    token_map = np.asarray(token_map, dtype=np.float32)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if token_map.ndim != 3 or token_map.shape[0] * tubelet_size != frames.shape[0]:
        raise ValueError(
            f"token_map {token_map.shape} with tubelet_size={tubelet_size} does not fit {frames.shape[0]} frames"
        )
    low, high = float(token_map.min()), float(token_map.max())
    scaled = (token_map - low) / (high - low) if high > low else np.zeros_like(token_map)
    height, width = frames.shape[1:3]
    upsampled = F.interpolate(torch.from_numpy(scaled)[:, None], size=(height, width), mode="bilinear",
                              align_corners=False)[:, 0].clamp(0, 1)
    upsampled = upsampled.repeat_interleave(tubelet_size, dim=0).numpy()  # (T, H, W)
    colours = colormaps[colormap](upsampled)[..., :3].astype(np.float32)  # (T, H, W, 3)
    pixels = frames.astype(np.float32) / 255.0
    blended = (1.0 - alpha) * pixels + alpha * colours
    rows = [torch.from_numpy(np.ascontiguousarray(clip.transpose(3, 0, 1, 2))) for clip in (pixels, blended)]
    image = video_grid(rows, max_frames=max_frames, pad=pad)
    return label_rows(image, ["input", "attention"], row_height=height, pad=pad, label_width=label_width)


# ----------------------------------------------------------------------------------------------- clips, files
def centre_clip_indices(num_frames_total: int, clip_len: int, sampling_rate: int) -> np.ndarray:
    """Frame indices of the clip in the middle of a video: every ``sampling_rate``-th frame.

    The single centred test view of :func:`maedfer.apps.features.clip_views`: the frames loaded as in the official test
    mode (:func:`maedfer.data.sampling.stride_loaded_indices`: every ``sr``-th frame, the last one repeated for short
    videos) and the centred window of ``clip_len`` of them.

    Args:
        num_frames_total: Frames of the video ``n >= 1``.
        clip_len: Frames per clip ``L``.
        sampling_rate: Stride ``sr``.

    Returns:
        ``(L,)`` int64 indices in ``[0, n)``.
    """
    from .features import clip_views

    _, _, indices = clip_views(num_frames_total, clip_len, sampling_rate, 1)
    return indices[0].copy()


def centre_clip_audio(
    path: str | os.PathLike[str],
    num_frames_total: int,
    clip_len: int,
    sampling_rate: int,
    fbank: FbankConfig,
    *,
    modality: str | None = "audio_visual",
) -> torch.Tensor:
    """The filter bank of the audio of the centre clip (:func:`centre_clip_indices`), as the evaluation cuts it.

    The audio frame range is the test view's (:func:`maedfer.data.sampling.view_audio_frame_range`: from the clip's
    first frame to ``sampling_rate`` frames after its last one, the video's last frame at most) and the waveform is
    cut with HiCMAE's relative-time rule (:func:`maedfer.apps.inference.clip_filterbank`).

    Args:
        path: Video (or audio) file with the soundtrack.
        num_frames_total: Frames ``n`` of the video.
        clip_len: Frames per clip ``L``.
        sampling_rate: Stride ``sr``.
        fbank: :class:`maedfer.audio.FbankConfig` of the model (``loaded.fbank``).
        modality: The model's modality, named in the :class:`~maedfer.apps.inference.NoAudioError` message.

    Returns:
        ``float32 (1, fbank.target_length, fbank.num_mel_bins)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        maedfer.apps.inference.NoAudioError: ``path`` has no (or an empty) audio track, or is a frame folder.
        maedfer.data.readers.ClipReadError: The audio cannot be decoded.
        maedfer.data.sampling.AudioSegmentError: (a ``ValueError``) The clip's audio is too short.
    """
    from ..data.sampling import view_audio_frame_range
    from .features import clip_views
    from .inference import clip_filterbank, read_soundtrack

    waveform = read_soundtrack(path, fbank.sample_rate, modality=modality)
    loaded, starts, _ = clip_views(num_frames_total, clip_len, sampling_rate, 1)
    first, last = view_audio_frame_range(loaded, starts[0], clip_len, sampling_rate, num_frames_total)
    return clip_filterbank(waveform, first, last, num_frames_total, fbank, path=path)


def input_to_frames(video: torch.Tensor) -> np.ndarray:
    """Undo the ImageNet normalisation of a model input.

    Args:
        video: ``(3, T, H, W)`` or ``(1, 3, T, H, W)`` ImageNet-normalised float clip.

    Returns:
        ``uint8 (T, H, W, 3)`` RGB.
    """
    if video.dim() == 5:
        video = video[0]
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None, None]
    pixels = (video.detach().cpu().float() * std + mean).clamp(0, 1)
    return (pixels.permute(1, 2, 3, 0).numpy() * 255).round().astype(np.uint8)


def save_png(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an RGB image as PNG atomically (a temporary file in the same folder, fsync, then ``os.replace``).

    Args:
        image: ``uint8 (H, W, 3)``.
        path: Target file; missing parent folders are created.

    Returns:
        The path written.

    Raises:
        ValueError: If ``image`` is not ``uint8 (H, W, 3)``.
    """
    from PIL import Image

    from ..utils import atomic_write_bytes

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    target = Path(path)
    encoded = io.BytesIO()
    Image.fromarray(image).save(encoded, format="PNG")
    atomic_write_bytes(target, encoded.getvalue())
    logger.debug("wrote %s", target)
    return target


# ------------------------------------------------------------------------------------------ command line

#: Help text of ``maedfer visualize`` (and ``tools/visualize.py``).
CLI_DESCRIPTION = """Draw what a model does with one video: masked-autoencoder reconstructions and attention maps.

Examples:
    maedfer visualize reconstruct clip.mp4 --checkpoint runs/demo_pretrain/checkpoint-last.pth --out figs
    maedfer visualize reconstruct clip.mp4 --checkpoint mae_dfer_pretrain.pth --model mae_dfer_pretrain_base \\
        --frame-diff --mask-ratio 0.75 --seed 3
    maedfer visualize attention clip.mp4 --checkpoint runs/demo_finetune/checkpoint-last.pth --layer -1

Both commands read the video (by default cropping its main face, ``--no-face-detect`` for videos that already are
face crops), take the clip in the middle of it (``num_frames`` frames every ``sampling_rate``-th frame of the
checkpoint's training config) and preprocess it as the model's test transform does.

``reconstruct`` needs a pre-training checkpoint (a masked autoencoder) and writes ``<out>/<stem>_reconstruction.png``:
rows original / masked / reconstruction, plus target and predicted frame differences for frame-difference targets
(MAE-DFER, HiCMAE). The mask is the model's training mask (part-window for MAE-DFER, tube otherwise) drawn with
``--seed``. Target settings come from the checkpoint's training config (``train.frame_diff_group_size``,
``train.normalize_target``, ``data.mask_ratio``); the flags override them, and are needed for checkpoints without a
config (official releases). HiCMAE models also read the clip's audio (the evaluation's cut of the soundtrack); a
video without an audio track is an error (exit 2): the model fed silence would reconstruct nothing meaningful.

``attention`` works with any checkpoint holding a video encoder and writes ``<out>/<stem>_attention.png``: for the
LGI-Former (MAE-DFER) the messenger-token attention over each region's tokens in block ``--layer``, for other
encoders the mean attention each token receives in that block's self-attention.

Exit codes: 0 on success, 2 on bad input (missing file, unreadable video, no face, no audio track for a HiCMAE
model, wrong kind of checkpoint).
"""


def load_model(args: argparse.Namespace) -> InferenceModel:
    """The checkpoint's model; audio-only models are refused (nothing to draw on frames)."""
    args.checkpoint = checkpoint_from_args(args)
    loaded = load_inference_model(args.checkpoint, model_name=args.model, device=args.device)
    if loaded.modality == "audio":
        raise ValueError(f"{args.checkpoint} holds an audio-only model ({loaded.name}); there are no frames to draw")
    return loaded


def read_clip(args: argparse.Namespace, loaded: InferenceModel) -> tuple[torch.Tensor, int]:
    """The centre clip of the video as model input ``(1, 3, T, S, S)`` and the video's frame count."""
    video = read_video_frames(args.video, detect_faces=not args.no_face_detect, video_backend=args.video_backend)
    indices = centre_clip_indices(len(video), loaded.num_frames, loaded.sampling_rate)
    clip = clip_to_input(video.frames[indices], loaded)[None]
    return clip, len(video)


def run_reconstruct(args: argparse.Namespace) -> Path:
    """Draw the reconstruction figure of the ``reconstruct`` command; returns the PNG written."""
    loaded = load_model(args)
    if loaded.kind != "pretrain":
        raise ValueError(
            f"{args.checkpoint} holds a fine-tuned {loaded.name} ({loaded.task}); reconstruction needs a pre-training "
            "checkpoint (a masked autoencoder)"
        )
    cfg = loaded.config
    tubelet = int(loaded.model.encoder.patch_embed.tubelet_size)
    frame_diff = args.frame_diff if args.frame_diff is not None else (
        cfg is not None and cfg.train.frame_diff_group_size is not None
    )
    if frame_diff and cfg is not None and cfg.train.frame_diff_group_size not in (None, tubelet):
        raise ValueError(
            f"the training config's frame_diff_group_size={cfg.train.frame_diff_group_size} differs from the "
            f"tubelet size {tubelet}; such targets cannot be drawn"
        )
    normalize = args.normalize_target if args.normalize_target is not None else (
        cfg.train.normalize_target if cfg is not None else True
    )
    mask_ratio = args.mask_ratio if args.mask_ratio is not None else (cfg.data.mask_ratio if cfg is not None else 0.9)
    audio_mask_ratio = cfg.data.audio_mask_ratio if cfg is not None else 0.8
    clip, num_frames_total = read_clip(args, loaded)
    audio = None
    if loaded.needs_audio:  # HiCMAE: no soundtrack raises NoAudioError (a ClipReadError) -> exit 2
        if loaded.fbank is None:
            raise ValueError(f"{loaded.name} is {loaded.modality} but states no filter-bank settings")
        audio = centre_clip_audio(
            args.video, num_frames_total, loaded.num_frames, loaded.sampling_rate, loaded.fbank,
            modality=loaded.modality,
        )
    mask = default_video_mask(
        loaded.model, mask_ratio=mask_ratio, mask_kind=cfg.data.mask_type if cfg is not None else None, seed=args.seed
    )
    image = reconstruction_figure(
        loaded.model, clip, mask=mask, frame_diff_group_size=tubelet if frame_diff else None,
        normalize_target=normalize, max_frames=args.max_frames, seed=args.seed, audio=audio,
        audio_mask_ratio=audio_mask_ratio, diff_gain=args.diff_gain,
    )
    print(f"{loaded.name}: mask ratio {mask_ratio:g}, frame-difference target {'on' if frame_diff else 'off'}, "
          f"normalised target {'on' if normalize else 'off'}")
    return save_png(image, Path(args.out) / f"{Path(args.video).stem}_reconstruction.png")


def run_attention(args: argparse.Namespace) -> Path:
    """Draw the attention overlay of the ``attention`` command; returns the PNG written."""
    loaded = load_model(args)
    clip, _ = read_clip(args, loaded)
    maps = attention_maps(loaded.model, clip, layer=args.layer)
    if maps["kind"] == "messenger":
        print(f"{loaded.name}: messenger-token attention of block {maps['layer']} (regions {maps['region_size']})")
    else:
        print(f"{loaded.name} is not an LGI-Former: mean attention received per token in block {maps['layer']}")
    image = attention_overlay(
        input_to_frames(clip), maps["map"], maps["tubelet_size"], alpha=args.alpha, max_frames=args.max_frames
    )
    return save_png(image, Path(args.out) / f"{Path(args.video).stem}_attention.png")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with the ``reconstruct`` and ``attention`` subcommands."""
    parser = argparse.ArgumentParser(description=CLI_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def add_common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("video", help="video file (or frame folder)")
        add_model_source_arguments(sub, checkpoint_help="maedfer training checkpoint, official .pth or safetensors file")
        sub.add_argument("--out", default=".", help="output folder (default: the current folder)")
        sub.add_argument("--max-frames", type=int, default=8, help="frames shown per row (default 8)")
        sub.add_argument("--no-face-detect", action="store_true", help="use the frames as they are (face crops)")
        sub.add_argument("--video-backend", choices=("auto", "decord", "pyav"), default="auto", help="video decoder")
        sub.add_argument("--device", default="cpu", help="torch device (default cpu)")

    reconstruct = commands.add_parser("reconstruct", help="masked-autoencoder reconstruction of the centre clip")
    add_common(reconstruct)
    reconstruct.add_argument("--mask-ratio", type=float, default=None,
                             help="masking ratio (default: the training config's, else 0.9)")
    reconstruct.add_argument("--seed", type=int, default=0, help="seed of the mask (default 0)")
    reconstruct.add_argument("--frame-diff", action=argparse.BooleanOptionalAction, default=None,
                             help="the model predicts frame-difference targets (default: from the training config)")
    reconstruct.add_argument("--normalize-target", action=argparse.BooleanOptionalAction, default=None,
                             help="the targets were per-patch normalised (default: from the training config, else on)")
    reconstruct.add_argument("--diff-gain", type=float, default=1.0, help="contrast of the difference rows")

    attention = commands.add_parser("attention", help="attention map of one encoder block over the centre clip")
    add_common(attention)
    attention.add_argument("--layer", type=int, default=-1, help="encoder block (default -1, the last)")
    attention.add_argument("--alpha", type=float, default=0.5, help="opacity of the colour map (default 0.5)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns the exit code (0 success, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.max_frames < 1:
        parser.error("--max-frames must be >= 1")
    run = run_reconstruct if args.command == "reconstruct" else run_attention
    try:
        path = run(args)
    except INPUT_ERRORS as error:
        print(f"error: {error_message(error)}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0

