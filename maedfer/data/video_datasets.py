"""Fine-tuning / evaluation datasets: video clips (MAE-DFER, SVFAP) and video + audio (HiCMAE).

Details: ``docs/modules.md``, section ``maedfer/data/video_datasets.py``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from ..audio import FbankConfig, num_fbank_frames, random_gain, wav_to_fbank
from .annotations import AnnotationRow, read_annotations
from .fast_pipeline import check_pipeline, resize_clip
from .readers import ClipReadError, FrameFolderReader, open_clip, read_audio, read_wav, resolve_image_decoder
from .sampling import (
    MIN_SEGMENT_SAMPLES,
    WHOLE_AUDIO_MAX_S,
    AudioSegment,
    AudioSegmentError,
    SamplingRule,
    WindowPlan,
    audio_segment,
    segment_temporal_start,
    stride_loaded_indices,
    view_audio_frame_range,
    window_audio_frame_range,
    window_plan,
)
from .transforms import (
    TestView,
    TestViews,
    center_crop,
    resize_frames_short_side,
    resize_frames_square,
    to_normalized_tensor,
)
from ..utils import check_int

__all__ = [
    "BAD_SAMPLE_ERRORS",
    "AudioConfig",
    "ClipPlan",
    "Mode",
    "SkipCounter",
    "SkippedSample",
    "TooManySkippedSamples",
    "TrainTransform",
    "VideoClipDataset",
    "filter_skipped_batches",
    "skip_bad_samples_collate",
    "split_epoch_index",
]

logger = logging.getLogger(__name__)

#: Dataset mode.
Mode = Literal["train", "validation", "test"]
#: Training augmentation hook: ``(frames uint8 (L, H, W, 3), rng) -> float32 (3, L, H', W')``.
TrainTransform = Callable[[np.ndarray, np.random.Generator], Tensor]

#: Errors that mark a sample as bad (skipped and counted) rather than a bug.
BAD_SAMPLE_ERRORS: tuple[type[BaseException], ...] = (ClipReadError, OSError, EOFError, AudioSegmentError)
#: File suffixes read with :func:`maedfer.data.readers.read_wav` (others go through ``read_audio``).
_WAV_SUFFIXES = frozenset({".wav", ".flac"})


@dataclass(frozen=True)
class AudioConfig:
    """Audio settings of the audio-visual (HiCMAE) datasets.

    Attributes:
        fbank: Filter-bank settings (defaults: 128 mel bins, 256 frames, AudioSet normalisation, no SpecAugment;
            SpecAugment, if configured, is applied in training mode only).
        random_gain: Multiply the waveform by the official random gain ``Beta(10, 10) + 0.5`` (drawn from the
            item's generator) in every mode, as the official code does; ``False`` (default) uses gain 1.
        min_segment_samples: A cut of at most this many samples is too short (official: 1024).
        whole_audio_max_s: When the cut is too short, a waveform shorter than this many seconds is used whole;
            a longer one makes the sample bad (the official code crashes).
    """

    fbank: FbankConfig = FbankConfig()
    random_gain: bool = False
    min_segment_samples: int = MIN_SEGMENT_SAMPLES
    whole_audio_max_s: float = WHOLE_AUDIO_MAX_S

    @property
    def sample_rate(self) -> int:
        """Waveform sampling rate in Hz (``fbank.sample_rate``)."""
        return self.fbank.sample_rate


@dataclass(frozen=True)
class SkippedSample:
    """Record returned by ``__getitem__`` in place of an item whose clip or audio could not be read.

    Attributes:
        index: Dataset index of the item.
        path: The file or folder that failed.
        reason: Why (the reader's message).
    """

    index: int
    path: str
    reason: str


class TooManySkippedSamples(RuntimeError):
    """More than ``max_skip_fraction`` of a dataset's items could not be read."""


class SkipCounter:
    """Counts skipped items and stops the run when too many were skipped.

    Distinct dataset indices are counted (an item skipped again in a later epoch counts once), and
    :class:`TooManySkippedSamples` is raised as soon as ``count > max_skip_fraction * total``.

    Args:
        total: Number of items of the dataset (``len(dataset)``).
        max_skip_fraction: Largest tolerated fraction of skipped items.
        name: Dataset name used in messages.
    """

    def __init__(self, total: int, max_skip_fraction: float = 0.01, name: str = "dataset") -> None:
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        if not (0.0 <= max_skip_fraction <= 1.0):
            raise ValueError(f"max_skip_fraction must be in [0, 1], got {max_skip_fraction}")
        self.total = total
        self.max_skip_fraction = max_skip_fraction
        self.name = name
        self.records: dict[int, SkippedSample] = {}

    def __repr__(self) -> str:
        return f"SkipCounter({self.name!r}, skipped={self.count}/{self.total}, max_fraction={self.max_skip_fraction})"

    @property
    def count(self) -> int:
        """Number of distinct skipped items."""
        return len(self.records)

    @property
    def fraction(self) -> float:
        """``count / total`` (0 for an empty dataset)."""
        return self.count / self.total if self.total else 0.0

    def add(self, record: SkippedSample) -> None:
        """Count one skipped item, then :meth:`check`.

        Args:
            record: The skipped item.

        Raises:
            TooManySkippedSamples: If the limit is now exceeded.
        """
        self.records.setdefault(record.index, record)
        self.check()

    def update(self, batch_or_records: Mapping[str, Any] | Iterable[SkippedSample]) -> None:
        """Count the skipped items of a collated batch (``batch["skipped"]``) or of an iterable of records.

        Raises:
            TooManySkippedSamples: If the limit is now exceeded.
        """
        records = batch_or_records.get("skipped", ()) if isinstance(batch_or_records, Mapping) else batch_or_records
        for record in records:
            self.records.setdefault(record.index, record)
        self.check()

    def check(self) -> None:
        """Raise :class:`TooManySkippedSamples` if more than ``max_skip_fraction`` of the items were skipped."""
        if self.count > self.max_skip_fraction * self.total:
            examples = "; ".join(f"{r.path} ({r.reason})" for r in list(self.records.values())[:5])
            raise TooManySkippedSamples(
                f"{self.name}: {self.count} of {self.total} items could not be read ({self.fraction:.2%} > "
                f"max_skip_fraction {self.max_skip_fraction:.2%}); first ones: {examples}"
            )

    def reset(self) -> None:
        """Forget every record."""
        self.records.clear()


def skip_bad_samples_collate(samples: Sequence[Mapping[str, Any] | SkippedSample]) -> dict[str, Any]:
    """``collate_fn`` that drops :class:`SkippedSample` records and collates the valid items.

    Args:
        samples: Items from :class:`VideoClipDataset` (dicts) and skip records.

    Returns:
        ``default_collate`` of the valid items (a dict of batched tensors and lists), plus ``"skipped"``: the list
        of :class:`SkippedSample` records of this batch (possibly empty). When every sample of the batch was
        skipped the dict holds only ``"skipped"``.
    """
    valid = [sample for sample in samples if not isinstance(sample, SkippedSample)]
    skipped = [sample for sample in samples if isinstance(sample, SkippedSample)]
    batch: dict[str, Any] = dict(default_collate(valid)) if valid else {}
    batch["skipped"] = skipped
    return batch


def filter_skipped_batches(loader: Iterable[Mapping[str, Any]], counter: SkipCounter) -> Iterator[dict[str, Any]]:
    """Iterate over a loader built with :func:`skip_bad_samples_collate`, counting and removing skipped items.

    Args:
        loader: Yields batches from :func:`skip_bad_samples_collate`.
        counter: Main-process counter (``SkipCounter(len(dataset), max_skip_fraction)``).

    Yields:
        The batches without the ``"skipped"`` key; batches whose items were all skipped are not yielded.

    Raises:
        TooManySkippedSamples: As soon as the counter's limit is exceeded.
    """
    for batch in loader:
        counter.update(batch)
        valid = {key: value for key, value in batch.items() if key != "skipped"}
        if valid:
            yield valid


@dataclass
class ClipPlan:
    """Everything that was decided for one item (indices, view, audio cut, gain).

    Attributes:
        index: Dataset index.
        sample: Row of the annotation list.
        path: Clip path.
        mode: Dataset mode.
        num_frames_total: Frames of the clip (``n``).
        frame_indices: ``(L,)`` int64 positions in the sorted frame list.
        loaded_indices: Test mode: the loaded stride indices (int64), else ``None``.
        temporal_start: Test mode: start position of the view in ``loaded_indices``.
        view: Test mode: the :class:`~maedfer.data.transforms.TestView`.
        window: Train / validation mode: the :class:`~maedfer.data.sampling.WindowPlan`.
        audio_path: The waveform file, if any.
        audio_segment: The audio cut, if audio is used.
        gain: The waveform gain, if audio is used.
    """

    index: int
    sample: int
    path: str
    mode: str
    num_frames_total: int
    frame_indices: np.ndarray
    loaded_indices: np.ndarray | None = None
    temporal_start: int | None = None
    view: TestView | None = None
    window: WindowPlan | None = None
    audio_path: str | None = None
    audio_segment: AudioSegment | None = None
    gain: float | None = None


def split_epoch_index(index: int | tuple[int, int], epoch: int) -> tuple[int, int]:
    """``(epoch, index)`` of a dataset index that is an int (current ``epoch``) or an ``(epoch, index)`` pair."""
    if isinstance(index, (tuple, list)):
        return int(index[0]), int(index[1])
    return int(epoch), int(index)


def _label_tensor(label: int | float | tuple[float, ...] | None) -> Tensor:
    """Convert an annotation label: int -> int64 scalar, float -> float32 scalar, tuple -> float32 ``(K,)``.

    ``None`` (unlabelled) becomes int64 ``-1``.
    """
    if label is None:
        return torch.tensor(-1, dtype=torch.int64)
    if isinstance(label, (tuple, list)):
        return torch.tensor([float(v) for v in label], dtype=torch.float32)
    if isinstance(label, (bool, np.bool_)):
        raise TypeError(f"labels must be int, float or a tuple of floats, got {label!r}")
    if isinstance(label, (int, np.integer)):
        return torch.tensor(int(label), dtype=torch.int64)
    return torch.tensor(float(label), dtype=torch.float32)


class VideoClipDataset(Dataset):
    """Fine-tuning / evaluation dataset of video clips, optionally with audio (see the module docstring).

    Item layout (``__getitem__`` returns a dict, or a :class:`SkippedSample` for a bad clip):

    * ``"video"``: ``float32 (3, L, H, W)`` normalised clip;
    * ``"audio"``: ``float32 (1, 256, 128)`` filter bank (only with ``audio``);
    * ``"label"``: int64 scalar (classification), float32 scalar or ``(K,)`` (regression), -1 if unlabelled;
    * ``"index"``: the dataset index; ``"path"``: the clip path (str);
    * ``"frame_indices"``: ``(L,)`` int64 positions in the sorted frame list;
    * test mode only: ``"segment"`` and ``"crop"`` (view numbers, for :func:`~maedfer.data.transforms.
      aggregate_view_predictions`).

    Test mode has ``len(views) * N`` items ordered like the official dataset: item
    ``view_number * N + sample`` with views segment-major (:meth:`TestViews.views`).

    Args:
        annotations: Annotation file (read with :func:`maedfer.data.annotations.read_annotations`) or rows.
        mode: ``"train"``, ``"validation"`` or ``"test"``.
        num_frames: Frames per clip ``L``.
        sampling_rate: Frame stride ``sr`` (4 for DFEW / MAFW / CREMA-D, 1 for FERV39k, 3 for Werewolf-XL).
        input_size: Crop size of training / validation clips.
        short_side_size: Resize target ``S`` (frames become ``S x S``).
        test_num_segment: Temporal test views.
        test_num_crop: Spatial test views (identical for square frames; see ``official_duplicate_crops``).
        file_ext: Frame extension of frame folders (``"png"`` for MAFW).
        audio: Audio settings; ``None`` for video-only datasets.
        train_transform: Training augmentation hook, e.g. :class:`maedfer.data.augment.FinetuneTrainTransform`;
            it receives the frames already resized to ``S x S`` (the official order; resizing them again to ``S``
            is an exact no-op) and the item's generator. ``None`` uses centre crop + normalisation.
        task: ``"classification"`` or ``"regression"``; sets how annotation files are parsed: ``<clip> <label>``
            (classification without audio), ``<clip> <wav> <label>`` (classification with audio) or
            ``<clip> <wav> <y1> ... <yk>`` (regression).
        num_targets: Number of regression targets per line (passed to ``read_annotations``).
        path_map: Path-prefix replacements for annotation files (passed to ``read_annotations``).
        train_sampling: Training temporal rule, ``"official"`` (linspace, default) or ``"exact_stride"``
            (see :mod:`maedfer.data.sampling`). Validation always uses the official rule.
        official_duplicate_crops: Keep the identical spatial test views of square frames (official length).
        keep_aspect_ratio: Resize the short side to ``short_side_size`` instead of the official square resize.
        video_backend: Backend for video files (``"auto"``, ``"decord"``, ``"pyav"``).
        image_decoder: JPEG decoder of frame folders (``"auto"``: torchvision or OpenCV under the fast pipeline when
            installed, PIL under the official one; or ``"pil"``, ``"torchvision"``, ``"opencv"``; see
            :func:`~maedfer.data.readers.resolve_image_decoder`).
        pipeline: ``"official"`` (PIL resize, the official pixels) or ``"fast"`` (training frames resized with
            :func:`maedfer.data.fast_pipeline.resize_clip`; pair it with a
            :class:`~maedfer.data.fast_pipeline.FastFinetuneTrainTransform`). Validation and test items are the
            official ones either way.
        seed: Base seed of the per-item generators.
        max_skip_fraction: Largest tolerated fraction of unreadable items.
        skip_bad_samples: Return :class:`SkippedSample` for unreadable items (``False``: raise).

    Raises:
        ValueError: On invalid settings, an empty annotation list or audio rows without a waveform path.
    """

    def __init__(
        self,
        annotations: str | Path | Sequence[AnnotationRow],
        mode: Mode,
        *,
        num_frames: int = 16,
        sampling_rate: int,
        input_size: int = 160,
        short_side_size: int = 160,
        test_num_segment: int = 2,
        test_num_crop: int = 2,
        file_ext: str = "jpg",
        audio: AudioConfig | None = None,
        train_transform: TrainTransform | None = None,
        task: Literal["classification", "regression"] = "classification",
        num_targets: int | None = None,
        path_map: Mapping[str, str] | None = None,
        train_sampling: SamplingRule = "official",
        official_duplicate_crops: bool = False,
        keep_aspect_ratio: bool = False,
        video_backend: Literal["auto", "decord", "pyav"] = "auto",
        pipeline: Literal["fast", "official"] = "official",
        image_decoder: Literal["auto", "pil", "torchvision", "opencv"] = "auto",
        seed: int = 0,
        max_skip_fraction: float = 0.01,
        skip_bad_samples: bool = True,
    ) -> None:
        super().__init__()
        self.pipeline = check_pipeline(pipeline)
        if mode not in ("train", "validation", "test"):
            raise ValueError(f"mode must be 'train', 'validation' or 'test', got {mode!r}")
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        for name, value in (
            ("num_frames", num_frames),
            ("sampling_rate", sampling_rate),
            ("input_size", input_size),
            ("short_side_size", short_side_size),
        ):
            check_int(value, name)
        if input_size > short_side_size:
            raise ValueError(f"input_size ({input_size}) cannot exceed short_side_size ({short_side_size})")
        if train_sampling not in ("official", "exact_stride"):
            raise ValueError(f"train_sampling must be 'official' or 'exact_stride', got {train_sampling!r}")
        check_int(seed, "seed", 0)

        self.mode: Mode = mode
        self.num_frames = num_frames
        self.sampling_rate = sampling_rate
        self.input_size = input_size
        self.short_side_size = short_side_size
        self.file_ext = file_ext.lstrip(".")
        self.audio = audio
        self.train_transform = train_transform
        self.task = task
        self.train_sampling: SamplingRule = train_sampling
        self.keep_aspect_ratio = keep_aspect_ratio
        self.video_backend = video_backend
        self.image_decoder = resolve_image_decoder(image_decoder, self.pipeline)
        self.seed = seed
        self.epoch = 0
        self.skip_bad_samples = skip_bad_samples
        self.test_views = TestViews(
            test_num_segment, test_num_crop, official_duplicate_crops=official_duplicate_crops
        )
        self.views: list[TestView] = self.test_views.views(square_frames=not keep_aspect_ratio)

        self.source = str(annotations) if isinstance(annotations, (str, Path)) else "<rows>"
        self.rows: list[AnnotationRow] = self._load_rows(annotations, path_map, num_targets)
        if not self.rows:
            raise ValueError(f"{self.source}: the annotation list is empty")
        if audio is not None:
            missing = [row for row in self.rows if not row.audio_path]
            if missing:
                row = missing[0]
                raise ValueError(
                    f"{self.source}:{row.line}: audio is enabled but the row of {row.path!r} has no audio path "
                    f"({len(missing)} such rows)"
                )
        self.skip_counter = SkipCounter(len(self), max_skip_fraction, name=f"{self.mode} set {self.source}")

    # ------------------------------------------------------------------------------------------------ setup

    def _load_rows(
        self,
        annotations: str | Path | Sequence[AnnotationRow],
        path_map: Mapping[str, str] | None,
        num_targets: int | None,
    ) -> list[AnnotationRow]:
        """Read the annotation file (or copy the given rows)."""
        if isinstance(annotations, (str, Path)):
            # Official layouts: "<clip> <label>", "<clip> <wav> <label>", "<clip> <wav> <y1> ... <yk>".
            if self.task == "regression":
                kind = "regression"
            else:
                kind = "audio_visual" if self.audio is not None else "classification"
                num_targets = None
            return list(read_annotations(annotations, kind=kind, path_map=path_map, num_targets=num_targets))
        rows = list(annotations)
        for position, row in enumerate(rows):
            if not isinstance(row, AnnotationRow):
                raise TypeError(f"annotations[{position}] must be an AnnotationRow, got {type(row).__name__}")
        return rows

    def __len__(self) -> int:
        if self.mode == "test":
            return len(self.views) * len(self.rows)
        return len(self.rows)

    def __repr__(self) -> str:
        extra = f", views={len(self.views)}" if self.mode == "test" else ""
        return (
            f"VideoClipDataset(mode={self.mode!r}, clips={len(self.rows)}{extra}, L={self.num_frames}, "
            f"sr={self.sampling_rate}, size={self.input_size}/{self.short_side_size}, audio={self.audio is not None})"
        )

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the per-item generators (call it before every epoch).

        DataLoader workers receive a copy of the dataset when an epoch's iterator is created, so this reaches
        them with the default ``persistent_workers=False``; persistent workers keep the epoch they started with.
        """
        self.epoch = int(epoch)

    @property
    def skipped(self) -> int:
        """Number of distinct items skipped in this process (see the module docstring for workers)."""
        return self.skip_counter.count

    def item_rng(self, index: int) -> np.random.Generator:
        """The generator of one item: ``numpy.random.default_rng((seed, epoch, index))``.

        Args:
            index: Dataset index.

        Returns:
            A fresh :class:`numpy.random.Generator`; the same arguments always give the same stream.
        """
        return np.random.default_rng((self.seed, self.epoch, int(index)))

    def locate(self, index: int) -> tuple[int, TestView | None]:
        """Map a dataset index to ``(annotation row, test view)`` (the view is ``None`` outside test mode).

        Args:
            index: Dataset index in ``[0, len(self))``.

        Returns:
            The row number and the view.

        Raises:
            IndexError: If ``index`` is out of range.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        if self.mode != "test":
            return index, None
        rows = len(self.rows)
        return index % rows, self.views[index // rows]

    # ---------------------------------------------------------------------------------------------- loading

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any] | SkippedSample:
        """Load one item; an unreadable clip or waveform gives a :class:`SkippedSample` (see the module docstring).

        ``index`` may be an ``(epoch, index)`` pair (the samplers of persistent-worker loaders send these), which
        seeds the item with that epoch instead of :attr:`epoch`.
        """
        epoch, index = split_epoch_index(index, self.epoch)
        try:
            item, _ = self.load(index, rng=np.random.default_rng((self.seed, epoch, index)))
            return item
        except BAD_SAMPLE_ERRORS as error:
            if not self.skip_bad_samples:
                raise
            sample, _ = self.locate(index)
            row = self.rows[sample]
            if isinstance(error, ClipReadError):
                path, reason = error.path, error.reason
            elif isinstance(error, AudioSegmentError):
                path, reason = str(row.audio_path), str(error)
            else:
                path = getattr(error, "filename", None) or row.path
                reason = f"{type(error).__name__}: {error}"
            record = SkippedSample(index, str(path), str(reason))
            logger.warning("skipping item %d (%s): %s", index, record.path, record.reason)
            self.skip_counter.add(record)
            return record

    def load(
        self,
        index: int,
        *,
        window_end: int | None = None,
        gain: float | None = None,
        rng: np.random.Generator | None = None,
    ) -> tuple[dict[str, Any], ClipPlan]:
        """Load one item, optionally with given random draws, and report what was decided.

        Args:
            index: Dataset index.
            window_end: Train / validation: the window end to use when the clip is longer than ``L * sr``
                (e.g. a recorded official draw) instead of drawing it.
            gain: Audio gain to use instead of the configured one (e.g. a recorded official draw).
            rng: Generator to use instead of :meth:`item_rng`.

        Returns:
            ``(item, plan)``: the item dict (see the class docstring) and its :class:`ClipPlan`.

        Raises:
            ClipReadError, FileNotFoundError, AudioSegmentError: For an unreadable clip or waveform.
        """
        sample, view = self.locate(index)
        row = self.rows[sample]
        generator = rng if rng is not None else self.item_rng(index)
        try:
            reader = open_clip(row.path, ext=self.file_ext, backend=self.video_backend,
                               image_decoder=self.image_decoder)
        except FileNotFoundError as error:
            raise ClipReadError(row.path, f"not found ({error})") from error
        try:
            num_total = len(reader)
            if num_total < 1:
                raise ClipReadError(row.path, "the clip has no frame")
            plan = self._plan(index, sample, row, view, num_total, generator, window_end)
            unique, inverse = np.unique(plan.frame_indices, return_inverse=True)
            fast_train = self.pipeline == "fast" and self.mode == "train"
            square_on_decode = not self.keep_aspect_ratio and not fast_train and isinstance(reader, FrameFolderReader)
            if square_on_decode:  # PIL resizes each image as it is decoded (same pixels, no numpy round trip)
                decoded = reader.read(unique.tolist(), size=(self.short_side_size, self.short_side_size))
            else:
                decoded = reader.read(unique.tolist())  # each distinct frame is decoded (and resized below) once
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()
        if square_on_decode:
            resized = decoded
        elif self.keep_aspect_ratio:
            resized = resize_frames_short_side(decoded, self.short_side_size)
        elif fast_train:
            resized = resize_clip(decoded, self.short_side_size, self.short_side_size)
        else:
            resized = resize_frames_square(decoded, self.short_side_size)
        frames = resized[inverse.reshape(-1)]

        if self.mode == "test":
            assert view is not None
            video = to_normalized_tensor(self.test_views.crop_frames(frames, view.crop, self.short_side_size))
        elif self.mode == "train" and self.train_transform is not None:
            video = self.train_transform(frames, generator)
            if not isinstance(video, Tensor) or video.dim() != 4 or video.shape[0] != 3:
                shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
                raise TypeError(f"train_transform must return a float tensor (3, L, H, W), got {shape}")
        else:
            video = to_normalized_tensor(center_crop(frames, self.input_size))

        item: dict[str, Any] = {
            "video": video,
            "label": _label_tensor(row.label),
            "index": index,
            "path": str(row.path),
            "frame_indices": torch.from_numpy(plan.frame_indices.astype(np.int64)),
        }
        if view is not None:
            item["segment"] = view.segment
            item["crop"] = view.crop
        if self.audio is not None:
            item["audio"] = self.load_audio(plan, gain=gain, rng=generator)
        return item, plan

    def _plan(
        self,
        index: int,
        sample: int,
        row: AnnotationRow,
        view: TestView | None,
        num_total: int,
        generator: np.random.Generator,
        window_end: int | None,
    ) -> ClipPlan:
        """Choose the frame indices (and the audio frame range) of one item."""
        plan = ClipPlan(
            index=index,
            sample=sample,
            path=str(row.path),
            mode=self.mode,
            num_frames_total=num_total,
            frame_indices=np.zeros(0, dtype=np.int64),
            audio_path=row.audio_path,
        )
        if self.mode == "test":
            assert view is not None
            loaded = stride_loaded_indices(num_total, self.num_frames, self.sampling_rate)
            start = segment_temporal_start(loaded.size, self.num_frames, self.test_views.num_segments, view.segment)
            plan.loaded_indices = loaded
            plan.temporal_start = start
            plan.view = view
            plan.frame_indices = loaded[start : start + self.num_frames].copy()
        else:
            rule: SamplingRule = self.train_sampling if self.mode == "train" else "official"
            window = window_plan(
                num_total, self.num_frames, self.sampling_rate, rng=generator, window_end=window_end, rule=rule
            )
            plan.window = window
            plan.frame_indices = window.frame_indices
        return plan

    def _read_waveform(self, path: str) -> np.ndarray:
        """Read a waveform as float32 ``(channels, N)`` at the configured rate.

        wav / flac at the configured rate are read like ``torchaudio.load`` (int16 / 32768); other rates and
        other containers are decoded and resampled to mono by :func:`maedfer.data.readers.read_audio`.
        """
        assert self.audio is not None
        rate = self.audio.sample_rate
        if Path(path).suffix.lower() in _WAV_SUFFIXES:
            samples, file_rate = read_wav(path)
            if file_rate == rate:
                return samples
            logger.debug("%s: %d Hz, resampling to %d Hz", path, file_rate, rate)
        return read_audio(path, sample_rate=rate)

    def load_audio(
        self, plan: ClipPlan, *, gain: float | None = None, rng: np.random.Generator | None = None
    ) -> Tensor:
        """Cut the waveform segment that belongs to ``plan`` and turn it into a filter bank.

        Sets ``plan.audio_segment`` and ``plan.gain``.

        Args:
            plan: The item's plan (from :meth:`load`).
            gain: Gain to use; ``None`` draws it from ``rng`` when ``AudioConfig.random_gain``, else 1.
            rng: Generator for the gain and SpecAugment draws (default: :meth:`item_rng` of ``plan.index``).

        Returns:
            ``float32 (1, target_length, num_mel_bins)``.

        Raises:
            ClipReadError: The waveform is missing, unreadable or empty.
            AudioSegmentError: The segment is too short (see :func:`maedfer.data.sampling.audio_segment`).
            ValueError: If the dataset has no audio.
        """
        if self.audio is None or plan.audio_path is None:
            raise ValueError("this dataset has no audio")
        generator = rng if rng is not None else self.item_rng(plan.index)
        try:
            waveform = self._read_waveform(plan.audio_path)
        except FileNotFoundError as error:
            raise ClipReadError(plan.audio_path, f"not found ({error})") from error
        total = int(waveform.shape[-1]) if waveform.ndim == 2 else 0
        if total == 0:
            raise ClipReadError(plan.audio_path, "the waveform is empty")
        if plan.mode == "test":
            assert plan.loaded_indices is not None and plan.temporal_start is not None
            start_frame, end_frame = view_audio_frame_range(
                plan.loaded_indices, plan.temporal_start, self.num_frames, self.sampling_rate, plan.num_frames_total
            )
        else:
            start_frame, end_frame = window_audio_frame_range(
                int(plan.frame_indices[0]), self.num_frames, self.sampling_rate, plan.num_frames_total
            )
        segment = audio_segment(
            start_frame,
            end_frame,
            plan.num_frames_total,
            total,
            sample_rate=self.audio.sample_rate,
            min_segment_samples=self.audio.min_segment_samples,
            whole_audio_max_s=self.audio.whole_audio_max_s,
            source=plan.audio_path,
        )
        if num_fbank_frames(segment.num_samples, self.audio.sample_rate, self.audio.fbank.frame_shift_ms) == 0:
            raise AudioSegmentError(
                f"{plan.audio_path}: the audio segment has {segment.num_samples} samples, fewer than one fbank frame"
            )
        if gain is None:
            gain = random_gain(generator) if self.audio.random_gain else 1.0
        if not math.isfinite(gain):
            raise ValueError(f"gain must be finite, got {gain!r}")
        plan.audio_segment = segment
        plan.gain = float(gain)
        train = plan.mode == "train"
        torch_generator = None
        if train and (self.audio.fbank.freq_mask or self.audio.fbank.time_mask):
            torch_generator = torch.Generator().manual_seed(int(generator.integers(0, 2**63 - 1)))
        return wav_to_fbank(
            waveform[:, segment.slice], self.audio.fbank, gain=float(gain), train=train, generator=torch_generator
        )
