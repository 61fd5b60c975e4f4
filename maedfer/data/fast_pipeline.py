"""The fast clip pipeline (``data.pipeline: fast``): every augmentation once per clip on uint8 arrays.

Details: ``docs/modules.md``, section ``maedfer/data/fast_pipeline.py``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image
import torch
import torch.nn.functional as F
from torch import Tensor

from .augment import (
    AugmentOpDraw,
    FinetuneTrainTransform,
    VideoRandAugment,
    _check_frames,
    _check_range,
    _check_rng,
    random_erasing_clip,
    random_resized_crop_params,
)
from .transforms import to_normalized_tensor

__all__ = [
    "PIPELINES",
    "FastFinetuneTrainTransform",
    "FastRandAugment",
    "affine_matrix",
    "check_pipeline",
    "resize_clip",
]

logger = logging.getLogger(__name__)

#: The values of ``data.pipeline``.
PIPELINES: tuple[str, ...] = ("fast", "official")

_GEOMETRIC = frozenset({"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"})


def check_pipeline(pipeline: str) -> str:
    """Validate a ``data.pipeline`` value (``"fast"`` or ``"official"``)."""
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
    return pipeline


def resize_clip(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a clip with torch's antialiased bilinear uint8 kernel (PIL-like, channels-last, one call).

    Args:
        frames: ``uint8 (L, H, W, 3)`` (any strides).
        height: Output height.
        width: Output width.

    Returns:
        ``uint8 (L, height, width, 3)``; the input itself when it already has that size.
    """
    if frames.shape[1] == height and frames.shape[2] == width:
        return frames
    clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # channels-last memory
    out = F.interpolate(clip, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return out.permute(0, 2, 3, 1).contiguous().numpy()


def affine_matrix(op: AugmentOpDraw, height: int, width: int) -> np.ndarray:
    """The ``3 x 3`` inverse map (output -> input pixel coordinates, PIL's convention) of a geometric operation.

    Args:
        op: A drawn Rotate / ShearX / ShearY / TranslateXRel / TranslateYRel operation.
        height: Frame height.
        width: Frame width.

    Returns:
        ``float64 (3, 3)`` matrix ``M`` with ``input = M @ (x, y, 1)``.
    """
    value = float(op.args[0])
    matrix = np.eye(3)
    if op.name == "Rotate":  # PIL rotates counter-clockwise about (W / 2, H / 2)
        theta = -math.radians(value)
        cos, sin = math.cos(theta), math.sin(theta)
        cx, cy = width / 2.0, height / 2.0
        matrix[:2] = [[cos, sin, cx - cos * cx - sin * cy], [-sin, cos, cy + sin * cx - cos * cy]]
    elif op.name == "ShearX":
        matrix[0, 1] = value
    elif op.name == "ShearY":
        matrix[1, 0] = value
    elif op.name == "TranslateXRel":
        matrix[0, 2] = value * width
    elif op.name == "TranslateYRel":
        matrix[1, 2] = value * height
    else:
        raise ValueError(f"{op.name!r} is not a geometric operation")
    return matrix


def _warp(frames: np.ndarray, matrix: np.ndarray, fill: Sequence[int]) -> np.ndarray:
    """Bilinear affine warp of a whole clip (one sampling grid for every frame), uncovered pixels ``fill``.

    The frames are the channels of one image, so the grid and its weights are computed once; pixels near the
    border blend towards ``fill`` by the share of their 2 x 2 neighbourhood that lies outside the frame.

    Args:
        frames: ``uint8 (L, H, W, 3)``.
        matrix: Inverse map from :func:`affine_matrix` (composed).
        fill: RGB fill.

    Returns:
        ``uint8 (L, H, W, 3)``.
    """
    length, height, width, _ = frames.shape
    # pixel coordinates (centres at i + 0.5) -> grid_sample's [-1, 1] coordinates (align_corners=False)
    to_unit = np.array([[2.0 / width, 0.0, -1.0], [0.0, 2.0 / height, -1.0], [0.0, 0.0, 1.0]])
    theta = (to_unit @ matrix @ np.linalg.inv(to_unit))[:2]
    grid = F.affine_grid(torch.tensor(theta, dtype=torch.float32)[None], [1, 1, height, width], align_corners=False)
    clip = torch.empty((3, length, height, width), dtype=torch.float32)
    clip.copy_(torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2))  # one converting pass
    out = F.grid_sample(clip.view(1, 3 * length, height, width), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    inside = F.grid_sample(torch.ones(1, 1, height, width), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    fill_t = torch.tensor([float(v) for v in fill], dtype=torch.float32).view(3, 1, 1, 1)
    # every output is a convex combination of values in [0, 255] (the fill included): + 0.5 and the truncating
    # cast to uint8 round it to nearest, with no clamp needed
    out = out.view(3, length, height, width).add_(fill_t * (1.0 - inside[0]) + 0.5)
    warped = torch.empty((length, height, width, 3), dtype=torch.uint8)
    warped.permute(3, 0, 1, 2).copy_(out)
    return warped.numpy()


def _grey(frames: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of PIL's ``convert("L")``: ``(R*19595 + G*38470 + B*7471 + 0x8000) >> 16``, ``(L, H, W)``."""
    rgb = frames.astype(np.int32)
    return (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16


def _round_u8(values: np.ndarray) -> np.ndarray:
    """Round to nearest and clip to uint8."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _frame_channel_index(frames: np.ndarray) -> np.ndarray:
    """``uint16 (L, H, W, 3)``: each value plus ``256 * (3 * frame + channel)`` (an index into stacked tables)."""
    length = frames.shape[0]
    offsets = (np.arange(length * 3, dtype=np.uint16) * 256).reshape(length, 1, 1, 3)
    return frames.astype(np.uint16) + offsets


def _lookup_per_frame(frames: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """Map ``uint8 (L, H, W, 3)`` through per-frame, per-channel ``uint8 (L, 3, 256)`` tables.

    PIL's C ``point`` on each frame (a view of the frame's buffer): about 1.6x numpy's ``take`` over stacked tables.
    """
    frames = np.ascontiguousarray(frames)
    length, height, width, _ = frames.shape
    out = np.empty_like(frames)
    for index in range(length):
        image = Image.frombuffer("RGB", (width, height), frames[index], "raw", "RGB", 0, 1)
        out[index] = np.asarray(image.point(tables[index].reshape(-1).tolist()))
    return out


def _lookup(frames: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Map every value of ``uint8 (L, H, W, 3)`` through one ``uint8 (256,)`` table: PIL's C ``point`` on the clip
    seen as one greyscale image (faster than numpy's ``take``)."""
    frames = np.ascontiguousarray(frames)
    length, height, width, _ = frames.shape
    image = Image.frombuffer("L", (width * 3, length * height), frames, "raw", "L", 0, 1)
    out = np.empty_like(frames)  # writable (PIL's buffer is not)
    out.reshape(-1)[:] = np.asarray(image.point(table.tolist())).reshape(-1)
    return out


def _histograms(index: np.ndarray, length: int) -> np.ndarray:
    """``(L, 3, 256)`` histograms of every frame and channel from :func:`_frame_channel_index`."""
    return np.bincount(index.ravel(), minlength=length * 3 * 256).reshape(length, 3, 256)


def _autocontrast_tables(frames: np.ndarray) -> np.ndarray:
    """PIL ``ImageOps.autocontrast`` (cutoff 0) tables per frame and channel, ``(L, 3, 256)`` uint8."""
    clip = torch.from_numpy(frames).view(frames.shape[0], -1, 3)
    low, high = clip.amin(dim=1).numpy().astype(np.float64), clip.amax(dim=1).numpy().astype(np.float64)
    values = np.arange(256, dtype=np.float64)
    span = np.where(high > low, high - low, 1.0)
    scale = 255.0 / span
    mapped = (values * scale[..., None] - (low * scale)[..., None]).astype(np.int64)  # PIL truncates
    identity = np.broadcast_to(values.astype(np.int64), mapped.shape)
    return np.clip(np.where((high > low)[..., None], mapped, identity), 0, 255).astype(np.uint8)


def _equalize_tables(index: np.ndarray, length: int) -> np.ndarray:
    """PIL ``ImageOps.equalize`` tables per frame and channel (integer rule of Pillow), ``(L, 3, 256)`` uint8."""
    hist = _histograms(index, length)
    values = np.arange(256)
    last = 255 - np.argmax(hist[..., ::-1] > 0, axis=-1)  # last non-empty bin
    last_count = np.take_along_axis(hist, last[..., None], axis=-1)[..., 0]
    step = (hist.sum(axis=-1) - last_count) // 255
    safe = np.maximum(step, 1)[..., None]
    before = np.concatenate([np.zeros_like(hist[..., :1]), np.cumsum(hist, axis=-1)[..., :-1]], axis=-1)
    mapped = np.minimum(255, (step[..., None] // 2 + before) // safe)
    return np.where(step[..., None] > 0, mapped, values).astype(np.uint8)


def _sharpness(frames: np.ndarray, factor: float) -> np.ndarray:
    """PIL Sharpness: blend with the 3x3 SMOOTH filter (1 1 1 / 1 5 1 / 1 1 1) / 13, borders kept."""
    height, width = frames.shape[1:3]
    wide = frames.astype(np.uint16)
    total = wide[:, 1:-1, 1:-1] * np.uint16(4)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            total += wide[:, dy : dy + height - 2, dx : dx + width - 2]
    smooth = frames.copy()
    smooth[:, 1:-1, 1:-1] = (total + np.uint16(6)) // np.uint16(13)  # rounded to nearest, as PIL's filter
    base = smooth.astype(np.float32)
    return _round_u8(base + factor * (frames.astype(np.float32) - base))


def _colour_op(frames: np.ndarray, name: str, args: Sequence[float | int]) -> np.ndarray:
    """Apply one non-geometric RandAugment operation to the whole clip ``uint8 (L, H, W, 3)``."""
    base = name[: -len("Increasing")] if name.endswith("Increasing") else name
    values = np.arange(256, dtype=np.int32)
    if name == "AutoContrast":
        return _lookup_per_frame(frames, _autocontrast_tables(frames))
    if name == "Equalize":
        index = _frame_channel_index(frames)
        return _lookup_per_frame(frames, _equalize_tables(index, frames.shape[0]))
    if name == "Invert":
        table = 255 - values
    elif base == "Posterize":
        bits = int(args[0])
        if bits >= 8:
            return frames
        table = values & (~(2 ** (8 - bits) - 1) & 0xFF) if bits > 0 else np.zeros_like(values)
    elif base == "Solarize":
        table = np.where(values < int(args[0]), values, 255 - values)
    elif name == "SolarizeAdd":
        table = np.where(values < 128, np.minimum(255, values + int(args[0])), values)
    elif base == "Brightness":
        table = values * float(args[0])
    elif base == "Contrast":  # blend with the frame's rounded mean grey level
        means = np.floor(_grey(frames).reshape(frames.shape[0], -1).mean(axis=1) + 0.5)
        tables = means[:, None] + float(args[0]) * (values[None, :] - means[:, None])
        tables = np.repeat(_round_u8(tables)[:, None, :], 3, axis=1)
        return _lookup_per_frame(frames, tables)
    elif base == "Color":  # blend with the grey image
        grey = _grey(frames).astype(np.float32)[..., None]
        return _round_u8(grey + float(args[0]) * (frames.astype(np.float32) - grey))
    elif base == "Sharpness":
        return _sharpness(frames, float(args[0]))
    else:
        raise ValueError(f"unknown RandAugment operation {name!r}")
    return _lookup(frames, _round_u8(table))


class FastRandAugment:
    """:class:`~maedfer.data.augment.VideoRandAugment` applied to the whole clip at once (see the module doc).

    Draws come from the wrapped :class:`VideoRandAugment` (identical distributions and draw order); consecutive
    geometric operations are composed and sampled once, colour operations are clip-wide tables or float passes.

    Args:
        rand_augment: The official-recipe augmentation (or a timm-style string for ``from_string``).
    """

    def __init__(self, rand_augment: VideoRandAugment | str = "rand-m7-n4-mstd0.5-inc1") -> None:
        if isinstance(rand_augment, str):
            rand_augment = VideoRandAugment.from_string(rand_augment)
        self.rand_augment = rand_augment

    def draw(self, rng: np.random.Generator) -> list[AugmentOpDraw]:
        """The operations of one clip (exactly :meth:`VideoRandAugment.draw`)."""
        return self.rand_augment.draw(rng)

    def apply(self, frames: np.ndarray, draws: Sequence[AugmentOpDraw]) -> np.ndarray:
        """Apply drawn operations to a clip.

        Args:
            frames: ``uint8 (L, H, W, 3)``.
            draws: Operations from :meth:`draw`.

        Returns:
            ``uint8 (L, H, W, 3)``.
        """
        _check_frames(frames)
        height, width = frames.shape[1:3]
        pending: np.ndarray | None = None  # composed inverse map of the geometric run not yet applied
        for op in draws:
            if op.name in _GEOMETRIC:
                matrix = affine_matrix(op, height, width)
                pending = matrix if pending is None else pending @ matrix
                continue
            if pending is not None:
                frames, pending = _warp(frames, pending, self.rand_augment.fill), None
            frames = _colour_op(frames, op.name, op.args)
        if pending is not None:
            frames = _warp(frames, pending, self.rand_augment.fill)
        return frames

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw once for the clip and apply; ``uint8 (L, H, W, 3)`` in and out."""
        return self.apply(frames, self.draw(rng))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.rand_augment!r})"


class FastFinetuneTrainTransform(FinetuneTrainTransform):
    """Fast version of :class:`~maedfer.data.augment.FinetuneTrainTransform` (same arguments, same draws).

    Steps: square resize to ``short_side_size`` (skipped when the frames already have it), :class:`FastRandAugment`,
    RandomResizedCrop (uint8 crop, one antialiased bilinear resize), flip (a view), float32 normalisation straight
    into the ``(3, L, S, S)`` layout, then the official cube erasing.

    Args:
        input_size: Output size.
        short_side_size: Square resize before RandAugment.
        rand_augment: timm-style string, :class:`VideoRandAugment`, or ``None`` (no RandAugment).
        reprob: Random-erasing probability.
        flip: Random horizontal flip (p = 0.5).
        scale: RandomResizedCrop area range.
        ratio: RandomResizedCrop aspect-ratio range.
        erase_mode: Random-erasing fill mode.

    Example:
        >>> clip = FastFinetuneTrainTransform()(np.zeros((16, 256, 256, 3), np.uint8), np.random.default_rng(0))
        >>> clip.shape, clip.dtype
        (torch.Size([3, 16, 160, 160]), torch.float32)
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.rand_augment is not None:
            self.rand_augment = FastRandAugment(self.rand_augment)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> Tensor:
        """Augment one clip: ``uint8 (L, H, W, 3)`` -> ``float32 (3, L, input_size, input_size)`` normalised."""
        _check_frames(frames)
        rng = _check_rng(rng)
        frames = resize_clip(frames, self.short_side_size, self.short_side_size)
        if self.rand_augment is not None:
            frames = self.rand_augment(frames, rng)
        top, left, crop_h, crop_w = random_resized_crop_params(
            frames.shape[1], frames.shape[2], rng, self.scale, self.ratio
        )
        frames = resize_clip(frames[:, top : top + crop_h, left : left + crop_w], self.input_size, self.input_size)
        if self.flip and rng.random() < 0.5:  # the draw of augment.horizontal_flip_clip
            frames = frames[:, :, ::-1]
        video = to_normalized_tensor(frames)
        if self.reprob > 0:
            video = random_erasing_clip(video, rng, prob=self.reprob, mode=self.erase_mode, inplace=True)
        return video
