"""Temporal sampling rules of the fine-tuning / evaluation datasets, as pure NumPy functions.

Details: ``docs/modules.md``, section ``maedfer/data/sampling.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..utils import check_int

__all__ = [
    "AudioSegment",
    "AudioSegmentError",
    "SamplingRule",
    "WindowPlan",
    "audio_segment",
    "draw_window_end",
    "relative_timestamp",
    "segment_temporal_start",
    "stride_loaded_indices",
    "view_audio_frame_range",
    "view_frame_indices",
    "window_audio_frame_range",
    "window_frame_indices",
    "window_plan",
]

logger = logging.getLogger(__name__)

#: Name of a training/validation temporal rule: ``"official"`` (linspace, the default) or ``"exact_stride"``.
SamplingRule = Literal["official", "exact_stride"]

#: A segment of at most this many samples is "too short" in the official HiCMAE audio loader.
MIN_SEGMENT_SAMPLES: int = 1024
#: Waveforms shorter than this (in seconds) fall back to the whole waveform when the segment is too short.
WHOLE_AUDIO_MAX_S: float = 2.56


class AudioSegmentError(ValueError):
    """The audio segment that belongs to a clip is too short and the waveform is too long to use whole."""


def draw_window_end(
    num_frames_total: int,
    span: int,
    rng: np.random.Generator | np.random.RandomState | None,
) -> int:
    """Draw the end of a random temporal window, uniformly from ``[span, num_frames_total - 1]``.

    With a legacy :class:`numpy.random.RandomState` this is exactly the official
    ``np.random.randint(span, n)`` draw (so a ``RandomState`` seeded like the official worker gives the same
    window); with a :class:`numpy.random.Generator` it is ``rng.integers(span, n)``.

    Args:
        num_frames_total: Number of frames ``n`` of the clip; must be ``> span``.
        span: Window length ``L * sr``.
        rng: Random source; ``None`` uses NumPy's global legacy state (``np.random.randint``), as the
            official code does.

    Returns:
        The window end, ``span <= end < n``.

    Raises:
        ValueError: If ``num_frames_total <= span``.
    """
    if num_frames_total <= span:
        raise ValueError(f"a random window needs more than span={span} frames, got {num_frames_total}")
    if rng is None:
        return int(np.random.randint(span, num_frames_total))
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(span, num_frames_total))
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(span, num_frames_total))
    raise TypeError(f"rng must be a numpy Generator, RandomState or None, got {type(rng).__name__}")


@dataclass(frozen=True)
class WindowPlan:
    """Result of the training / validation temporal rule.

    Attributes:
        frame_indices: ``(L,)`` int64 positions in the sorted frame list.
        span: ``L * sr`` (the official ``converted_len``).
        random_start: Whether the window was drawn (``n > span``).
        window_end: The window end (``start = end - span``) when ``random_start``, else ``None``.
    """

    frame_indices: np.ndarray
    span: int
    random_start: bool
    window_end: int | None


def window_plan(
    num_frames_total: int,
    clip_len: int,
    sampling_rate: int,
    *,
    rng: np.random.Generator | np.random.RandomState | None = None,
    window_end: int | None = None,
    rule: SamplingRule = "official",
) -> WindowPlan:
    """Training / validation frame indices with the details of the draw (see the module docstring).

    Args:
        num_frames_total: Number of frames ``n >= 1`` of the clip.
        clip_len: Frames per clip ``L >= 1``.
        sampling_rate: Stride ``sr >= 1``.
        rng: Random source of the window end when ``n > L * sr`` and ``window_end`` is not given
            (``None``: NumPy's global legacy state, like the official code).
        window_end: A given window end (e.g. a recorded official draw), ``L * sr <= end < n``; only used
            when ``n > L * sr``.
        rule: ``"official"`` (linspace, default) or ``"exact_stride"`` (``start + sr * k``).

    Returns:
        The :class:`WindowPlan`; ``frame_indices`` is ``(L,)`` int64.

    Raises:
        ValueError: On invalid sizes, an out-of-range ``window_end`` or an unknown rule.
    """
    n = check_int(num_frames_total, "num_frames_total", 1)
    length = check_int(clip_len, "clip_len", 1)
    stride = check_int(sampling_rate, "sampling_rate", 1)
    if rule not in ("official", "exact_stride"):
        raise ValueError(f"rule must be 'official' or 'exact_stride', got {rule!r}")
    span = length * stride

    if n <= span:
        if rule == "exact_stride":
            last = ((n - 1) // stride) * stride
            idx = np.minimum(np.arange(length, dtype=np.int64) * stride, last)
            return WindowPlan(idx.astype(np.int64), span, False, None)
        count = n // stride
        positions = np.concatenate((np.linspace(0, n, num=count), np.full(length - count, float(n))))
        idx = np.clip(positions, 0, n - 1).astype(np.int64)
        return WindowPlan(idx, span, False, None)

    if window_end is None:
        end = draw_window_end(n, span, rng)
    else:
        end = check_int(window_end, "window_end", 0)
        if not span <= end < n:
            raise ValueError(
                f"window_end must satisfy {span} <= end < {n} (span = clip_len * sampling_rate), got {end}"
            )
    start = end - span
    if rule == "exact_stride":
        idx = start + np.arange(length, dtype=np.int64) * stride
    else:
        idx = np.clip(np.linspace(start, end, num=length), start, end - 1).astype(np.int64)
    return WindowPlan(idx.astype(np.int64), span, True, end)


def window_frame_indices(
    num_frames_total: int,
    clip_len: int,
    sampling_rate: int,
    *,
    rng: np.random.Generator | np.random.RandomState | None = None,
    window_end: int | None = None,
    rule: SamplingRule = "official",
) -> np.ndarray:
    """Training / validation frame indices (the official linspace rule by default).

    Same arguments as :func:`window_plan`.

    Returns:
        ``(L,)`` int64 positions in the sorted frame list.
    """
    return window_plan(
        num_frames_total, clip_len, sampling_rate, rng=rng, window_end=window_end, rule=rule
    ).frame_indices


def stride_loaded_indices(num_frames_total: int, clip_len: int, sampling_rate: int) -> np.ndarray:
    """The frames that the official test mode loads: every ``sr``-th frame, padded to at least ``L``.

    Args:
        num_frames_total: Number of frames ``n >= 1``.
        clip_len: Frames per clip ``L >= 1``.
        sampling_rate: Stride ``sr >= 1``.

    Returns:
        ``(max(ceil(n / sr), L),)`` int64: ``0, sr, 2 sr, ... < n`` then copies of the last one.
    """
    n = check_int(num_frames_total, "num_frames_total", 1)
    length = check_int(clip_len, "clip_len", 1)
    stride = check_int(sampling_rate, "sampling_rate", 1)
    loaded = np.arange(0, n, stride, dtype=np.int64)
    if loaded.size < length:
        loaded = np.concatenate((loaded, np.full(length - loaded.size, loaded[-1], dtype=np.int64)))
    return loaded


def segment_temporal_start(num_loaded: int, clip_len: int, num_segments: int, segment: int) -> int:
    """Position in ``loaded`` where test segment ``segment`` starts.

    ``int(segment * max((num_loaded - L) / (num_segments - 1), 0))``; 0 when ``num_segments == 1`` (where the
    official code raises ``ZeroDivisionError``).

    Args:
        num_loaded: ``len(loaded)`` from :func:`stride_loaded_indices`.
        clip_len: Frames per clip ``L``.
        num_segments: Temporal views per clip (``test_num_segment``).
        segment: View number in ``[0, num_segments)``.

    Returns:
        The start position (int).
    """
    check_int(num_loaded, "num_loaded", 1)
    check_int(clip_len, "clip_len", 1)
    segments = check_int(num_segments, "num_segments", 1)
    seg = check_int(segment, "segment", 0)
    if seg >= segments:
        raise ValueError(f"segment must be < num_segments={segments}, got {seg}")
    if segments == 1:
        return 0
    step = max((num_loaded - clip_len) / (segments - 1), 0.0)
    return int(seg * step)


def view_frame_indices(
    num_frames_total: int, clip_len: int, sampling_rate: int, num_segments: int, segment: int
) -> tuple[np.ndarray, int, np.ndarray]:
    """Frame indices of one test view.

    Args:
        num_frames_total: Number of frames ``n``.
        clip_len: Frames per clip ``L``.
        sampling_rate: Stride ``sr``.
        num_segments: Temporal views per clip.
        segment: View number.

    Returns:
        ``(loaded, temporal_start, frame_indices)``: the loaded indices (int64), the start position and the
        ``(L,)`` int64 view ``loaded[temporal_start : temporal_start + L]``.
    """
    loaded = stride_loaded_indices(num_frames_total, clip_len, sampling_rate)
    start = segment_temporal_start(loaded.size, clip_len, num_segments, segment)
    return loaded, start, loaded[start : start + clip_len].copy()


def relative_timestamp(frame_index: int, num_frames_total: int) -> float:
    """Relative time of a frame in HiCMAE fine-tuning: ``i / (n - 1)``, or 0 when ``n == 1``.

    Args:
        frame_index: Frame position ``i``.
        num_frames_total: Number of frames ``n >= 1``.

    Returns:
        A Python float in ``[0, 1]``.
    """
    n = check_int(num_frames_total, "num_frames_total", 1)
    if n == 1:
        return 0.0
    return frame_index / (n - 1)


def view_audio_frame_range(
    loaded: Sequence[int] | np.ndarray, temporal_start: int, clip_len: int, sampling_rate: int, num_frames_total: int
) -> tuple[int, int]:
    """First and last frame whose time span gives the audio of a test view (HiCMAE fine-tuning).

    Args:
        loaded: Loaded test indices (:func:`stride_loaded_indices`).
        temporal_start: Position of the view in ``loaded``.
        clip_len: Frames per clip ``L``.
        sampling_rate: Stride ``sr``.
        num_frames_total: Number of frames ``n``.

    Returns:
        ``(start_frame, end_frame)`` with ``end_frame = min(loaded[min(t + L - 1, len - 1)] + sr, n - 1)``.
    """
    start = int(loaded[temporal_start])
    end = int(loaded[min(temporal_start + clip_len - 1, len(loaded) - 1)])
    return start, min(end + sampling_rate, num_frames_total - 1)


def window_audio_frame_range(
    first_index: int, clip_len: int, sampling_rate: int, num_frames_total: int
) -> tuple[int, int]:
    """First and last frame of the audio of a training / validation window (HiCMAE fine-tuning).

    Args:
        first_index: ``idx[0]`` of the window (:func:`window_frame_indices`).
        clip_len: Frames per clip ``L``.
        sampling_rate: Stride ``sr``.
        num_frames_total: Number of frames ``n``.

    Returns:
        ``(start_frame, end_frame)`` with ``end_frame = min(idx[0] + L * sr, n - 1)``; note that it is not
        the last sampled frame.
    """
    return int(first_index), min(int(first_index) + clip_len * sampling_rate, num_frames_total - 1)


@dataclass(frozen=True)
class AudioSegment:
    """An audio cut of a clip, in samples.

    Attributes:
        start_frame: First frame of the cut.
        end_frame: Last frame of the cut.
        start_sample: ``int(ts(start_frame) * N)`` (the official ``audio_start_idx``).
        end_sample: ``int(ts(end_frame) * N)`` (the official ``audio_end_idx``).
        whole_audio: Whether the whole waveform is used because the cut is too short.
        num_samples_total: ``N``, the waveform length.
    """

    start_frame: int
    end_frame: int
    start_sample: int
    end_sample: int
    whole_audio: bool
    num_samples_total: int

    @property
    def slice(self) -> slice:
        """The slice of the waveform's time axis that is used (the whole waveform when ``whole_audio``)."""
        if self.whole_audio:
            return slice(0, self.num_samples_total)
        return slice(self.start_sample, self.end_sample)

    @property
    def num_samples(self) -> int:
        """Number of samples actually used."""
        return self.slice.stop - self.slice.start


def audio_segment(
    start_frame: int,
    end_frame: int,
    num_frames_total: int,
    num_samples_total: int,
    *,
    sample_rate: int = 16000,
    min_segment_samples: int = MIN_SEGMENT_SAMPLES,
    whole_audio_max_s: float = WHOLE_AUDIO_MAX_S,
    source: str = "",
) -> AudioSegment:
    """Map a frame range to a waveform cut with HiCMAE's relative timestamps.

    ``a0 = int(ts(start_frame) * N)``, ``a1 = int(ts(end_frame) * N)`` in float64. When
    ``a1 - a0 <= min_segment_samples``, the whole waveform is used if ``N < whole_audio_max_s * sample_rate``.

    Args:
        start_frame: First frame of the range.
        end_frame: Last frame of the range.
        num_frames_total: Number of frames ``n`` of the clip.
        num_samples_total: Waveform length ``N`` in samples.
        sample_rate: Waveform sampling rate in Hz.
        min_segment_samples: A cut of at most this many samples is too short (official: 1024).
        whole_audio_max_s: Whole-waveform fallback limit in seconds (official: 2.56).
        source: File name used in the error message.

    Returns:
        The :class:`AudioSegment`.

    Raises:
        AudioSegmentError: If the cut is too short and the waveform too long to use whole (the official
            code raises there as well).
        ValueError: If ``num_samples_total`` is not positive.
    """
    total = check_int(num_samples_total, "num_samples_total", 1)
    a0 = int(relative_timestamp(start_frame, num_frames_total) * total)
    a1 = int(relative_timestamp(end_frame, num_frames_total) * total)
    whole = False
    if a1 - a0 <= min_segment_samples:
        if total < whole_audio_max_s * sample_rate:
            whole = True
        else:
            where = f"{source}: " if source else ""
            raise AudioSegmentError(
                f"{where}audio segment [{a0}, {a1}) of frames {start_frame}..{end_frame} (of {num_frames_total}) has "
                f"only {a1 - a0} samples (<= {min_segment_samples}) and the waveform ({total} samples, "
                f"{total / sample_rate:.3f} s) is too long (>= {whole_audio_max_s:g} s) to be used whole"
            )
    return AudioSegment(int(start_frame), int(end_frame), a0, a1, whole, total)
