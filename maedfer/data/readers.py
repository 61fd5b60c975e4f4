"""Clip and audio readers: frame folders, video files (decord or PyAV) and wav / in-video audio.

Details: ``docs/modules.md``, section ``maedfer/data/readers.py``.
"""

from __future__ import annotations

import logging
import operator
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Union

import numpy as np

from ..utils import atomic_write

__all__ = [
    "IMAGE_DECODERS",
    "IMAGE_SUFFIXES",
    "MIN_VIDEO_BYTES",
    "ClipReadError",
    "ClipReader",
    "FrameFolderReader",
    "VideoFileReader",
    "extract_audio_file",
    "list_frames",
    "open_clip",
    "read_audio",
    "read_wav",
    "resolve_image_decoder",
]

logger = logging.getLogger(__name__)

#: PyAV's picture conversion, single-threaded: one loader worker is one thread, and a swscale context with slice
#: threads cannot be used in a forked process (see :func:`_forget_inherited_pyav_reformatter`).
PYAV_RGB = {"format": "rgb24", "threads": 1}
_INHERITED_PYAV_REFORMATTERS: list[Any] = []


def _forget_inherited_pyav_reformatter() -> None:
    """In a forked child (a DataLoader worker): stop using the PyAV reformatter the parent thread left behind.

    PyAV keeps one swscale context per thread; one the parent made with slice threads (PyAV's default) waits forever
    in the child, whose copy of it has no threads. The child takes a fresh one; the old one is kept, never freed,
    since freeing it would join those threads.
    """
    import sys

    frame_module = sys.modules.get("av.video.frame")
    local = getattr(frame_module, "_thread_local", None)
    inherited = getattr(local, "reformatter", None)
    if inherited is not None:
        _INHERITED_PYAV_REFORMATTERS.append(inherited)
        local.reformatter = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_pyav_reformatter)

PathLike = Union[str, "os.PathLike[str]"]
VideoBackend = Literal["auto", "decord", "pyav"]
#: JPEG frame decoder: ``"pil"`` (the official readers' decoder), ``"torchvision"`` (``torchvision.io.decode_jpeg``)
#: or ``"opencv"`` (``cv2.imread``): libjpeg-turbo like PIL, without PIL's per-image parsing and copies. ``"auto"`` is
#: resolved by :func:`resolve_image_decoder`.
ImageDecoder = Literal["auto", "pil", "torchvision", "opencv"]
IMAGE_DECODERS: tuple[str, ...] = ("auto", "pil", "torchvision", "opencv")

#: Video files smaller than this many bytes are rejected as broken (the official video readers skip them).
MIN_VIDEO_BYTES: int = 1024
#: File suffixes (lower case) that :func:`open_clip` treats as a single image rather than a video.
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
#: File suffixes (lower case) that :func:`read_audio` reads with soundfile instead of PyAV.
SOUNDFILE_SUFFIXES: frozenset[str] = frozenset({".wav", ".flac"})
#: When the next wanted frame lies more than this many frames ahead, the PyAV backend seeks instead of decoding
#: through the gap. Sampled clips (16 frames at stride <= 4) are always decoded in one forward pass.
PYAV_RESEEK_GAP: int = 128


class ClipReadError(RuntimeError):
    """A clip, frame, video or audio file exists but cannot be read.

    Attributes:
        path: the file or folder that failed (as a string).
        reason: what went wrong, usually the decoder's own message.
    """

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read {self.path}: {reason}")

    def __reduce__(self) -> tuple[type[ClipReadError], tuple[str, str]]:
        # Keeps the exception picklable (multiprocessing workers) despite the two-argument constructor.
        return (type(self), (self.path, self.reason))


# ----------------------------------------------------------------------------------------------------------------
# lazy optional imports


def _import_pil() -> ModuleType:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is normally present
        raise ImportError("Pillow is required to read frame images; install it with: pip install pillow") from exc
    return Image


def _import_av() -> ModuleType:
    try:
        import av
    except ImportError as exc:
        raise ImportError(
            "PyAV is required to decode video / audio containers; install it with: pip install av"
        ) from exc
    return av


def _import_decord() -> ModuleType:
    try:
        import decord
    except ImportError as exc:
        raise ImportError("decord is required for backend='decord'; install it with: pip install decord") from exc
    return decord


def _import_soundfile() -> ModuleType:
    try:
        import soundfile
    except ImportError as exc:
        raise ImportError(
            "soundfile is required to read / write wav files; install it with: pip install soundfile"
        ) from exc
    return soundfile


def _short(exc: BaseException, limit: int = 400) -> str:
    """One-line, bounded description of a decoder exception."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_index_list(indices: Sequence[int] | np.ndarray, length: int | None, path: Path) -> list[int]:
    """Validate frame indices: integers in ``[0, length)`` (any integers when ``length`` is None)."""
    try:
        index_list = [operator.index(i) for i in indices]
    except TypeError as exc:
        raise TypeError(f"{path}: frame indices must be integers, got {indices!r}") from exc
    if not index_list:
        raise ValueError(f"{path}: no frame indices requested")
    if length is not None:
        bad = [i for i in index_list if i < 0 or i >= length]
        if bad:
            raise IndexError(f"{path}: frame index {bad[0]} is out of range for a clip of {length} frames")
    return index_list


def _gather(frames_by_index: dict[int, np.ndarray], index_list: list[int], path: Path) -> np.ndarray:
    """Stack decoded frames in request order into one ``uint8 (L, H, W, 3)`` array."""
    first = frames_by_index[index_list[0]]
    out = np.empty((len(index_list), *first.shape), dtype=np.uint8)
    for position, index in enumerate(index_list):
        frame = frames_by_index[index]
        if frame.shape != first.shape:
            raise ClipReadError(path, f"frame {index} has shape {frame.shape}, frame {index_list[0]} has {first.shape}")
        out[position] = frame
    return out


# ----------------------------------------------------------------------------------------------------------------
# frame folders


def list_frames(folder: PathLike, ext: str = "jpg") -> list[Path]:
    """List the frame files of a folder in the official order.

    The pattern is ``*.{ext}`` with ``glob`` semantics: case-sensitive (``.JPG`` and ``.jpeg`` do not match
    ``jpg``) and hidden files (``.name.jpg``) are skipped. The names are sorted as plain strings, so unpadded
    numbers sort lexicographically (``frame_1, frame_10, frame_11, ..., frame_2``); this is deliberate, it is the
    order the official readers use, and frame index ``i`` refers to position ``i`` of this list.

    Args:
        folder: directory holding the frames.
        ext: extension without the dot, e.g. ``"jpg"`` (``"png"`` for MAFW).

    Returns:
        Sorted list of frame paths (possibly empty).

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
    """
    folder_path = Path(folder)
    if not folder_path.is_dir():
        raise FileNotFoundError(f"frame folder not found (or not a directory): {folder_path}")
    suffix = "." + ext.lstrip(".")
    names = sorted(name for name in os.listdir(folder_path) if name.endswith(suffix) and not name.startswith("."))
    return [folder_path / name for name in names]


def _decode_image(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one image as ``uint8 (H, W, 3)`` RGB, the pixels of ``PIL.Image.open(path).convert("RGB")`` (an RGB
    file is not converted, which would only copy it); with ``size`` (width, height) resized by PIL bilinear first,
    the same pixels as resizing the decoded array with PIL, without the round trip through numpy."""
    image_module = _import_pil()
    try:
        with image_module.open(path) as image:
            if image.mode == "RGB":
                image.load()
                rgb = image
            else:
                rgb = image.convert("RGB")
            if size is not None:
                rgb = rgb.resize(size, image_module.BILINEAR)
            return np.asarray(rgb)
    except (OSError, ValueError, SyntaxError, image_module.DecompressionBombError) as exc:
        raise ClipReadError(path, f"Pillow could not decode the image ({type(exc).__name__}: {_short(exc)})") from exc


_DECODER_MODULES: dict[str, Any] = {}  # decoder name -> its module, or None when it does not import


def _decoder_module(decoder: str) -> Any:
    """``torchvision.io`` / ``cv2`` for ``"torchvision"`` / ``"opencv"`` when it imports (cached), else ``None``."""
    if decoder not in _DECODER_MODULES:
        try:
            if decoder == "torchvision":
                import torchvision.io as module
            else:
                import cv2 as module
        except Exception:  # ImportError, or a torchvision built for another torch (RuntimeError / OSError)
            module = None
        _DECODER_MODULES[decoder] = module
    return _DECODER_MODULES[decoder]


_DECODER_PACKAGES = {"torchvision": "torchvision (the build made for your torch)", "opencv": "opencv-python-headless"}


def check_image_decoder(decoder: str) -> str:
    """Validate an image decoder name; ``"torchvision"`` and ``"opencv"`` must be importable."""
    if decoder not in IMAGE_DECODERS:
        raise ValueError(f"image decoder must be one of {IMAGE_DECODERS}, got {decoder!r}")
    if decoder in _DECODER_PACKAGES and _decoder_module(decoder) is None:
        raise ImportError(f"image decoder {decoder!r} needs {_DECODER_PACKAGES[decoder]}; install it with: pip install "
                          f"{_DECODER_PACKAGES[decoder].split()[0]}, or use 'pil'")
    return decoder


def resolve_image_decoder(decoder: str, pipeline: str) -> ImageDecoder:
    """The decoder a dataset uses. ``"auto"``: under the fast pipeline torchvision when it imports, else OpenCV when
    it imports, else PIL; under the official pipeline PIL (its decoder). Other names are checked and kept."""
    check_image_decoder(decoder)
    if decoder != "auto":
        return decoder  # type: ignore[return-value]
    if pipeline == "fast":
        for candidate in ("torchvision", "opencv"):
            if _decoder_module(candidate) is not None:
                return candidate  # type: ignore[return-value]
    return "pil"


def _decode_jpeg_torchvision(path: Path) -> np.ndarray | None:
    """``uint8 (H, W, 3)`` RGB by ``torchvision.io.decode_jpeg``, or ``None`` when it cannot decode the file."""
    import torch

    torchvision_io = _decoder_module("torchvision")
    try:
        with open(path, "rb") as handle:
            data = bytearray(handle.read())
        image = torchvision_io.decode_jpeg(torch.frombuffer(data, dtype=torch.uint8),
                                           mode=torchvision_io.ImageReadMode.RGB)
    except (OSError, RuntimeError, ValueError):
        return None
    return image.permute(1, 2, 0).numpy()  # decode_jpeg's (3, H, W) is a view of an (H, W, 3) buffer: no copy


def _decode_jpeg_opencv(path: Path) -> np.ndarray | None:
    """``uint8 (H, W, 3)`` RGB by ``cv2.imread`` (EXIF orientation ignored, as PIL does), or ``None`` when it cannot
    decode the file (OpenCV returns no image rather than raising)."""
    cv2 = _decoder_module("opencv")
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.11
    flags = (cv2.IMREAD_COLOR if rgb_flag is None else rgb_flag) | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imread(os.fspath(path), flags)
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        return None
    return image if rgb_flag is not None else np.ascontiguousarray(image[..., ::-1])


_JPEG_DECODERS = {"torchvision": _decode_jpeg_torchvision, "opencv": _decode_jpeg_opencv}


class FrameFolderReader:
    """A clip stored as a folder of frame images (or a single image file).

    Folder: the frames are :func:`list_frames` ``(path, ext)``; ``len`` is their number and index ``i`` is the
    ``i``-th name in lexicographic order.

    Single image file: the clip has ``len == 1`` but *every* integer index returns that image. This mirrors the
    official MAE-DFER / SVFAP readers, which repeat a single-image sample for all sampled frames; samplers that
    derive indices from ``len`` only ever ask for index 0 anyway.

    Args:
        path: frame folder or image file.
        ext: frame extension without the dot (ignored for an image file).
        image_decoder: :data:`ImageDecoder` for JPEG frames read at their stored size (``read`` without ``size``;
            PNG and resized reads always go through PIL, and so does a frame the chosen decoder cannot read). All
            three decode with libjpeg-turbo: torchvision gave PIL's pixels on every JPEG tested (greyscale, CMYK,
            4:4:4, 4:2:0, progressive), OpenCV too except CMYK (1 level). ``"auto"`` here means ``"pil"``, the
            official pipeline's decoder (datasets resolve it with :func:`resolve_image_decoder`).

    Attributes:
        path: the folder or image.
        frame_paths: the frame files in index order (``[path]`` for an image).
        is_single_image: whether ``path`` is an image file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ClipReadError: the folder holds no ``*.{ext}`` frame.
    """

    def __init__(self, path: PathLike, ext: str = "jpg", image_decoder: ImageDecoder = "pil") -> None:
        self.path = Path(path)
        self.ext = ext.lstrip(".")
        check_image_decoder(image_decoder)
        self.image_decoder = image_decoder
        self._decode_jpeg = _JPEG_DECODERS.get(image_decoder)
        if self.path.is_file():
            self.is_single_image = True
            self.frame_paths: list[Path] = [self.path]
        elif self.path.is_dir():
            self.is_single_image = False
            self.frame_paths = list_frames(self.path, self.ext)
            if not self.frame_paths:
                raise ClipReadError(
                    self.path, f"the folder holds no '*.{self.ext}' frame (the match is case-sensitive)"
                )
        else:
            raise FileNotFoundError(f"clip not found: {self.path}")

    def __len__(self) -> int:
        return len(self.frame_paths)

    def __repr__(self) -> str:
        kind = "image" if self.is_single_image else f"{len(self)} '*.{self.ext}' frames"
        return f"FrameFolderReader({str(self.path)!r}, {kind})"

    def read(self, indices: Sequence[int] | np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """Decode frames.

        Args:
            indices: frame indices, in any order and with repeats; each distinct frame is decoded once.
            size: ``(width, height)`` to resize each frame to with PIL bilinear as it is decoded (the pixels of
                :func:`maedfer.data.transforms.resize_frames_square` on the decoded clip).

        Returns:
            ``uint8 (L, H, W, 3)`` RGB, ``L = len(indices)``, in the order of ``indices``.

        Raises:
            IndexError: an index is outside ``[0, len)`` (folders only).
            ValueError: ``indices`` is empty.
            ClipReadError: a frame cannot be decoded (the message names the file) or frames differ in size.
        """
        if self.is_single_image:
            index_list = _as_index_list(indices, None, self.path)
            image = _decode_image(self.path, size)
            return np.ascontiguousarray(np.broadcast_to(image, (len(index_list), *image.shape)))
        index_list = _as_index_list(indices, len(self), self.path)
        out: np.ndarray | None = None
        first_position: dict[int, int] = {}  # frame index -> where it was decoded to
        decode_jpeg = self._decode_jpeg if size is None else None
        for position, index in enumerate(index_list):  # decoded straight into the clip array, repeats copied
            if index in first_position:
                out[position] = out[first_position[index]]  # type: ignore[index]  (set when decoded)
                continue
            frame_path = self.frame_paths[index]
            frame = None
            if decode_jpeg is not None and frame_path.suffix.lower() in (".jpg", ".jpeg"):
                frame = decode_jpeg(frame_path)
            if frame is None:
                frame = _decode_image(frame_path, size)
            if out is None:
                out = np.empty((len(index_list), *frame.shape), dtype=np.uint8)
            elif frame.shape != out.shape[1:]:
                raise ClipReadError(self.path, f"frame {index} has shape {frame.shape}, frame {index_list[0]} has "
                                               f"{out.shape[1:]}")
            out[position] = frame
            first_position[index] = position
        assert out is not None  # index_list is never empty
        return out


# ----------------------------------------------------------------------------------------------------------------
# video files


class _DecordBackend:
    """decord ``VideoReader`` with ``get_batch``."""

    name = "decord"

    def __init__(self, path: Path, num_threads: int) -> None:
        decord = _import_decord()
        self.path = path
        try:
            self._reader: Any = decord.VideoReader(str(path), num_threads=num_threads)
        except Exception as exc:  # decord raises DECORDError / RuntimeError with FFmpeg's message
            raise ClipReadError(path, f"decord could not open the video ({_short(exc)})") from exc
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())

    def decode(self, sorted_unique: list[int]) -> dict[int, np.ndarray]:
        try:
            batch = self._reader.get_batch(sorted_unique)
        except Exception as exc:
            raise ClipReadError(self.path, f"decord could not decode frames {sorted_unique} ({_short(exc)})") from exc
        # The default bridge returns a decord NDArray; a user-selected torch/numpy bridge returns other types.
        array = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
        if array.shape[0] != len(sorted_unique):
            raise ClipReadError(self.path, f"decord returned {array.shape[0]} frames for {len(sorted_unique)} indices")
        return {index: array[k] for k, index in enumerate(sorted_unique)}

    def close(self) -> None:
        self._reader = None


class _PyAVBackend:
    """PyAV: seek to the key frame before the wanted frames, decode forward, map time stamps to frame indices.

    Frame index of a decoded frame = ``round((pts - start_pts) * time_base * average_rate)``. When the stream has
    no start time, no average rate, or a frame without a pts, or when the time stamps do not hit the wanted index
    (variable frame rate), it falls back to decoding from the start and counting frames.
    """

    name = "pyav"

    def __init__(self, path: Path, num_threads: int, skip_nonref: bool = True) -> None:
        self._av = _import_av()
        self.path = path
        self._num_threads = num_threads
        self.skip_nonref = skip_nonref and num_threads == 1  # frame threading would delay the per-packet switch
        self._container: Any = None
        self._open()
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self._rate: Fraction | None = Fraction(rate) if rate else None
        self.fps = float(rate) if rate else 0.0
        self._time_base: Fraction | None = Fraction(stream.time_base) if stream.time_base else None
        self._start_pts: int | None = stream.start_time
        self._num_frames: int | None = int(stream.frames) if stream.frames and stream.frames > 0 else None
        self._use_pts = self._rate is not None and self._time_base is not None and self._start_pts is not None

    def _open(self) -> None:
        self.close()
        try:
            container = self._av.open(str(self.path))
        except Exception as exc:  # av.error.FFmpegError and OS errors
            raise ClipReadError(self.path, f"PyAV could not open the video ({_short(exc)})") from exc
        if not container.streams.video:
            container.close()
            raise ClipReadError(self.path, "the file has no video stream")
        self._container = container
        self._stream = container.streams.video[0]
        self._stream.codec_context.thread_count = self._num_threads
        if self._num_threads != 1:
            self._stream.codec_context.thread_type = "AUTO"

    @property
    def num_frames(self) -> int:
        if self._num_frames is None:
            # The container does not store a frame count (e.g. Matroska): decode once and cache the count.
            count = sum(1 for _ in self._decode_sequential())
            if count == 0:
                raise ClipReadError(self.path, "PyAV decoded no video frame")
            self._num_frames = count
            logger.debug("%s: counted %d frames by decoding", self.path, count)
        return self._num_frames

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _frames(self, wanted: set[int] | None = None) -> Iterator[Any]:
        """Decoded frames from the current demuxer position; decoder errors become ClipReadError.

        With ``wanted`` (frame indices) and usable time stamps, a packet whose frame is not wanted is decoded with
        ``skip_frame = "NONREF"``: FFmpeg drops it when no other frame refers to it (most B-frames), so the frames
        that are returned are exactly those of a full decode, at a fraction of the work.
        """
        if wanted is not None and self.skip_nonref and self._use_pts:
            iterator = self._decode_packets(wanted)
        else:
            iterator = self._container.decode(self._stream)
        while True:
            try:
                frame = next(iterator)
            except StopIteration:
                return
            except Exception as exc:  # av.error.FFmpegError (InvalidDataError, EOF in the middle of a packet, ...)
                raise ClipReadError(
                    self.path, f"PyAV decoding failed ({_short(exc)}); the file may be truncated"
                ) from exc
            yield frame

    def _decode_packets(self, wanted: set[int]) -> Iterator[Any]:
        """Demux and decode packet by packet, skipping non-reference frames outside ``wanted``."""
        context = self._stream.codec_context
        for packet in self._container.demux(self._stream):
            if packet.pts is not None:
                context.skip_frame = "DEFAULT" if self._pts_to_index(packet.pts) in wanted else "NONREF"
            else:  # the flush packet at the end of the stream (or a packet without time stamp): decode it
                context.skip_frame = "DEFAULT"
            yield from packet.decode()

    def _decode_sequential(self) -> Iterator[tuple[int, Any]]:
        """(index, frame) for every frame from the start, counting frames in presentation order."""
        self._open()
        yield from enumerate(self._frames())

    def _pts_to_index(self, pts: int) -> int:
        assert self._time_base is not None and self._rate is not None and self._start_pts is not None
        # floor((pts - start) * time_base * rate + 1/2) in integers (Fraction arithmetic cost ~0.3 ms a frame)
        numerator = self._time_base.numerator * self._rate.numerator
        denominator = self._time_base.denominator * self._rate.denominator
        return (2 * (pts - self._start_pts) * numerator + denominator) // (2 * denominator)

    def _index_to_pts(self, index: int) -> int:
        assert self._time_base is not None and self._rate is not None and self._start_pts is not None
        return self._start_pts + int(Fraction(index) / self._rate / self._time_base)

    def _seek(self, index: int) -> None:
        """Seek to the key frame at or before ``index``."""
        try:
            self._container.seek(self._index_to_pts(index), stream=self._stream, backward=True, any_frame=False)
        except Exception as exc:
            raise ClipReadError(self.path, f"PyAV could not seek to frame {index} ({_short(exc)})") from exc

    def decode(self, sorted_unique: list[int]) -> dict[int, np.ndarray]:
        if self._use_pts:
            result = self._decode_with_seeks(sorted_unique)
            if result is not None:
                return result
            logger.debug("%s: time stamps do not map to frame indices; decoding from the start", self.path)
        return self._decode_counting(sorted_unique)

    def _decode_counting(self, sorted_unique: list[int]) -> dict[int, np.ndarray]:
        wanted = set(sorted_unique)
        last_wanted = sorted_unique[-1]
        result: dict[int, np.ndarray] = {}
        last_index = -1
        for index, frame in self._decode_sequential():
            last_index = index
            if index in wanted:
                result[index] = frame.to_ndarray(**PYAV_RGB)
            if index >= last_wanted:
                break
        self._check_complete(result, sorted_unique, last_index)
        return result

    def _check_complete(self, result: dict[int, np.ndarray], sorted_unique: list[int], last_index: int) -> None:
        missing = [i for i in sorted_unique if i not in result]
        if missing:
            shown = f"{missing[:8]}{'...' if len(missing) > 8 else ''}"
            where = (
                f"the stream ends after frame {last_index}" if last_index >= 0 else "no frame could be decoded there"
            )
            declared = f" although {self._num_frames} frames are declared" if self._num_frames else ""
            raise ClipReadError(
                self.path, f"frames {shown} could not be decoded: {where}{declared}; the file may be truncated"
            )

    def _decode_with_seeks(self, sorted_unique: list[int]) -> dict[int, np.ndarray] | None:
        """Seek-and-decode; returns None when the time stamps turn out unusable (the caller falls back).

        Each pass seeks to the key frame at or before the next wanted frame and decodes forward, collecting wanted
        frames, until all are found, the next one is more than :data:`PYAV_RESEEK_GAP` frames ahead (seek again),
        or the stream ends. If a seek lands after the wanted frame, that pass restarts from the first packet.
        """
        result: dict[int, np.ndarray] = {}
        position = 0  # next entry of sorted_unique still to be found
        last_index = -1
        from_start = False
        while position < len(sorted_unique):
            target = sorted_unique[position]
            if from_start:
                self._open()
            else:
                self._seek(target)
            outcome = "end"
            first = True
            for frame in self._frames(set(sorted_unique[position:])):
                if frame.pts is None:
                    return None
                index = self._pts_to_index(frame.pts)
                last_index = index
                if first:
                    first = False
                    if index > target:
                        if from_start:
                            return None  # even the first frame of the stream lies after the target
                        outcome = "restart"
                        break
                if index < target:
                    continue
                if index > target:
                    return None  # a wanted index was skipped: the time stamps are not a constant-rate grid
                result[index] = frame.to_ndarray(**PYAV_RGB)
                position += 1
                if position == len(sorted_unique):
                    outcome = "done"
                    break
                target = sorted_unique[position]
                if target - index > PYAV_RESEEK_GAP:
                    outcome = "seek"
                    break
            if outcome == "end":
                break
            from_start = outcome == "restart"
        self._check_complete(result, sorted_unique, last_index)
        return result


def _resolve_backend(backend: str) -> str:
    if backend not in ("auto", "decord", "pyav"):
        raise ValueError(f"unknown video backend {backend!r}; use 'auto', 'decord' or 'pyav'")
    if backend != "auto":
        return backend
    try:
        _import_decord()
    except ImportError:
        _import_av()  # raises ImportError with both install hints if neither is present
        return "pyav"
    return "decord"


class VideoFileReader:
    """A clip stored as a video file, decoded frame-accurately with decord or PyAV.

    Args:
        path: video file (mp4, avi, mkv, ...).
        backend: ``"decord"``, ``"pyav"`` or ``"auto"`` (decord when it can be imported, else PyAV; a file that
            decord cannot open or decode, such as a tiny 48x48 H.264 stream, is retried with PyAV).
        num_threads: decoder threads; 1 (the official setting) is fastest with one reader per data-loader worker.

    Attributes:
        path: the video path.
        backend: the backend actually used (``"decord"`` or ``"pyav"``).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ClipReadError: the file is smaller than :data:`MIN_VIDEO_BYTES`, cannot be opened, or holds no video.
        ImportError: the requested backend is not installed (the message gives the pip command).
    """

    def __init__(self, path: PathLike, backend: VideoBackend = "auto", num_threads: int = 1) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file not found: {self.path}")
        size = self.path.stat().st_size
        if size < MIN_VIDEO_BYTES:
            raise ClipReadError(
                self.path, f"the file has only {size} bytes (< {MIN_VIDEO_BYTES}); it is empty or broken"
            )
        self.backend = _resolve_backend(backend)
        self._num_threads = num_threads
        # "auto" falls back to PyAV when decord cannot open or decode a file (e.g. tiny 48x48 H.264 streams).
        self._fallback = backend == "auto" and self.backend == "decord"
        self._impl: _DecordBackend | _PyAVBackend
        if self.backend == "decord":
            try:
                self._impl = _DecordBackend(self.path, num_threads)
            except ClipReadError as exc:
                if not self._fallback:
                    raise
                self._switch_to_pyav(exc)
        else:
            self._impl = _PyAVBackend(self.path, num_threads)
        if len(self) <= 0:
            raise ClipReadError(self.path, f"{self.backend} found no video frame")

    def _switch_to_pyav(self, error: ClipReadError) -> None:
        """Replace a failed decord backend by PyAV (``backend="auto"`` only)."""
        logger.debug("%s: decord failed (%s); falling back to PyAV", self.path, error.reason)
        self._fallback = False
        self.backend = "pyav"
        self._impl = _PyAVBackend(self.path, self._num_threads)

    def __len__(self) -> int:
        return self._impl.num_frames

    def __repr__(self) -> str:
        return f"VideoFileReader({str(self.path)!r}, backend={self.backend!r}, frames={len(self)}, fps={self.fps:g})"

    def __enter__(self) -> VideoFileReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the decoder and the file handle."""
        self._impl.close()

    @property
    def fps(self) -> float:
        """Average frame rate in frames per second (0.0 when the container does not state one)."""
        return self._impl.fps

    def frame_time(self, index: int) -> tuple[np.float32, np.float32]:
        """Start and end time of a frame, ``[index / fps, (index + 1) / fps)``, as float32 seconds.

        The division is done in float64 and rounded to float32, which equals decord's ``get_frame_timestamp`` for
        constant-rate files whose first frame is at time 0. Float32 matters: the official HiCMAE pre-training audio
        window is computed from these float32 values in float32 arithmetic (``np.float32 * int`` stays float32).

        Raises:
            IndexError: ``index`` outside ``[0, len)``.
            ClipReadError: the container states no frame rate.
        """
        index = operator.index(index)
        if not 0 <= index < len(self):
            raise IndexError(f"{self.path}: frame index {index} is out of range for a clip of {len(self)} frames")
        if self.fps <= 0:
            raise ClipReadError(self.path, "the video states no frame rate, so frame times are unknown")
        return np.float32(index / self.fps), np.float32((index + 1) / self.fps)

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Decode frames.

        Args:
            indices: frame indices, in any order and with repeats; each distinct frame is decoded once.

        Returns:
            ``uint8 (L, H, W, 3)`` RGB, ``L = len(indices)``, in the order of ``indices``.

        Raises:
            IndexError: an index is outside ``[0, len)``.
            ValueError: ``indices`` is empty.
            ClipReadError: decoding failed (e.g. a truncated file); the message names the file and the reason.
        """
        index_list = _as_index_list(indices, len(self), self.path)
        try:
            decoded = self._impl.decode(sorted(set(index_list)))
        except ClipReadError as exc:
            if not self._fallback:
                raise
            self._switch_to_pyav(exc)
            decoded = self._impl.decode(sorted(set(index_list)))
        return _gather(decoded, index_list, self.path)


#: Either kind of clip reader; both have ``len()`` and ``read(indices) -> uint8 (L, H, W, 3)``.
ClipReader = Union[FrameFolderReader, VideoFileReader]


def open_clip(
    path: PathLike, *, ext: str = "jpg", backend: VideoBackend = "auto", image_decoder: ImageDecoder = "pil"
) -> FrameFolderReader | VideoFileReader:
    """Open a clip: a frame folder, a single image (suffix in :data:`IMAGE_SUFFIXES`) or a video file.

    Args:
        path: folder, image or video.
        ext: frame extension for folders.
        backend: video backend for video files.
        image_decoder: JPEG decoder for folders and images (see :class:`FrameFolderReader`).

    Returns:
        :class:`FrameFolderReader` for folders and images, :class:`VideoFileReader` otherwise.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    clip_path = Path(path)
    if clip_path.is_dir():
        return FrameFolderReader(clip_path, ext=ext, image_decoder=image_decoder)
    if not clip_path.exists():
        raise FileNotFoundError(f"clip not found: {clip_path}")
    if clip_path.suffix.lower() in IMAGE_SUFFIXES:
        return FrameFolderReader(clip_path, ext=ext, image_decoder=image_decoder)
    return VideoFileReader(clip_path, backend=backend)


# ----------------------------------------------------------------------------------------------------------------
# audio


def _require_file(path: PathLike, what: str) -> Path:
    file_path = Path(path)
    if not file_path.is_file():
        raise FileNotFoundError(f"{what} not found: {file_path}")
    return file_path


def read_wav(path: PathLike) -> tuple[np.ndarray, int]:
    """Read a wav (or flac) file like ``torchaudio.load``.

    Args:
        path: audio file readable by soundfile.

    Returns:
        ``(samples, sample_rate)``: samples are float32 ``(channels, n)``; integer PCM is scaled to [-1, 1)
        (int16 divided by 32768 exactly, int32 by 2**31), float files are returned as stored.

    Raises:
        FileNotFoundError: the file does not exist.
        ClipReadError: soundfile cannot read it.
    """
    wav_path = _require_file(path, "audio file")
    soundfile = _import_soundfile()
    try:
        samples, sample_rate = soundfile.read(str(wav_path), dtype="float32", always_2d=True)
    except RuntimeError as exc:  # soundfile.LibsndfileError
        raise ClipReadError(wav_path, f"soundfile could not read it ({_short(exc)})") from exc
    return np.ascontiguousarray(samples.T), int(sample_rate)


def _decode_audio_pyav(path: Path, sample_rate: int, sample_format: Literal["flt", "s16"]) -> np.ndarray:
    """Decode the first audio stream of any container to mono at ``sample_rate`` with FFmpeg's resampler.

    Returns:
        ``(n,)`` float32 (``"flt"``) or int16 (``"s16"``).
    """
    av = _import_av()
    dtype = np.float32 if sample_format == "flt" else np.int16
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise ClipReadError(path, f"PyAV could not open the file ({_short(exc)})") from exc
    chunks: list[np.ndarray] = []
    with container:
        if not container.streams.audio:
            raise ClipReadError(path, "no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=sample_rate)
        try:
            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    chunks.append(converted.to_ndarray().reshape(-1))
            for converted in resampler.resample(None):  # flush the resampler's delay line
                chunks.append(converted.to_ndarray().reshape(-1))
        except Exception as exc:  # av.error.FFmpegError, ValueError from the filter graph
            raise ClipReadError(path, f"PyAV audio decoding failed ({_short(exc)})") from exc
    if not chunks:
        return np.zeros(0, dtype=dtype)
    return np.concatenate(chunks).astype(dtype, copy=False)


def read_audio(
    path: PathLike,
    *,
    sample_rate: int = 16000,
    offset: int = 0,
    num_samples: int | None = None,
) -> np.ndarray:
    """Read mono audio at ``sample_rate``, optionally a segment of it.

    * wav / flac at ``sample_rate``: soundfile reads only the segment; float32, int16 scaled by 1/32768 (like
      ``torchaudio.load``); several channels are averaged.
    * any other container (mp4, mkv, m4a, ...), and wav / flac at another rate: the first audio stream is decoded
      with PyAV and converted by FFmpeg's resampler (``av.AudioResampler(format="s16", layout="mono",
      rate=sample_rate)``, flushed at the end) to exactly the int16 samples that the official extraction
      ``ffmpeg -vn -acodec pcm_s16le -ac 1 -ar 16000`` writes (see :func:`extract_audio_file`), scaled by 1/32768;
      then the segment is cut. So ``read_audio(video)`` equals ``read_wav`` of the extracted wav, bit for bit.
      (The resampler's *float* mono output is not used on purpose: FFmpeg only normalises its down-mix matrix for
      integer output, so a float stereo-to-mono down-mix is ``0.707 * (L + R)``, 3 dB louder than the wav files
      the official recipes read, and it can exceed 1.) ``offset`` and ``num_samples`` count samples at
      ``sample_rate``.

    Like ``torchaudio.load(frame_offset=..., num_frames=...)``, a segment running past the end is returned
    shorter (possibly empty); callers that need a minimum length must check it.

    Args:
        path: audio or video file.
        sample_rate: output rate in Hz.
        offset: first sample of the segment.
        num_samples: segment length; None reads to the end.

    Returns:
        float32 ``(1, n)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ClipReadError: the file cannot be decoded, or a video has no audio track (reason ``"no audio track"``).
        ValueError: negative ``offset`` / ``num_samples`` or non-positive ``sample_rate``.
    """
    audio_path = _require_file(path, "audio file")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if offset < 0 or (num_samples is not None and num_samples < 0):
        raise ValueError(f"{audio_path}: offset ({offset}) and num_samples ({num_samples}) must be >= 0")
    if audio_path.suffix.lower() in SOUNDFILE_SUFFIXES:
        soundfile = _import_soundfile()
        try:
            info = soundfile.info(str(audio_path))
            if int(info.samplerate) == sample_rate:
                if offset >= info.frames:
                    return np.zeros((1, 0), dtype=np.float32)
                frames = -1 if num_samples is None else num_samples
                samples, _ = soundfile.read(
                    str(audio_path), start=offset, frames=frames, dtype="float32", always_2d=True
                )
                mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
                return np.ascontiguousarray(mono[None, :], dtype=np.float32)
        except RuntimeError as exc:  # soundfile.LibsndfileError
            raise ClipReadError(audio_path, f"soundfile could not read it ({_short(exc)})") from exc
        logger.debug("%s: %d Hz, resampling to %d Hz with PyAV", audio_path, info.samplerate, sample_rate)
    mono_int16 = _decode_audio_pyav(audio_path, sample_rate, "s16")
    end = None if num_samples is None else offset + num_samples
    return (mono_int16[offset:end].astype(np.float32) / np.float32(32768))[None, :]


def extract_audio_file(video: PathLike, wav: PathLike, sample_rate: int = 16000) -> int:
    """Extract the first audio track of a video to a mono int16 PCM wav at ``sample_rate``.

    Equivalent to ``ffmpeg -i video -vn -acodec pcm_s16le -ac 1 -ar 16000 wav`` (the official preprocessing):
    FFmpeg's resampler produces the int16 samples, soundfile writes them. The file is written to a hidden
    temporary file next to ``wav`` and renamed, so an interrupted run never leaves a partial ``wav``. Parent
    folders are created.

    Args:
        video: input video (or any audio container PyAV reads).
        wav: output path.
        sample_rate: output rate in Hz.

    Returns:
        Number of samples written.

    Raises:
        FileNotFoundError: ``video`` does not exist.
        ClipReadError: it cannot be decoded, has no audio track, or its audio is empty.
    """
    video_path = _require_file(video, "video file")
    samples = _decode_audio_pyav(video_path, sample_rate, "s16")
    if samples.size == 0:
        raise ClipReadError(video_path, "the audio track decoded to 0 samples")
    soundfile = _import_soundfile()
    atomic_write(wav, lambda _handle, temporary: soundfile.write(str(temporary), samples, sample_rate,
                                                                 subtype="PCM_16", format="WAV"))
    return int(samples.size)
