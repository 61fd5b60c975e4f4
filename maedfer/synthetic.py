"""A synthetic face world: procedurally drawn talking faces with a voice-like audio track.

Details: ``docs/modules.md``, section ``maedfer/synthetic.py``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import logging
import math
import multiprocessing
import os
import time
import wave
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Union

import numpy as np

from .data.registry import SYNTHETIC_CLASSES

__all__ = [
    "BACKGROUND_TEXTURES",
    "EMOTION_CLASSES",
    "EXPRESSION_APEX",
    "FORMATS",
    "HAIR_STYLES",
    "SAMPLE_RATE",
    "SPLITS",
    "VALENCE_AROUSAL",
    "VOICE_PROSODY",
    "SyntheticIdentity",
    "SyntheticWorld",
    "class_index",
    "ensure_synthetic_world",
    "expression_weight",
    "make_synthetic_world",
    "world_settings",
    "render_clip",
    "render_preview",
    "split_identities",
    "synthesize_voice",
    "write_mp4",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: The 7 classes in the DFEW label order (label ``k`` is ``EMOTION_CLASSES[k]``).
EMOTION_CLASSES: tuple[str, ...] = SYNTHETIC_CLASSES
#: Sampling rate of the synthetic audio in Hz.
SAMPLE_RATE: int = 16000
#: Output formats of :func:`make_synthetic_world`.
FORMATS: tuple[str, ...] = ("frames", "mp4", "wav")
#: (valence, arousal) at full intensity, per class; a clip's targets are these times its intensity.
VALENCE_AROUSAL: dict[str, tuple[float, float]] = {
    "happy": (0.8, 0.6),
    "sad": (-0.7, -0.3),
    "neutral": (0.0, 0.0),
    "angry": (-0.6, 0.8),
    "surprise": (0.2, 0.9),
    "disgust": (-0.7, 0.3),
    "fear": (-0.7, 0.8),
}

# Facial action parameters at the apex (0 = neutral face). Meaning (face units = face half-width):
#   smile: mouth corners up (+) / down (-); mouth_open: jaw/lip opening 0..1; mouth_width: relative width change;
#   mouth_round: O-shaped opening; lip_press: thinner, pressed lips; pout: lower lip pushed out;
#   brow_raise: both brows up (+) / down (-); brow_inner: inner brow ends up (+) / down and together (-);
#   brow_squeeze: brows drawn towards the midline; eye_open: upper lids up (+, wide) / down (-, narrowed);
#   lower_lid: lower lids raised (cheek raise or tension); cheek: rosy raised cheeks and smile folds;
#   teeth: how much of the teeth shows in an open mouth; lip_raise: one-sided upper-lip raise (disgust);
#   nose_wrinkle: wrinkles on the nose bridge; nostril_flare: wider nostrils; frown_lines: vertical lines between
#   the brows; flush: reddened skin (anger); pallor: pale skin (fear); gaze_down: eyes look down.
#   Head movement that goes with the expression: head_dy: downwards shift (fraction of the image); head_scale:
#   relative size change (leaning in +, pulling back -); head_roll: in-plane tilt in degrees (its side is random
#   per clip).
_ACTION_NAMES: tuple[str, ...] = (
    "smile",
    "mouth_open",
    "mouth_width",
    "mouth_round",
    "lip_press",
    "pout",
    "brow_raise",
    "brow_inner",
    "brow_squeeze",
    "eye_open",
    "lower_lid",
    "cheek",
    "teeth",
    "lip_raise",
    "nose_wrinkle",
    "nostril_flare",
    "frown_lines",
    "flush",
    "pallor",
    "gaze_down",
    "head_dy",
    "head_scale",
    "head_roll",
)

#: Facial action parameters of every class at the apex (full intensity); missing entries are 0.
EXPRESSION_APEX: dict[str, dict[str, float]] = {
    "happy": {
        "smile": 1.0,
        "mouth_open": 0.5,
        "mouth_width": 0.22,
        "teeth": 1.0,
        "lower_lid": 0.65,
        "cheek": 1.0,
        "eye_open": -0.25,
        "brow_raise": 0.1,
        "head_dy": -0.01,
        "head_scale": 0.02,
        "head_roll": 3.0,
    },
    "sad": {
        "smile": -1.0,
        "pout": 1.0,
        "mouth_width": -0.1,
        "brow_inner": 1.1,
        "brow_raise": -0.15,
        "brow_squeeze": 0.4,
        "eye_open": -0.5,
        "head_dy": 0.035,
        "head_scale": -0.02,
        "head_roll": 2.0,
        "gaze_down": 0.8,
    },
    "neutral": {},
    "angry": {
        "brow_raise": -0.7,
        "brow_inner": -1.2,
        "brow_squeeze": 1.2,
        "frown_lines": 1.0,
        "eye_open": 0.3,
        "lower_lid": 0.45,
        "lip_press": 1.0,
        "smile": -0.4,
        "mouth_width": -0.15,
        "nostril_flare": 1.0,
        "head_dy": 0.01,
        "head_scale": 0.05,
        "flush": 1.0,
    },
    "surprise": {
        "brow_raise": 1.1,
        "brow_inner": 0.1,
        "eye_open": 1.0,
        "mouth_open": 1.1,
        "mouth_round": 1.0,
        "mouth_width": -0.4,
        "teeth": 0.2,
        "head_dy": -0.025,
        "head_scale": -0.03,
    },
    "disgust": {
        "lip_raise": 1.2,
        "nose_wrinkle": 1.0,
        "eye_open": -0.65,
        "lower_lid": 0.6,
        "brow_raise": -0.45,
        "brow_inner": -0.2,
        "brow_squeeze": 0.4,
        "smile": -0.3,
        "teeth": 0.8,
        "nostril_flare": 0.6,
        "head_dy": -0.005,
        "head_scale": -0.03,
        "head_roll": 5.0,
    },
    "fear": {
        "brow_raise": 0.7,
        "brow_inner": 1.0,
        "brow_squeeze": 0.9,
        "eye_open": 1.0,
        "mouth_open": 0.32,
        "mouth_width": 0.5,
        "smile": -0.4,
        "teeth": 1.0,
        "frown_lines": 0.3,
        "head_dy": -0.015,
        "head_scale": -0.05,
        "head_roll": 2.0,
        "pallor": 1.0,
    },
}

#: Vocal prosody per class (values at full intensity; lower intensities blend towards "neutral").
#: pitch_ratio: mean pitch / identity base pitch; range_st: pitch accent size in semitones; slope_st: pitch change
#: over the clip in semitones; vibrato_st: 6.5 Hz tremor depth; rate: syllables per second; loudness: RMS of the
#: voiced parts (full scale = 1); tilt_db: harmonic spectral tilt in dB per octave; noise: aspiration noise
#: level relative to the voice; harsh: pitch-synchronous (rough) part of that noise; creak: sub-harmonic.
VOICE_PROSODY: dict[str, dict[str, float]] = {
    "happy": {
        "pitch_ratio": 1.28,
        "range_st": 5.0,
        "slope_st": 1.0,
        "vibrato_st": 0.0,
        "rate": 4.6,
        "loudness": 0.17,
        "tilt_db": -9.0,
        "noise": 0.04,
        "harsh": 0.0,
        "creak": 0.0,
    },
    "sad": {
        "pitch_ratio": 0.86,
        "range_st": 1.2,
        "slope_st": -2.0,
        "vibrato_st": 0.0,
        "rate": 2.5,
        "loudness": 0.06,
        "tilt_db": -16.0,
        "noise": 0.18,
        "harsh": 0.0,
        "creak": 0.0,
    },
    "neutral": {
        "pitch_ratio": 1.0,
        "range_st": 2.0,
        "slope_st": -1.0,
        "vibrato_st": 0.0,
        "rate": 3.6,
        "loudness": 0.1,
        "tilt_db": -12.0,
        "noise": 0.04,
        "harsh": 0.0,
        "creak": 0.0,
    },
    "angry": {
        "pitch_ratio": 1.12,
        "range_st": 4.0,
        "slope_st": -2.5,
        "vibrato_st": 0.0,
        "rate": 5.0,
        "loudness": 0.26,
        "tilt_db": -6.0,
        "noise": 0.3,
        "harsh": 0.8,
        "creak": 0.0,
    },
    "surprise": {
        "pitch_ratio": 1.38,
        "range_st": 6.0,
        "slope_st": 5.0,
        "vibrato_st": 0.0,
        "rate": 4.0,
        "loudness": 0.18,
        "tilt_db": -9.0,
        "noise": 0.06,
        "harsh": 0.0,
        "creak": 0.0,
    },
    "disgust": {
        "pitch_ratio": 0.9,
        "range_st": 3.0,
        "slope_st": -3.0,
        "vibrato_st": 0.0,
        "rate": 3.0,
        "loudness": 0.12,
        "tilt_db": -12.0,
        "noise": 0.1,
        "harsh": 0.2,
        "creak": 0.5,
    },
    "fear": {
        "pitch_ratio": 1.36,
        "range_st": 3.0,
        "slope_st": 1.0,
        "vibrato_st": 0.8,
        "rate": 5.6,
        "loudness": 0.12,
        "tilt_db": -10.0,
        "noise": 0.14,
        "harsh": 0.0,
        "creak": 0.0,
    },
}

# (F1, F2, F3) in Hz of a few vowels; every syllable picks one.
_VOWEL_FORMANTS: tuple[tuple[float, float, float], ...] = (
    (800.0, 1200.0, 2500.0),  # a
    (500.0, 1900.0, 2600.0),  # e
    (300.0, 2300.0, 3000.0),  # i
    (500.0, 900.0, 2400.0),  # o
    (320.0, 800.0, 2300.0),  # u
)

_SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (252, 224, 200),
    (241, 196, 168),
    (228, 176, 136),
    (205, 142, 104),
    (170, 112, 78),
    (128, 82, 56),
    (96, 62, 44),
)
_HAIR_COLOURS: tuple[tuple[int, int, int], ...] = (
    (28, 24, 22),
    (64, 42, 30),
    (106, 72, 44),
    (190, 158, 100),
    (142, 64, 34),
    (150, 148, 146),
)
_IRIS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (72, 46, 28),
    (40, 28, 20),
    (70, 110, 160),
    (76, 112, 70),
    (110, 116, 124),
)
_CLOTHES_COLOURS: tuple[tuple[int, int, int], ...] = (
    (40, 60, 120),
    (150, 40, 40),
    (40, 110, 70),
    (90, 90, 96),
    (210, 200, 180),
    (30, 30, 34),
    (120, 80, 140),
)
#: Hair styles of :class:`SyntheticIdentity`.
HAIR_STYLES: tuple[str, ...] = ("short", "long", "bald", "fringe", "bun")
#: Background textures of :class:`SyntheticIdentity`.
BACKGROUND_TEXTURES: tuple[str, ...] = ("flat", "gradient", "stripes", "checker", "blobs")

# Pose of the face: a static offset per clip (jitter) plus a slow sinusoidal drift within the clip (sway). Offsets are
# fractions of the image size, scales relative, angles in degrees.
_POSE_JITTER: dict[str, float] = {"offset": 0.015, "scale": 0.03, "angle_deg": 2.5}
_POSE_SWAY: dict[str, float] = {"offset": 0.008, "scale": 0.012, "angle_deg": 1.2}
_LIGHT_FLICKER = 0.03  # relative amplitude of the slow gain change
_LIGHT_TURN = 0.25  # maximum rotation speed of the light direction, radians per second
_TALK_OPEN = 0.12  # mouth opening at the loudest syllable (lip movement that follows the voice)
_SUPERSAMPLE = 2  # faces are drawn at 3x the output size, then box-filtered (anti-aliasing)
_AV_INSTALL_HINT = "writing mp4 files needs PyAV; install it with: pip install av"


def class_index(label: int | str) -> int:
    """Class index of a label given as an index or a class name.

    Args:
        label: ``0 .. 6`` or one of :data:`EMOTION_CLASSES`.

    Returns:
        The class index.

    Raises:
        ValueError: an unknown class.
    """
    if isinstance(label, str):
        if label not in EMOTION_CLASSES:
            raise ValueError(f"unknown class {label!r}; use one of {', '.join(EMOTION_CLASSES)}")
        return EMOTION_CLASSES.index(label)
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        raise ValueError(f"a class label must be an int or a class name, got {label!r}")
    if not 0 <= int(label) < len(EMOTION_CLASSES):
        raise ValueError(f"class index {label} is outside [0, {len(EMOTION_CLASSES)})")
    return int(label)


def _jitter_colour(rng: np.random.Generator, colour: Sequence[int], amount: float) -> tuple[int, int, int]:
    values = np.asarray(colour, dtype=np.float64) + rng.uniform(-amount, amount, size=3)
    return tuple(int(v) for v in np.clip(np.round(values), 0, 255))  # type: ignore[return-value]


@dataclass(frozen=True)
class SyntheticIdentity:
    """The appearance and voice of one synthetic person.

    Lengths are in *face units* (the face half-width) unless stated otherwise; colours are RGB ``uint8`` triples.

    Attributes:
        identity_id: Number of the identity in its world.
        skin: Skin colour.
        face_width: Face half-width as a fraction of the image size.
        face_aspect: Face half-height / half-width.
        jaw_taper: How much the lower face narrows towards the chin (0 = ellipse).
        eye_spacing: Horizontal distance of each eye centre from the midline.
        eye_width: Eye half-width.
        eye_height: Eye half-height (neutral).
        iris: Iris colour.
        brow_thickness: Eyebrow thickness.
        lips: Lip colour.
        mouth_width: Mouth half-width (neutral).
        hair: Hair (and eyebrow) colour.
        hair_style: One of :data:`HAIR_STYLES`.
        clothes: Colour of the shoulders.
        background: Base background colour.
        background_texture: One of :data:`BACKGROUND_TEXTURES`.
        background_detail: Second background colour used by the texture.
        texture_scale: Texture period as a fraction of the image size.
        glasses: Whether the person wears glasses.
        glasses_colour: Colour of the glasses frame.
        base_pitch_hz: Neutral speaking pitch in Hz.
    """

    identity_id: int
    skin: tuple[int, int, int]
    face_width: float
    face_aspect: float
    jaw_taper: float
    eye_spacing: float
    eye_width: float
    eye_height: float
    iris: tuple[int, int, int]
    brow_thickness: float
    lips: tuple[int, int, int]
    mouth_width: float
    hair: tuple[int, int, int]
    hair_style: str
    clothes: tuple[int, int, int]
    background: tuple[int, int, int]
    background_texture: str
    background_detail: tuple[int, int, int]
    texture_scale: float
    glasses: bool
    glasses_colour: tuple[int, int, int]
    base_pitch_hz: float

    @classmethod
    def sample(cls, rng: np.random.Generator, identity_id: int = 0) -> SyntheticIdentity:
        """Draw a random identity.

        Args:
            rng: Source of randomness (consumed).
            identity_id: Number stored in the identity.

        Returns:
            A new identity.
        """
        skin = _jitter_colour(rng, _SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))], 10.0)
        lip_base = np.asarray(skin, dtype=np.float64) * 0.62 + np.array([150.0, 52.0, 60.0]) * 0.38
        lips = _jitter_colour(rng, lip_base * rng.uniform(0.85, 1.0), 6.0)
        hair = _jitter_colour(rng, _HAIR_COLOURS[int(rng.integers(len(_HAIR_COLOURS)))], 8.0)
        saturation = rng.uniform(0.2, 0.65)
        grey = rng.uniform(60.0, 210.0)
        background_values = grey + saturation * (rng.uniform(30.0, 230.0, size=3) - grey)
        background = tuple(int(v) for v in np.round(background_values))
        detail = np.clip(background_values * rng.uniform(0.7, 1.3) + rng.uniform(-30.0, 30.0, size=3), 0, 255)
        glasses_colour = (
            _jitter_colour(rng, (25, 25, 30), 10.0) if rng.random() < 0.6 else _jitter_colour(rng, (150, 120, 60), 20.0)
        )
        male = rng.random() < 0.5
        return cls(
            identity_id=int(identity_id),
            skin=skin,
            face_width=float(rng.uniform(0.29, 0.31)),
            face_aspect=float(rng.uniform(1.22, 1.34)),
            jaw_taper=float(rng.uniform(0.05, 0.3)),
            eye_spacing=float(rng.uniform(0.38, 0.46)),
            eye_width=float(rng.uniform(0.17, 0.22)),
            eye_height=float(rng.uniform(0.075, 0.1)),
            iris=_jitter_colour(rng, _IRIS_COLOURS[int(rng.integers(len(_IRIS_COLOURS)))], 8.0),
            brow_thickness=float(rng.uniform(0.07, 0.1)),
            lips=lips,
            mouth_width=float(rng.uniform(0.34, 0.41)),
            hair=hair,
            hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))],
            clothes=_jitter_colour(rng, _CLOTHES_COLOURS[int(rng.integers(len(_CLOTHES_COLOURS)))], 15.0),
            background=background,  # type: ignore[arg-type]
            background_texture=BACKGROUND_TEXTURES[int(rng.integers(len(BACKGROUND_TEXTURES)))],
            background_detail=tuple(int(v) for v in np.round(detail)),  # type: ignore[arg-type]
            texture_scale=float(rng.uniform(0.08, 0.3)),
            glasses=bool(rng.random() < 0.3),
            glasses_colour=glasses_colour,
            base_pitch_hz=float(rng.uniform(95.0, 135.0) if male else rng.uniform(175.0, 235.0)),
        )


def expression_weight(num_frames: int, onset: float, apex: float, relax: float = 0.1) -> np.ndarray:
    """Time course of the expression: 0 before the onset, a smooth rise to 1 at the apex, then a slow relaxation.

    Args:
        num_frames: Number of frames ``T``.
        onset: Start of the rise, as a fraction of the clip (time of frame ``t`` is ``t / (T - 1)``).
        apex: End of the rise (weight 1), as a fraction of the clip; must exceed ``onset``.
        relax: Weight lost linearly between the apex and the end of the clip.

    Returns:
        float64 ``(T,)`` weights in ``[0, 1]``.
    """
    if not 0.0 <= onset < apex:
        raise ValueError(f"need 0 <= onset < apex, got onset={onset}, apex={apex}")
    times = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    rise = np.clip((times - onset) / (apex - onset), 0.0, 1.0)
    weights = rise * rise * (3.0 - 2.0 * rise)  # smoothstep
    after = np.clip((times - apex) / max(1.0 - apex, 1e-6), 0.0, 1.0)
    return weights * (1.0 - relax * after)


# --------------------------------------------------------------------------------------------------------------------
# Voice
# --------------------------------------------------------------------------------------------------------------------


def _prosody(label: int, intensity: float) -> dict[str, float]:
    """Class prosody blended towards neutral: ``neutral + intensity * (class - neutral)``."""
    neutral = VOICE_PROSODY["neutral"]
    target = VOICE_PROSODY[EMOTION_CLASSES[label]]
    return {key: neutral[key] + intensity * (target[key] - neutral[key]) for key in neutral}


def _smooth_noise(rng: np.random.Generator, num_samples: int, num_knots: int) -> np.ndarray:
    """Smooth random curve: linear interpolation of ``num_knots`` standard-normal values over ``num_samples``."""
    knots = rng.standard_normal(max(num_knots, 2))
    return np.interp(np.linspace(0.0, len(knots) - 1.0, num_samples), np.arange(len(knots)), knots)


def synthesize_voice(
    identity: SyntheticIdentity,
    label: int | str,
    *,
    num_samples: int,
    rng: np.random.Generator,
    intensity: float = 1.0,
    sample_rate: int = SAMPLE_RATE,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Synthesise a voice-like waveform whose prosody depends on the class and the identity.

    Syllables (smooth sine-shaped envelopes with short gaps and occasional pauses) carry a harmonic source with a
    pitch contour (declination or rise, per-syllable accents, tremor, jitter), spectral tilt and the formants of a
    random vowel, plus aspiration noise (pitch-synchronous when the voice is harsh) and a faint noise floor.

    Args:
        identity: Speaker (its ``base_pitch_hz`` sets the pitch).
        label: Class index or name.
        num_samples: Length ``n`` of the output.
        rng: Source of randomness (consumed).
        intensity: Blend of the class prosody with the neutral one, in ``[0, 1]``.
        sample_rate: Sampling rate in Hz.

    Returns:
        ``(audio, envelope, stats)``: float32 ``(n,)`` waveform in ``[-1, 1]``; float32 ``(n,)`` syllable envelope
        in ``[0, 1]`` (drives the lip movement); ``stats`` with ``mean_f0_hz`` (mean pitch of the voiced
        samples), ``speaking_rate`` (syllables per second) and ``loudness`` (target RMS of the voiced samples).
    """
    label = class_index(label)
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if not 0.0 <= float(intensity) <= 1.0:
        raise ValueError(f"intensity must be in [0, 1], got {intensity!r}")
    prosody = _prosody(label, float(intensity))
    duration = num_samples / sample_rate
    times = np.arange(num_samples) / sample_rate

    # Syllable schedule.
    envelope = np.zeros(num_samples)
    accents = np.zeros(num_samples)
    formant_track = np.zeros((3, num_samples))
    formant_track[:] = np.asarray(_VOWEL_FORMANTS[0], dtype=np.float64)[:, None]
    start = rng.uniform(0.03, 0.15)
    period = 1.0 / prosody["rate"]
    num_syllables = 0
    while start < duration - 0.05:
        length = period * rng.uniform(0.6, 0.85)
        stop = min(start + length, duration)
        first, last = int(start * sample_rate), int(stop * sample_rate)
        if last - first > 8:
            phase = np.linspace(0.0, 1.0, last - first)
            shape = np.sin(np.pi * phase) ** 0.6
            envelope[first:last] = np.maximum(envelope[first:last], shape * rng.uniform(0.7, 1.0))
            accents[first:last] += rng.uniform(-0.4, 1.0) * np.sin(np.pi * phase)
            formant_track[:, first:last] = np.asarray(
                _VOWEL_FORMANTS[int(rng.integers(len(_VOWEL_FORMANTS)))], dtype=np.float64
            )[:, None] * rng.uniform(0.93, 1.07)
            num_syllables += 1
        gap = period - length
        if rng.random() < 0.12:
            gap += rng.uniform(0.12, 0.3)  # a pause
        start = stop + gap * rng.uniform(0.8, 1.2)
    # Smooth the formant jumps between syllables (20 ms moving average).
    kernel = np.ones(max(int(0.02 * sample_rate), 1)) / max(int(0.02 * sample_rate), 1)
    for row in range(3):
        formant_track[row] = np.convolve(
            np.pad(formant_track[row], (len(kernel) // 2, len(kernel) - 1 - len(kernel) // 2), mode="edge"),
            kernel,
            mode="valid",
        )

    # Pitch contour in semitones around the class mean.
    semitones = (
        prosody["slope_st"] * (times / max(duration, 1e-6) - 0.5)
        + prosody["range_st"] * accents
        + prosody["vibrato_st"] * np.sin(2.0 * np.pi * 6.5 * times + rng.uniform(0, 2 * np.pi))
        + 0.25 * _smooth_noise(rng, num_samples, int(duration * 30) + 2)
    )
    f0 = identity.base_pitch_hz * prosody["pitch_ratio"] * rng.uniform(0.97, 1.03) * 2.0 ** (semitones / 12.0)
    phase = 2.0 * np.pi * np.cumsum(f0) / sample_rate

    # Harmonic source shaped by spectral tilt and three formants (amplitudes on a 2 ms control grid).
    max_frequency = min(5000.0, 0.45 * sample_rate)
    num_harmonics = max(int(max_frequency / float(f0.max())), 1)
    step = max(sample_rate // 500, 1)
    control = np.arange(0, num_samples, step)
    harmonics = np.arange(1, num_harmonics + 1, dtype=np.float64)[:, None]
    frequencies = harmonics * f0[control][None, :]
    gain = harmonics ** (prosody["tilt_db"] / (20.0 * math.log10(2.0)))
    bandwidths = (90.0, 120.0, 180.0)
    resonance = np.zeros_like(frequencies)
    for row, bandwidth in enumerate(bandwidths):
        resonance += (1.0, 0.6, 0.3)[row] / (
            1.0 + ((frequencies - formant_track[row][control][None, :]) / bandwidth) ** 2
        )
    amplitudes = gain * (0.15 + resonance)
    amplitudes[frequencies > max_frequency] = 0.0
    voice = np.zeros(num_samples)
    for k in range(num_harmonics):
        voice += np.interp(np.arange(num_samples), control, amplitudes[k]) * np.sin((k + 1) * phase)
    if prosody["creak"] > 0:
        voice *= 1.0 + prosody["creak"] * 0.6 * np.sin(0.5 * phase)
    # Aspiration noise (high-passed), partly pitch-synchronous for a harsh voice.
    noise = np.diff(rng.standard_normal(num_samples + 1))
    pulses = (0.5 + 0.5 * np.cos(phase)) ** 6
    noise *= (1.0 - prosody["harsh"]) + prosody["harsh"] * 3.0 * pulses
    voice_rms = float(np.sqrt(np.mean(voice[envelope > 0.3] ** 2))) if np.any(envelope > 0.3) else 1.0
    voice = voice / max(voice_rms, 1e-9)
    noise = noise / max(float(np.sqrt(np.mean(noise**2))), 1e-9)
    signal = envelope * (voice + prosody["noise"] * noise)
    active = envelope > 0.3
    signal_rms = float(np.sqrt(np.mean(signal[active] ** 2))) if np.any(active) else 1.0
    signal *= prosody["loudness"] / max(signal_rms, 1e-9)
    signal += 0.002 * rng.standard_normal(num_samples)  # room noise floor
    # Soft limiter above 0.8 of full scale (a shouting voice would otherwise clip hard).
    magnitude = np.abs(signal)
    limited = np.where(magnitude > 0.8, 0.8 + 0.2 * np.tanh((magnitude - 0.8) / 0.2), magnitude)
    audio = (np.sign(signal) * limited).astype(np.float32)
    voiced = envelope > 0.3
    stats = {
        "mean_f0_hz": float(f0[voiced].mean()) if np.any(voiced) else float(f0.mean()),
        "speaking_rate": num_syllables / max(duration, 1e-6),
        "loudness": prosody["loudness"],
    }
    return audio, envelope.astype(np.float32), stats


# --------------------------------------------------------------------------------------------------------------------
# Faces
# --------------------------------------------------------------------------------------------------------------------


def _render_background(identity: SyntheticIdentity, canvas: int, rng: np.random.Generator) -> np.ndarray:
    """Background of one clip: float64 ``(canvas, canvas, 3)`` in ``[0, 255]``."""
    base = np.asarray(identity.background, dtype=np.float64)
    detail = np.asarray(identity.background_detail, dtype=np.float64)
    coords = (np.arange(canvas) + 0.5) / canvas
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    kind = identity.background_texture
    period = identity.texture_scale
    angle = rng.uniform(0.0, np.pi)
    if kind == "flat":
        mix = np.zeros((canvas, canvas))
    elif kind == "gradient":
        mix = np.clip(xx * math.cos(angle) + yy * math.sin(angle), 0.0, 1.0)
    elif kind == "stripes":
        mix = (np.sin(2 * np.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period) > 0).astype(np.float64)
    elif kind == "checker":
        mix = ((np.floor(xx / period) + np.floor(yy / period)) % 2).astype(np.float64)
    else:  # blobs: a smooth random field (bilinear interpolation of a coarse random grid)
        grid = max(int(round(1.0 / period)), 2)
        coarse = rng.uniform(0.0, 1.0, size=(grid + 1, grid + 1))
        weights = np.maximum(1.0 - np.abs(coords[:, None] * grid - np.arange(grid + 1)[None, :]), 0.0)
        mix = weights @ coarse @ weights.T
    return base[None, None, :] * (1.0 - mix[..., None]) + detail[None, None, :] * mix[..., None]


@functools.lru_cache(maxsize=4096)
def _ellipse(cx: float, cy: float, rx: float, ry: float, num: int = 40) -> np.ndarray:
    """Polygon of an axis-aligned ellipse, float64 ``(num, 2)`` (cached, read-only)."""
    angles = np.linspace(0.0, 2.0 * np.pi, num, endpoint=False)
    points = np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)
    points.setflags(write=False)
    return points


def _face_outline(identity: SyntheticIdentity, jaw_drop: float, num: int = 72) -> np.ndarray:
    """Face outline in face units, ``(num, 2)``: an ellipse whose lower half narrows towards the chin."""
    angles = np.linspace(0.0, 2.0 * np.pi, num, endpoint=False)
    sin, cos = np.sin(angles), np.cos(angles)
    lower = np.clip(sin, 0.0, 1.0)
    x = cos * (1.0 - identity.jaw_taper * lower**2)
    y = sin * identity.face_aspect * (1.0 + 0.1 * jaw_drop * lower)
    return np.stack([x, y], axis=1)


@dataclass
class _Pose:
    """Similarity transform from face units to canvas pixels (rotation about the face centre, then translation)."""

    centre: tuple[float, float]  # pixels (canvas)
    unit: float  # pixels per face unit
    angle: float  # radians

    def apply(self, points: np.ndarray) -> list[float]:
        """Map float ``(N, 2)`` face-unit points to canvas pixels, flattened ``[x0, y0, x1, y1, ...]`` for PIL."""
        cos, sin = math.cos(self.angle) * self.unit, math.sin(self.angle) * self.unit
        matrix = np.array([[cos, sin], [-sin, cos]])
        return (points @ matrix + np.asarray(self.centre)).ravel().tolist()

    def length(self, value: float) -> int:
        """A length in face units as a whole number of canvas pixels (at least 1), e.g. a line width."""
        return max(int(round(value * self.unit)), 1)


def _shade(colour: Sequence[float], factor: float, tint: Sequence[float] = (0.0, 0.0, 0.0)) -> tuple[int, int, int]:
    """``colour * factor + tint``, rounded and clipped to ``[0, 255]``."""
    r, g, b = (min(max(int(round(c * factor + d)), 0), 255) for c, d in zip(colour, tint))
    return (r, g, b)


@functools.lru_cache(maxsize=64)
def _static_geometry(identity: SyntheticIdentity) -> dict[str, np.ndarray]:
    """Polygons (face units, float ``(N, 2)``) that do not change with the expression: body, ears, hair."""
    aspect = identity.face_aspect
    shapes: dict[str, np.ndarray] = {
        "shoulders": _ellipse(0.0, aspect + 1.05, 2.3, 0.75, 48),
        "neck": np.array([[-0.42, 0.5 * aspect], [0.42, 0.5 * aspect], [0.48, aspect + 0.45], [-0.48, aspect + 0.45]]),
        "left_ear": _ellipse(-0.97, -0.02, 0.14, 0.25, 20),
        "right_ear": _ellipse(0.97, -0.02, 0.14, 0.25, 20),
    }
    style = identity.hair_style
    if style == "long":
        back = _ellipse(0.0, -0.05, 1.2, aspect * 1.08, 48)[24:]
        shapes["hair_back"] = np.concatenate(
            [np.array([[-1.2, -0.05]]), back, np.array([[1.25, aspect * 0.95], [-1.25, aspect * 0.95]])]
        )
        for name, side in (("left_hair_side", -1.0), ("right_hair_side", 1.0)):
            shapes[name] = np.array(
                [
                    [side * 1.07, -0.25 * aspect],
                    [side * 0.88, -0.55 * aspect],
                    [side * 0.9, 0.4 * aspect],
                    [side * 1.12, 0.55 * aspect],
                ]
            )
    if style == "bun":
        shapes["bun"] = _ellipse(0.0, -aspect * 1.12, 0.38, 0.3, 28)
    if style == "bald":
        shapes["scalp"] = _ellipse(-0.35, -0.75 * aspect, 0.25, 0.1, 16)
    else:
        cap = _ellipse(0.0, 0.0, 1.07, aspect * 1.07, 96)
        temple_y = -0.22 * aspect
        top = cap[cap[:, 1] < temple_y]
        top = top[np.argsort(np.arctan2(top[:, 1], top[:, 0]))]  # left temple -> crown -> right temple
        centre_y = {"short": -0.66, "long": -0.62, "fringe": -0.56, "bun": -0.7}[style] * aspect
        xs = np.linspace(top[-1, 0], top[0, 0], 21)  # right -> left
        reach = np.abs(xs) / max(abs(float(top[0, 0])), 1e-6)
        hairline_y = centre_y + (temple_y - centre_y) * reach**2.5
        if style == "fringe":
            hairline_y = hairline_y + 0.05 * (np.arange(21) % 2) * (1.0 - reach)
        else:
            hairline_y = hairline_y + 0.05 * aspect * np.where(xs > 0, 1.0, 0.0) * np.sin(np.pi * reach)  # parting
        shapes["hair_cap"] = np.concatenate([top, np.stack([xs, hairline_y], 1)])
    for points in shapes.values():
        points.setflags(write=False)
    return shapes


def _draw_face(
    draw: Any, identity: SyntheticIdentity, pose: _Pose, actions: Mapping[str, float], gaze: tuple[float, float]
) -> None:
    """Draw one face with PIL ``ImageDraw`` under ``pose`` with the facial action values ``actions``."""
    a = actions
    aspect = identity.face_aspect
    skin = identity.skin
    if a["flush"] > 0.0 or a["pallor"] > 0.0:
        red, green, blue = (float(c) for c in skin)
        flush = a["flush"]
        red, green, blue = red * (1.0 + 0.14 * flush), green * (1.0 - 0.1 * flush), blue * (1.0 - 0.1 * flush)
        mix = 0.3 * a["pallor"]
        red, green, blue = (
            c * (1.0 - mix) + 215.0 * mix for c in (red - 10.0 * a["pallor"], green, blue + 6.0 * a["pallor"])
        )
        skin = _shade((red, green, blue), 1.0)
    dark_skin = _shade(skin, 0.78)
    line_skin = _shade(skin, 0.62)
    hair = identity.hair
    jaw_drop = max(a["mouth_open"], 0.0) * (0.5 + 0.5 * a["mouth_round"])

    def poly(points: np.ndarray, colour: Sequence[int], outline: Sequence[int] | None = None, width: int = 1) -> None:
        draw.polygon(
            pose.apply(points), fill=tuple(colour), outline=None if outline is None else tuple(outline), width=width
        )

    def line(points: np.ndarray, colour: Sequence[int], width: float) -> None:
        draw.line(pose.apply(points), fill=tuple(colour), width=pose.length(width), joint="curve")

    static = _static_geometry(identity)
    poly(static["shoulders"], identity.clothes)
    poly(static["neck"], dark_skin)
    if "hair_back" in static:
        poly(static["hair_back"], _shade(hair, 0.85))
    if "bun" in static:
        poly(static["bun"], hair)
    poly(static["left_ear"], dark_skin)
    poly(static["right_ear"], dark_skin)
    poly(_face_outline(identity, jaw_drop), skin)
    # Cheeks (raised and rosy when smiling).
    if a["cheek"] > 0.05:
        cheek_colour = _shade(skin, 1.0, (22.0 * a["cheek"], -6.0 * a["cheek"], -4.0 * a["cheek"]))
        for side in (-1.0, 1.0):
            poly(
                _ellipse(side * (identity.eye_spacing + 0.08), 0.2 * aspect - 0.05 * a["cheek"], 0.21, 0.15, 24),
                cheek_colour,
            )
    for key in ("hair_cap", "left_hair_side", "right_hair_side"):
        if key in static:
            poly(static[key], hair)
    if "scalp" in static:
        poly(static["scalp"], _shade(skin, 1.08))  # highlight on a bald head

    eye_y = -0.1 * aspect
    eye_w, eye_h = identity.eye_width, identity.eye_height

    # Eyes.
    open_up = max(1.0 + 1.0 * a["eye_open"], 0.03) * a["_blink"]
    open_lo = max(1.0 - 0.75 * a["lower_lid"] + 0.35 * max(a["eye_open"], 0.0), 0.05) * max(a["_blink"], 0.3)
    u = np.linspace(-1.0, 1.0, 17)
    for side in (-1.0, 1.0):
        cx = side * identity.eye_spacing
        xs = cx + u * eye_w
        upper_y = eye_y - eye_h * open_up * (1.0 - u**2) ** 0.7 - 0.015 * side * u
        lower_y = eye_y + 0.75 * eye_h * open_lo * (1.0 - u**2) ** 0.9
        eye = np.concatenate([np.stack([xs, upper_y], 1), np.stack([xs, lower_y], 1)[::-1]])
        poly(eye, (244, 242, 236))
        iris_r = eye_h * 1.05
        ix = cx + gaze[0] * eye_w * 0.35
        iy = eye_y + float(np.clip(gaze[1] + a["gaze_down"], -1.0, 1.0)) * eye_h * 0.35
        for radius, colour in ((iris_r, identity.iris), (iris_r * 0.45, (12, 10, 10))):
            circle = _ellipse(ix, iy, radius, radius, 24)
            top_bound = np.interp(circle[:, 0], xs, upper_y)
            bottom_bound = np.interp(circle[:, 0], xs, lower_y)
            inside = (circle[:, 0] > xs[0]) & (circle[:, 0] < xs[-1])
            clipped = circle.copy()
            clipped[:, 1] = np.clip(circle[:, 1], top_bound, np.maximum(bottom_bound, top_bound))
            clipped[~inside, 1] = eye_y
            clipped[:, 0] = np.clip(clipped[:, 0], xs[0], xs[-1])
            if np.ptp(clipped[:, 1]) > 1e-3:
                poly(clipped, colour)
        if open_up > 0.5:
            poly(_ellipse(ix + 0.3 * iris_r, iy - 0.35 * iris_r, 0.2 * iris_r, 0.2 * iris_r, 8), (250, 250, 250))
        # Upper lid crease and lash line, lower lid line.
        line(np.stack([xs, upper_y], 1), (35, 25, 22), 0.045)
        crease = upper_y - 0.05 - 0.03 * max(a["eye_open"], 0.0)
        line(np.stack([xs[3:-2], crease[3:-2]], 1), line_skin, 0.02)
        line(np.stack([xs[2:-2], lower_y[2:-2]], 1), _shade(skin, 0.7), 0.018)
        if a["lower_lid"] > 0.3:  # bags under raised lower lids
            line(np.stack([xs[3:-3], lower_y[3:-3] + 0.07], 1), line_skin, 0.015)

    # Eyebrows: inner end at u=0, outer end at u=1.
    for side in (-1.0, 1.0):
        squeeze = 0.06 * a["brow_squeeze"]
        inner_x = side * (identity.eye_spacing - eye_w * 0.95 - squeeze)
        outer_x = side * (identity.eye_spacing + eye_w * 1.25)
        base = eye_y - eye_h - 0.17 - 0.19 * a["brow_raise"]
        inner_y = base - 0.22 * a["brow_inner"]
        outer_y = base + 0.02 + 0.06 * max(a["brow_inner"], 0.0) - 0.04 * min(a["brow_inner"], 0.0)
        t = np.linspace(0.0, 1.0, 12)
        arch = (0.06 + 0.06 * max(a["brow_raise"], 0.0) - 0.04 * abs(a["brow_inner"])) * np.sin(
            np.pi * np.clip(t * 1.15, 0, 1)
        )
        xs = inner_x + (outer_x - inner_x) * t
        ys = inner_y + (outer_y - inner_y) * t - arch
        thick = identity.brow_thickness * (1.2 - 0.6 * t)
        brow = np.concatenate([np.stack([xs, ys - thick / 2], 1), np.stack([xs, ys + thick / 2], 1)[::-1]])
        poly(brow, _shade(hair, 0.8))
    if a["frown_lines"] > 0.15:
        for offset in (-0.05, 0.05):
            line(
                np.array([[offset, eye_y - 0.33], [offset * 0.7, eye_y - 0.15]]),
                _shade(skin, 1.0 - 0.35 * a["frown_lines"]),
                0.025,
            )
    if a["brow_inner"] > 0.4 and a["brow_raise"] > 0.3:  # forehead lines (fear)
        for k in range(2):
            y = eye_y - 0.5 - 0.08 * k
            line(np.array([[-0.25, y + 0.02], [0.0, y - 0.02], [0.25, y + 0.02]]), line_skin, 0.015)
    elif a["brow_raise"] > 0.45:  # forehead lines (surprise)
        for k in range(3):
            y = eye_y - 0.5 - 0.08 * k
            line(np.array([[-0.35, y], [0.0, y - 0.03], [0.35, y]]), line_skin, 0.015)

    # Nose.
    nose_tip = 0.28 * aspect
    line(np.array([[0.04, eye_y + 0.05], [0.07, nose_tip - 0.05], [0.02, nose_tip + 0.02]]), line_skin, 0.025)
    flare = 1.0 + 0.35 * a["nostril_flare"] + 0.15 * a["nose_wrinkle"]
    for side in (-1.0, 1.0):
        poly(
            _ellipse(side * 0.085 * flare, nose_tip + 0.03 - 0.03 * a["nose_wrinkle"], 0.045 * flare, 0.028, 12),
            _shade(skin, 0.45),
        )
        line(
            np.array(
                [
                    [side * 0.17 * flare, nose_tip - 0.05],
                    [side * 0.2 * flare, nose_tip + 0.02],
                    [side * 0.12, nose_tip + 0.05],
                ]
            ),
            line_skin,
            0.02,
        )
    if a["nose_wrinkle"] > 0.15:
        for k in range(3):
            y = eye_y + 0.08 + 0.06 * k
            line(
                np.array([[-0.09, y + 0.02], [0.0, y - 0.015], [0.09, y + 0.02]]),
                _shade(skin, 1.0 - 0.4 * a["nose_wrinkle"]),
                0.02,
            )

    # Mouth. u runs from the left corner (-1) to the right corner (+1).
    mouth_y = 0.56 * aspect + 0.05 * jaw_drop
    half_width = identity.mouth_width * (1.0 + a["mouth_width"])
    u = np.linspace(-1.0, 1.0, 25)
    bell = np.sqrt(np.clip(1.0 - u**2, 0.0, 1.0))
    corner_lift = 0.2 * a["smile"]
    raise_side = np.clip(-u, 0.0, 1.0) * bell  # one-sided upper-lip raise (disgust), on the image-left side
    midline = (
        mouth_y
        - corner_lift * u**2
        - 0.05 * a["lip_raise"] * raise_side
        + 0.04 * a["lip_raise"] * np.clip(u, 0.0, 1.0) ** 2
    )
    opening = (0.25 * a["mouth_open"] * (1.0 + 0.7 * a["mouth_round"])) * (1.0 - u**2) ** (0.8 - 0.4 * a["mouth_round"])
    upper_inner = midline - 0.4 * opening - 0.13 * a["lip_raise"] * raise_side
    lower_inner = midline + 0.6 * opening
    lip_scale = 1.0 - 0.65 * a["lip_press"]
    upper_outer = upper_inner - 0.075 * lip_scale * bell**0.5 + 0.02 * np.exp(-((u / 0.12) ** 2)) * lip_scale
    lower_outer = lower_inner + (0.09 + 0.05 * a["pout"]) * lip_scale * bell**0.6
    xs = u * half_width
    lips = np.concatenate([np.stack([xs, upper_outer], 1), np.stack([xs, lower_outer], 1)[::-1]])
    poly(lips, identity.lips)
    inner_gap = lower_inner - upper_inner
    if float(inner_gap.max()) > 0.012:
        inner = np.concatenate([np.stack([xs, upper_inner], 1), np.stack([xs, lower_inner], 1)[::-1]])
        poly(inner, (70, 22, 28))
        if a["teeth"] > 0.05:
            teeth_bottom = np.minimum(upper_inner + (0.03 + 0.06 * a["teeth"]) * bell, lower_inner)
            teeth = np.concatenate([np.stack([xs, upper_inner], 1), np.stack([xs, teeth_bottom], 1)[::-1]])
            poly(teeth, (240, 236, 224))
            if a["teeth"] > 0.5 and a["mouth_open"] > 0.3:
                lower_teeth_top = np.maximum(lower_inner - 0.035 * bell, teeth_bottom)
                poly(
                    np.concatenate([np.stack([xs, lower_teeth_top], 1), np.stack([xs, lower_inner], 1)[::-1]]),
                    (226, 222, 210),
                )
    line(np.stack([xs, midline + 0.1 * opening], 1), _shade(identity.lips, 0.55), 0.02)
    if a["pout"] > 0.3:  # chin bulge under a pushed-out lower lip
        line(np.stack([xs[6:-6] * 0.6, lower_outer[6:-6] + 0.09 + 0.03 * a["pout"]], 1), line_skin, 0.018)
    if a["cheek"] > 0.3:  # smile folds from the nose wings to the mouth corners
        for side in (-1.0, 1.0):
            corner = np.array([side * (half_width + 0.05), mouth_y - corner_lift - 0.02])
            wing = np.array([side * 0.24, nose_tip - 0.02])
            middle = (corner + wing) / 2 + np.array([side * 0.07, 0.0])
            line(np.stack([wing, middle, corner]), _shade(skin, 1.0 - 0.3 * a["cheek"]), 0.022)
    if a["smile"] < -0.4:  # drooping corner lines
        for side in (-1.0, 1.0):
            corner = np.array([side * half_width, mouth_y - corner_lift])
            line(np.stack([corner, corner + np.array([side * 0.04, 0.11])]), _shade(skin, 0.8), 0.018)

    # Glasses (on top of everything around the eyes).
    if identity.glasses:
        width = 0.04
        for side in (-1.0, 1.0):
            cx = side * identity.eye_spacing
            rim = _ellipse(cx, eye_y + 0.02, eye_w * 1.45, eye_h * 2.6 + 0.04, 32)
            line(np.concatenate([rim, rim[:1]]), identity.glasses_colour, width)
            line(
                np.array([[side * (identity.eye_spacing + eye_w * 1.45), eye_y], [side * 0.96, eye_y - 0.04]]),
                identity.glasses_colour,
                width,
            )
        bridge_x = identity.eye_spacing - eye_w * 1.45
        line(
            np.array([[-bridge_x, eye_y - 0.02], [0.0, eye_y - 0.06], [bridge_x, eye_y - 0.02]]),
            identity.glasses_colour,
            width,
        )


def render_clip(
    identity: SyntheticIdentity,
    label: int | str,
    *,
    num_frames: int = 32,
    size: int = 112,
    seed: int | Sequence[int] = 0,
    intensity: float = 1.0,
    fps: float = 25.0,
    sample_rate: int = SAMPLE_RATE,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Render one clip of ``identity`` showing class ``label``: frames and the matching voice track.

    Args:
        identity: The person (:meth:`SyntheticIdentity.sample`).
        label: Class index (DFEW order, :data:`EMOTION_CLASSES`) or class name.
        num_frames: Number of frames ``T`` (>= 1).
        size: Frame height and width ``S`` in pixels (>= 16).
        seed: Seed (an int or a sequence of ints) of everything random in the clip: timing, pose, lighting, blinks,
            syllables, noise.
        intensity: Expression and prosody strength in ``[0, 1]``; also scales the valence/arousal targets.
        fps: Frame rate; the audio lasts ``T / fps`` seconds.
        sample_rate: Audio sampling rate in Hz.

    Returns:
        ``(frames, audio, info)``: uint8 ``(T, S, S, 3)`` RGB frames; float32 ``(n,)`` mono waveform in
        ``[-1, 1]`` with ``n = round(T / fps * sample_rate)``; ``info`` with ``label``, ``class_name``,
        ``intensity``, ``valence``, ``arousal``, ``onset_frame`` (last frame with a neutral face), ``apex_frame``
        (first frame at the full expression), ``expression_weight`` (list of ``T`` floats), ``identity_id``,
        ``mean_f0_hz``, ``speaking_rate``, ``fps``, ``sample_rate`` and ``num_samples``.

    Raises:
        ValueError: an unknown label or out-of-range sizes.
    """
    from PIL import Image, ImageDraw

    label = class_index(label)
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an int >= 16, got {size!r}")
    if not 0.0 <= float(intensity) <= 1.0:
        raise ValueError(f"intensity must be in [0, 1], got {intensity!r}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    intensity = float(intensity)
    # Independent streams: the voice, the scene (timing, pose, lighting, blinks, gaze, background), the per-clip
    # variation of the expression and the sensor noise. With the same seed, clips of different classes therefore
    # share everything but the expression, the voice and the lip movement that follows it.
    entropy = int(seed) if isinstance(seed, (int, np.integer)) else [int(value) for value in seed]
    voice_rng, rng, expression_rng, noise_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(entropy).spawn(4)
    )
    class_name = EMOTION_CLASSES[label]

    # Audio first: its syllable envelope drives the lips.
    num_samples = int(round(num_frames / fps * sample_rate))
    audio, envelope, voice_stats = synthesize_voice(
        identity, label, num_samples=max(num_samples, 1), rng=voice_rng, intensity=intensity, sample_rate=sample_rate
    )
    audio = audio[:num_samples]

    # Expression time course and per-clip variation of the apex.
    onset = rng.uniform(0.1, 0.35)
    apex = onset + rng.uniform(0.25, 0.4)
    weights = expression_weight(num_frames, onset, min(apex, 0.75), relax=rng.uniform(0.0, 0.15))
    variation = expression_rng.uniform(0.85, 1.1, size=len(_ACTION_NAMES))
    apex_actions = {
        name: EXPRESSION_APEX[class_name].get(name, 0.0) * float(factor)
        for name, factor in zip(_ACTION_NAMES, variation)
    }

    # Pose drift, lighting, blinks, gaze.
    roll_side = 1.0 if rng.random() < 0.5 else -1.0
    canvas = size * _SUPERSAMPLE
    times = np.arange(num_frames) / fps

    def sway(amplitude: float, low: float, high: float) -> np.ndarray:
        return amplitude * np.sin(2 * np.pi * rng.uniform(low, high) * times + rng.uniform(0, 2 * np.pi))

    jitter, drift = _POSE_JITTER, _POSE_SWAY
    drift_x = rng.uniform(-jitter["offset"], jitter["offset"]) + sway(drift["offset"], 0.15, 0.5)
    drift_y = rng.uniform(-jitter["offset"], jitter["offset"]) + sway(drift["offset"], 0.15, 0.5)
    scale = rng.uniform(1.0 - jitter["scale"], 1.0 + jitter["scale"]) * (1.0 + sway(drift["scale"], 0.1, 0.4))
    angle = np.deg2rad(rng.uniform(-jitter["angle_deg"], jitter["angle_deg"]) + sway(drift["angle_deg"], 0.1, 0.4))
    gain = rng.uniform(0.85, 1.1) * (1.0 + sway(_LIGHT_FLICKER, 0.1, 0.5))
    light_angle = rng.uniform(0, 2 * np.pi) + rng.uniform(-_LIGHT_TURN, _LIGHT_TURN) * times
    light_strength = rng.uniform(0.05, 0.25)
    tint = 1.0 + rng.uniform(-0.06, 0.06, size=3)
    blink = np.ones(num_frames)
    if num_frames >= 8 and rng.random() < 0.5:
        start = int(rng.integers(1, max(int(0.5 * num_frames), 2)))
        blink[start : start + 2] = (0.15, 0.5)[: len(blink[start : start + 2])]
    gaze_x = float(np.clip(rng.normal(0.0, 0.25), -0.6, 0.6))
    gaze_y = float(np.clip(rng.normal(0.0, 0.2), -0.5, 0.5))
    frame_samples = np.clip(
        ((np.arange(num_frames) + 0.5) / fps * sample_rate).astype(np.int64), 0, max(len(envelope) - 1, 0)
    )
    talk = _TALK_OPEN * envelope[frame_samples] if len(envelope) else np.zeros(num_frames)

    background = _render_background(identity, canvas, rng)
    background_image = Image.fromarray(np.clip(np.round(background), 0, 255).astype(np.uint8))
    coords = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    drawn = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        actions = {name: intensity * weights[t] * value for name, value in apex_actions.items()}
        actions["mouth_open"] = min(actions["mouth_open"] + float(talk[t]) * (1.0 - 0.6 * actions["lip_press"]), 1.2)
        actions["_blink"] = float(blink[t])
        pose = _Pose(
            centre=(canvas * (0.5 + drift_x[t]), canvas * (0.5 + drift_y[t] + actions["head_dy"])),
            unit=canvas * identity.face_width * float(scale[t]) * (1.0 + actions["head_scale"]),
            angle=float(angle[t]) + math.radians(roll_side * actions["head_roll"]),
        )
        image = background_image.copy()
        _draw_face(ImageDraw.Draw(image), identity, pose, actions, (gaze_x, gaze_y))
        drawn[t] = np.asarray(image.resize((size, size), Image.Resampling.BOX))
    # Lighting (gain, direction, colour tint) and sensor noise, for all frames at once.
    cos_light = np.cos(light_angle).astype(np.float32)[:, None, None]
    sin_light = np.sin(light_angle).astype(np.float32)[:, None, None]
    light = gain.astype(np.float32)[:, None, None] * (
        1.0
        + np.float32(light_strength)
        * (xx.astype(np.float32)[None] * cos_light + yy.astype(np.float32)[None] * sin_light)
    )
    shaded = drawn.astype(np.float32)
    shaded *= light[..., None]
    shaded *= tint.astype(np.float32)
    shaded += np.float32(1.5) * noise_rng.standard_normal(
        (num_frames, size, size, 1), dtype=np.float32
    )  # luminance noise
    np.rint(shaded, out=shaded)
    frames = np.clip(shaded, 0, 255).astype(np.uint8)

    valence, arousal = VALENCE_AROUSAL[class_name]
    rising = np.nonzero(weights > 1e-6)[0]
    info: dict[str, Any] = {
        "label": label,
        "class_name": class_name,
        "intensity": intensity,
        "valence": round(valence * intensity, 4),
        "arousal": round(arousal * intensity, 4),
        "onset_frame": int(rising[0] - 1) if len(rising) else num_frames - 1,
        "apex_frame": int(np.argmax(weights)),
        "expression_weight": [round(float(w), 4) for w in weights],
        "identity_id": identity.identity_id,
        "mean_f0_hz": round(voice_stats["mean_f0_hz"], 2),
        "speaking_rate": round(voice_stats["speaking_rate"], 3),
        "fps": float(fps),
        "sample_rate": int(sample_rate),
        "num_samples": int(num_samples),
    }
    return frames, audio, info


# --------------------------------------------------------------------------------------------------------------------
# Writing a world to disk
# --------------------------------------------------------------------------------------------------------------------

#: Splits of a world, in order.
SPLITS: tuple[str, ...] = ("train", "val", "test")
# Sub-folders and files that make_synthetic_world owns (and removes with overwrite=True).
_WORLD_DIRS: tuple[str, ...] = ("frames", "videos", "audio", "pretrain", "classification", "audio_visual", "regression")
_WORLD_FILES: tuple[str, ...] = ("info.json", "README.md", "preview.png")
_INFO_NAME = "maedfer synthetic face world"


@dataclass(frozen=True)
class SyntheticWorld:
    """What :func:`make_synthetic_world` wrote.

    Attributes:
        root: The (resolved, absolute) world folder.
        classes: Class names, index = label (:data:`EMOTION_CLASSES`).
        num_frames: Frames per clip.
        size: Frame height and width in pixels.
        fps: Frame rate.
        sample_rate: Audio sampling rate in Hz.
        seed: The world seed.
        formats: The formats written (a subset of :data:`FORMATS`).
        split_identities: Identity numbers of every split (disjoint).
        num_clips: Number of clips of every split.
        annotation_files: ``{kind: {split: path}}`` for the kinds ``"classification"``, ``"audio_visual"`` and
            ``"regression"`` (splits ``train``, ``val``, ``test``) and ``"pretrain"`` (split ``train`` only). A kind
            whose inputs were not written is absent (pretrain needs mp4; audio_visual and regression need wav or
            mp4).
        info_file: ``info.json`` (settings, identities and every clip's metadata).
        readme_file: ``README.md`` describing the world.
        preview_file: ``preview.png`` contact sheet (first frame and apex frames per class); None when not written.
        seconds: Wall-clock generation time.
    """

    root: Path
    classes: tuple[str, ...]
    num_frames: int
    size: int
    fps: float
    sample_rate: int
    seed: int
    formats: tuple[str, ...]
    split_identities: dict[str, tuple[int, ...]]
    num_clips: dict[str, int]
    annotation_files: dict[str, dict[str, Path]] = field(default_factory=dict)
    info_file: Path = Path()
    readme_file: Path = Path()
    preview_file: Path | None = None
    seconds: float = 0.0

    @property
    def total_clips(self) -> int:
        """Number of clips over all splits."""
        return sum(self.num_clips.values())

    def annotation_file(self, kind: str, split: str = "train") -> Path:
        """Path of one annotation file.

        Args:
            kind: ``"classification"``, ``"audio_visual"``, ``"regression"`` or ``"pretrain"``.
            split: ``"train"``, ``"val"`` or ``"test"`` (``"pretrain"`` has only ``"train"``).

        Returns:
            The file path.

        Raises:
            KeyError: the world has no such file (not written for its formats, or an unknown kind / split).
        """
        if kind not in self.annotation_files:
            raise KeyError(
                f"this synthetic world has no {kind!r} annotation files (formats: {', '.join(self.formats)})"
            )
        if split not in self.annotation_files[kind]:
            raise KeyError(
                f"no {kind!r} annotation file for split {split!r}; have {sorted(self.annotation_files[kind])}"
            )
        return self.annotation_files[kind][split]


def split_identities(num_identities: int) -> dict[str, tuple[int, ...]]:
    """Identity-disjoint splits: about 1/6 of the identities each for val and test (at least 1), the rest train.

    Args:
        num_identities: Number of identities (>= 3).

    Returns:
        ``{"train": (...), "val": (...), "test": (...)}`` of identity numbers ``0 .. num_identities - 1``, e.g.
        8 / 2 / 2 for 12 identities.
    """
    if isinstance(num_identities, bool) or not isinstance(num_identities, (int, np.integer)) or num_identities < 3:
        raise ValueError(f"a synthetic world needs at least 3 identities (train / val / test), got {num_identities!r}")
    held_out = max(1, int(round(num_identities / 6)))
    num_train = num_identities - 2 * held_out
    identities = list(range(int(num_identities)))
    return {
        "train": tuple(identities[:num_train]),
        "val": tuple(identities[num_train : num_train + held_out]),
        "test": tuple(identities[num_train + held_out :]),
    }


def _import_av() -> ModuleType:
    try:
        import av
    except ImportError as err:
        raise ImportError(_AV_INSTALL_HINT) from err
    return av


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write float ``audio`` ``(n,)`` in ``[-1, 1]`` as 16-bit PCM mono wav."""
    pcm = np.clip(np.round(audio.astype(np.float64) * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(int(sample_rate))
        handle.writeframes(pcm.tobytes())


def write_mp4(
    path: PathLike, frames: np.ndarray, audio: np.ndarray | None, fps: float, sample_rate: int = SAMPLE_RATE
) -> None:
    """Write a video file: frames as H.264 yuv420p (CRF 18) and, optionally, a mono AAC soundtrack.

    Both encoders run single-threaded so that the bytes are reproducible.

    Args:
        path: Target ``.mp4`` file (its folder must exist).
        frames: ``uint8 (T, H, W, 3)`` RGB frames; ``H`` and ``W`` must be even (yuv420p).
        audio: ``float32 (n,)`` samples in ``[-1, 1]`` at ``sample_rate``, or ``None`` for a video without an audio
            track.
        fps: Frame rate.
        sample_rate: Audio sampling rate in Hz.
    """
    from fractions import Fraction

    av = _import_av()
    height, width = frames.shape[1:3]
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "18", "preset": "veryfast", "threads": "1"}
        video.codec_context.thread_count = 1
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=sample_rate, layout="mono")
            sound.options = {"aac_coder": "fast"}
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None and audio is not None and len(audio):
            # One frame with the whole track; the encoder cuts it into AAC frames and the muxer interleaves.
            audio_frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(audio, dtype=np.float32)[None, :], format="fltp", layout="mono"
            )
            audio_frame.sample_rate = sample_rate
            audio_frame.pts = 0
            for packet in sound.encode(audio_frame):
                container.mux(packet)
        if sound is not None:
            for packet in sound.encode():
                container.mux(packet)


@dataclass(frozen=True)
class _ClipJob:
    name: str
    split: str
    identity: SyntheticIdentity
    label: int
    clip_number: int
    seed: tuple[int, ...]
    intensity: float
    num_frames: int
    size: int
    fps: float
    sample_rate: int
    formats: tuple[str, ...]
    root: str
    jpeg_quality: int


def _run_clip_job(job: _ClipJob) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Render one clip and write its files; returns ``(record, first frame, apex frame)``."""
    from PIL import Image

    frames, audio, info = render_clip(
        job.identity,
        job.label,
        num_frames=job.num_frames,
        size=job.size,
        seed=job.seed,
        intensity=job.intensity,
        fps=job.fps,
        sample_rate=job.sample_rate,
    )
    root = Path(job.root)
    record: dict[str, Any] = {
        "name": job.name,
        "split": job.split,
        "clip_number": job.clip_number,
        "seed": list(job.seed),
    }
    record.update({key: value for key, value in info.items() if key != "expression_weight"})
    digits = max(5, len(str(job.num_frames)))
    if "frames" in job.formats:
        folder = root / "frames" / job.name
        folder.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(frames):
            Image.fromarray(image).save(folder / f"{index + 1:0{digits}d}.jpg", quality=job.jpeg_quality)
        record["frames_dir"] = str(folder)
    if "wav" in job.formats:
        wav_path = root / "audio" / f"{job.name}.wav"
        _write_wav(wav_path, audio, job.sample_rate)
        record["wav"] = str(wav_path)
    if "mp4" in job.formats:
        mp4_path = root / "videos" / f"{job.name}.mp4"
        write_mp4(mp4_path, frames, audio, job.fps, job.sample_rate)
        record["mp4"] = str(mp4_path)
    return record, frames[0].copy(), frames[info["apex_frame"]].copy()


def render_preview(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]],
    out_file: PathLike,
    *,
    column_titles: Sequence[str] | None = None,
    min_tile: int = 96,
) -> Path:
    """Save a labelled contact sheet of frames (one row per label) as PNG.

    Args:
        rows: ``(row label, frames)`` pairs; every frame is uint8 ``(H, W, 3)`` with the same shape.
        out_file: PNG path.
        column_titles: Optional titles above the columns.
        min_tile: Frames smaller than this are enlarged by an integer factor (nearest neighbour).

    Returns:
        ``out_file`` as a :class:`~pathlib.Path`.
    """
    from PIL import Image, ImageDraw

    tiles = [frame for _, frames in rows for frame in frames]
    if not tiles:
        raise ValueError("render_preview needs at least one frame")
    height, width = tiles[0].shape[:2]
    zoom = max(1, -(-min_tile // max(height, 1)))
    tile_h, tile_w = height * zoom, width * zoom
    label_w, title_h, gap = 76, 18 if column_titles else 0, 2
    num_columns = max(len(frames) for _, frames in rows)
    sheet = Image.new(
        "RGB",
        (label_w + num_columns * (tile_w + gap), title_h + len(rows) * (tile_h + gap)),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(sheet)
    for column, title in enumerate(column_titles or ()):
        draw.text((label_w + column * (tile_w + gap) + 3, 3), str(title), fill=(0, 0, 0))
    for row, (label, frames) in enumerate(rows):
        top = title_h + row * (tile_h + gap)
        draw.text((4, top + tile_h // 2 - 6), str(label), fill=(0, 0, 0))
        for column, frame in enumerate(frames):
            image = Image.fromarray(np.asarray(frame, dtype=np.uint8))
            if zoom > 1:
                image = image.resize((tile_w, tile_h), Image.Resampling.NEAREST)
            sheet.paste(image, (label_w + column * (tile_w + gap), top))
    path = Path(out_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _prepare_out_dir(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"synthetic world output {root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"synthetic world output folder {root} is not empty; pass overwrite=True "
                "(tools/make_synthetic.py --overwrite) to replace it"
            )
        info_file = root / "info.json"
        owned = False
        if info_file.is_file():
            try:
                owned = json.loads(info_file.read_text(encoding="utf-8")).get("name") == _INFO_NAME
            except (ValueError, OSError):
                owned = False
        if not owned:
            raise FileExistsError(
                f"{root} is not empty and holds no synthetic world (no {info_file.name} written by maedfer); "
                "refusing to overwrite it"
            )
        import shutil

        for name in _WORLD_DIRS:
            if (root / name).is_dir():
                shutil.rmtree(root / name)
        for name in _WORLD_FILES:
            (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)


def _library_versions() -> dict[str, str]:
    import PIL

    versions = {"numpy": np.__version__, "pillow": PIL.__version__}
    try:
        import av

        versions["av"] = av.__version__
    except ImportError:
        pass
    return versions


def _world_readme(world: SyntheticWorld, info: Mapping[str, Any]) -> str:
    lines = [
        "# maedfer synthetic face world",
        "",
        "Procedurally drawn talking faces (NumPy + Pillow, no external assets) with a voice-like audio track, written",
        "by `maedfer.synthetic.make_synthetic_world` (or `tools/make_synthetic.py`). Every clip starts with a",
        "neutral face; the expression sets in and reaches its apex around the middle of the clip, then holds.",
        "",
        (
            f"* {world.total_clips} clips of {world.num_frames} frames, {world.size}x{world.size} px at "
            f"{world.fps:g} fps; audio {world.sample_rate} Hz mono; seed {world.seed}"
        ),
        "* identity-disjoint splits: "
        + ", ".join(
            f"{split} {len(world.split_identities[split])} identities / {world.num_clips[split]} clips"
            for split in SPLITS
        ),
        "",
        "## Classes (DFEW label order) and valence / arousal at full intensity",
        "",
        "| label | class | valence | arousal |",
        "|---|---|---|---|",
    ]
    for index, name in enumerate(world.classes):
        valence, arousal = VALENCE_AROUSAL[name]
        lines.append(f"| {index} | {name} | {valence:+.1f} | {arousal:+.1f} |")
    lines += [
        "",
        "Regression targets are these pairs times the clip's intensity (in [0.7, 1]).",
        "",
        "## Layout",
        "",
        "| path | content |",
        "|---|---|",
        "| `frames/<clip>/00001.jpg ...` | JPEG frames, zero-padded names |",
        "| `videos/<clip>.mp4` | H.264 yuv420p with the AAC audio track |",
        "| `audio/<clip>.wav` | 16-bit PCM mono |",
        "| `pretrain/train.csv` | `<mp4> 0` (kind `pretrain`, train identities only) |",
        "| `classification/{train,val,test}.csv` | `<frames dir> <label>` |",
        "| `audio_visual/{train,val,test}.csv` | `<frames dir> <wav> <label>` |",
        "| `regression/{train,val,test}.csv` | `<frames dir> <wav> <valence> <arousal>` |",
        "| `info.json` | settings, identities and per-clip metadata (label, intensity, onset/apex frame, pitch) |",
        "| `preview.png` | first frame and apex frames of every class |",
        "",
        "Paths in the annotation files are absolute; regenerate the world (same seed, same output) after moving it, or",
        "read the files with `maedfer.data.annotations.read_annotations(..., path_map={old_root: new_root})`.",
        "",
        "Written files: " + ", ".join(f"{kind}: {len(splits)}" for kind, splits in world.annotation_files.items()),
        f"(formats {', '.join(world.formats)}; generator {json.dumps(info['generator'])}).",
        "",
    ]
    return "\n".join(lines)


def world_settings(**settings: Any) -> dict[str, Any]:
    """The generation settings of a world in the canonical form stored in ``info.json`` (``"settings"``).

    Only the arguments given are returned; ``clips_per_class`` becomes a per-split mapping and ``formats`` a
    sorted list, so that two spellings of the same world compare equal.
    """
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "clips_per_class":
            value = dict(value) if isinstance(value, Mapping) else {split: value for split in SPLITS}
            value = {split: int(value[split]) for split in SPLITS if split in value}
        elif key == "formats":
            value = sorted([part.strip() for part in value.split(",")] if isinstance(value, str) else value)
        elif key == "fps":
            value = float(value)
        elif isinstance(value, (np.integer,)):
            value = int(value)
        out[key] = value
    return out


def make_synthetic_world(
    out_dir: PathLike,
    *,
    num_identities: int = 12,
    clips_per_class: int | Mapping[str, int] = 8,
    num_frames: int = 32,
    size: int = 112,
    fps: float = 25.0,
    seed: int = 0,
    formats: Sequence[str] | str = FORMATS,
    num_workers: int | None = None,
    sample_rate: int = SAMPLE_RATE,
    jpeg_quality: int = 90,
    overwrite: bool = False,
    preview: bool = True,
) -> SyntheticWorld:
    """Generate a synthetic face world on disk (frames, videos, audio, annotation files, info, preview).

    Identities are split identity-disjointly (:func:`split_identities`); every split gets ``clips_per_class`` clips
    of each of the 7 classes, spread round-robin over its identities. Clip ``k`` of class ``c`` of identity ``i``
    is rendered by :func:`render_clip` with seed ``(seed, 2, i, c, k)`` and an intensity drawn from
    ``(seed, 3, i, c, k)`` in ``[0.7, 1]``, so the output does not depend on ``num_workers``.

    Args:
        out_dir: Output folder (created; must be empty unless ``overwrite``).
        num_identities: Number of identities (>= 3); 12 gives 8 / 2 / 2.
        clips_per_class: Clips per class in each split, or a mapping ``{"train": n, "val": n, "test": n}`` with a
            count per split (e.g. many unlabeled-style training clips for pre-training and smaller held-out splits).
        num_frames: Frames per clip.
        size: Frame height and width in pixels (even when writing mp4).
        fps: Frame rate.
        seed: World seed.
        formats: Any of ``"frames"``, ``"mp4"``, ``"wav"`` (a sequence, or one comma-separated string).
        num_workers: Worker processes; None, 0 or 1 renders in this process.
        sample_rate: Audio sampling rate in Hz.
        jpeg_quality: JPEG quality of the frames.
        overwrite: Replace a synthetic world already in ``out_dir`` (only its own files and folders are removed;
            a non-empty folder that holds no synthetic world is never touched).
        preview: Also write ``preview.png``.

    Returns:
        A :class:`SyntheticWorld` with the paths of everything written and the clip counts.

    Raises:
        ValueError: bad sizes or an unknown format.
        FileExistsError: ``out_dir`` is not empty (and ``overwrite`` is False, or it holds something else).
        ImportError: ``"mp4"`` requested without PyAV.
    """
    started = time.perf_counter()
    if isinstance(clips_per_class, Mapping):
        unknown_splits = sorted(set(clips_per_class) - set(SPLITS))
        if unknown_splits or set(clips_per_class) != set(SPLITS):
            raise ValueError(f"clips_per_class needs exactly the splits {SPLITS}, got {sorted(clips_per_class)}")
        split_counts = {split: clips_per_class[split] for split in SPLITS}
    else:
        split_counts = {split: clips_per_class for split in SPLITS}
    for name, value, minimum in (
        *((f"clips_per_class[{split}]", count, 1) for split, count in split_counts.items()),
        ("num_frames", num_frames, 1),
        ("size", size, 16),
        ("sample_rate", sample_rate, 1000),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if isinstance(formats, str):
        formats = [part.strip() for part in formats.split(",") if part.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {tuple(formats)!r}")
    chosen = tuple(name for name in FORMATS if name in formats)
    if "mp4" in chosen:
        _import_av()
        if size % 2:
            raise ValueError(f"size must be even for mp4 (yuv420p), got {size}")
    splits = split_identities(num_identities)
    root = Path(out_dir).expanduser().resolve()
    if any(character.isspace() for character in str(root)):
        raise ValueError(f"the output path {root} contains whitespace, which the annotation files cannot represent")
    _prepare_out_dir(root, overwrite)
    for name in ("frames", "videos", "audio"):
        if {"frames": "frames", "videos": "mp4", "audio": "wav"}[name] in chosen:
            (root / name).mkdir(exist_ok=True)

    identities = [SyntheticIdentity.sample(np.random.default_rng([seed, 1, i]), i) for i in range(num_identities)]
    jobs: list[_ClipJob] = []
    for split in SPLITS:
        members = splits[split]
        for label, class_name in enumerate(EMOTION_CLASSES):
            for clip_number in range(split_counts[split]):
                identity = identities[members[(clip_number + label) % len(members)]]
                intensity = (
                    1.0
                    if class_name == "neutral"
                    else float(
                        np.random.default_rng([seed, 3, identity.identity_id, label, clip_number]).uniform(0.7, 1.0)
                    )
                )
                jobs.append(
                    _ClipJob(
                        name=f"{split}_{identity.identity_id:02d}_{class_name}_{clip_number:02d}",
                        split=split,
                        identity=identity,
                        label=label,
                        clip_number=clip_number,
                        seed=(int(seed), 2, identity.identity_id, label, clip_number),
                        intensity=round(intensity, 4),
                        num_frames=int(num_frames),
                        size=int(size),
                        fps=float(fps),
                        sample_rate=int(sample_rate),
                        formats=chosen,
                        root=str(root),
                        jpeg_quality=int(jpeg_quality),
                    )
                )
    logger.info("rendering %d synthetic clips into %s (%s)", len(jobs), root, ", ".join(chosen))
    if num_workers is not None and num_workers > 1:
        context = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
        with concurrent.futures.ProcessPoolExecutor(max_workers=num_workers, mp_context=context) as pool:
            results = list(pool.map(_run_clip_job, jobs, chunksize=max(1, len(jobs) // (4 * num_workers))))
    else:
        results = [_run_clip_job(job) for job in jobs]
    records = [record for record, _, _ in results]

    # Annotation files.
    from .data.annotations import AnnotationRow, write_annotations

    annotation_files: dict[str, dict[str, Path]] = {}
    video_key = "frames_dir" if "frames" in chosen else "mp4"
    audio_key = "wav" if "wav" in chosen else ("mp4" if "mp4" in chosen else None)
    for split in SPLITS:
        split_records = [record for record in records if record["split"] == split]
        path = root / "classification" / f"{split}.csv"
        write_annotations(path, [AnnotationRow(r[video_key], r["label"]) for r in split_records], kind="classification")
        annotation_files.setdefault("classification", {})[split] = path
        if audio_key is not None:
            path = root / "audio_visual" / f"{split}.csv"
            rows = [AnnotationRow(r[video_key], r["label"], audio_path=r[audio_key]) for r in split_records]
            write_annotations(path, rows, kind="audio_visual")
            annotation_files.setdefault("audio_visual", {})[split] = path
            path = root / "regression" / f"{split}.csv"
            rows = [
                AnnotationRow(r[video_key], (float(r["valence"]), float(r["arousal"])), audio_path=r[audio_key])
                for r in split_records
            ]
            write_annotations(path, rows, kind="regression")
            annotation_files.setdefault("regression", {})[split] = path
    if "mp4" in chosen:
        path = root / "pretrain" / "train.csv"
        write_annotations(
            path, [AnnotationRow(r["mp4"], None) for r in records if r["split"] == "train"], kind="pretrain"
        )
        annotation_files["pretrain"] = {"train": path}

    world = SyntheticWorld(
        root=root,
        classes=EMOTION_CLASSES,
        num_frames=int(num_frames),
        size=int(size),
        fps=float(fps),
        sample_rate=int(sample_rate),
        seed=int(seed),
        formats=chosen,
        split_identities=splits,
        num_clips={split: sum(1 for r in records if r["split"] == split) for split in SPLITS},
        annotation_files=annotation_files,
        info_file=root / "info.json",
        readme_file=root / "README.md",
        preview_file=root / "preview.png" if preview else None,
    )

    # Preview: per class, the first (neutral) frame of one train clip, then apex frames of different clips.
    if world.preview_file is not None:
        columns = 6
        rows_for_sheet = []
        for label, class_name in enumerate(EMOTION_CLASSES):
            picked = [index for index, record in enumerate(records) if record["label"] == label][:columns]
            tiles = [results[picked[0]][1]] + [results[index][2] for index in picked]
            rows_for_sheet.append((f"{label} {class_name}", tiles))
        render_preview(rows_for_sheet, world.preview_file, column_titles=["start"] + ["apex"] * columns)

    seconds = time.perf_counter() - started
    info = {
        "name": _INFO_NAME,
        "format_version": 1,
        "classes": list(EMOTION_CLASSES),
        "valence_arousal": {name: list(pair) for name, pair in VALENCE_AROUSAL.items()},
        "num_frames": world.num_frames,
        "size": world.size,
        "fps": world.fps,
        "sample_rate": world.sample_rate,
        "seed": world.seed,
        "formats": list(chosen),
        "splits": {split: {"identities": list(splits[split]), "num_clips": world.num_clips[split]} for split in SPLITS},
        "settings": world_settings(
            num_identities=num_identities, clips_per_class=split_counts, num_frames=num_frames, size=size, fps=fps,
            seed=seed, formats=chosen, sample_rate=sample_rate,
        ),
        "annotation_files": {
            kind: {split: str(path.relative_to(root)) for split, path in files.items()}
            for kind, files in annotation_files.items()
        },
        "generator": _library_versions(),
        "identities": [asdict(identity) for identity in identities],
        "clips": [
            {key: value for key, value in record.items() if key not in ("frames_dir", "wav", "mp4")}
            for record in records
        ],
    }
    world.info_file.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    world.readme_file.write_text(_world_readme(world, info), encoding="utf-8")
    world = SyntheticWorld(**{**world.__dict__, "seconds": round(seconds, 3)})
    logger.info("synthetic world: %d clips in %.1f s at %s", world.total_clips, seconds, root)
    return world


def ensure_synthetic_world(root: str | Path, settings: dict[str, Any] | None = None, *, is_main: bool = True) -> Path:
    """Generate the synthetic face world under ``root`` unless the one there was made with ``settings``.

    Only the main process writes. A world generated with other settings (as recorded in its ``info.json``; unset
    settings count as the generator's defaults) is regenerated in place, so changing ``data.synthetic`` in a config
    never trains on a stale world. With empty ``settings`` any world already under ``root`` is used as it is.
    """
    import inspect

    root = Path(root)
    settings = dict(settings or {})
    info_file = root / "info.json"
    overwrite = False
    if info_file.is_file() and not settings:  # no settings asked for: any world there will do
        return root
    if info_file.is_file():
        stored = json.loads(info_file.read_text()).get("settings")
        if stored is not None:  # worlds from before settings were recorded are regenerated
            defaults = {
                name: parameter.default
                for name, parameter in inspect.signature(make_synthetic_world).parameters.items()
                if name in stored
            }
            wanted = world_settings(**{**defaults, **settings})
            if all(stored.get(key) == value for key, value in wanted.items()):
                return root
        overwrite = True
    if is_main:
        if overwrite:
            logger.warning("the synthetic world under %s was made with other settings; regenerating it", root)
        else:
            logger.info("generating the synthetic face world under %s", root)
        make_synthetic_world(root, overwrite=overwrite, **settings)
    return root
