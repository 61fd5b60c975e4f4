"""The masked-autoencoding pre-training dataset of MAE-DFER, SVFAP and HiCMAE (VoxCeleb2 recipes).

Details: ``docs/modules.md``, section ``maedfer/data/pretrain_datasets.py``.
"""

from __future__ import annotations

import errno
import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
import torch
from torch import Tensor

from ..audio import FbankConfig, random_gain, wav_to_fbank
from ..masking import MaskGenerator, build_mask_generator
from .annotations import AnnotationRow, read_annotations
from .readers import ClipReadError, VideoFileReader, open_clip, read_audio, resolve_image_decoder
from .transforms import to_normalized_tensor
from .fast_pipeline import check_pipeline, resize_clip
from .video_datasets import BAD_SAMPLE_ERRORS, SkipCounter, SkippedSample, split_epoch_index
from ..utils import check_int

__all__ = [
    "OFFICIAL_SCALES",
    "PRETRAIN_PRESETS",
    "VOXCELEB2_FIXED_CROP_160",
    "VOXCELEB2_FIXED_CROP_192",
    "CropBox",
    "GroupMultiScaleCrop",
    "MaskSpec",
    "PretrainAudioConfig",
    "PretrainAudioWindow",
    "PretrainClipDataset",
    "PretrainDraws",
    "apply_fixed_crop",
    "collate_pretrain",
    "draw_pretrain_offset",
    "pretrain_audio_window",
    "pretrain_frame_indices",
    "pretrain_offset_range",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Rows 0:160 and columns 32:192 of a 224 x 224 VoxCeleb2 frame (the official crop for 160-pixel models).
VOXCELEB2_FIXED_CROP_160: tuple[tuple[int, int], tuple[int, int]] = ((0, 160), (32, 192))
#: Rows 0:192 and columns 16:208 (the official crop for 192-pixel models).
VOXCELEB2_FIXED_CROP_192: tuple[tuple[int, int], tuple[int, int]] = ((0, 192), (16, 208))
#: The official multi-scale crop scales.
OFFICIAL_SCALES: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
#: Audio segments of at most this many samples are rejected (the official loader raises there).
MIN_AUDIO_SAMPLES: int = 1024


# --------------------------------------------------------------------------------------------------
# Temporal sampling
# --------------------------------------------------------------------------------------------------


def pretrain_offset_range(duration: int, num_frames: int = 16, sampling_rate: int = 4) -> int:
    """Number of possible temporal offsets, the official ``average_duration = duration - L * sr + 1``.

    Args:
        duration: Number of frames of the video.
        num_frames: Frames per clip ``L``.
        sampling_rate: Stride ``sr``.

    Returns:
        ``duration - L * sr + 1``; a value ``<= 0`` means the offset is always 0.
    """
    return int(duration) - check_int(num_frames, "num_frames") * check_int(
        sampling_rate, "sampling_rate"
    ) + 1


def draw_pretrain_offset(
    duration: int, rng: np.random.Generator, num_frames: int = 16, sampling_rate: int = 4
) -> int:
    """Draw the temporal offset: uniform in ``[0, duration - L * sr]`` when that range exists, else 0.

    Args:
        duration: Number of frames of the video.
        rng: NumPy generator (one integer draw when the range is not empty).
        num_frames: Frames per clip ``L``.
        sampling_rate: Stride ``sr``.

    Returns:
        The offset (first frame index).
    """
    count = pretrain_offset_range(duration, num_frames, sampling_rate)
    return int(rng.integers(0, count)) if count > 0 else 0


def pretrain_frame_indices(duration: int, offset: int, num_frames: int = 16, sampling_rate: int = 4) -> list[int]:
    """Frame indices of a pre-training clip (official rule; the tail repeats the last reachable frame).

    Starting with ``o = offset + 1``, ``num_frames`` times: emit ``o - 1``, then ``o += sampling_rate`` if
    ``o + sampling_rate < duration``.

    Args:
        duration: Number of frames of the video (must be positive).
        offset: First frame index (``0 <= offset < duration``).
        num_frames: Frames per clip ``L``.
        sampling_rate: Stride ``sr``.

    Returns:
        ``L`` frame indices.

    Raises:
        ValueError: If ``duration`` is not positive or ``offset`` is outside ``[0, duration)``.
    """
    duration = check_int(duration, "duration")
    num_frames = check_int(num_frames, "num_frames")
    sampling_rate = check_int(sampling_rate, "sampling_rate")
    if not 0 <= int(offset) < duration:
        raise ValueError(f"offset must be in [0, {duration}), got {offset}")
    position = int(offset) + 1
    indices = []
    for _ in range(num_frames):
        indices.append(position - 1)
        if position + sampling_rate < duration:
            position += sampling_rate
    return indices


# --------------------------------------------------------------------------------------------------
# Spatial crops
# --------------------------------------------------------------------------------------------------


def apply_fixed_crop(frames: np.ndarray, fixed_crop: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """Cut every frame to ``rows r0:r1`` and ``columns c0:c1``.

    Args:
        frames: ``(L, H, W, 3)`` uint8.
        fixed_crop: ``((r0, r1), (c0, c1))``.

    Returns:
        ``(L, r1 - r0, c1 - c0, 3)`` view.

    Raises:
        ValueError: If the frames are too small for the crop.
    """
    (r0, r1), (c0, c1) = fixed_crop
    height, width = frames.shape[1:3]
    if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
        raise ValueError(
            f"fixed crop rows {r0}:{r1}, columns {c0}:{c1} does not fit frames of {height}x{width} "
            f"(VoxCeleb2 crops expect 224x224 frames)"
        )
    return frames[:, r0:r1, c0:c1]


@dataclass(frozen=True)
class CropBox:
    """A crop of :class:`GroupMultiScaleCrop`: size ``(crop_w, crop_h)`` at ``(offset_w, offset_h)``.

    The PIL crop box is ``(offset_w, offset_h, offset_w + crop_w, offset_h + crop_h)``.
    """

    crop_w: int
    crop_h: int
    offset_w: int
    offset_h: int


class GroupMultiScaleCrop:
    """TSN-style multi-scale crop of a clip (one crop for all frames) followed by a PIL bilinear resize.

    Rule, for frames of ``image_w x image_h``:

    * base = ``min(image_w, image_h)``; ``crop_sizes = [int(base * s) for s in scales]``;
    * heights (widths) within 3 pixels (``|x - size| < 3``) of the output height (width) snap to it;
    * candidate ``(w, h)`` pairs: every height index ``i`` (outer loop) and width index ``j`` (inner loop)
      with ``|i - j| <= max_distort``;
    * ``fix_crop``: the offset is one of 5 (or, with ``more_fix_crop``, 13) grid positions with steps
      ``((image_w - w) // 4, (image_h - h) // 4)``: the 4 corners, the centre, then the 4 edge midpoints
      and the 4 quarter points; otherwise it is uniform;
    * crop, then PIL ``BILINEAR`` resize to ``(out_w, out_h)``.

    Args:
        input_size: Output size ``S`` or ``(out_w, out_h)``.
        scales: Scale factors (official ``(1, .875, .75, .66)``).
        max_distort: Maximum difference of the width and height scale indices.
        fix_crop: Use the fixed grid of offsets (official True).
        more_fix_crop: Use 13 instead of 5 grid offsets (official True).
    """

    def __init__(
        self,
        input_size: int | tuple[int, int] = 160,
        scales: Sequence[float] = OFFICIAL_SCALES,
        max_distort: int = 1,
        fix_crop: bool = True,
        more_fix_crop: bool = True,
    ) -> None:
        if isinstance(input_size, int):
            self.out_w, self.out_h = input_size, input_size
        else:
            self.out_w, self.out_h = int(input_size[0]), int(input_size[1])
        if self.out_w <= 0 or self.out_h <= 0:
            raise ValueError(f"input_size must be positive, got {input_size!r}")
        if not scales or any(not 0 < float(s) <= 1 for s in scales):
            raise ValueError(f"scales must be non-empty values in (0, 1], got {scales!r}")
        self.scales = tuple(float(s) for s in scales)
        self.max_distort = int(max_distort)
        self.fix_crop = bool(fix_crop)
        self.more_fix_crop = bool(more_fix_crop)

    def crop_sizes(self, image_w: int, image_h: int) -> list[int]:
        """Crop side lengths before snapping: ``int(min(image_w, image_h) * s)`` per scale."""
        base = min(image_w, image_h)
        return [int(base * s) for s in self.scales]

    def candidate_pairs(self, image_w: int, image_h: int) -> list[tuple[int, int]]:
        """The ``(crop_w, crop_h)`` candidates, in the official order (height index outer)."""
        sizes = self.crop_sizes(image_w, image_h)
        heights = [self.out_h if abs(x - self.out_h) < 3 else x for x in sizes]
        widths = [self.out_w if abs(x - self.out_w) < 3 else x for x in sizes]
        return [
            (w, h)
            for i, h in enumerate(heights)
            for j, w in enumerate(widths)
            if abs(i - j) <= self.max_distort
        ]

    def candidate_offsets(self, image_w: int, image_h: int, crop_w: int, crop_h: int) -> list[tuple[int, int]]:
        """The fixed ``(offset_w, offset_h)`` grid positions, in the official order."""
        step_w = (image_w - crop_w) // 4
        step_h = (image_h - crop_h) // 4
        grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2)]
        if self.more_fix_crop:
            grid += [(0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
        return [(a * step_w, b * step_h) for a, b in grid]

    def draw(self, image_w: int, image_h: int, rng: np.random.Generator) -> CropBox:
        """Draw a crop: a uniform pair, then a uniform offset (fixed grid or free).

        Args:
            image_w: Frame width.
            image_h: Frame height.
            rng: NumPy generator.

        Returns:
            The crop.
        """
        pairs = self.candidate_pairs(image_w, image_h)
        crop_w, crop_h = pairs[int(rng.integers(0, len(pairs)))]
        if self.fix_crop:
            offsets = self.candidate_offsets(image_w, image_h, crop_w, crop_h)
            offset_w, offset_h = offsets[int(rng.integers(0, len(offsets)))]
        else:
            offset_w = int(rng.integers(0, image_w - crop_w + 1))
            offset_h = int(rng.integers(0, image_h - crop_h + 1))
        return CropBox(crop_w, crop_h, offset_w, offset_h)

    def apply(self, frames: np.ndarray, box: CropBox, *, fast: bool = False) -> np.ndarray:
        """Crop every frame and resize it with PIL bilinear to ``(out_h, out_w)``.

        Args:
            frames: ``(L, H, W, 3)`` uint8.
            box: The crop.
            fast: Resize the whole clip at once with :func:`maedfer.data.fast_pipeline.resize_clip` (torch's
                antialiased bilinear kernel, at most 1 level from PIL) instead of PIL frame by frame.

        Returns:
            ``(L, out_h, out_w, 3)`` uint8.

        Raises:
            ValueError: If the box does not fit the frames.
        """
        from PIL import Image

        height, width = frames.shape[1:3]
        right, bottom = box.offset_w + box.crop_w, box.offset_h + box.crop_h
        if box.offset_w < 0 or box.offset_h < 0 or right > width or bottom > height:
            raise ValueError(f"crop {box} does not fit frames of {height}x{width}")
        if fast:
            return resize_clip(frames[:, box.offset_h : bottom, box.offset_w : right], self.out_h, self.out_w)
        out = np.empty((frames.shape[0], self.out_h, self.out_w, 3), dtype=np.uint8)
        for i, frame in enumerate(frames):
            img = Image.fromarray(np.ascontiguousarray(frame)).crop((box.offset_w, box.offset_h, right, bottom))
            out[i] = np.asarray(img.resize((self.out_w, self.out_h), Image.Resampling.BILINEAR))
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_size=({self.out_w}, {self.out_h}), scales={self.scales}, "
            f"max_distort={self.max_distort}, fix_crop={self.fix_crop}, more_fix_crop={self.more_fix_crop})"
        )


# --------------------------------------------------------------------------------------------------
# Masks and audio
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskSpec:
    """Video mask settings; the token grid follows from the clip geometry.

    Attributes:
        kind: ``"tube"`` (SVFAP, HiCMAE), ``"part_window"`` (MAE-DFER) or ``"random"``.
        ratio: Masking ratio (official 0.9).
        window: ``(h_w, w_w)`` window in token cells for ``part_window`` (MAE-DFER: ``(5, 10)``).
        tubelet_size: Frames per token (2).
        patch_size: Pixels per token side (16).
    """

    kind: Literal["tube", "part_window", "random"] = "tube"
    ratio: float = 0.9
    window: tuple[int, int] | None = None
    tubelet_size: int = 2
    patch_size: int = 16

    def grid(self, num_frames: int, input_size: int) -> tuple[int, int, int]:
        """Token grid ``(L / tubelet, S / patch, S / patch)``.

        Raises:
            ValueError: If the clip does not divide into tokens.
        """
        if num_frames % self.tubelet_size or input_size % self.patch_size:
            raise ValueError(
                f"clip of {num_frames} frames x {input_size} px does not divide into tokens of "
                f"{self.tubelet_size} frames x {self.patch_size} px"
            )
        side = input_size // self.patch_size
        return (num_frames // self.tubelet_size, side, side)

    def build(self, num_frames: int, input_size: int) -> MaskGenerator:
        """The mask generator for a clip geometry."""
        return build_mask_generator(self.kind, self.grid(num_frames, input_size), self.ratio, self.window)


@dataclass(frozen=True)
class PretrainAudioConfig:
    """HiCMAE pre-training audio settings.

    Attributes:
        sample_rate: Audio rate in Hz (files must be, or are resampled to, this rate).
        fbank: Filter-bank settings (256 frames x 128 bins, AudioSet normalisation).
        random_gain: Apply the official ``roll_mag_aug`` gain ``Beta(10, 10) + 0.5`` (True in the script).
        mask_ratio: Audio masking ratio (0.8).
        mask_grid: Audio token grid ``(time, frequency)`` (``(16, 8)`` for 256 x 128 with 16 x 16 patches).
        path_replacements: Substring replacements that turn a video path into its audio path when the row
            has no ``audio_path`` (VoxCeleb2 layout: ``video/file~/dev/mp4 -> audio/file~/dev/aac`` and
            ``.mp4 -> .wav``).
        frame_rate: Frame rate used for frame times when the clip reader has none (frame folders).
    """

    sample_rate: int = 16000
    fbank: FbankConfig = field(default_factory=FbankConfig)
    random_gain: bool = True
    mask_ratio: float = 0.8
    mask_grid: tuple[int, int] = (16, 8)
    path_replacements: tuple[tuple[str, str], ...] = (
        ("video/file~/dev/mp4", "audio/file~/dev/aac"),
        (".mp4", ".wav"),
    )
    frame_rate: float | None = None

    def audio_path(self, video_path: str) -> str:
        """Derive the audio path of a video by the substring replacements.

        Raises:
            ValueError: If the replacements leave the path unchanged.
        """
        path = video_path
        for old, new in self.path_replacements:
            path = path.replace(old, new)
        if path == video_path:
            raise ValueError(
                f"cannot derive an audio path from {video_path!r} with replacements {self.path_replacements}; "
                f"give the audio path in the annotation row"
            )
        return path


#: Keyword arguments of :class:`PretrainClipDataset` for the three official VoxCeleb2 recipes (16 frames at
#: stride 4, 160 pixels): MAE-DFER part-window mask with window (5, 10), SVFAP tube mask, HiCMAE tube mask plus
#: audio. Use as ``PretrainClipDataset(rows, **PRETRAIN_PRESETS["mae_dfer"])``.
PRETRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "mae_dfer": {"mask": MaskSpec("part_window", 0.9, (5, 10)), "fixed_crop": VOXCELEB2_FIXED_CROP_160},
    "svfap": {"mask": MaskSpec("tube", 0.9), "fixed_crop": VOXCELEB2_FIXED_CROP_160},
    "hicmae": {
        "mask": MaskSpec("tube", 0.9),
        "fixed_crop": VOXCELEB2_FIXED_CROP_160,
        "audio": PretrainAudioConfig(),
    },
}


@dataclass(frozen=True)
class PretrainAudioWindow:
    """The audio segment of a pre-training clip.

    Attributes:
        start_frame: ``ids[0]``.
        end_frame: ``min(ids[-1] + sr, duration - 1)``.
        start_time: Start time of ``start_frame`` (float32 seconds).
        end_time: End time of ``end_frame`` (float32 seconds).
        offset: First sample, ``int(start_time * rate)`` in float32.
        num_samples: ``int((end_time - start_time) * rate)`` in float32.
    """

    start_frame: int
    end_frame: int
    start_time: np.float32
    end_time: np.float32
    offset: int
    num_samples: int


def pretrain_audio_window(
    frame_indices: Sequence[int],
    duration: int,
    sampling_rate: int,
    frame_time: Callable[[int], tuple[float, float]],
    sample_rate: int = 16000,
) -> PretrainAudioWindow:
    """Audio segment of a pre-training clip from float32 frame times (official HiCMAE rule).

    Args:
        frame_indices: The clip's frame ids.
        duration: Number of frames of the video.
        sampling_rate: Frame stride ``sr``.
        frame_time: ``i -> (start_s, end_s)`` of frame ``i`` (e.g. :meth:`VideoFileReader.frame_time`);
            the values are rounded to float32.
        sample_rate: Audio rate in Hz.

    Returns:
        The window; all arithmetic on times is float32.
    """
    start_frame = int(frame_indices[0])
    end_frame = min(int(frame_indices[-1]) + int(sampling_rate), int(duration) - 1)
    start_time = np.float32(frame_time(start_frame)[0])
    end_time = np.float32(frame_time(end_frame)[1])
    rate = np.float32(sample_rate)
    offset = int(start_time * rate)
    num_samples = int((end_time - start_time) * rate)
    return PretrainAudioWindow(start_frame, end_frame, start_time, end_time, offset, num_samples)


# --------------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PretrainDraws:
    """The random choices of one clip, to replay an item (e.g. official fixture records).

    Attributes:
        offset: Temporal offset (first frame index).
        crop: Multi-scale crop.
        gain: Audio gain (``None``: draw it if the audio config asks for a random gain, else 1).
        mask: ``(N,)`` bool video mask (``None``: draw it).
        mask_audio: ``(N_a,)`` bool audio mask (``None``: draw it).
    """

    offset: int
    crop: CropBox
    gain: float | None = None
    mask: Tensor | None = None
    mask_audio: Tensor | None = None


class PretrainClipDataset(torch.utils.data.Dataset):
    """Masked-autoencoding pre-training clips (MAE-DFER / SVFAP / HiCMAE recipe, see the module doc).

    Args:
        rows: Annotation rows (``kind="pretrain"``) or plain paths of videos (or frame folders).
        num_frames: Frames per clip ``L`` (16).
        sampling_rate: Frame stride ``sr`` (4).
        input_size: Output side ``S`` (160).
        mask: Video mask settings (required: MAE-DFER and SVFAP/HiCMAE differ; see :data:`PRETRAIN_PRESETS`).
        audio: HiCMAE audio settings, or ``None`` for video-only pre-training.
        fixed_crop: ``((r0, r1), (c0, c1))`` cut applied to every decoded frame first, e.g.
            :data:`VOXCELEB2_FIXED_CROP_160`; ``None`` keeps the whole frame.
        num_samples: Clips drawn per decoded video (each with its own draws and mask).
        backend: Video backend of :func:`maedfer.data.readers.open_clip`.
        scales: Multi-scale crop scales.
        seed: Base seed; item ``i`` of epoch ``e`` uses ``np.random.default_rng((seed, e, i))``.
        frame_ext: Frame extension for frame-folder clips.
        max_skip_fraction: Largest tolerated fraction of unreadable items (process-local counter).
        skip_bad_samples: Return a skip record for unreadable items; ``False`` re-raises the error.
        pipeline: ``"official"`` (PIL crop resize, decord first for ``backend="auto"``) or ``"fast"`` (clip-wide
            torch resize; ``backend="auto"`` decodes with PyAV, skipping the non-reference frames it does not
            need, which gives the same frames).
        image_decoder: JPEG decoder of frame-folder clips (``"auto"``: torchvision or OpenCV under the fast
            pipeline when installed, PIL under the official one; see
            :func:`~maedfer.data.readers.resolve_image_decoder`).

    Items are dicts with ``video`` ``(3, L, S, S)`` float32, ``mask`` ``(N,)`` bool (True = masked),
    ``index`` (int) and, with audio, ``audio`` ``(1, 256, 128)`` float32 and ``mask_audio`` ``(N_a,)`` bool.
    With ``num_samples > 1`` every tensor has a leading axis of that size. A sample that cannot be read is
    returned as a :class:`~maedfer.data.video_datasets.SkippedSample` (logged and counted); use
    :func:`collate_pretrain` as the data loader's ``collate_fn``.
    """

    def __init__(
        self,
        rows: Sequence[AnnotationRow | str | os.PathLike[str]],
        *,
        num_frames: int = 16,
        sampling_rate: int = 4,
        input_size: int = 160,
        mask: MaskSpec,
        audio: PretrainAudioConfig | None = None,
        fixed_crop: tuple[tuple[int, int], tuple[int, int]] | None = None,
        num_samples: int = 1,
        backend: Literal["auto", "decord", "pyav"] = "auto",
        scales: Sequence[float] = OFFICIAL_SCALES,
        seed: int = 0,
        frame_ext: str = "jpg",
        max_skip_fraction: float = 0.01,
        skip_bad_samples: bool = True,
        pipeline: Literal["fast", "official"] = "official",
        image_decoder: Literal["auto", "pil", "torchvision", "opencv"] = "auto",
    ) -> None:
        super().__init__()
        self.pipeline = check_pipeline(pipeline)
        self.rows: list[AnnotationRow] = [
            row if isinstance(row, AnnotationRow) else AnnotationRow(path=os.fspath(row), label=None) for row in rows
        ]
        self.num_frames = check_int(num_frames, "num_frames")
        self.sampling_rate = check_int(sampling_rate, "sampling_rate")
        self.input_size = check_int(input_size, "input_size")
        self.num_samples = check_int(num_samples, "num_samples")
        self.mask_spec = mask
        self.mask_generator = mask.build(self.num_frames, self.input_size)
        self.audio = audio
        self.audio_mask_generator = (
            build_mask_generator("random", audio.mask_grid, audio.mask_ratio) if audio is not None else None
        )
        if fixed_crop is not None:
            (r0, r1), (c0, c1) = fixed_crop
            if not (0 <= r0 < r1 and 0 <= c0 < c1):
                raise ValueError(
                    f"fixed_crop must be ((r0, r1), (c0, c1)) with 0 <= r0 < r1 and 0 <= c0 < c1, got {fixed_crop}"
                )
        self.fixed_crop = fixed_crop
        self.crop = GroupMultiScaleCrop(self.input_size, scales)
        if backend not in ("auto", "decord", "pyav"):
            raise ValueError(f"backend must be 'auto', 'decord' or 'pyav', got {backend!r}")
        check_int(seed, "seed", 0)
        self.backend = backend
        self.read_backend = "pyav" if backend == "auto" and self.pipeline == "fast" else backend
        self.image_decoder = resolve_image_decoder(image_decoder, self.pipeline)
        self.seed = seed
        self.frame_ext = frame_ext.lstrip(".")
        self.epoch = 0
        self.skip_bad_samples = bool(skip_bad_samples)
        self.skip_counter = SkipCounter(len(self.rows), max_skip_fraction, name="pre-training set")
        if audio is not None:
            for row in self.rows:
                if not row.audio_path:
                    try:
                        audio.audio_path(row.path)
                    except ValueError as exc:
                        where = f"line {row.line}: " if row.line else ""
                        raise ValueError(f"{where}{exc}") from None

    @classmethod
    def from_annotation_file(
        cls, file: PathLike, *, path_map: Mapping[str, str] | None = None, **kwargs: Any
    ) -> PretrainClipDataset:
        """Build from an official pre-training list (``<video> 0`` per line).

        Args:
            file: The list file.
            path_map: Path prefix rewrites (see :func:`maedfer.data.annotations.remap_path`).
            **kwargs: Constructor arguments.

        Returns:
            The dataset.
        """
        return cls(read_annotations(file, kind="pretrain", path_map=path_map), **kwargs)

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch used in the per-item seeds."""
        self.epoch = int(epoch)

    @property
    def skipped(self) -> int:
        """Number of distinct items skipped in this process."""
        return self.skip_counter.count

    def item_rng(self, index: int) -> np.random.Generator:
        """The NumPy generator of item ``index`` in the current epoch: ``default_rng((seed, epoch, index))``."""
        return np.random.default_rng((self.seed, self.epoch, int(index)))

    def audio_path(self, row: AnnotationRow) -> str:
        """Audio file of a row: its ``audio_path`` or the path derived from the video path."""
        if self.audio is None:
            raise ValueError("this dataset has no audio configuration")
        return row.audio_path if row.audio_path else self.audio.audio_path(row.path)

    def _frame_time(self, reader: Any, index: int) -> tuple[float, float]:
        """Frame time from the reader, or from ``audio.frame_rate`` for readers without time stamps."""
        if hasattr(reader, "frame_time"):
            return reader.frame_time(index)
        rate = self.audio.frame_rate if self.audio is not None else None
        if not rate:
            raise ValueError(
                f"{reader!r} has no frame times; set PretrainAudioConfig.frame_rate to pre-train with audio "
                f"on frame folders"
            )
        return np.float32(index / rate), np.float32((index + 1) / rate)

    def load(
        self,
        index: int,
        draws: Sequence[PretrainDraws] | None = None,
        rng: np.random.Generator | None = None,
        *,
        return_frames: bool = False,
    ) -> dict[str, Any]:
        """Build item ``index``, optionally replaying given draws. Errors propagate (no skipping).

        Draw order with ``draws=None``: a torch seed for the masks, the ``num_samples`` temporal offsets,
        then (after decoding) the ``num_samples`` crops, then per sample the audio gain.

        Args:
            index: Row index.
            draws: One :class:`PretrainDraws` per sample (``num_samples`` of them), or ``None`` to draw.
            rng: NumPy generator (default: :meth:`item_rng`).
            return_frames: Also return ``frames`` (the uint8 ``(L, S, S, 3)`` crops; a list per sample when
                ``num_samples > 1``), ``frame_indices``, ``draws`` and ``audio_windows``.

        Returns:
            The item dict (see the class doc).

        Raises:
            FileNotFoundError, ClipReadError: The video or audio cannot be read, the frames do not fit the
                fixed crop, or the audio segment is too short.
            ValueError: Malformed draws.
        """
        rng = rng if rng is not None else self.item_rng(index)
        torch_gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        row = self.rows[index]
        if draws is not None and len(draws) != self.num_samples:
            raise ValueError(f"expected {self.num_samples} draws (num_samples), got {len(draws)}")
        reader = open_clip(row.path, ext=self.frame_ext, backend=self.read_backend, image_decoder=self.image_decoder)
        try:
            duration = len(reader)
            if draws is None:
                offsets = [
                    draw_pretrain_offset(duration, rng, self.num_frames, self.sampling_rate)
                    for _ in range(self.num_samples)
                ]
            else:
                offsets = [int(d.offset) for d in draws]
            sample_ids = [pretrain_frame_indices(duration, o, self.num_frames, self.sampling_rate) for o in offsets]
            # One decode for all samples: the reader decodes each distinct frame once.
            frames_all = reader.read([i for ids in sample_ids for i in ids])
            if self.fixed_crop is not None:
                try:
                    frames_all = apply_fixed_crop(frames_all, self.fixed_crop)
                except ValueError as exc:
                    raise ClipReadError(row.path, str(exc)) from exc
            image_h, image_w = frames_all.shape[1:3]
            if draws is None:
                draws = [PretrainDraws(offset=o, crop=self.crop.draw(image_w, image_h, rng)) for o in offsets]

            videos, masks, audios, audio_masks, crops, windows = [], [], [], [], [], []
            for k, (ids, draw) in enumerate(zip(sample_ids, draws)):
                cropped = self.crop.apply(
                    frames_all[k * self.num_frames : (k + 1) * self.num_frames], draw.crop, fast=self.pipeline == "fast"
                )
                crops.append(cropped)
                videos.append(to_normalized_tensor(cropped))
                masks.append(self._mask(draw.mask, self.mask_generator, torch_gen, "mask"))
                if self.audio is not None:
                    assert self.audio_mask_generator is not None
                    fbank, window = self._audio(row, reader, ids, duration, draw, rng)
                    audios.append(fbank)
                    windows.append(window)
                    audio_masks.append(
                        self._mask(draw.mask_audio, self.audio_mask_generator, torch_gen, "mask_audio")
                    )
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()

        def pack(items: list[Tensor]) -> Tensor:
            return items[0] if self.num_samples == 1 else torch.stack(items)

        item: dict[str, Any] = {"video": pack(videos), "mask": pack(masks), "index": int(index)}
        if self.audio is not None:
            item["audio"] = pack(audios)
            item["mask_audio"] = pack(audio_masks)
        if return_frames:
            item["frames"] = crops[0] if self.num_samples == 1 else crops
            item["frame_indices"] = sample_ids[0] if self.num_samples == 1 else sample_ids
            item["draws"] = list(draws)
            item["audio_windows"] = windows
        return item

    @staticmethod
    def _mask(given: Tensor | None, generator: MaskGenerator, torch_gen: torch.Generator, name: str) -> Tensor:
        """Use a given mask (validated) or draw one."""
        if given is None:
            return generator(torch_gen)
        given = torch.as_tensor(given)
        if given.dtype != torch.bool or given.shape != (generator.num_tokens,):
            raise ValueError(
                f"{name} must be a ({generator.num_tokens},) bool tensor, got {tuple(given.shape)} {given.dtype}"
            )
        return given

    def _audio(
        self,
        row: AnnotationRow,
        reader: Any,
        ids: list[int],
        duration: int,
        draw: PretrainDraws,
        rng: np.random.Generator,
    ) -> tuple[Tensor, PretrainAudioWindow]:
        """Read and convert the audio segment of one clip; returns ``((1, T, M) fbank, window)``."""
        assert self.audio is not None
        window = pretrain_audio_window(
            ids, duration, self.sampling_rate, lambda i: self._frame_time(reader, i), self.audio.sample_rate
        )
        path = self.audio_path(row)
        if not Path(path).is_file():
            raise FileNotFoundError(errno.ENOENT, "audio file not found", path)
        waveform = read_audio(
            path, sample_rate=self.audio.sample_rate, offset=window.offset, num_samples=window.num_samples
        )
        if waveform.shape[1] <= MIN_AUDIO_SAMPLES:
            raise ClipReadError(
                path,
                f"audio segment of frames {window.start_frame}..{window.end_frame} (samples {window.offset}+"
                f"{window.num_samples}) has only {waveform.shape[1]} samples (<= {MIN_AUDIO_SAMPLES})",
            )
        if draw.gain is not None:
            gain = float(draw.gain)
        else:
            gain = random_gain(rng) if self.audio.random_gain else 1.0
        return wav_to_fbank(waveform, self.audio.fbank, gain=gain), window

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any] | SkippedSample:
        """Item ``index`` with its per-(seed, epoch, index) draws; unreadable samples are skipped.

        ``index`` may be an ``(epoch, index)`` pair (sent by the samplers of persistent-worker loaders).

        Returns:
            The item dict, or a :class:`~maedfer.data.video_datasets.SkippedSample` naming the file.

        Raises:
            TooManySkippedSamples: If this process skipped more than ``max_skip_fraction`` of the items.
        """
        epoch, index = split_epoch_index(index, self.epoch)
        try:
            return self.load(index, rng=np.random.default_rng((self.seed, epoch, index)))
        except BAD_SAMPLE_ERRORS as error:
            if not self.skip_bad_samples:
                raise
            if isinstance(error, ClipReadError):
                path, reason = error.path, error.reason
            else:
                path = getattr(error, "filename", None) or self.rows[index].path
                reason = f"{type(error).__name__}: {error}"
            record = SkippedSample(index, str(path), str(reason))
            logger.warning("skipping pre-training item %d (%s): %s", index, record.path, record.reason)
            self.skip_counter.add(record)
            return record

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(rows={len(self)}, num_frames={self.num_frames}, "
            f"sampling_rate={self.sampling_rate}, "
            f"input_size={self.input_size}, mask={self.mask_spec}, audio={self.audio is not None}, "
            f"fixed_crop={self.fixed_crop}, num_samples={self.num_samples}, seed={self.seed})"
        )


def collate_pretrain(batch: Sequence[dict[str, Any] | SkippedSample]) -> dict[str, Any]:
    """``collate_fn`` of :class:`PretrainClipDataset`: drops skip records and flattens ``num_samples`` axes.

    Args:
        batch: Items of :class:`PretrainClipDataset` and :class:`~maedfer.data.video_datasets.SkippedSample`
            records.

    Returns:
        Dict with ``video`` ``(B, 3, L, S, S)``, ``mask`` ``(B, N)``, ``index`` ``(B,)`` (and ``audio``
        ``(B, 1, T, M)``, ``mask_audio`` ``(B, N_a)``), where ``B`` counts every clip of every kept item
        (items with ``num_samples > 1`` contribute that many consecutive rows, all with their index), plus
        ``"skipped"``: the skip records of this batch, as in
        :func:`maedfer.data.video_datasets.skip_bad_samples_collate` (iterate with
        :func:`~maedfer.data.video_datasets.filter_skipped_batches`). When every item was skipped the dict
        holds only ``"skipped"``.
    """
    valid = [item for item in batch if not isinstance(item, SkippedSample)]
    out: dict[str, Any] = {}
    if valid:
        multi = valid[0]["mask"].dim() == 2
        for key in valid[0]:
            if key == "index":
                counts = [item["mask"].shape[0] if multi else 1 for item in valid]
                out[key] = torch.tensor(
                    [item[key] for item, count in zip(valid, counts) for _ in range(count)], dtype=torch.long
                )
            elif isinstance(valid[0][key], Tensor):
                values = [item[key] for item in valid]
                out[key] = torch.cat(values) if multi else torch.stack(values)
            else:
                out[key] = [item[key] for item in valid]
    out["skipped"] = [item for item in batch if isinstance(item, SkippedSample)]
    return out
