"""Sample-level inference on raw video: sliding windows over a whole video, one prediction per window.

Details: ``docs/modules.md``, section ``maedfer/apps/predict.py``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import atomic_write_bytes, atomic_write_text
from ..compile import optimize_for_inference
from ..data.readers import ClipReadError
from ..engine.backends import resolve_precision
from ..models.contract import input_modalities, model_inputs
from ..preprocess.faces import FaceDetector
from .inference import (
    INPUT_ERRORS,
    InferenceModel,
    NoAudioError,
    VideoFrames,
    add_model_source_arguments,
    checkpoint_from_args,
    clip_filterbank,
    clip_to_input,
    error_message,
    load_inference_model,
    read_soundtrack,
    read_video_frames,
)

__all__ = [
    "OUTPUT_FORMATS",
    "NoAudioError",
    "PredictionSummary",
    "WindowPrediction",
    "WindowedPrediction",
    "clip_frame_indices",
    "default_window",
    "plot_timeline",
    "predict_video",
    "save_outputs",
    "window_bounds",
    "window_starts",
    "write_csv",
    "write_json",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: The file formats :func:`save_outputs` can write.
OUTPUT_FORMATS: tuple[str, ...] = ("csv", "json", "png")

# ----------------------------------------------------------------------------------------------------------------
# window arithmetic
# ----------------------------------------------------------------------------------------------------------------


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def window_starts(num_frames_total: int, window: int, stride: int) -> list[int]:
    """First frames of the sliding windows that cover a video (see the module docstring).

    Args:
        num_frames_total: Frames ``N >= 1`` of the video.
        window: Window length ``W >= 1`` in source frames.
        stride: Step ``S >= 1`` between window starts, in source frames.

    Returns:
        Increasing window starts; window ``i`` is ``[start_i, min(start_i + W, N))``. ``[0]`` when ``N <= W``;
        otherwise ``0, S, 2 S, ...`` (each window inside the video) plus ``N - W`` when the last one ends
        before the last frame.

    Raises:
        ValueError: A non-positive or non-integer argument.
    """
    total = _positive_int(num_frames_total, "num_frames_total")
    length = _positive_int(window, "window")
    step = _positive_int(stride, "stride")
    if total <= length:
        return [0]
    starts = list(range(0, total - length + 1, step))
    if starts[-1] + length < total:
        starts.append(total - length)
    return starts


def window_bounds(num_frames_total: int, window: int, stride: int) -> list[tuple[int, int]]:
    """``(start_frame, end_frame)`` (end exclusive) of every window of :func:`window_starts`."""
    return [(start, min(start + window, num_frames_total)) for start in window_starts(num_frames_total, window, stride)]


def clip_frame_indices(start_frame: int, end_frame: int, num_frames: int) -> np.ndarray:
    """The ``T`` frames a clip takes from the window ``[start_frame, end_frame)``.

    ``start + floor(k * n / T)`` for ``k = 0 .. T - 1`` with ``n = end - start``: evenly spaced, the first frame of
    each of ``T`` equal parts; frames repeat when ``n < T``.

    Args:
        start_frame: First frame of the window (``>= 0``).
        end_frame: End of the window (exclusive, ``> start_frame``).
        num_frames: Clip length ``T >= 1``.

    Returns:
        ``int64 (T,)`` non-decreasing frame indices in ``[start_frame, end_frame)``.
    """
    count = _positive_int(num_frames, "num_frames")
    if isinstance(start_frame, bool) or start_frame < 0 or end_frame <= start_frame:
        raise ValueError(f"need 0 <= start_frame < end_frame, got [{start_frame}, {end_frame})")
    span = int(end_frame) - int(start_frame)
    return int(start_frame) + (np.arange(count, dtype=np.int64) * span) // count


def default_window(loaded: InferenceModel, fps: float) -> int:
    """Window length in source frames: the span ``num_frames * sampling_rate`` the model saw in training.

    An audio-only model without video geometry uses the duration of its filter bank
    (``target_length * frame_shift``) at ``fps`` instead.
    """
    if loaded.num_frames > 0 and loaded.sampling_rate > 0:
        return int(loaded.num_frames * loaded.sampling_rate)
    if loaded.fbank is not None:
        from ..audio import spectrogram_duration_s

        return max(1, int(round(spectrogram_duration_s(loaded.fbank) * fps)))
    raise ValueError(f"model {loaded.name} states no clip geometry; pass window=...")


# ----------------------------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class WindowPrediction:
    """The prediction for one window.

    Attributes:
        index: Window number (0-based, in time order).
        start_frame: First source frame of the window.
        end_frame: End of the window (exclusive).
        start_s: ``start_frame / fps`` in seconds.
        end_s: ``end_frame / fps`` in seconds.
        values: ``float32 (K,)``: softmax probabilities (classification) or raw outputs (regression).
        label: Name of the most probable class (classification), else ``None``.
        score: Probability of ``label`` (classification), else ``None``.
    """

    index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    values: np.ndarray
    label: str | None = None
    score: float | None = None

    @property
    def centre_s(self) -> float:
        """Middle of the window in seconds."""
        return 0.5 * (self.start_s + self.end_s)


@dataclass
class PredictionSummary:
    """Video-level summary: the windows' outputs averaged with equal weights.

    Attributes:
        values: ``float32 (K,)`` mean probabilities (classification) or mean outputs (regression).
        label: The class with the highest mean probability (classification), else ``None``.
        score: Its mean probability (classification), else ``None``.
    """

    values: np.ndarray
    label: str | None
    score: float | None


@dataclass
class WindowedPrediction:
    """Per-window predictions for one video.

    Attributes:
        path: The video.
        fps: Its frame rate.
        num_frames: Its number of frames ``N``.
        label_names: The ``K`` output names (class names, target names, or ``class_<i>`` / ``target_<i>``).
        task: ``"classification"`` or ``"regression"``.
        model_name: Registry name of the model.
        window: Window length in source frames.
        stride: Window stride in source frames.
        windows: One :class:`WindowPrediction` per window, in time order.
    """

    path: Path
    fps: float
    num_frames: int
    label_names: list[str]
    task: str
    model_name: str
    window: int
    stride: int
    windows: list[WindowPrediction] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """``num_frames / fps`` in seconds."""
        return self.num_frames / self.fps

    def values(self) -> np.ndarray:
        """``float32 (num_windows, K)``: every window's values."""
        if not self.windows:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        return np.stack([record.values for record in self.windows]).astype(np.float32)

    def mean(self) -> PredictionSummary:
        """Mean over the windows (each window weighs the same) and, for classification, the top class."""
        if not self.windows:
            raise ValueError(f"{self.path}: no windows were predicted")
        mean = self.values().mean(axis=0).astype(np.float32)
        if self.task != "classification":
            return PredictionSummary(values=mean, label=None, score=None)
        top = int(np.argmax(mean))
        return PredictionSummary(values=mean, label=self.label_names[top], score=float(mean[top]))

    def columns(self) -> list[str]:
        """CSV column names of :meth:`to_rows`.

        ``window, start_frame, end_frame, start_s, end_s``, then for classification ``label, score,
        prob_<class>...`` and for regression one column per target name.
        """
        head = ["window", "start_frame", "end_frame", "start_s", "end_s"]
        if self.task == "classification":
            return head + ["label", "score"] + [f"prob_{name}" for name in self.label_names]
        return head + list(self.label_names)

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per window with the keys of :meth:`columns` (times rounded to 4, values to 6 decimals)."""
        rows = []
        names = self.columns()[-len(self.label_names):]
        for record in self.windows:
            row: dict[str, Any] = {
                "window": record.index,
                "start_frame": record.start_frame,
                "end_frame": record.end_frame,
                "start_s": round(record.start_s, 4),
                "end_s": round(record.end_s, 4),
            }
            if self.task == "classification":
                row["label"] = record.label
                row["score"] = round(float(record.score or 0.0), 6)
            row.update({name: round(float(value), 6) for name, value in zip(names, record.values)})
            rows.append(row)
        return rows

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description: the video, the model, the summary and every window."""
        summary = self.mean()
        return {
            "path": str(self.path),
            "fps": self.fps,
            "num_frames": self.num_frames,
            "duration_s": self.duration_s,
            "model": self.model_name,
            "task": self.task,
            "label_names": list(self.label_names),
            "window_frames": self.window,
            "stride_frames": self.stride,
            "summary": {
                "label": summary.label,
                "score": summary.score,
                "values": _named(self.label_names, summary.values),
            },
            "windows": [
                {
                    "index": record.index,
                    "start_frame": record.start_frame,
                    "end_frame": record.end_frame,
                    "start_s": record.start_s,
                    "end_s": record.end_s,
                    "label": record.label,
                    "score": record.score,
                    "values": _named(self.label_names, record.values),
                }
                for record in self.windows
            ],
        }


def _named(names: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {name: float(value) for name, value in zip(names, values)}


def _output_names(loaded: InferenceModel, num_outputs: int) -> list[str]:
    if loaded.label_names and len(loaded.label_names) == num_outputs:
        return list(loaded.label_names)
    prefix = "class" if loaded.task == "classification" else "target"
    return [f"{prefix}_{index}" for index in range(num_outputs)]


# ----------------------------------------------------------------------------------------------------------------
# inference
# ----------------------------------------------------------------------------------------------------------------


def _frame_count_and_fps(path: Path) -> tuple[int, float]:
    """Frame count and rate of a video without decoding it (for audio-only models)."""
    from ..data.readers import VideoFileReader, open_clip
    from .inference import reader_fps

    reader = open_clip(path)
    try:
        return len(reader), reader_fps(reader)
    finally:
        if isinstance(reader, VideoFileReader):
            reader.close()


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for begin in range(0, len(items), size):
        yield items[begin : begin + size]


def predict_video(
    loaded: InferenceModel,
    video: PathLike | VideoFrames,
    *,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    detect_faces: bool = True,
    face_size: int | None = None,
    detector: Any = None,
    precision: str = "auto",
    progress: bool = False,
) -> WindowedPrediction:
    """Predict every window of a video (see the module docstring for the windows and the audio cut).

    Args:
        loaded: A fine-tuned model from :func:`maedfer.apps.inference.load_inference_model`.
        video: A video file, a frame folder, or frames already read with
            :func:`maedfer.apps.inference.read_video_frames` (audio is then read from ``video.path``).
        window: Window length in source frames (default: :func:`default_window`).
        stride: Step between windows in source frames (default ``window // 2``, at least 1).
        batch_size: Windows per forward pass.
        detect_faces: Crop the main face in every frame (``False`` for videos that are already face crops).
        face_size: Side of the face crops (default ``max(loaded.short_side_size, loaded.input_size)``).
        detector: A :class:`maedfer.preprocess.faces.FaceDetector` to reuse across videos.
        precision: ``"auto"`` (bf16 autocast on CUDA, fp32 on CPU), ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        progress: Show a tqdm progress bar over the windows.

    Returns:
        The :class:`WindowedPrediction`.

    Raises:
        FileNotFoundError: ``video`` does not exist.
        maedfer.data.readers.ClipReadError: The video cannot be decoded.
        maedfer.preprocess.faces.NoFaceError: ``detect_faces`` and no frame shows a face.
        NoAudioError: (a ``ClipReadError``) The model needs audio and the video has no audio track (or an empty
            one, or it is a frame folder).
        maedfer.data.sampling.AudioSegmentError: A window's audio is too short for a filter bank.
        ValueError: A pre-training model, or bad window / stride / batch size / precision.
    """
    from tqdm import tqdm

    from ..data.sampling import window_audio_frame_range

    if loaded.task not in ("classification", "regression"):
        raise ValueError(
            f"model {loaded.name} is a {loaded.kind} model (task {loaded.task!r}); prediction needs a fine-tuned "
            "classification or regression checkpoint"
        )
    batch = _positive_int(batch_size, "batch_size")
    from ..engine.backends import autocast_context, resolve_precision

    autocast = autocast_context(loaded.device, resolve_precision(precision, loaded.device))
    needs_video = "video" in input_modalities(loaded.model)
    needs_audio = loaded.needs_audio
    if needs_audio and loaded.fbank is None:
        raise ValueError(f"model {loaded.name} is {loaded.modality} but states no filter-bank settings")

    frames: np.ndarray | None = None
    if isinstance(video, VideoFrames):
        path, frames, fps = Path(video.path), video.frames, float(video.fps)
        total = len(video)
    else:
        path = Path(video)
        if not path.exists():
            raise FileNotFoundError(f"video {path} does not exist")
    waveform = None
    if needs_audio:
        assert loaded.fbank is not None
        waveform = read_soundtrack(path, loaded.fbank.sample_rate, modality=loaded.modality)
    if not isinstance(video, VideoFrames):
        if needs_video:
            size = face_size if face_size is not None else max(loaded.short_side_size, loaded.input_size)
            read = read_video_frames(path, detect_faces=detect_faces, face_size=size, detector=detector)
            frames, fps, total = read.frames, read.fps, len(read)
        else:
            total, fps = _frame_count_and_fps(path)
    if frames is not None and min(frames.shape[1:3]) != loaded.short_side_size:
        from ..data.transforms import resize_frames_short_side

        frames = resize_frames_short_side(frames, loaded.short_side_size)  # once, instead of once per window

    length = _positive_int(window, "window") if window is not None else default_window(loaded, fps)
    step = _positive_int(stride, "stride") if stride is not None else max(1, length // 2)
    bounds = window_bounds(total, length, step)
    logger.info("%s: %d frames at %.3g fps, %d windows of %d frames (stride %d)", path, total, fps, len(bounds),
                length, step)

    outputs: list[np.ndarray] = []
    with tqdm(total=len(bounds), unit="window", desc=path.name, disable=not progress) as bar:
        for chunk in _batches(bounds, batch):
            video_batch = audio_batch = None
            if needs_video:
                assert frames is not None
                clips = [clip_to_input(frames[clip_frame_indices(s, e, loaded.num_frames)], loaded) for s, e in chunk]
                video_batch = torch.stack(clips).to(loaded.device)
            if needs_audio:
                assert waveform is not None and loaded.fbank is not None
                banks = [
                    clip_filterbank(waveform, *window_audio_frame_range(s, e - s, 1, total), total, loaded.fbank,
                                    path=path)
                    for s, e in chunk
                ]
                audio_batch = torch.stack(banks).to(loaded.device)
            with torch.inference_mode(), autocast:
                result = loaded.model(**model_inputs(loaded.model, {"video": video_batch, "audio": audio_batch}))
            result = result.float()
            if loaded.task == "classification":
                result = torch.softmax(result, dim=-1)
            outputs.append(result.cpu().numpy().astype(np.float32))
            bar.update(len(chunk))
    values = np.concatenate(outputs)
    names = _output_names(loaded, int(values.shape[1]))

    prediction = WindowedPrediction(
        path=path, fps=fps, num_frames=total, label_names=names, task=loaded.task, model_name=loaded.name,
        window=length, stride=step,
    )
    for index, ((start, end), row) in enumerate(zip(bounds, values)):
        label = score = None
        if loaded.task == "classification":
            top = int(np.argmax(row))
            label, score = names[top], float(row[top])
        prediction.windows.append(WindowPrediction(
            index=index, start_frame=start, end_frame=end, start_s=start / fps, end_s=end / fps, values=row,
            label=label, score=score,
        ))
    return prediction


# ----------------------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------------------


def write_csv(prediction: WindowedPrediction, path: PathLike) -> Path:
    """Write one row per window (columns: :meth:`WindowedPrediction.columns`), atomically; returns the path."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=prediction.columns(), lineterminator="\n")
    writer.writeheader()
    writer.writerows(prediction.to_rows())
    return atomic_write_text(path, buffer.getvalue())


def write_json(prediction: WindowedPrediction, path: PathLike) -> Path:
    """Write :meth:`WindowedPrediction.to_json_dict` (indented), atomically; returns the path."""
    return atomic_write_text(path, json.dumps(prediction.to_json_dict(), indent=2) + "\n")


def _segment_edges(windows: Sequence[WindowPrediction]) -> list[float]:
    """Time edges of the colour strip: each window owns the time closest to its centre."""
    centres = [record.centre_s for record in windows]
    middles = [0.5 * (a + b) for a, b in zip(centres, centres[1:])]
    return [windows[0].start_s, *middles, windows[-1].end_s]


def plot_timeline(prediction: WindowedPrediction, path: PathLike) -> Path:
    """Draw the predictions over time as a PNG (matplotlib, Agg), atomically; returns the path.

    Classification: the class probabilities of the windows (at the window centres) as stacked areas, a strip on
    top coloured by each window's predicted class, a legend with the class names and a title with the file name
    and the overall top class. Regression: one line per target on ``[-1, 1]``.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if not prediction.windows:
        raise ValueError(f"{prediction.path}: no windows to plot")
    summary = prediction.mean()
    values = prediction.values()
    names = prediction.label_names
    times = np.array([record.centre_s for record in prediction.windows], dtype=np.float64)
    span = (0.0, max(prediction.duration_s, prediction.windows[-1].end_s))

    figure = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    if prediction.task == "classification":
        colour_map = colormaps["tab10" if len(names) <= 10 else "tab20"]
        colours = [colour_map(index % colour_map.N) for index in range(len(names))]
        grid = figure.add_gridspec(2, 1, height_ratios=(1, 8), hspace=0.05)
        strip = figure.add_subplot(grid[0])
        axes = figure.add_subplot(grid[1], sharex=strip)
        # Values at the window centres, held flat from the first window's start and to the last window's end.
        area_times = np.concatenate(([prediction.windows[0].start_s], times, [prediction.windows[-1].end_s]))
        area_values = np.concatenate((values[:1], values, values[-1:]))
        axes.stackplot(area_times, area_values.T, colors=colours, alpha=0.85)
        axes.set_ylim(0.0, 1.0)
        axes.set_ylabel("probability")
        edges = _segment_edges(prediction.windows)
        for record, left, right in zip(prediction.windows, edges, edges[1:]):
            strip.axvspan(left, right, color=colours[names.index(record.label)] if record.label in names else "grey")
        strip.set_yticks([])
        strip.set_ylabel("top", rotation=0, ha="right", va="center")
        strip.tick_params(labelbottom=False)
        handles = [Patch(facecolor=colour, label=name) for name, colour in zip(names, colours)]
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
        title = f"{prediction.path.name}: {summary.label} (mean p = {summary.score:.2f})"
        strip.set_title(title)
    else:
        axes = figure.add_subplot(1, 1, 1)
        for index, name in enumerate(names):
            axes.plot(times, values[:, index], marker="o", markersize=3, label=name)
        axes.axhline(0.0, color="grey", linewidth=0.8)
        axes.set_ylim(-1.0, 1.0)
        axes.set_ylabel("value")
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
        means = ", ".join(f"{name} {value:+.2f}" for name, value in zip(names, summary.values))
        axes.set_title(f"{prediction.path.name}: mean {means}")
    axes.set_xlim(*span)
    axes.set_xlabel("time (s)")
    axes.grid(True, alpha=0.3)
    figure.subplots_adjust(left=0.08, right=0.8, bottom=0.13, top=0.9)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


def save_outputs(
    prediction: WindowedPrediction, out_dir: PathLike, formats: Sequence[str] = OUTPUT_FORMATS
) -> dict[str, Path]:
    """Write ``<out_dir>/<video stem>.{csv,json,png}`` (the chosen formats), each atomically.

    Args:
        prediction: What to write.
        out_dir: Output folder (created).
        formats: Any of :data:`OUTPUT_FORMATS`.

    Returns:
        ``{format: path}`` of the files written.

    Raises:
        ValueError: An unknown format.
    """
    unknown = sorted(set(formats) - set(OUTPUT_FORMATS))
    if unknown:
        raise ValueError(f"unknown output format(s) {unknown}; choose from {OUTPUT_FORMATS}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = prediction.path.name if prediction.path.is_dir() else prediction.path.stem
    writers = {"csv": write_csv, "json": write_json, "png": plot_timeline}
    written = {}
    for name in OUTPUT_FORMATS:
        if name in formats:
            written[name] = writers[name](prediction, folder / f"{stem}.{name}")
    return written


# ------------------------------------------------------------------------------------------ command line

#: Help text of ``maedfer predict`` (and ``tools/predict.py``).
CLI_DESCRIPTION = """Predict the emotion (or valence / arousal) of raw videos over time, window by window.

Examples:
    maedfer predict clip.mp4 --checkpoint runs/demo_finetune/checkpoint-last.pth
    maedfer predict videos/*.mp4 --checkpoint dfew_fold1.safetensors --model mae_dfer_base \\
        --window 16 --stride 8 --out predictions/ --format csv png
    maedfer predict face_clips/*.mp4 --checkpoint ckpt.pth --no-face-detect --device cpu --quiet

The model is loaded once. Each video is decoded, its main face is cropped in every frame (unless
--no-face-detect), and windows of --window source frames (default: the span the model was trained on,
num_frames x sampling_rate) every --stride frames (default: half a window) are classified; a last window is added
so the whole video is covered. Audio-visual models (HiCMAE) also read each window's soundtrack. See
``maedfer.apps.predict`` for the exact rules.

Output, per video, in --out (default ``predictions/``): ``<stem>.csv`` (one row per window: window, start_frame,
end_frame, start_s, end_s, then label, score and prob_<class> for classification, or one column per target for
regression), ``<stem>.json`` (the same plus the video-level mean) and ``<stem>.png`` (a timeline). One summary
line per video is printed: the top class and its mean probability, or the mean of each target.

A video that cannot be read, shows no face, or has no audio track for an audio-visual model is reported as
``error: <file>: <reason>`` on stderr and skipped; the exit code is then 2 (0 when every video succeeded).
"""


EXPECTED_ERRORS = (*INPUT_ERRORS, ImportError)  # a missing face-detection dependency says what to install


def one_line(error: BaseException) -> str:
    """The error's message on a single line, without the file name of a ClipReadError (the caller prints it)."""
    if isinstance(error, NoAudioError):
        return " ".join(error.description.split())
    if isinstance(error, ClipReadError):
        return " ".join(error.reason.split()) or type(error).__name__
    return error_message(error)


def summary_line(prediction: WindowedPrediction) -> str:
    """``<file>: <top class> p=<mean probability>`` or ``<file>: valence +0.12, arousal -0.30``, with window count."""
    summary = prediction.mean()
    if summary.label is not None:
        result = f"{summary.label} (mean p={summary.score:.3f})"
    else:
        result = ", ".join(f"{name} {value:+.3f}" for name, value in zip(prediction.label_names, summary.values))
    return f"{prediction.path}: {result} [{len(prediction.windows)} windows, {prediction.duration_s:.2f} s]"


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=CLI_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="+", type=Path, metavar="VIDEO", help="video files (or frame folders)")
    add_model_source_arguments(parser, checkpoint_help="fine-tuned checkpoint")
    parser.add_argument("--dataset", default=None, help="dataset whose class names to use (default: the config's)")
    parser.add_argument("--window", type=int, default=None,
                        help="window length in source frames (default: num_frames x sampling_rate of the model)")
    parser.add_argument("--stride", type=int, default=None, help="step between windows in frames (default: window/2)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="precision (auto: bf16 on CUDA, fp32 on CPU); bf16/fp16 cast the weights once and run under autocast")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (slow first batch; worth it for many or long videos)")
    parser.add_argument("--no-face-detect", action="store_true",
                        help="use the frames as they are (videos that are already face crops)")
    parser.add_argument("--detector", choices=("auto", "yunet", "haar"), default="auto", help="face detector")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default predictions/)")
    parser.add_argument("--format", nargs="+", choices=OUTPUT_FORMATS, default=list(OUTPUT_FORMATS),
                        dest="formats", help="files to write per video (default: csv json png)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log messages, only the summaries")
    args = parser.parse_args(argv)
    for name in ("window", "stride", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    stems: dict[str, Path] = {}
    for video in args.videos:
        stem = video.name if video.is_dir() else video.stem
        if stem in stems and stems[stem] != video:
            parser.error(f"{stems[stem]} and {video} would both be written to {args.out / stem}.*")
        stems[stem] = video
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")

    device = resolve_device(args.device)
    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    try:
        args.checkpoint = checkpoint_from_args(args)
        loaded = load_inference_model(args.checkpoint, model_name=args.model, dataset=args.dataset, device=device)
        # bf16 / fp16: half-precision weights (cast once); --compile: compiled with frozen weights.
        optimize_for_inference(loaded.model, resolve_precision(args.precision, loaded.device), compile=args.compile)
        detector = None if args.no_face_detect or loaded.modality == "audio" else FaceDetector(backend=args.detector)
    except EXPECTED_ERRORS as error:
        print(f"error: {args.checkpoint}: {one_line(error)}", file=sys.stderr)
        return 2

    failed = 0
    for video in args.videos:
        try:
            prediction = predict_video(
                loaded, video, window=args.window, stride=args.stride, batch_size=args.batch_size,
                detect_faces=not args.no_face_detect, detector=detector, precision=args.precision,
                progress=not args.quiet,
            )
            written = save_outputs(prediction, args.out, formats=args.formats)
        except EXPECTED_ERRORS as error:
            failed += 1
            print(f"error: {video}: {one_line(error)}", file=sys.stderr)
            continue
        print(f"{summary_line(prediction)} -> {', '.join(str(path) for path in written.values())}")
    if failed:
        print(f"{failed} of {len(args.videos)} videos failed")
    return 2 if failed else 0

