"""Audio front end of HiCMAE (the AudioMAE recipe): waveform -> normalised log-mel filter bank.

Details: ``docs/modules.md``, section ``maedfer/audio.py``.
"""

from __future__ import annotations

import importlib
import logging
import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .utils import check_int

__all__ = [
    "AUDIOSET_MEAN",
    "AUDIOSET_STD",
    "FRAME_LENGTH_MS",
    "FbankConfig",
    "num_fbank_frames",
    "random_gain",
    "spectrogram_duration_s",
    "wav_to_fbank",
]

logger = logging.getLogger(__name__)

#: Mean of the AudioSet log-mel filter banks, used by the official HiCMAE / AudioMAE scripts.
AUDIOSET_MEAN: float = -4.2677393
#: Standard deviation of the AudioSet log-mel filter banks (the normalisation divides by twice this).
AUDIOSET_STD: float = 4.5689974
#: Kaldi frame (window) length in milliseconds, fixed by the recipe.
FRAME_LENGTH_MS: float = 25.0

_INSTALL_HINT = 'torchaudio is required for the audio front end; install it with: pip install "maedfer[audio]"'


@dataclass(frozen=True)
class FbankConfig:
    """Settings of the audio front end (defaults: HiCMAE / AudioMAE evaluation settings).

    Attributes:
        sample_rate: Sampling rate of the input waveform in Hz.
        num_mel_bins: Number of mel filters ``M`` (the frequency size of the output).
        target_length: Number of frames ``L`` of the output (the time size); shorter spectrograms
            are zero-padded at the end, longer ones keep their first ``L`` frames.
        frame_shift_ms: Hop between frames in milliseconds.
        mean: Normalisation mean (AudioSet statistics by default).
        std: Normalisation standard deviation; the recipe divides by ``2 * std``.
        freq_mask: SpecAugment maximum frequency-mask width in bins (0 = off). The width is drawn
            uniformly in ``[0, freq_mask)`` as in :class:`torchaudio.transforms.FrequencyMasking`.
        time_mask: SpecAugment maximum time-mask width in frames (0 = off).
    """

    sample_rate: int = 16000
    num_mel_bins: int = 128
    target_length: int = 256
    frame_shift_ms: float = 10.0
    mean: float = AUDIOSET_MEAN
    std: float = AUDIOSET_STD
    freq_mask: int = 0
    time_mask: int = 0

    def __post_init__(self) -> None:
        for name in ("sample_rate", "num_mel_bins", "target_length"):
            check_int(getattr(self, name), f"FbankConfig.{name}")
        for name in ("freq_mask", "time_mask"):
            check_int(getattr(self, name), f"FbankConfig.{name}", 0)
        if not (math.isfinite(self.frame_shift_ms) and self.frame_shift_ms > 0):
            raise ValueError(f"FbankConfig.frame_shift_ms must be positive, got {self.frame_shift_ms!r}")
        if not math.isfinite(self.mean):
            raise ValueError(f"FbankConfig.mean must be finite, got {self.mean!r}")
        if not (math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"FbankConfig.std must be positive, got {self.std!r}")
        if self.freq_mask > self.num_mel_bins:
            raise ValueError(
                f"FbankConfig.freq_mask ({self.freq_mask}) cannot exceed num_mel_bins ({self.num_mel_bins})"
            )
        if self.time_mask > self.target_length:
            raise ValueError(
                f"FbankConfig.time_mask ({self.time_mask}) cannot exceed target_length ({self.target_length})"
            )


def _import_kaldi() -> ModuleType:
    """Import :mod:`torchaudio.compliance.kaldi` lazily.

    Returns:
        The ``torchaudio.compliance.kaldi`` module.

    Raises:
        ImportError: If torchaudio is not installed, with the install hint.
    """
    try:
        return importlib.import_module("torchaudio.compliance.kaldi")
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err


def _samples_per_ms(sample_rate: int, ms: float) -> int:
    """Number of samples in ``ms`` milliseconds, truncated the way Kaldi (and torchaudio) does."""
    return int(sample_rate * ms * 0.001)


def num_fbank_frames(
    num_samples: int,
    sample_rate: int = 16000,
    frame_shift_ms: float = 10.0,
    frame_length_ms: float = FRAME_LENGTH_MS,
) -> int:
    """Number of Kaldi filter-bank frames of a waveform (``snip_edges=True``), before padding/cutting.

    With the defaults this is ``1 + (num_samples - 400) // 160``, or 0 when fewer than 400 samples.

    Args:
        num_samples: Waveform length in samples.
        sample_rate: Sampling rate in Hz.
        frame_shift_ms: Hop between frames in milliseconds.
        frame_length_ms: Frame (window) length in milliseconds.

    Returns:
        The number of frames.

    Raises:
        ValueError: If ``num_samples`` is negative or the frame settings give zero samples.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be non-negative, got {num_samples}")
    window = _samples_per_ms(sample_rate, frame_length_ms)
    shift = _samples_per_ms(sample_rate, frame_shift_ms)
    if window <= 0 or shift <= 0:
        raise ValueError(
            f"frame length ({frame_length_ms} ms) and shift ({frame_shift_ms} ms) must each span at least one "
            f"sample at {sample_rate} Hz"
        )
    if num_samples < window:
        return 0
    return 1 + (num_samples - window) // shift


def spectrogram_duration_s(config: FbankConfig = FbankConfig()) -> float:
    """Duration covered by ``target_length`` frame shifts, in seconds (2.56 s for the defaults).

    Args:
        config: Front-end settings.

    Returns:
        ``target_length * frame_shift_ms / 1000``.
    """
    return config.target_length * config.frame_shift_ms / 1000.0


def random_gain(generator: np.random.Generator | None = None) -> float:
    """Draw the official magnitude augmentation gain, ``Beta(10, 10) + 0.5`` (range (0.5, 1.5), mean 1).

    This is the gain of the official ``roll_mag_aug`` (whose roll part is a no-op); pass the result
    to :func:`wav_to_fbank` as ``gain``.

    Args:
        generator: NumPy generator; ``None`` uses NumPy's global (legacy) random state, as the
            official code does, which :class:`torch.utils.data.DataLoader` seeds per worker.

    Returns:
        The gain, a Python float.
    """
    draw = np.random.beta(10.0, 10.0) if generator is None else generator.beta(10.0, 10.0)
    return float(draw) + 0.5


def _to_mono_float32(waveform: Tensor | np.ndarray) -> Tensor:
    """Validate a waveform and return it as a float32 ``(1, n)`` torch tensor.

    Args:
        waveform: ``(n,)``, ``(1, n)`` or ``(channels, n)`` floating-point samples; channels are
            averaged to mono.

    Returns:
        ``(1, n)`` float32 tensor on the input's device.
    """
    if isinstance(waveform, np.ndarray):
        if not np.issubdtype(waveform.dtype, np.floating):
            raise TypeError(
                f"waveform must hold floating-point samples (scaled to [-1, 1]), got numpy dtype {waveform.dtype}"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    elif isinstance(waveform, Tensor):
        if not waveform.is_floating_point():
            raise TypeError(
                f"waveform must hold floating-point samples (scaled to [-1, 1]), got torch dtype {waveform.dtype}"
            )
        tensor = waveform.detach().to(torch.float32)
    else:
        raise TypeError(f"waveform must be a torch.Tensor or numpy.ndarray, got {type(waveform).__name__}")

    if tensor.dim() == 1:
        tensor = tensor.unsqueeze(0)
    elif tensor.dim() == 2:
        if tensor.shape[0] == 0:
            raise ValueError(f"waveform has no channels: shape {tuple(tensor.shape)}")
        if tensor.shape[0] > 1:
            tensor = tensor.mean(dim=0, keepdim=True)
    else:
        raise ValueError(f"waveform must have shape (n,), (1, n) or (channels, n), got {tuple(tensor.shape)}")
    return tensor


def _mask_band(spec: Tensor, max_width: int, dim: int, generator: torch.Generator | None) -> Tensor:
    """Fill one random band of ``spec`` along ``dim`` with 0 (torchaudio's axis-masking distribution).

    The width is ``int(u1 * max_width)`` and the start ``int(u2 * (size - u1 * max_width))`` with
    ``u1, u2 ~ U[0, 1)`` drawn in that order, exactly as :func:`torchaudio.functional.mask_along_axis`
    does; with ``generator=None`` the draws come from torch's global RNG, so the result equals
    :class:`torchaudio.transforms.FrequencyMasking` / ``TimeMasking`` under the same seed.

    Args:
        spec: ``(frames, bins)`` float tensor (not modified).
        max_width: Maximum width (exclusive); 0 leaves ``spec`` unchanged.
        dim: 0 to mask frames (time), 1 to mask bins (frequency).
        generator: Optional torch generator for the two uniform draws.

    Returns:
        The masked copy, ``(frames, bins)``.
    """
    if max_width < 1:
        return spec
    width = torch.rand(1, generator=generator) * max_width
    start = torch.rand(1, generator=generator) * (spec.shape[dim] - width)
    first = int(start.long())
    last = first + int(width.long())
    out = spec.clone()
    if dim == 0:
        out[first:last, :] = 0.0
    else:
        out[:, first:last] = 0.0
    return out


def wav_to_fbank(
    waveform: Tensor | np.ndarray,
    config: FbankConfig = FbankConfig(),
    *,
    gain: float = 1.0,
    train: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Turn a waveform segment into the normalised log-mel filter bank that HiCMAE's audio encoder reads.

    Args:
        waveform: Samples at ``config.sample_rate``, floating point, shape ``(n,)``, ``(1, n)`` or
            ``(channels, n)`` (channels are averaged to mono). NumPy arrays are converted to a float32
            torch tensor first.
        config: Front-end settings.
        gain: Multiplies the mean-removed waveform (1.0 = no augmentation; see :func:`random_gain`).
        train: Apply SpecAugment (``config.freq_mask`` / ``config.time_mask``) when ``True``.
        generator: Torch generator for the SpecAugment draws; ``None`` uses torch's global RNG.

    Returns:
        ``(1, target_length, num_mel_bins)`` float32 tensor on the waveform's device.

    Raises:
        TypeError: If the waveform is not a floating-point tensor/array.
        ValueError: If the waveform has a bad shape, non-finite values, or fewer samples than one
            25 ms frame, or if ``gain`` is not finite.
        ImportError: If torchaudio is not installed.
    """
    if not math.isfinite(gain):
        raise ValueError(f"gain must be finite, got {gain!r}")
    wav = _to_mono_float32(waveform)
    num_samples = wav.shape[1]
    min_samples = _samples_per_ms(config.sample_rate, FRAME_LENGTH_MS)
    if num_samples < min_samples:
        raise ValueError(
            f"waveform too short: {num_samples} samples, but one {FRAME_LENGTH_MS:g} ms frame needs "
            f"{min_samples} samples at {config.sample_rate} Hz"
        )
    if not bool(torch.isfinite(wav).all()):
        raise ValueError("waveform contains NaN or infinite values")

    kaldi = _import_kaldi()
    wav = (wav - wav.mean()) * gain
    fbank = kaldi.fbank(
        wav,
        htk_compat=True,
        sample_frequency=config.sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=config.num_mel_bins,
        dither=0.0,
        frame_shift=config.frame_shift_ms,
    )  # (frames, M)

    frames = fbank.shape[0]
    if frames < config.target_length:
        fbank = F.pad(fbank, (0, 0, 0, config.target_length - frames))
    elif frames > config.target_length:
        fbank = fbank[: config.target_length]
    logger.debug("fbank: %d frames -> %d (pad/cut)", frames, config.target_length)

    if train:
        # Official order: frequency mask, then time mask, both before normalisation.
        fbank = _mask_band(fbank, config.freq_mask, dim=1, generator=generator)
        fbank = _mask_band(fbank, config.time_mask, dim=0, generator=generator)

    return ((fbank - config.mean) / (2.0 * config.std)).unsqueeze(0)
