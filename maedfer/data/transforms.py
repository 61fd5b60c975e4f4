"""Deterministic frame transforms of the fine-tuning / evaluation pipelines, test views and view aggregation.

Details: ``docs/modules.md``, section ``maedfer/data/transforms.py``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ..targets import IMAGENET_MEAN, IMAGENET_STD
from ..utils import check_int

__all__ = [
    "TestView",
    "TestViews",
    "VideoPrediction",
    "ViewPrediction",
    "aggregate_view_predictions",
    "center_crop",
    "resize_frames_short_side",
    "resize_frames_square",
    "to_normalized_tensor",
]

logger = logging.getLogger(__name__)


def _check_frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    """Validate a ``uint8 (L, H, W, 3)`` clip.

    Args:
        frames: Array to check.
        name: Argument name for the message.

    Returns:
        The array.
    """
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (L, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8, got {frames.dtype}")
    if frames.shape[0] == 0:
        raise ValueError(f"{name} holds no frame")
    return frames


def _import_pil_image() -> Any:
    """Import ``PIL.Image`` lazily, with the install hint on failure."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is a core dependency
        raise ImportError("Pillow is required to resize frames; install it with: pip install pillow") from exc
    return Image


def _resize_pil(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize every frame with PIL bilinear (antialiased) to ``width x height``.

    Args:
        frames: ``uint8 (L, H, W, 3)``.
        width: Output width.
        height: Output height.

    Returns:
        ``uint8 (L, height, width, 3)``.
    """
    image_module = _import_pil_image()
    out = np.empty((frames.shape[0], height, width, 3), dtype=np.uint8)
    for position, frame in enumerate(frames):
        image = image_module.fromarray(np.ascontiguousarray(frame))
        out[position] = np.asarray(image.resize((width, height), image_module.BILINEAR))
    return out


def resize_frames_square(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize frames to ``size x size`` with PIL bilinear, **not** keeping the aspect ratio (official behaviour).

    Args:
        frames: ``uint8 (L, H, W, 3)`` RGB.
        size: Output side ``S``.

    Returns:
        ``uint8 (L, S, S, 3)``.

    Raises:
        ValueError: On a bad shape or a non-positive size.
        TypeError: If ``frames`` is not a uint8 numpy array.
    """
    _check_frames(frames)
    check_int(size, "size")
    return _resize_pil(frames, size, size)


def resize_frames_short_side(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize frames so that the short side is ``size``, keeping the aspect ratio (PIL bilinear).

    Not the official fine-tuning behaviour (see :func:`resize_frames_square`). The long side becomes
    ``int(size * long / short)`` (truncation).

    Args:
        frames: ``uint8 (L, H, W, 3)`` RGB.
        size: Output short side.

    Returns:
        ``uint8 (L, H', W', 3)`` with ``min(H', W') == size``.
    """
    _check_frames(frames)
    check_int(size, "size")
    height, width = frames.shape[1:3]
    if height <= width:
        new_height, new_width = size, int(size * width / height)
    else:
        new_height, new_width = int(size * height / width), size
    return _resize_pil(frames, new_width, new_height)


def center_crop(frames: np.ndarray, crop: int) -> np.ndarray:
    """Centre crop ``crop x crop`` with offsets ``int(round((H - crop) / 2))`` and ``int(round((W - crop) / 2))``.

    Python's ``round`` (half to even) is used, as in the official code.

    Args:
        frames: ``(L, H, W, C)`` array of any dtype.
        crop: Output side.

    Returns:
        ``(L, crop, crop, C)`` view of ``frames``.

    Raises:
        ValueError: If ``crop`` is not positive or exceeds ``H`` or ``W``.
    """
    if frames.ndim != 4:
        raise ValueError(f"frames must have shape (L, H, W, C), got {frames.shape}")
    height, width = frames.shape[1:3]
    check_int(crop, "crop")
    if crop > height or crop > width:
        raise ValueError(f"crop {crop} is larger than the frames ({height}x{width})")
    top = int(round((height - crop) / 2))
    left = int(round((width - crop) / 2))
    return frames[:, top : top + crop, left : left + crop]


def to_normalized_tensor(
    frames: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """Convert a uint8 clip to the normalised float32 model input.

    Computed exactly as ``(x / 255 - mean) / std`` in float32 (``mean`` and ``std`` rounded to float32 first),
    which reproduces the official tensors bit for bit.

    Args:
        frames: ``uint8 (L, H, W, 3)`` RGB.
        mean: Per-channel mean (RGB).
        std: Per-channel standard deviation (RGB).

    Returns:
        Contiguous ``float32 (3, L, H, W)`` tensor.
    """
    _check_frames(frames)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values, got {len(mean)} and {len(std)}")
    # The official order of float32 operations (x / 255, - mean, / std), each one vectorised pass over the clip in
    # the (3, L, H, W) layout: IEEE division and subtraction give the same bits at every element.
    # torch takes no negative strides: a flipped view (the horizontal flip) is normalised unflipped and the float
    # result flipped back, which is cheaper than copying the uint8 view
    if frames.strides[3] < 0:
        frames = np.ascontiguousarray(frames)
    flipped = [axis for axis in range(3) if frames.strides[axis] < 0]
    if flipped:
        frames = np.flip(frames, axis=flipped)
    clip = torch.from_numpy(frames).permute(3, 0, 1, 2)
    out = torch.empty(clip.shape, dtype=torch.float32)
    out.copy_(clip)
    mean_t, std_t = _channel_constants(tuple(float(v) for v in mean), tuple(float(v) for v in std))
    out = out.div_(255).sub_(mean_t).div_(std_t)
    return out.flip([axis + 1 for axis in flipped]) if flipped else out


@functools.lru_cache(maxsize=8)
def _channel_constants(mean: tuple[float, float, float], std: tuple[float, float, float]) -> tuple[Tensor, Tensor]:
    """``mean`` and ``std`` as float32 ``(3, 1, 1, 1)`` tensors."""
    return (torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1),
            torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1))


@dataclass(frozen=True, order=True)
class TestView:
    """One test view of a clip.

    Attributes:
        segment: Temporal view number (the official ``chunk_nb``).
        crop: Spatial view number (the official ``split_nb``).
    """

    __test__ = False  # not a pytest test class despite the name

    segment: int
    crop: int


class TestViews:
    """The test views of a clip: ``num_segments`` temporal x ``num_crops`` spatial views.

    Spatial crops (official rule): the crop has side ``size`` (the short side) and moves along the long side
    with step ``(max(H, W) - size) / (num_crops - 1)``; its start is ``int(crop * step)``. For square frames the
    step is 0 and every spatial view equals the whole frame, so by default only crop 0 is kept
    (``official_duplicate_crops=True`` keeps all ``num_crops``, like the official dataset). ``num_segments == 1``
    or ``num_crops == 1`` give start 0 instead of the official ``ZeroDivisionError``.

    Args:
        num_segments: Temporal views per clip (``test_num_segment``).
        num_crops: Spatial views per clip (``test_num_crop``).
        official_duplicate_crops: Keep the identical spatial views of square frames.
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, num_segments: int = 2, num_crops: int = 2, *, official_duplicate_crops: bool = False) -> None:
        for name, value in (("num_segments", num_segments), ("num_crops", num_crops)):
            check_int(value, name)
        self.num_segments = num_segments
        self.num_crops = num_crops
        self.official_duplicate_crops = official_duplicate_crops

    def __repr__(self) -> str:
        return (
            f"TestViews(num_segments={self.num_segments}, num_crops={self.num_crops}, "
            f"official_duplicate_crops={self.official_duplicate_crops})"
        )

    def num_spatial_views(self, *, square_frames: bool = True) -> int:
        """Number of spatial views that are kept.

        Args:
            square_frames: Whether the (resized) frames are square.

        Returns:
            ``num_crops``, or 1 for square frames unless ``official_duplicate_crops``.
        """
        if square_frames and not self.official_duplicate_crops:
            return 1
        return self.num_crops

    def views(self, *, square_frames: bool = True) -> list[TestView]:
        """All kept views, segment-major (the official item order: ``chunk * crops * N + split * N + sample``).

        Args:
            square_frames: Whether the (resized) frames are square.

        Returns:
            List of :class:`TestView`.
        """
        crops = self.num_spatial_views(square_frames=square_frames)
        return [TestView(segment, crop) for segment in range(self.num_segments) for crop in range(crops)]

    def spatial_step(self, height: int, width: int, size: int) -> float:
        """Official spatial step ``(max(H, W) - size) / (num_crops - 1)`` (0 when ``num_crops == 1``).

        Args:
            height: Frame height.
            width: Frame width.
            size: Crop side (the short side after resizing).

        Returns:
            The step in pixels (float).
        """
        if self.num_crops == 1:
            return 0.0
        return (max(height, width) - size) / (self.num_crops - 1)

    def spatial_start(self, crop: int, height: int, width: int, size: int) -> int:
        """Start of spatial view ``crop`` along the long side, ``int(crop * step)``.

        Args:
            crop: Spatial view number.
            height: Frame height.
            width: Frame width.
            size: Crop side.

        Returns:
            The start in pixels.
        """
        if not 0 <= crop < self.num_crops:
            raise ValueError(f"crop must be in [0, {self.num_crops}), got {crop}")
        return int(crop * self.spatial_step(height, width, size))

    def crop_frames(self, frames: np.ndarray, crop: int, size: int) -> np.ndarray:
        """Cut spatial view ``crop`` from a clip: ``size`` pixels along the long side (rows when ``H >= W``).

        Args:
            frames: ``(L, H, W, C)`` clip with ``min(H, W) == size`` (or a square ``size x size`` clip).
            crop: Spatial view number.
            size: Crop side.

        Returns:
            ``(L, ...)`` view of ``frames``; the whole clip for square ``size x size`` frames.
        """
        height, width = frames.shape[1:3]
        start = self.spatial_start(crop, height, width, size)
        if height >= width:
            return frames[:, start : start + size]
        return frames[:, :, start : start + size]


@dataclass(frozen=True)
class ViewPrediction:
    """The model output for one test view.

    Attributes:
        video_id: Identifier of the video (e.g. its annotation path).
        segment: Temporal view number.
        crop: Spatial view number.
        output: ``(K,)`` logits (classification) or raw outputs (regression).
        label: Ground truth (class index, float or tuple of floats), if known.
    """

    video_id: str
    segment: int
    crop: int
    output: np.ndarray
    label: Any = None


@dataclass
class VideoPrediction:
    """Video-level prediction after aggregation.

    Attributes:
        video_id: Identifier of the video.
        output: ``(K,)`` float64: mean softmax probabilities (classification) or mean raw outputs (regression).
        label: Ground truth of the first view seen.
        views: Sorted ``(segment, crop)`` keys that were averaged.
    """

    video_id: str
    output: np.ndarray
    label: Any = None
    views: list[tuple[int, int]] = field(default_factory=list)

    @property
    def predicted_class(self) -> int:
        """``argmax`` of :attr:`output` (classification)."""
        return int(np.argmax(self.output))


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis in float64."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _as_view_prediction(record: ViewPrediction | Mapping[str, Any]) -> ViewPrediction:
    """Accept a :class:`ViewPrediction` or a mapping with the same keys."""
    if isinstance(record, ViewPrediction):
        return record
    try:
        return ViewPrediction(
            video_id=str(record["video_id"]),
            segment=int(record["segment"]),
            crop=int(record["crop"]),
            output=record["output"],
            label=record.get("label"),
        )
    except KeyError as exc:
        raise KeyError(f"a view record needs 'video_id', 'segment', 'crop' and 'output'; missing {exc}") from exc


def aggregate_view_predictions(
    records: Iterable[ViewPrediction | Mapping[str, Any]],
    task: Literal["classification", "regression"] = "classification",
) -> dict[str, VideoPrediction]:
    """Average test-view outputs per video.

    Views are keyed by ``(video_id, segment, crop)``; a repeated key (e.g. the padding duplicates of a
    distributed sampler) is ignored after its first occurrence.

    Args:
        records: :class:`ViewPrediction` objects or mappings with keys ``video_id``, ``segment``, ``crop``,
            ``output`` (``(K,)`` array or tensor) and optionally ``label``.
        task: ``"classification"``: mean of per-view softmax probabilities; ``"regression"``: mean of the raw
            outputs.

    Returns:
        ``{video_id: VideoPrediction}`` in first-seen order; ``output`` is ``(K,)`` float64.

    Raises:
        ValueError: On an unknown task or outputs of different sizes for one video.
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    per_video: dict[str, dict[tuple[int, int], np.ndarray]] = {}
    labels: dict[str, Any] = {}
    duplicates = 0
    for raw in records:
        record = _as_view_prediction(raw)
        output = record.output
        if isinstance(output, Tensor):
            output = output.detach().to("cpu", torch.float64).numpy()
        values = np.asarray(output, dtype=np.float64).reshape(-1)
        views = per_video.setdefault(record.video_id, {})
        key = (record.segment, record.crop)
        if key in views:
            duplicates += 1
            continue
        if views:
            size = next(iter(views.values())).size
            if values.size != size:
                raise ValueError(f"video {record.video_id!r}: view {key} has {values.size} outputs, others have {size}")
        views[key] = _softmax(values) if task == "classification" else values
        labels.setdefault(record.video_id, record.label)
    if duplicates:
        logger.debug("aggregate_view_predictions: ignored %d duplicate view records", duplicates)
    result: dict[str, VideoPrediction] = {}
    for video_id, views in per_video.items():
        keys = sorted(views)
        stacked = np.stack([views[key] for key in keys])
        result[video_id] = VideoPrediction(video_id, stacked.mean(axis=0), labels.get(video_id), keys)
    return result
