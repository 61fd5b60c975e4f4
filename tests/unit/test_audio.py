"""Tests of maedfer.audio, the HiCMAE / AudioMAE log-mel front end."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from maedfer.audio import (
    AUDIOSET_MEAN,
    AUDIOSET_STD,
    FbankConfig,
    num_fbank_frames,
    random_gain,
    spectrogram_duration_s,
    wav_to_fbank,
)

# torchaudio comes with the [dev] extra (through [audio]); these tests must run, never skip.

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "hicmae_audio_fbank.pt"

# -mean / (2 * std) with the AudioSet statistics, computed by hand: 4.2677393 / 9.1379948.
PAD_LEVEL = 0.46703241
# Index of the mel filter that covers no FFT bin for 128 bins at 16 kHz (512-point FFT).
DEAD_BIN = 3


def _reference_fbank(wav: torch.Tensor) -> torch.Tensor:
    """Unnormalised official fbank of a (1, n) float32 waveform, straight from torchaudio."""
    from torchaudio.compliance import kaldi

    return kaldi.fbank(
        wav - wav.mean(),
        htk_compat=True,
        sample_frequency=16000,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=128,
        dither=0.0,
        frame_shift=10,
    )


def _noise(n: int, seed: int = 0, channels: int = 1, scale: float = 0.1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(channels, n, generator=g)


@pytest.fixture(scope="module")
def official() -> dict:
    return torch.load(FIXTURE, weights_only=True)


# --------------------------------------------------------------------------- official parity


def test_fixture_params_match_defaults(official: dict) -> None:
    p = official["params"]
    cfg = FbankConfig()
    assert (p["sample_rate"], p["num_mel_bins"], p["target_length"]) == (
        cfg.sample_rate,
        cfg.num_mel_bins,
        cfg.target_length,
    )
    assert (p["freqm"], p["timem"]) == (cfg.freq_mask, cfg.time_mask) == (0, 0)
    assert p["mean"] == pytest.approx(AUDIOSET_MEAN, abs=1e-7)
    assert p["std"] == pytest.approx(AUDIOSET_STD, abs=1e-7)


def test_official_fixture_parity(official: dict) -> None:
    waveform = official["inputs"]["waveform"]
    cases = official["cases"]
    assert len(cases) == 4
    for case in cases:
        a0, a1 = case["audio_start_idx"], case["audio_end_idx"]
        out = wav_to_fbank(waveform[:, a0:a1], gain=case.get("gain", 1.0))
        assert out.shape == (1, 256, 128) and out.dtype == torch.float32
        torch.testing.assert_close(
            out, case["fbank"], atol=official["atol"], rtol=official["rtol"], msg=lambda m: f"{case['name']}: {m}"
        )
        assert num_fbank_frames(a1 - a0) == case["num_fbank_frames_before_pad_or_cut"], case["name"]


def test_official_fixture_gain_matters(official: dict) -> None:
    # The gain cases must fail without their gain, so the parity test really checks the gain.
    waveform = official["inputs"]["waveform"]
    case = next(c for c in official["cases"] if "gain" in c)
    out = wav_to_fbank(waveform[:, case["audio_start_idx"] : case["audio_end_idx"]])
    assert (out - case["fbank"]).abs().max() > 10 * official["atol"]


# --------------------------------------------------------------------------- frames, padding, cutting


@pytest.mark.parametrize(
    ("n", "expected"), [(0, 0), (399, 0), (400, 1), (559, 1), (560, 2), (16000, 98), (24000, 148)]
)
def test_num_fbank_frames_hand_values(n: int, expected: int) -> None:
    assert num_fbank_frames(n) == expected


@pytest.mark.parametrize("n", [400, 401, 1234, 8000, 16161])
def test_num_fbank_frames_matches_torchaudio(n: int) -> None:
    assert num_fbank_frames(n) == _reference_fbank(_noise(n)).shape[0]


def test_num_fbank_frames_other_rate() -> None:
    # 8 kHz: 200-sample window, 80-sample hop.
    assert num_fbank_frames(200, sample_rate=8000) == 1
    assert num_fbank_frames(1000, sample_rate=8000) == 11
    with pytest.raises(ValueError, match="non-negative"):
        num_fbank_frames(-1)


def test_spectrogram_duration() -> None:
    assert spectrogram_duration_s() == pytest.approx(2.56)
    assert spectrogram_duration_s(FbankConfig(target_length=1024)) == pytest.approx(10.24)


def test_dead_mel_bin() -> None:
    # 128 mel bins at 16 kHz: exactly one filter (index 3) is empty and gives a constant column.
    fb = _reference_fbank(_noise(16000, seed=1))
    constant = (fb.max(dim=0).values == fb.min(dim=0).values).nonzero().flatten().tolist()
    assert constant == [DEAD_BIN]
    assert fb[0, DEAD_BIN].item() == pytest.approx(math.log(torch.finfo(torch.float32).eps), abs=1e-4)
    # Through wav_to_fbank it is the same constant, normalised.
    out = wav_to_fbank(_noise(16000, seed=1))[0]
    expected = (math.log(torch.finfo(torch.float32).eps) - AUDIOSET_MEAN) / (2 * AUDIOSET_STD)
    torch.testing.assert_close(out[:98, DEAD_BIN], torch.full((98,), expected), atol=1e-4, rtol=0)


def test_padding_value_short_clip() -> None:
    # Quiet noise keeps every real log energy far below 0, i.e. far from the padding level.
    wav = _noise(8000, scale=1e-3)  # 0.5 s -> 48 frames
    out = wav_to_fbank(wav)
    frames = num_fbank_frames(8000)
    assert frames == 48
    assert out.shape == (1, 256, 128)
    torch.testing.assert_close(out[0, frames:], torch.full((256 - frames, 128), PAD_LEVEL), atol=1e-6, rtol=0)
    expected = (_reference_fbank(wav) - AUDIOSET_MEAN) / (2 * AUDIOSET_STD)
    torch.testing.assert_close(out[0, :frames], expected, atol=1e-5, rtol=1e-5)
    # Real frames are not at the padding level.
    assert (out[0, :frames] - PAD_LEVEL).abs().min() > 0.1


def test_cut_long_clip() -> None:
    wav = _noise(48000, seed=2)  # 3 s -> 298 frames, keep the first 256
    out = wav_to_fbank(wav)
    full = _reference_fbank(wav)
    assert full.shape[0] == 298
    expected = (full[:256] - AUDIOSET_MEAN) / (2 * AUDIOSET_STD)
    torch.testing.assert_close(out[0], expected, atol=1e-5, rtol=1e-5)


def test_custom_config_shape_and_stats() -> None:
    cfg = FbankConfig(num_mel_bins=64, target_length=100, mean=0.0, std=0.5)
    wav = _noise(24000, seed=3)  # 148 frames, cut to 100
    out = wav_to_fbank(wav, cfg)
    assert out.shape == (1, 100, 64)
    from torchaudio.compliance import kaldi

    ref = kaldi.fbank(
        wav - wav.mean(), htk_compat=True, sample_frequency=16000, use_energy=False,
        window_type="hanning", num_mel_bins=64, dither=0.0, frame_shift=10,
    )  # fmt: skip
    torch.testing.assert_close(out[0], ref[:100], atol=1e-5, rtol=1e-5)  # (x - 0) / (2 * 0.5) = x


# --------------------------------------------------------------------------- input handling


def test_input_layouts_and_numpy() -> None:
    wav = _noise(12000, seed=4)
    ref = wav_to_fbank(wav)
    torch.testing.assert_close(wav_to_fbank(wav[0]), ref, atol=0, rtol=0)
    torch.testing.assert_close(wav_to_fbank(wav.numpy()), ref, atol=0, rtol=0)
    torch.testing.assert_close(wav_to_fbank(wav[0].numpy().astype(np.float64)), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(wav_to_fbank(wav.double()), ref, atol=1e-6, rtol=0)


def test_mono_mixing() -> None:
    stereo = _noise(12000, seed=5, channels=2)
    mono = (stereo[0] + stereo[1]) / 2
    out = wav_to_fbank(stereo)
    torch.testing.assert_close(out, wav_to_fbank(mono), atol=1e-6, rtol=0)
    assert (out - wav_to_fbank(stereo[0])).abs().max() > 1e-2


def test_input_not_modified() -> None:
    wav = _noise(8000, seed=6) + 0.5
    before = wav.clone()
    wav_to_fbank(wav, gain=1.3)
    assert torch.equal(wav, before)


def test_gain_shifts_log_energy() -> None:
    # Power scales with gain**2, so each live log-mel value moves by 2*log(g) / (2*std) = log(g) / std.
    wav = _noise(24000, seed=8)
    g = 1.37
    base = wav_to_fbank(wav)[0, :148]
    scaled = wav_to_fbank(wav, gain=g)[0, :148]
    live = [b for b in range(128) if b != DEAD_BIN]
    torch.testing.assert_close(
        scaled[:, live] - base[:, live], torch.full((148, 127), math.log(g) / AUDIOSET_STD), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(scaled[:, DEAD_BIN], base[:, DEAD_BIN], atol=0, rtol=0)


@pytest.mark.parametrize("n", [0, 1, 399])
def test_too_short_raises(n: int) -> None:
    with pytest.raises(ValueError, match="too short"):
        wav_to_fbank(torch.zeros(1, n))


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="shape"):
        wav_to_fbank(torch.zeros(1, 1, 1000))
    with pytest.raises(TypeError, match="floating"):
        wav_to_fbank(np.zeros(1000, dtype=np.int16))
    with pytest.raises(TypeError, match="floating"):
        wav_to_fbank(torch.zeros(1000, dtype=torch.int32))
    with pytest.raises(TypeError, match="Tensor or numpy"):
        wav_to_fbank([0.0] * 1000)  # type: ignore[arg-type]
    bad = torch.zeros(1, 1000)
    bad[0, 10] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        wav_to_fbank(bad)
    with pytest.raises(ValueError, match="gain"):
        wav_to_fbank(torch.zeros(1, 1000), gain=float("inf"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_mel_bins": 0},
        {"target_length": -1},
        {"sample_rate": 16000.0},
        {"freq_mask": -1},
        {"time_mask": 300},
        {"freq_mask": 129},
        {"std": 0.0},
        {"frame_shift_ms": 0.0},
    ],
)
def test_config_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FbankConfig(**kwargs)


# --------------------------------------------------------------------------- SpecAugment


def _masked_positions(out: torch.Tensor) -> torch.Tensor:
    return (out[0] - PAD_LEVEL).abs() < 1e-6


def test_specaugment_eval_is_off() -> None:
    wav = _noise(48000, seed=9)
    cfg = FbankConfig(freq_mask=48, time_mask=192)
    plain = wav_to_fbank(wav)
    torch.testing.assert_close(wav_to_fbank(wav, cfg), plain, atol=0, rtol=0)
    torch.testing.assert_close(wav_to_fbank(wav, FbankConfig(), train=True), plain, atol=0, rtol=0)


def test_specaugment_masks_bands_to_zero_energy_level() -> None:
    # No padding, and quiet noise keeps every real log energy far from 0 (the masking value).
    wav = _noise(48000, seed=10, scale=1e-3)
    cfg = FbankConfig(freq_mask=48, time_mask=192)
    plain = wav_to_fbank(wav)
    assert (plain - PAD_LEVEL).abs().min() > 0.1
    seen_freq = seen_time = False
    for seed in range(6):
        out = wav_to_fbank(wav, cfg, train=True, generator=torch.Generator().manual_seed(seed))
        masked = _masked_positions(out)
        # Everything not masked is untouched.
        torch.testing.assert_close(out[0][~masked], plain[0][~masked], atol=0, rtol=0)
        full_cols = masked.all(dim=0).nonzero().flatten()  # masked frequency bins
        full_rows = masked.all(dim=1).nonzero().flatten()  # masked frames
        # Masked set is exactly the union of one frequency band and one time band.
        union = torch.zeros_like(masked)
        union[:, full_cols] = True
        union[full_rows, :] = True
        assert torch.equal(masked, union)
        for idx, limit in ((full_cols, 48), (full_rows, 192)):
            if idx.numel():
                assert idx.numel() < limit
                assert idx[-1] - idx[0] + 1 == idx.numel()  # contiguous
        seen_freq |= 0 < full_cols.numel() < 128
        seen_time |= 0 < full_rows.numel() < 256
    assert seen_freq and seen_time


def test_specaugment_matches_torchaudio_transforms() -> None:
    # With generator=None the draws come from the global RNG in torchaudio's order (freq, then time).
    import torchaudio

    wav = _noise(30000, seed=11)
    cfg = FbankConfig(freq_mask=30, time_mask=100)
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        out = wav_to_fbank(wav, cfg, train=True)
        fb = _reference_fbank(wav)
        fb = torch.nn.functional.pad(fb, (0, 0, 0, 256 - fb.shape[0]))
        spec = fb.t().unsqueeze(0)  # (1, 128, 256)
        torch.manual_seed(seed)
        spec = torchaudio.transforms.FrequencyMasking(30)(spec)
        spec = torchaudio.transforms.TimeMasking(100)(spec)
        expected = ((spec.squeeze(0).t() - AUDIOSET_MEAN) / (2 * AUDIOSET_STD)).unsqueeze(0)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_specaugment_generator_is_deterministic_and_isolated() -> None:
    wav = _noise(48000, seed=12)
    cfg = FbankConfig(freq_mask=64, time_mask=200)
    state = torch.get_rng_state()
    a = wav_to_fbank(wav, cfg, train=True, generator=torch.Generator().manual_seed(123))
    b = wav_to_fbank(wav, cfg, train=True, generator=torch.Generator().manual_seed(123))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not consumed
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    outs = [wav_to_fbank(wav, cfg, train=True, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


# --------------------------------------------------------------------------- random gain


def test_random_gain_distribution() -> None:
    rng = np.random.default_rng(0)
    gains = np.array([random_gain(rng) for _ in range(4000)])
    assert isinstance(random_gain(rng), float)
    assert gains.min() > 0.5 and gains.max() < 1.5
    assert gains.mean() == pytest.approx(1.0, abs=0.01)
    # Beta(10, 10) std = sqrt(100 / (20**2 * 21)) = 0.10911.
    assert gains.std() == pytest.approx(0.10911, abs=0.01)


def test_random_gain_reproducible() -> None:
    assert random_gain(np.random.default_rng(5)) == random_gain(np.random.default_rng(5))
    np.random.seed(7)
    first = [random_gain() for _ in range(3)]
    np.random.seed(7)
    assert [random_gain() for _ in range(3)] == first
    assert len(set(first)) == 3


# --------------------------------------------------------------------------- optional dependency


def test_missing_torchaudio_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "torchaudio", None)
    with pytest.raises(ImportError, match=r'pip install "maedfer\[audio\]"'):
        wav_to_fbank(torch.zeros(1, 1000))
    # Pure helpers keep working without torchaudio.
    assert num_fbank_frames(1000) == 4
    assert 0.5 < random_gain(np.random.default_rng(0)) < 1.5
