"""Fine-tuning training augmentations of MAE-DFER, SVFAP and HiCMAE, applied clip-wise.

Details: ``docs/modules.md``, section ``maedfer/data/augment.py``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps
from torch import Tensor

from .transforms import resize_frames_square, to_normalized_tensor

__all__ = [
    "RAND_INCREASING_OPS",
    "RAND_OPS",
    "AugmentOpDraw",
    "CutmixBox",
    "FinetuneTrainTransform",
    "Mixup",
    "MixupOutput",
    "VideoRandAugment",
    "apply_augment_op",
    "augment_op_args",
    "cutmix_box",
    "horizontal_flip_clip",
    "random_erasing_clip",
    "random_resized_crop_clip",
    "random_resized_crop_params",
    "smoothed_one_hot",
]

logger = logging.getLogger(__name__)

#: The 15 operations of timm's "increasing" RandAugment set (``inc1``), the official fine-tuning choice.
RAND_INCREASING_OPS: tuple[str, ...] = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)

#: The 15 operations of the original (non-increasing) RandAugment set (``inc0``).
RAND_OPS: tuple[str, ...] = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)

#: Magnitudes are on a ``[0, MAX_MAGNITUDE]`` scale.
MAX_MAGNITUDE: float = 10.0

_SIGNED_OPS = frozenset(
    {
        "Rotate",
        "ShearX",
        "ShearY",
        "TranslateXRel",
        "TranslateYRel",
        "ColorIncreasing",
        "ContrastIncreasing",
        "BrightnessIncreasing",
        "SharpnessIncreasing",
    }
)

_ENHANCERS = {
    "Color": ImageEnhance.Color,
    "Contrast": ImageEnhance.Contrast,
    "Brightness": ImageEnhance.Brightness,
    "Sharpness": ImageEnhance.Sharpness,
}

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def _check_rng(rng: object, name: str = "rng") -> np.random.Generator:
    """Validate a NumPy generator argument.

    Args:
        rng: The object passed by the caller.
        name: Argument name for the error message.

    Returns:
        The generator.

    Raises:
        TypeError: If ``rng`` is not a :class:`numpy.random.Generator`.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{name} must be a numpy.random.Generator (e.g. np.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng


def _check_clip(video: Tensor, name: str = "video") -> Tensor:
    """Validate a normalised clip tensor.

    Args:
        video: Expected ``(C, L, H, W)`` floating-point tensor.
        name: Argument name for the error message.

    Returns:
        The tensor.

    Raises:
        ValueError: If it is not a 4-D floating-point tensor.
    """
    if not isinstance(video, Tensor) or video.dim() != 4 or not video.is_floating_point():
        desc = f"{tuple(video.shape)} {video.dtype}" if isinstance(video, Tensor) else type(video).__name__
        raise ValueError(f"{name} must be a floating-point (C, L, H, W) tensor, got {desc}")
    return video


def _check_range(pair: Sequence[float], name: str, positive: bool = True) -> tuple[float, float]:
    """Validate a ``(low, high)`` pair with ``low <= high``.

    Args:
        pair: The two numbers.
        name: Argument name for the error message.
        positive: Require ``low > 0``.

    Returns:
        The pair as floats.

    Raises:
        ValueError: If the pair is malformed.
    """
    try:
        low, high = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers (low, high), got {pair!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high or (positive and low <= 0):
        raise ValueError(f"{name} must satisfy {'0 < ' if positive else ''}low <= high, got {pair!r}")
    return low, high


# --------------------------------------------------------------------------------------------------
# RandAugment
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentOpDraw:
    """One RandAugment operation as drawn for a clip.

    Attributes:
        name: Operation name, one of :data:`RAND_INCREASING_OPS` or :data:`RAND_OPS`.
        magnitude: Magnitude on the ``[0, 10]`` scale after noise and clipping.
        negate: Whether the signed parameter is negated (ignored by unsigned operations).
        args: The operation parameters derived by :func:`augment_op_args`.
        resample: PIL resampling filter name used by geometric operations.
    """

    name: str
    magnitude: float
    negate: bool
    args: tuple[float | int, ...]
    resample: str = "bicubic"


def augment_op_args(
    name: str, magnitude: float, negate: bool = False, translate_pct: float = 0.45
) -> tuple[float | int, ...]:
    """Map a magnitude to the parameters of one RandAugment operation (timm conventions, see module doc).

    Args:
        name: Operation name.
        magnitude: Magnitude on the ``[0, 10]`` scale.
        negate: Negate the signed parameter (rotation, shear, translation, enhance offset).
        translate_pct: Maximum relative translation (at magnitude 10).

    Returns:
        The positional parameters of :func:`apply_augment_op` (empty for parameter-free operations).

    Raises:
        ValueError: If ``name`` is unknown.
    """
    level = magnitude / MAX_MAGNITUDE
    sign = -1.0 if negate else 1.0
    if name in ("AutoContrast", "Equalize", "Invert"):
        return ()
    if name == "Rotate":
        return (sign * 30.0 * level,)
    if name in ("ShearX", "ShearY"):
        return (sign * 0.3 * level,)
    if name in ("TranslateXRel", "TranslateYRel"):
        return (sign * translate_pct * level,)
    if name == "PosterizeIncreasing":
        return (4 - int(level * 4),)
    if name == "Posterize":
        return (int(level * 4),)
    if name == "SolarizeIncreasing":
        return (256 - min(256, int(level * 256)),)
    if name == "Solarize":
        return (min(256, int(level * 256)),)
    if name == "SolarizeAdd":
        return (min(128, int(level * 110)),)
    if name.endswith("Increasing") and name[: -len("Increasing")] in _ENHANCERS:
        return (max(0.1, 1.0 + sign * 0.9 * level),)
    if name in _ENHANCERS:
        return (level * 1.8 + 0.1,)
    raise ValueError(f"unknown RandAugment operation {name!r}; known: {', '.join(RAND_INCREASING_OPS + RAND_OPS)}")


def _affine(img: Image.Image, coeffs: tuple[float, ...], fill: tuple[int, int, int], resample: str) -> Image.Image:
    """Inverse-mapped affine transform of a PIL image (output pixel (x, y) samples input (ax+by+c, dx+ey+f))."""
    return img.transform(img.size, Image.Transform.AFFINE, coeffs, resample=_RESAMPLE[resample], fillcolor=fill)


def apply_augment_op(
    img: Image.Image,
    name: str,
    args: Sequence[float | int],
    fill: tuple[int, int, int] = (128, 128, 128),
    resample: str = "bicubic",
) -> Image.Image:
    """Apply one RandAugment operation to a PIL image.

    Args:
        img: RGB PIL image.
        name: Operation name (see :data:`RAND_INCREASING_OPS`, :data:`RAND_OPS`).
        args: Parameters from :func:`augment_op_args`.
        fill: Fill colour of pixels that geometric operations uncover.
        resample: ``"nearest"``, ``"bilinear"`` or ``"bicubic"`` for geometric operations.

    Returns:
        The transformed RGB PIL image (same size).

    Raises:
        ValueError: If ``name`` or ``resample`` is unknown.
    """
    if resample not in _RESAMPLE:
        raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Rotate":
        return img.rotate(float(args[0]), resample=_RESAMPLE[resample], fillcolor=fill)
    if name == "ShearX":
        return _affine(img, (1.0, float(args[0]), 0.0, 0.0, 1.0, 0.0), fill, resample)
    if name == "ShearY":
        return _affine(img, (1.0, 0.0, 0.0, float(args[0]), 1.0, 0.0), fill, resample)
    if name == "TranslateXRel":
        return _affine(img, (1.0, 0.0, float(args[0]) * img.size[0], 0.0, 1.0, 0.0), fill, resample)
    if name == "TranslateYRel":
        return _affine(img, (1.0, 0.0, 0.0, 0.0, 1.0, float(args[0]) * img.size[1]), fill, resample)
    if name in ("PosterizeIncreasing", "Posterize"):
        bits = int(args[0])
        if bits >= 8:
            return img
        if bits <= 0:
            # Keeping 0 bits zeroes every pixel (older Pillow's result; Pillow >= 10 rejects bits=0).
            return Image.new(img.mode, img.size)
        return ImageOps.posterize(img, bits)
    if name in ("SolarizeIncreasing", "Solarize"):
        return ImageOps.solarize(img, int(args[0]))
    if name == "SolarizeAdd":
        add = int(args[0])
        table = [min(255, value + add) if value < 128 else value for value in range(256)]
        return img.point(table * len(img.getbands()))
    base = name[: -len("Increasing")] if name.endswith("Increasing") else name
    if base in _ENHANCERS:
        return _ENHANCERS[base](img).enhance(float(args[0]))
    raise ValueError(f"unknown RandAugment operation {name!r}")


class VideoRandAugment:
    """RandAugment for clips: one draw of operations per clip, applied identically to every frame.

    ``num_ops`` operations are drawn uniformly **with replacement** from the 15-operation set; each is
    then applied with probability ``prob``, with magnitude ``N(magnitude, magnitude_std)`` clipped to
    ``[0, 10]`` (``magnitude_std = inf`` draws ``U[0, magnitude]``; 0 keeps it fixed) and, for signed
    operations, a random sign. Every frame of the clip gets exactly the same operations and parameters.

    Args:
        num_ops: Operations per clip (``n``; official 4).
        magnitude: Mean magnitude (``m``; official 7).
        magnitude_std: Magnitude noise (``mstd``; official 0.5).
        increasing: Use the "increasing" operation set (``inc1``; official True).
        fill: RGB fill colour of geometric operations.
        interpolation: ``"bicubic"`` (official), ``"bilinear"``, ``"nearest"``, or ``"random"``
            (bilinear or bicubic, drawn per operation).
        translate_pct: Maximum relative translation at magnitude 10.
        prob: Probability of applying each drawn operation.

    Example:
        >>> aug = VideoRandAugment.from_string("rand-m7-n4-mstd0.5-inc1")
        >>> out = aug(np.zeros((16, 160, 160, 3), np.uint8), np.random.default_rng(0))
    """

    def __init__(
        self,
        num_ops: int = 4,
        magnitude: float = 7.0,
        magnitude_std: float = 0.5,
        increasing: bool = True,
        fill: tuple[int, int, int] = (128, 128, 128),
        interpolation: str = "bicubic",
        translate_pct: float = 0.45,
        prob: float = 0.5,
    ) -> None:
        if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 0:
            raise ValueError(f"num_ops must be a non-negative int, got {num_ops!r}")
        if not 0.0 <= float(magnitude) <= MAX_MAGNITUDE:
            raise ValueError(f"magnitude must be in [0, {MAX_MAGNITUDE:g}], got {magnitude!r}")
        if not float(magnitude_std) >= 0.0:
            raise ValueError(f"magnitude_std must be >= 0 (inf = uniform), got {magnitude_std!r}")
        if interpolation not in (*_RESAMPLE, "random"):
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE) + ['random']}, got {interpolation!r}")
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob!r}")
        if len(fill) != 3:
            raise ValueError(f"fill must be an RGB triple, got {fill!r}")
        self.num_ops = num_ops
        self.magnitude = float(magnitude)
        self.magnitude_std = float(magnitude_std)
        self.increasing = bool(increasing)
        self.ops: tuple[str, ...] = RAND_INCREASING_OPS if increasing else RAND_OPS
        self.fill: tuple[int, int, int] = (int(fill[0]), int(fill[1]), int(fill[2]))
        self.interpolation = interpolation
        self.translate_pct = float(translate_pct)
        self.prob = float(prob)

    @classmethod
    def from_string(cls, config: str, **kwargs: object) -> VideoRandAugment:
        """Build from a timm-style string such as ``"rand-m7-n4-mstd0.5-inc1"``.

        Recognised fields: ``m`` (magnitude), ``n`` (num_ops), ``mstd`` (magnitude_std), ``inc``
        (increasing, 0/1), ``p`` (prob). Other keyword arguments are passed to the constructor.

        Args:
            config: The string; it must start with ``"rand"``.
            **kwargs: Extra constructor arguments (``fill``, ``interpolation``, ``translate_pct``).

        Returns:
            The augmentation.

        Raises:
            ValueError: On a malformed string or an unknown field.
        """
        parts = config.split("-")
        if not parts or parts[0] != "rand":
            raise ValueError(f"RandAugment config must start with 'rand', got {config!r}")
        params: dict[str, object] = {"magnitude_std": 0.0, "increasing": False}
        for part in parts[1:]:
            match = re.fullmatch(r"([a-z]+)([0-9.]+|inf)", part)
            if match is None:
                raise ValueError(f"malformed field {part!r} in RandAugment config {config!r}")
            key, value = match.groups()
            if key == "m":
                params["magnitude"] = float(value)
            elif key == "n":
                params["num_ops"] = int(value)
            elif key == "mstd":
                params["magnitude_std"] = float(value)
            elif key == "inc":
                params["increasing"] = bool(int(value))
            elif key == "p":
                params["prob"] = float(value)
            else:
                raise ValueError(f"unknown field {key!r} in RandAugment config {config!r}")
        params.update(kwargs)
        return cls(**params)  # type: ignore[arg-type]

    def _draw_magnitude(self, rng: np.random.Generator) -> float:
        """Draw one operation magnitude, clipped to ``[0, 10]``."""
        if self.magnitude_std == math.inf:
            value = rng.uniform(0.0, self.magnitude)
        elif self.magnitude_std > 0.0:
            value = rng.normal(self.magnitude, self.magnitude_std)
        else:
            value = self.magnitude
        return float(min(MAX_MAGNITUDE, max(0.0, value)))

    def draw(self, rng: np.random.Generator) -> list[AugmentOpDraw]:
        """Draw the operations for one clip.

        Args:
            rng: NumPy generator.

        Returns:
            The operations that fire (those that lost the ``prob`` draw are left out), in order.
        """
        rng = _check_rng(rng)
        chosen = rng.integers(0, len(self.ops), size=self.num_ops)
        draws = []
        for index in chosen:
            name = self.ops[int(index)]
            if rng.random() >= self.prob:
                continue
            magnitude = self._draw_magnitude(rng)
            negate = bool(rng.random() < 0.5) if name in _SIGNED_OPS else False
            resample = self.interpolation
            if resample == "random":
                resample = "bilinear" if rng.random() < 0.5 else "bicubic"
            args = augment_op_args(name, magnitude, negate, self.translate_pct)
            draws.append(AugmentOpDraw(name, magnitude, negate, args, resample))
        return draws

    def apply(self, frames: np.ndarray, draws: Sequence[AugmentOpDraw]) -> np.ndarray:
        """Apply drawn operations to every frame of a clip.

        Args:
            frames: ``(L, H, W, 3)`` uint8 RGB frames.
            draws: Operations from :meth:`draw`.

        Returns:
            ``(L, H, W, 3)`` uint8 frames.

        Raises:
            ValueError: If ``frames`` is not a uint8 ``(L, H, W, 3)`` array.
        """
        _check_frames(frames)
        if not draws:
            return frames
        out = np.empty_like(frames)
        for i, frame in enumerate(frames):
            img = Image.fromarray(frame)
            for op in draws:
                img = apply_augment_op(img, op.name, op.args, self.fill, op.resample)
            out[i] = np.asarray(img.convert("RGB"))
        return out

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw once for the clip and apply to every frame.

        Args:
            frames: ``(L, H, W, 3)`` uint8 RGB frames.
            rng: NumPy generator.

        Returns:
            ``(L, H, W, 3)`` uint8 frames.
        """
        return self.apply(frames, self.draw(rng))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_ops={self.num_ops}, magnitude={self.magnitude}, "
            f"magnitude_std={self.magnitude_std}, increasing={self.increasing}, fill={self.fill}, "
            f"interpolation={self.interpolation!r}, translate_pct={self.translate_pct}, prob={self.prob})"
        )


def _check_frames(frames: np.ndarray) -> np.ndarray:
    """Validate ``(L, H, W, 3)`` uint8 frames.

    Args:
        frames: The array.

    Returns:
        The array.

    Raises:
        ValueError: On a wrong type, dtype or shape.
    """
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        desc = f"{frames.shape} {frames.dtype}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"frames must be a uint8 (L, H, W, 3) RGB array, got {desc}")
    return frames


# --------------------------------------------------------------------------------------------------
# Tensor augmentations
# --------------------------------------------------------------------------------------------------


def random_resized_crop_params(
    height: int,
    width: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    max_tries: int = 10,
) -> tuple[int, int, int, int]:
    """Draw a RandomResizedCrop box.

    Up to ``max_tries`` times: area fraction ``U[scale]``, aspect ratio (w/h) log-uniform in ``ratio``,
    ``w = round(sqrt(area * aspect))``, ``h = round(sqrt(area / aspect))``; accepted when
    ``0 < w <= width`` and ``0 < h <= height``, with top/left uniform integers. Otherwise the fallback
    is the largest centred box whose aspect ratio is clamped into ``ratio``.

    Args:
        height: Image height H.
        width: Image width W.
        rng: NumPy generator.
        scale: Range of the crop area as a fraction of ``H * W``.
        ratio: Range of the crop aspect ratio ``w / h``.
        max_tries: Number of attempts before the centre-crop fallback.

    Returns:
        ``(top, left, crop_h, crop_w)``.
    """
    rng = _check_rng(rng)
    scale_lo, scale_hi = _check_range(scale, "scale")
    ratio_lo, ratio_hi = _check_range(ratio, "ratio")
    area = height * width
    log_lo, log_hi = math.log(ratio_lo), math.log(ratio_hi)
    for _ in range(max_tries):
        target_area = rng.uniform(scale_lo, scale_hi) * area
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            return top, left, crop_h, crop_w
    in_ratio = width / height
    if in_ratio < ratio_lo:
        crop_w, crop_h = width, int(round(width / ratio_lo))
    elif in_ratio > ratio_hi:
        crop_h, crop_w = height, int(round(height * ratio_hi))
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def random_resized_crop_clip(
    video: Tensor,
    out_size: int | tuple[int, int],
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    max_tries: int = 10,
) -> Tensor:
    """RandomResizedCrop of a whole clip: one box for all frames, bilinear resize (no antialias).

    Args:
        video: ``(C, L, H, W)`` float tensor.
        out_size: Output size ``S`` or ``(S_h, S_w)``.
        rng: NumPy generator.
        scale: Crop area range as a fraction of ``H * W``.
        ratio: Crop aspect ratio (w/h) range.
        max_tries: Attempts before the centre-crop fallback.

    Returns:
        ``(C, L, S_h, S_w)`` tensor of the input dtype, resized with
        ``F.interpolate(mode="bilinear", align_corners=False)``.
    """
    _check_clip(video)
    out_h, out_w = (out_size, out_size) if isinstance(out_size, int) else (int(out_size[0]), int(out_size[1]))
    height, width = video.shape[-2], video.shape[-1]
    top, left, crop_h, crop_w = random_resized_crop_params(height, width, rng, scale, ratio, max_tries)
    cropped = video[:, :, top : top + crop_h, left : left + crop_w]
    return F.interpolate(cropped, size=(out_h, out_w), mode="bilinear", align_corners=False)


def horizontal_flip_clip(video: Tensor, rng: np.random.Generator, p: float = 0.5) -> Tensor:
    """Flip the whole clip left-right with probability ``p``.

    Args:
        video: ``(C, L, H, W)`` tensor.
        rng: NumPy generator (one uniform draw).
        p: Flip probability.

    Returns:
        ``(C, L, H, W)`` tensor (the input itself when not flipped).
    """
    _check_clip(video)
    if _check_rng(rng).random() < p:
        return video.flip(-1)
    return video


def random_erasing_clip(
    video: Tensor,
    rng: np.random.Generator,
    prob: float = 0.25,
    area: tuple[float, float] = (0.02, 1.0 / 3.0),
    aspect: tuple[float, float] = (0.3, 1.0 / 0.3),
    max_tries: int = 100,
    mode: str = "pixel",
    count: int = 1,
    inplace: bool = False,
) -> Tensor:
    """Random erasing in "cube" mode: one rectangle at the same place in every frame.

    With probability ``prob``, for each of ``count`` rectangles: up to ``max_tries`` times draw an area
    fraction ``U[area] / count`` of ``H * W`` and an aspect ratio (h/w) log-uniform in ``aspect``,
    ``h = round(sqrt(a * r))``, ``w = round(sqrt(a / r))``; accept when ``w < W`` and ``h < H`` and
    place it uniformly. The rectangle is filled, in every frame, with fresh values (drawn separately
    per frame): ``"pixel"`` per-pixel ``N(0, 1)``, ``"rand"`` one ``N(0, 1)`` colour per channel,
    ``"const"`` zeros (all in normalised space).

    Args:
        video: ``(C, L, H, W)`` float tensor (modified only with ``inplace``).
        rng: NumPy generator.
        prob: Probability of erasing the clip.
        area: Range of the rectangle area as a fraction of the frame.
        aspect: Range of the aspect ratio ``h / w``.
        max_tries: Attempts to fit a rectangle.
        mode: ``"pixel"``, ``"rand"`` or ``"const"``.
        count: Number of rectangles (the official ``--recount 1``).
        inplace: Erase in ``video`` itself instead of a copy (for a clip nothing else holds).

    Returns:
        ``(C, L, H, W)`` tensor (a new tensor when something was erased and ``inplace`` is false, else the input).

    Raises:
        ValueError: On an unknown ``mode``.
    """
    _check_clip(video)
    rng = _check_rng(rng)
    if mode not in ("pixel", "rand", "const"):
        raise ValueError(f"mode must be 'pixel', 'rand' or 'const', got {mode!r}")
    area_lo, area_hi = _check_range(area, "area")
    aspect_lo, aspect_hi = _check_range(aspect, "aspect")
    if rng.random() >= prob:
        return video
    chans, frames, height, width = video.shape
    out = video if inplace else video.clone()
    log_lo, log_hi = math.log(aspect_lo), math.log(aspect_hi)
    for _ in range(count):
        for _ in range(max_tries):
            target_area = rng.uniform(area_lo, area_hi) * height * width / count
            ratio = math.exp(rng.uniform(log_lo, log_hi))
            box_h = int(round(math.sqrt(target_area * ratio)))
            box_w = int(round(math.sqrt(target_area / ratio)))
            if box_w < width and box_h < height:
                top = int(rng.integers(0, height - box_h + 1))
                left = int(rng.integers(0, width - box_w + 1))
                for t in range(frames):
                    if mode == "pixel":
                        fill = rng.standard_normal((chans, box_h, box_w), dtype=np.float32)
                    elif mode == "rand":
                        colour = rng.standard_normal((chans, 1, 1), dtype=np.float32)
                        fill = np.broadcast_to(colour, (chans, box_h, box_w))
                    else:
                        fill = np.zeros((chans, box_h, box_w), np.float32)
                    out[:, t, top : top + box_h, left : left + box_w] = torch.from_numpy(np.ascontiguousarray(fill)).to(
                        dtype=out.dtype, device=out.device
                    )
                break
    return out


# --------------------------------------------------------------------------------------------------
# The per-clip training transform
# --------------------------------------------------------------------------------------------------


class FinetuneTrainTransform:
    """The official fine-tuning training augmentation of one clip (steps 1-6 of the module doc).

    Args:
        input_size: Output spatial size after RandomResizedCrop (official 160).
        short_side_size: Size of the square PIL-bilinear resize before RandAugment (official 160).
        rand_augment: Clip RandAugment, a timm-style string for :meth:`VideoRandAugment.from_string`
            (official ``"rand-m7-n4-mstd0.5-inc1"``, with bicubic resampling and fill 128), or ``None``
            to skip it.
        reprob: Random-erasing probability (0 disables it).
        flip: Apply the random horizontal flip (p = 0.5).
        scale: RandomResizedCrop area range.
        ratio: RandomResizedCrop aspect-ratio range.
        erase_mode: Random-erasing fill mode (``"pixel"``).

    Example:
        >>> transform = FinetuneTrainTransform()
        >>> clip = transform(np.zeros((16, 120, 96, 3), np.uint8), np.random.default_rng(0))
        >>> clip.shape, clip.dtype
        (torch.Size([3, 16, 160, 160]), torch.float32)
    """

    def __init__(
        self,
        input_size: int = 160,
        short_side_size: int = 160,
        rand_augment: VideoRandAugment | str | None = "rand-m7-n4-mstd0.5-inc1",
        reprob: float = 0.25,
        flip: bool = True,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        erase_mode: str = "pixel",
    ) -> None:
        if input_size <= 0 or short_side_size <= 0:
            raise ValueError(f"input_size and short_side_size must be positive, got {input_size}, {short_side_size}")
        self.input_size = int(input_size)
        self.short_side_size = int(short_side_size)
        if isinstance(rand_augment, str):
            rand_augment = VideoRandAugment.from_string(rand_augment)
        self.rand_augment: VideoRandAugment | None = rand_augment
        self.reprob = float(reprob)
        self.flip = bool(flip)
        self.scale = _check_range(scale, "scale")
        self.ratio = _check_range(ratio, "ratio")
        self.erase_mode = erase_mode

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> Tensor:
        """Augment one clip.

        Args:
            frames: ``(L, H, W, 3)`` uint8 RGB frames (any size).
            rng: NumPy generator driving every random choice.

        Returns:
            ``(3, L, input_size, input_size)`` float32 tensor, ImageNet-normalised.
        """
        _check_frames(frames)
        rng = _check_rng(rng)
        frames = resize_frames_square(frames, self.short_side_size)
        if self.rand_augment is not None:
            frames = self.rand_augment(frames, rng)
        video = to_normalized_tensor(frames)
        video = random_resized_crop_clip(video, self.input_size, rng, self.scale, self.ratio)
        if self.flip:
            video = horizontal_flip_clip(video, rng)
        if self.reprob > 0:
            video = random_erasing_clip(video, rng, prob=self.reprob, mode=self.erase_mode)
        return video

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_size={self.input_size}, short_side_size={self.short_side_size}, "
            f"rand_augment={self.rand_augment!r}, reprob={self.reprob}, flip={self.flip}, scale={self.scale}, "
            f"ratio={self.ratio}, erase_mode={self.erase_mode!r})"
        )


# --------------------------------------------------------------------------------------------------
# Batch mixing
# --------------------------------------------------------------------------------------------------


class CutmixBox(NamedTuple):
    """A CutMix rectangle in pixel coordinates (half-open ``[top, bottom) x [left, right)``)."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def area(self) -> int:
        """Number of pixels in the box."""
        return (self.bottom - self.top) * (self.right - self.left)


class MixupOutput(NamedTuple):
    """Result of :class:`Mixup`.

    Attributes:
        video: ``(B, C, T, H, W)`` mixed video.
        target: ``(B, K)`` float soft targets (rows sum to 1).
        audio: Mixed audio (``mix_audio=True``) or the untouched input audio, or ``None``.
        lam: Weight of the original sample (after the CutMix area correction).
        cutmix_box: The CutMix box, or ``None`` for Mixup.
    """

    video: Tensor
    target: Tensor
    audio: Tensor | None
    lam: float
    cutmix_box: CutmixBox | None


def smoothed_one_hot(target: Tensor, num_classes: int, smoothing: float = 0.1) -> Tensor:
    """One-hot targets with label smoothing: ``off = smoothing / K``, ``on = 1 - smoothing + off``.

    Args:
        target: ``(B,)`` integer class indices.
        num_classes: K.
        smoothing: Label smoothing.

    Returns:
        ``(B, K)`` float32 on the target's device; every row sums to 1.
    """
    if target.dim() != 1 or target.is_floating_point():
        raise ValueError(
            f"target must be a (B,) integer tensor of class indices, got {tuple(target.shape)} {target.dtype}"
        )
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(
            f"class indices must be in [0, {num_classes}), got range [{int(target.min())}, {int(target.max())}]"
        )
    off = smoothing / num_classes
    out = torch.full((target.shape[0], num_classes), off, dtype=torch.float32, device=target.device)
    return out.scatter_(1, target.long().unsqueeze(1), 1.0 - smoothing + off)


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> CutmixBox:
    """Draw the standard CutMix box for a mixing weight ``lam``.

    The box has nominal size ``(int(H * sqrt(1 - lam)), int(W * sqrt(1 - lam)))`` and a uniformly random
    centre ``(cy, cx)``; its half-sizes (floor division) are added and subtracted from the centre and
    the result is clipped to the image.

    Args:
        height: H.
        width: W.
        lam: Mixing weight in ``[0, 1]``.
        rng: NumPy generator (two integer draws: cy then cx).

    Returns:
        The box.
    """
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(rng.integers(0, height))
    cx = int(rng.integers(0, width))
    top = min(max(cy - cut_h // 2, 0), height)
    bottom = min(max(cy + cut_h // 2, 0), height)
    left = min(max(cx - cut_w // 2, 0), width)
    right = min(max(cx + cut_w // 2, 0), width)
    return CutmixBox(top, bottom, left, right)


class Mixup:
    """Mixup / CutMix of a batch with its reverse (the official ``mode='batch'``).

    With probability ``prob`` the batch is mixed: CutMix with probability ``switch_prob`` (when both
    alphas are positive), otherwise Mixup. ``lam ~ Beta(alpha, alpha)`` is drawn once per batch and the
    partner of sample ``i`` is sample ``B - 1 - i`` (``x.flip(0)``). Mixup: ``x <- lam x + (1 - lam)
    flip(x)``. CutMix: a box (:func:`cutmix_box`) over the last two axes (``H, W``), shared by all frames
    and channels, is pasted from the partner and ``lam`` becomes ``1 - box_area / (H W)``. Targets are
    smoothed one-hot vectors mixed with ``lam``.

    Args:
        num_classes: Number of classes K.
        mixup_alpha: Mixup Beta parameter (0 disables Mixup).
        cutmix_alpha: CutMix Beta parameter (0 disables CutMix).
        prob: Probability of mixing a batch.
        switch_prob: Probability of CutMix when both are enabled.
        label_smoothing: Label smoothing of the targets.
        mode: Only ``"batch"`` (the official setting) is supported.
        correct_lam: Correct ``lam`` to the clipped box area (official True).
        mix_audio: Also mix an audio tensor with the same ``lam`` and partner (always a linear mix,
            with the corrected ``lam`` for CutMix). Official HiCMAE: False (audio untouched).
        official_cutmix_slicing: Reproduce the official CutMix indexing ``x[:, :, top:bottom,
            left:right]``, which on a ``(B, C, T, H, W)`` batch pastes the box rows over *time* (only rows
            ``< T`` exist, so a box starting at row ``>= T`` pastes nothing) and the box columns over
            *height*, for every column; the labels are still mixed with the ``H x W`` box-area weight.
        rng: Default NumPy generator; ``None`` creates an unseeded one.

    Raises:
        ValueError: On invalid settings.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        mode: str = "batch",
        correct_lam: bool = True,
        mix_audio: bool = False,
        official_cutmix_slicing: bool = False,
        rng: np.random.Generator | None = None,
    ) -> None:
        if mode != "batch":
            raise ValueError(f"only mode='batch' (the official setting) is supported, got {mode!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if mixup_alpha < 0 or cutmix_alpha < 0 or (mixup_alpha == 0 and cutmix_alpha == 0):
            raise ValueError(f"need mixup_alpha > 0 or cutmix_alpha > 0, got {mixup_alpha}, {cutmix_alpha}")
        if not (0.0 <= prob <= 1.0 and 0.0 <= switch_prob <= 1.0 and 0.0 <= label_smoothing < 1.0):
            raise ValueError(
                f"prob and switch_prob must be in [0, 1] and label_smoothing in [0, 1), got "
                f"{prob}, {switch_prob}, {label_smoothing}"
            )
        self.num_classes = int(num_classes)
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.prob = float(prob)
        self.switch_prob = float(switch_prob)
        self.label_smoothing = float(label_smoothing)
        self.mode = mode
        self.correct_lam = bool(correct_lam)
        self.mix_audio = bool(mix_audio)
        self.official_cutmix_slicing = bool(official_cutmix_slicing)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.enabled = True

    def draw(self, rng: np.random.Generator | None = None) -> tuple[float, bool]:
        """Draw the batch parameters.

        Args:
            rng: NumPy generator (default: the instance's).

        Returns:
            ``(lam, use_cutmix)``; ``lam = 1`` means no mixing.
        """
        rng = _check_rng(rng if rng is not None else self.rng)
        if not self.enabled or rng.random() >= self.prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = bool(rng.random() < self.switch_prob)
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return float(rng.beta(alpha, alpha)), use_cutmix

    def __call__(
        self,
        video: Tensor,
        target: Tensor,
        audio: Tensor | None = None,
        *,
        rng: np.random.Generator | None = None,
    ) -> MixupOutput:
        """Mix a batch.

        Args:
            video: ``(B, C, T, H, W)`` (or any ``(B, ..., H, W)``) float tensor; not modified.
            target: ``(B,)`` integer class indices.
            audio: Optional ``(B, ...)`` float audio batch; mixed only when ``mix_audio`` is True.
            rng: NumPy generator (default: the instance's).

        Returns:
            :class:`MixupOutput`.

        Raises:
            ValueError: If the batch size is odd or the shapes disagree.
        """
        rng = _check_rng(rng if rng is not None else self.rng)
        batch = video.shape[0]
        if batch % 2:
            raise ValueError(
                f"Mixup/CutMix needs an even batch size (each sample is mixed with its mirror in the batch), "
                f"got {batch}; use drop_last=True or an even batch size"
            )
        if video.dim() < 3:
            raise ValueError(f"video must have shape (B, ..., H, W), got {tuple(video.shape)}")
        if target.shape[0] != batch or (audio is not None and audio.shape[0] != batch):
            raise ValueError(
                f"batch sizes differ: video {batch}, target {target.shape[0]}"
                + (f", audio {audio.shape[0]}" if audio is not None else "")
            )
        lam, use_cutmix = self.draw(rng)
        box = None
        if lam < 1.0:
            if use_cutmix:
                height, width = video.shape[-2], video.shape[-1]
                box = cutmix_box(height, width, lam, rng)
                if self.correct_lam:
                    lam = 1.0 - box.area / float(height * width)
                video = video.clone()
                partner = video.flip(0)
                if self.official_cutmix_slicing:
                    region = (slice(None), slice(None), slice(box.top, box.bottom), slice(box.left, box.right))
                else:
                    region = (Ellipsis, slice(box.top, box.bottom), slice(box.left, box.right))
                video[region] = partner[region]
            else:
                video = video * lam + video.flip(0) * (1.0 - lam)
            if audio is not None and self.mix_audio:
                audio = audio * lam + audio.flip(0) * (1.0 - lam)
        soft = smoothed_one_hot(target, self.num_classes, self.label_smoothing).to(video.device)
        mixed_target = soft * lam + soft.flip(0) * (1.0 - lam)
        return MixupOutput(video, mixed_target, audio, float(lam), box)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_classes={self.num_classes}, mixup_alpha={self.mixup_alpha}, "
            f"cutmix_alpha={self.cutmix_alpha}, prob={self.prob}, switch_prob={self.switch_prob}, "
            f"label_smoothing={self.label_smoothing}, mix_audio={self.mix_audio}, "
            f"official_cutmix_slicing={self.official_cutmix_slicing})"
        )
