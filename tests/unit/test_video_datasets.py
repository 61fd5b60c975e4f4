"""Tests of maedfer.data.sampling / transforms / video_datasets.

Expected values are derived by hand from the formulas of tests/fixtures/official_data/README.md (exact
fractions for linspace positions and audio sample indices) or from inputs whose content encodes the frame
number, never from the code under test.
"""

from __future__ import annotations

import logging
import math
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from maedfer.audio import wav_to_fbank
from maedfer.data.annotations import AnnotationRow
from maedfer.data.readers import ClipReadError
from maedfer.data.sampling import (
    AudioSegmentError,
    audio_segment,
    relative_timestamp,
    segment_temporal_start,
    stride_loaded_indices,
    view_audio_frame_range,
    view_frame_indices,
    window_audio_frame_range,
    window_frame_indices,
    window_plan,
)
from maedfer.data.transforms import (
    TestView,
    TestViews,
    ViewPrediction,
    aggregate_view_predictions,
    center_crop,
    resize_frames_square,
    to_normalized_tensor,
)
from maedfer.data.video_datasets import (
    AudioConfig,
    SkipCounter,
    SkippedSample,
    TooManySkippedSamples,
    VideoClipDataset,
    filter_skipped_batches,
    skip_bad_samples_collate,
)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------ sampling rules


def _linspace_window(start: int, end: int, count: int) -> list[int]:
    """Hand rule: floor(start + k (end - start) / (count - 1)), clipped to end - 1 (exact fractions)."""
    return [min(math.floor(start + Fraction(k * (end - start), count - 1)), end - 1) for k in range(count)]


def test_window_rule_short_clip_n9_sr4() -> None:
    # n // sr = 2 -> linspace(0, 9, 2) = [0, 9], 14 copies of 9, all clipped to 8.
    assert window_frame_indices(9, 16, 4).tolist() == [0] + [8] * 15


def test_window_rule_short_clip_n16_sr4() -> None:
    # linspace(0, 16, 4) = 0, 16/3, 32/3, 16 -> 0, 5, 10, 15(clipped); then 12 copies of 15.
    assert window_frame_indices(16, 16, 4).tolist() == [0, 5, 10, 15] + [15] * 12


def test_window_rule_short_clip_n37_sr4() -> None:
    # linspace(0, 37, 9): 37 k / 8 -> 0, 4, 9, 13, 18, 23, 27, 32, 37 -> clipped to 36, then 7 copies.
    expected = [min(math.floor(Fraction(37 * k, 8)), 36) for k in range(9)] + [36] * 7
    assert expected == [0, 4, 9, 13, 18, 23, 27, 32, 36] + [36] * 7
    assert window_frame_indices(37, 16, 4).tolist() == expected


def test_window_rule_fewer_frames_than_stride_repeats_last() -> None:
    assert window_frame_indices(3, 16, 4).tolist() == [2] * 16


def test_window_rule_single_frame() -> None:
    assert window_frame_indices(1, 16, 4).tolist() == [0] * 16
    assert stride_loaded_indices(1, 16, 4).tolist() == [0] * 16


def test_window_rule_long_clip_given_end_n80_sr4() -> None:
    plan = window_plan(80, 16, 4, window_end=70)
    expected = _linspace_window(6, 70, 16)
    assert expected == [6, 10, 14, 18, 23, 27, 31, 35, 40, 44, 48, 52, 57, 61, 65, 69]
    assert plan.frame_indices.tolist() == expected
    assert plan.frame_indices.dtype == np.int64
    assert plan.random_start and plan.window_end == 70 and plan.span == 64


def test_window_rule_long_clip_sr1() -> None:
    # n = 37 > 16: end = 29 -> start 13; linspace(13, 29, 16) has step 16/15.
    assert window_frame_indices(37, 16, 1, window_end=29).tolist() == _linspace_window(13, 29, 16)


@pytest.mark.parametrize("end", [63, 80, -1])
def test_window_end_out_of_range(end: int) -> None:
    with pytest.raises(ValueError):
        window_frame_indices(80, 16, 4, window_end=end)


def test_window_end_draws_cover_the_official_range() -> None:
    rng = np.random.default_rng(5)
    ends = {window_plan(80, 16, 4, rng=rng).window_end for _ in range(2000)}
    assert ends == set(range(64, 80))  # numpy randint(64, 80): 64 ... 79


def test_window_end_with_legacy_random_state_matches_randint() -> None:
    expected_end = np.random.RandomState(11298).randint(64, 80)
    indices = window_frame_indices(80, 16, 4, rng=np.random.RandomState(11298))
    assert indices.tolist() == _linspace_window(expected_end - 64, expected_end, 16)


def test_window_rule_is_reproducible_with_seeded_generators() -> None:
    first = [window_frame_indices(200, 16, 4, rng=np.random.default_rng(7)).tolist() for _ in range(3)]
    assert first[0] == first[1] == first[2]


def test_exact_stride_rule() -> None:
    exact = window_frame_indices(80, 16, 4, window_end=70, rule="exact_stride")
    assert exact.tolist() == [6 + 4 * k for k in range(16)]
    assert window_frame_indices(9, 16, 4, rule="exact_stride").tolist() == [0, 4, 8] + [8] * 13
    with pytest.raises(ValueError):
        window_frame_indices(9, 16, 4, rule="stride")  # type: ignore[arg-type]


def test_test_rule_n80_sr4_two_segments() -> None:
    loaded, start, indices = view_frame_indices(80, 16, 4, 2, 1)
    assert loaded.tolist() == list(range(0, 80, 4))  # 20 positions
    assert start == 4  # int(1 * (20 - 16) / 1)
    assert indices.tolist() == list(range(16, 80, 4))
    assert view_frame_indices(80, 16, 4, 2, 0)[2].tolist() == list(range(0, 64, 4))


def test_test_rule_padding_and_short_clips() -> None:
    assert stride_loaded_indices(9, 16, 4).tolist() == [0, 4, 8] + [8] * 13
    assert stride_loaded_indices(16, 16, 4).tolist() == [0, 4, 8, 12] + [12] * 12
    # 37 frames at stride 1: 37 loaded, step (37 - 16) / 1 = 21.
    assert view_frame_indices(37, 16, 1, 2, 1)[2].tolist() == list(range(21, 37))


def test_test_temporal_start_truncates_and_guards_one_segment() -> None:
    assert [segment_temporal_start(20, 16, 3, s) for s in range(3)] == [0, 2, 4]
    assert [segment_temporal_start(21, 16, 4, s) for s in range(4)] == [0, 1, 3, 5]  # 5/3 = 1.67 per segment
    assert segment_temporal_start(40, 16, 1, 0) == 0  # the official code divides by zero here
    assert segment_temporal_start(10, 16, 2, 1) == 0  # max(negative, 0)
    with pytest.raises(ValueError):
        segment_temporal_start(20, 16, 2, 2)


# ------------------------------------------------------------------------------------------- audio mapping


def test_relative_timestamps() -> None:
    assert relative_timestamp(0, 1) == 0.0
    assert relative_timestamp(16, 80) == 16 / 79
    assert relative_timestamp(79, 80) == 1.0


def test_audio_segment_test_view_n80() -> None:
    loaded = stride_loaded_indices(80, 16, 4)
    start_frame, end_frame = view_audio_frame_range(loaded, 4, 16, 4, 80)
    assert (start_frame, end_frame) == (16, 79)  # end = min(76 + 4, 79)
    segment = audio_segment(start_frame, end_frame, 80, 67200)
    assert segment.start_sample == math.floor(Fraction(16 * 67200, 79)) == 13610
    assert segment.end_sample == 67200
    assert not segment.whole_audio and segment.slice == slice(13610, 67200)


def test_audio_segment_window_n80() -> None:
    start_frame, end_frame = window_audio_frame_range(6, 16, 4, 80)
    assert (start_frame, end_frame) == (6, 70)  # idx[0] + L * sr, not the last sampled frame + sr
    segment = audio_segment(start_frame, end_frame, 80, 67200)
    assert segment.start_sample == math.floor(Fraction(6 * 67200, 79)) == 5103
    assert segment.end_sample == math.floor(Fraction(70 * 67200, 79)) == 59544
    assert segment.num_samples == 59544 - 5103


def test_audio_segment_end_clipped_to_last_frame() -> None:
    assert window_audio_frame_range(0, 16, 4, 9) == (0, 8)
    assert view_audio_frame_range(stride_loaded_indices(9, 16, 4), 0, 16, 4, 9) == (0, 8)


def test_audio_segment_single_frame_uses_whole_short_audio() -> None:
    segment = audio_segment(0, 0, 1, 19200)
    assert segment.whole_audio and (segment.start_sample, segment.end_sample) == (0, 0)
    assert segment.slice == slice(0, 19200) and segment.num_samples == 19200


def test_audio_segment_too_short_with_long_audio_raises() -> None:
    with pytest.raises(AudioSegmentError, match="clip.wav"):
        audio_segment(0, 0, 1, 48000, source="clip.wav")
    # 2.56 s exactly is not "shorter than 2.56 s".
    with pytest.raises(AudioSegmentError):
        audio_segment(0, 0, 1, 40960)
    assert audio_segment(0, 0, 1, 40959).whole_audio


def test_audio_segment_1024_sample_boundary() -> None:
    # 1000 frames, N = 1_000_000 (long audio): frames 0..1 -> 1001 samples (too short), 0..2 -> 2002 samples.
    with pytest.raises(AudioSegmentError):
        audio_segment(0, 1, 1000, 1_000_000)
    assert audio_segment(0, 2, 1000, 1_000_000).end_sample == math.floor(Fraction(2 * 1_000_000, 999))


# ------------------------------------------------------------------------------------------------ transforms


def test_resize_square_matches_pil_and_drops_aspect_ratio() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, 30, 50, 3), dtype=np.uint8)
    out = resize_frames_square(frames, 20)
    assert out.shape == (2, 20, 20, 3) and out.dtype == np.uint8
    for k in range(2):
        reference = np.asarray(Image.fromarray(frames[k]).resize((20, 20), Image.BILINEAR))
        assert np.array_equal(out[k], reference)


def test_resize_square_is_antialiased() -> None:
    # A 1-pixel black/white checkerboard down-scaled 4x: an antialiased filter averages it to mid grey,
    # point-sampling bilinear interpolation would keep pure black / white values.
    board = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)
    frames = np.repeat(board[None, :, :, None], 3, axis=3)
    out = resize_frames_square(frames, 16).astype(int)
    assert np.abs(out[:, 2:-2, 2:-2] - 127.5).max() <= 1


def test_center_crop_offsets_use_python_round() -> None:
    def grid(height: int, width: int) -> np.ndarray:
        rows, cols = np.indices((height, width))
        return np.stack([rows, cols, rows * 0], axis=-1)[None]

    assert center_crop(grid(176, 176), 160)[0, 0, 0, :2].tolist() == [8, 8]
    assert center_crop(grid(161, 161), 160)[0, 0, 0, :2].tolist() == [0, 0]  # round(0.5) = 0
    assert center_crop(grid(163, 165), 160)[0, 0, 0, :2].tolist() == [2, 2]  # round(1.5) = 2, round(2.5) = 2
    assert center_crop(grid(170, 170), 160).shape == (1, 160, 160, 3)
    with pytest.raises(ValueError):
        center_crop(grid(100, 200), 160)


def test_to_normalized_tensor_values_and_layout() -> None:
    frames = np.zeros((2, 3, 4, 3), dtype=np.uint8)
    frames[0, ..., 0], frames[0, ..., 1], frames[0, ..., 2] = 0, 128, 255
    frames[1, 1, 2] = (10, 20, 30)
    out = to_normalized_tensor(frames)
    assert out.shape == (3, 2, 3, 4) and out.dtype == torch.float32 and out.is_contiguous()

    def expected(value: int, channel: int) -> float:
        return (value / 255 - MEAN[channel]) / STD[channel]

    for channel, value in enumerate((0, 128, 255)):
        assert torch.allclose(out[channel, 0], torch.full((3, 4), expected(value, channel)), atol=1e-6)
    for channel, value in enumerate((10, 20, 30)):
        assert abs(float(out[channel, 1, 1, 2]) - expected(value, channel)) < 1e-6
    assert abs(float(out[0, 1, 0, 0]) - expected(0, 0)) < 1e-6


def test_to_normalized_tensor_is_bit_exact_float32_arithmetic_for_every_value() -> None:
    """Every uint8 value of every channel, also through flipped views: exactly float32 ((v / 255) - mean) / std."""
    values = np.arange(256, dtype=np.uint8)
    frames = np.stack([np.roll(values, 17 * c) for c in range(3)], axis=-1).reshape(2, 8, 16, 3)
    for clip in (frames, frames[:, :, ::-1], frames[::-1, ::-1], frames[..., ::-1]):
        out = to_normalized_tensor(clip).numpy()
        for channel in range(3):
            v = clip[..., channel].astype(np.float32)
            expected = (v / np.float32(255) - np.float32(MEAN[channel])) / np.float32(STD[channel])
            assert expected.dtype == np.float32
            assert np.array_equal(out[channel], expected)


def test_test_views_default_drop_duplicate_crops() -> None:
    assert TestViews(2, 2).views() == [TestView(0, 0), TestView(1, 0)]
    official = TestViews(2, 2, official_duplicate_crops=True).views()
    assert [(v.segment, v.crop) for v in official] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len(TestViews(3, 2).views(square_frames=False)) == 6


def test_test_views_spatial_crops() -> None:
    views = TestViews(2, 2)
    frames = np.arange(160 * 200)[None, :, None].repeat(1, 0).reshape(1, 160, 200, 1)
    assert views.spatial_step(160, 200, 160) == 40.0
    assert [views.spatial_start(c, 160, 200, 160) for c in range(2)] == [0, 40]
    second = views.crop_frames(frames, 1, 160)
    assert second.shape == (1, 160, 160, 1) and int(second[0, 0, 0, 0]) == 40  # columns 40..199
    square = np.zeros((1, 160, 160, 3), dtype=np.uint8)
    assert views.crop_frames(square, 1, 160).shape == (1, 160, 160, 3)  # spatial step 0: the whole frame
    assert TestViews(2, 1).spatial_step(160, 200, 160) == 0.0  # no ZeroDivisionError


def test_aggregate_classification_mean_of_softmax() -> None:
    def softmax(values: list[float]) -> list[float]:
        exps = [math.exp(v) for v in values]
        return [e / sum(exps) for e in exps]

    records = [
        ViewPrediction("a", 0, 0, np.array([2.0, 0.0, 0.0]), label=0),
        ViewPrediction("a", 1, 0, np.array([0.0, 3.0, 0.0]), label=0),
        ViewPrediction("a", 1, 0, np.array([0.0, 0.0, 99.0]), label=0),  # duplicate key: ignored
        {"video_id": "b", "segment": 1, "crop": 11, "output": torch.tensor([1.0, 1.0, 1.0])},
        {"video_id": "b", "segment": 11, "crop": 1, "output": torch.tensor([0.0, 0.0, 0.0])},  # not a duplicate
    ]
    result = aggregate_view_predictions(records)
    expected_a = [(x + y) / 2 for x, y in zip(softmax([2.0, 0.0, 0.0]), softmax([0.0, 3.0, 0.0]))]
    assert np.allclose(result["a"].output, expected_a, atol=1e-12)
    assert result["a"].views == [(0, 0), (1, 0)] and result["a"].label == 0
    assert result["a"].predicted_class == int(np.argmax(expected_a))
    assert result["b"].views == [(1, 11), (11, 1)]
    assert np.allclose(result["b"].output, [1 / 3] * 3)


def test_aggregate_regression_mean_of_raw_outputs() -> None:
    records = [
        ViewPrediction("v", 0, 0, np.array([1.0, -2.0, 0.5])),
        ViewPrediction("v", 1, 0, np.array([3.0, 0.0, 1.5])),
    ]
    result = aggregate_view_predictions(records, task="regression")
    assert result["v"].output.tolist() == [2.0, -1.0, 1.0]


# ------------------------------------------------------------------------------------------------ datasets


def _frame_folder(folder: Path, count: int, size: tuple[int, int] = (24, 30), ext: str = "png") -> Path:
    """Frames of constant colour: frame k has value k in every channel (lossless PNG)."""
    assert count <= 256
    folder.mkdir(parents=True)
    for k in range(count):
        Image.fromarray(np.full((*size, 3), k, dtype=np.uint8)).save(folder / f"{k:05d}.{ext}")
    return folder


def _frame_ids(video: torch.Tensor) -> list[int]:
    """Recover the frame numbers from a normalised clip of constant-colour frames."""
    mean = torch.tensor(MEAN)[:, None, None, None]
    std = torch.tensor(STD)[:, None, None, None]
    pixels = torch.round((video * std + mean) * 255)
    assert torch.equal(pixels, pixels[:, :, :1, :1].expand_as(pixels))  # every frame constant
    return [int(v) for v in pixels[0, :, 0, 0].tolist()]


def _write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.astype("<i2").tobytes())
    return path


def _dataset(rows: list[AnnotationRow], mode: str, **kwargs: object) -> VideoClipDataset:
    defaults: dict[str, object] = {"sampling_rate": 4, "input_size": 16, "short_side_size": 20, "file_ext": "png"}
    defaults.update(kwargs)
    return VideoClipDataset(rows, mode, **defaults)  # type: ignore[arg-type]


def test_test_mode_views_and_indices(tmp_path: Path) -> None:
    rows = [
        AnnotationRow(str(_frame_folder(tmp_path / "long", 40)), 1),
        AnnotationRow(str(_frame_folder(tmp_path / "short", 9)), 2),
    ]
    dataset = _dataset(rows, "test", sampling_rate=2)
    assert len(dataset) == 4  # 2 segments x 1 crop (square frames) x 2 clips
    assert len(_dataset(rows, "test", sampling_rate=2, official_duplicate_crops=True)) == 8
    items = [dataset[i] for i in range(4)]
    # Order: view-major, then sample. 40 frames at stride 2 -> 20 loaded, segment 1 starts at 4.
    assert [(it["segment"], it["crop"], it["path"]) for it in items] == [
        (0, 0, rows[0].path), (0, 0, rows[1].path), (1, 0, rows[0].path), (1, 0, rows[1].path)
    ]
    assert _frame_ids(items[0]["video"]) == list(range(0, 32, 2))
    assert _frame_ids(items[2]["video"]) == list(range(8, 40, 2))
    assert _frame_ids(items[1]["video"]) == [0, 2, 4, 6, 8] + [8] * 11
    assert items[0]["video"].shape == (3, 16, 20, 20)  # test views keep the full S x S frame
    assert items[0]["label"].dtype == torch.int64 and int(items[0]["label"]) == 1
    assert items[2]["frame_indices"].tolist() == list(range(8, 40, 2))


def test_validation_mode_crop_and_given_window(tmp_path: Path) -> None:
    rows = [AnnotationRow(str(_frame_folder(tmp_path / "clip", 80)), 0)]
    dataset = _dataset(rows, "validation")
    item, plan = dataset.load(0, window_end=70)
    assert item["video"].shape == (3, 16, 16, 16)
    assert _frame_ids(item["video"]) == _linspace_window(6, 70, 16)
    assert plan.window is not None and plan.window.window_end == 70


def test_single_image_clip_repeats_the_image(tmp_path: Path) -> None:
    image = tmp_path / "face.jpg"
    Image.fromarray(np.full((30, 20, 3), 100, dtype=np.uint8)).save(image, quality=100)
    dataset = _dataset([AnnotationRow(str(image), 3)], "validation")
    item = dataset[0]
    assert item["video"].shape == (3, 16, 16, 16)
    assert item["frame_indices"].tolist() == [0] * 16
    assert torch.equal(item["video"], item["video"][:, :1].expand_as(item["video"]))


def test_train_sampling_reproducible_and_epoch_dependent(tmp_path: Path) -> None:
    rows = [AnnotationRow(str(_frame_folder(tmp_path / f"c{k}", 200, size=(8, 8))), k) for k in range(4)]
    first = _dataset(rows, "train", seed=3)
    second = _dataset(rows, "train", seed=3)
    draws = [first[i]["frame_indices"].tolist() for i in range(4)]
    assert draws == [second[i]["frame_indices"].tolist() for i in range(4)]
    assert draws == [first[i]["frame_indices"].tolist() for i in range(4)]  # per-item, not stateful
    second.set_epoch(1)
    assert draws != [second[i]["frame_indices"].tolist() for i in range(4)]
    other_seed = _dataset(rows, "train", seed=4)
    assert draws != [other_seed[i]["frame_indices"].tolist() for i in range(4)]
    # Workers do not change the draws.
    loader = DataLoader(first, batch_size=2, num_workers=2, collate_fn=skip_bad_samples_collate)
    assert [row for batch in loader for row in batch["frame_indices"].tolist()] == draws
    for indices in draws:  # each is a linspace window of span 64 inside the clip
        start = indices[0]
        assert indices == _linspace_window(start, start + 64, 16) and start + 64 <= 199


def test_train_transform_hook(tmp_path: Path) -> None:
    rows = [AnnotationRow(str(_frame_folder(tmp_path / "clip", 20)), 0)]
    seen: list[tuple[tuple[int, ...], np.dtype, type]] = []

    def transform(frames: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        seen.append((frames.shape, frames.dtype, type(rng)))
        return torch.zeros(3, frames.shape[0], 12, 12)

    item = _dataset(rows, "train", train_transform=transform)[0]
    assert seen == [((16, 20, 20, 3), np.dtype(np.uint8), np.random.Generator)]
    assert item["video"].shape == (3, 16, 12, 12)


def test_audio_visual_items(tmp_path: Path) -> None:
    frames = _frame_folder(tmp_path / "clip", 80, size=(8, 8))
    samples = (np.sin(np.arange(67200) * 0.05) * 8000).astype(np.int16)
    wav = _write_wav(tmp_path / "clip.wav", samples)
    rows = [AnnotationRow(str(frames), (1.0, 0.5, -0.25), audio_path=str(wav))]
    waveform = samples.astype(np.float32)[None] / 32768

    test_set = _dataset(rows, "test", audio=AudioConfig(), task="regression")
    item = test_set[1]  # segment 1: frames 16 .. min(76 + 4, 79)
    a0, a1 = math.floor(Fraction(16 * 67200, 79)), 67200
    assert item["audio"].shape == (1, 256, 128)
    assert torch.allclose(item["audio"], wav_to_fbank(waveform[:, a0:a1]), atol=1e-5)
    assert item["label"].dtype == torch.float32 and item["label"].tolist() == [1.0, 0.5, -0.25]

    validation = _dataset(rows, "validation", audio=AudioConfig())
    item, plan = validation.load(0, window_end=70, gain=1.2)
    b0, b1 = math.floor(Fraction(6 * 67200, 79)), math.floor(Fraction(70 * 67200, 79))
    assert (plan.audio_segment.start_sample, plan.audio_segment.end_sample) == (b0, b1)
    assert plan.gain == 1.2
    assert torch.allclose(item["audio"], wav_to_fbank(waveform[:, b0:b1], gain=1.2), atol=1e-4)

    gains = {_dataset(rows, "test", audio=AudioConfig(random_gain=True)).load(i)[1].gain for i in range(2)}
    assert len(gains) == 2 and all(0.5 < g < 1.5 for g in gains)


def test_audio_visual_annotation_file(tmp_path: Path) -> None:
    frames = _frame_folder(tmp_path / "clip", 9, size=(8, 8))
    wav = _write_wav(tmp_path / "clip.wav", np.zeros(19200, dtype=np.int16) + 100)
    annotation = tmp_path / "test.csv"
    annotation.write_text(f"{frames} {wav} 4\n")
    dataset = VideoClipDataset(annotation, "test", sampling_rate=4, file_ext="png", audio=AudioConfig())
    item = dataset[0]
    assert int(item["label"]) == 4 and item["audio"].shape == (1, 256, 128)


def test_missing_audio_column_is_rejected(tmp_path: Path) -> None:
    rows = [AnnotationRow(str(tmp_path / "clip"), 0, line=7)]
    with pytest.raises(ValueError, match=":7: audio is enabled"):
        _dataset(rows, "test", audio=AudioConfig())


def test_bad_samples_are_skipped_named_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = _frame_folder(tmp_path / "good", 20, size=(8, 8))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "cover.jpeg").write_bytes(b"")  # wrong extension: the folder still holds no *.png frame
    wav = _write_wav(tmp_path / "good.wav", np.zeros(30000, dtype=np.int16))
    rows = [
        AnnotationRow(str(good), 0, audio_path=str(wav)),
        AnnotationRow(str(empty), 1, audio_path=str(wav)),
        AnnotationRow(str(good), 2, audio_path=str(tmp_path / "missing.wav")),
    ]
    dataset = _dataset(rows, "validation", audio=AudioConfig(), max_skip_fraction=1.0)
    with caplog.at_level(logging.WARNING, logger="maedfer.data.video_datasets"):
        items = [dataset[i] for i in range(3)]
    assert isinstance(items[0], dict)
    assert isinstance(items[1], SkippedSample) and items[1].path == str(empty)
    assert isinstance(items[2], SkippedSample) and items[2].path == str(tmp_path / "missing.wav")
    assert str(empty) in caplog.text and "missing.wav" in caplog.text
    assert dataset.skipped == 2
    dataset[1]
    assert dataset.skipped == 2  # distinct items

    batch = skip_bad_samples_collate(items)
    assert batch["video"].shape == (1, 3, 16, 16, 16) and batch["index"].tolist() == [0]
    assert [r.index for r in batch["skipped"]] == [1, 2]

    strict = _dataset(rows, "validation", audio=AudioConfig(), skip_bad_samples=False)
    with pytest.raises(ClipReadError, match="holds no"):
        strict[1]


def test_skip_threshold_stops_the_run(tmp_path: Path) -> None:
    good = _frame_folder(tmp_path / "good", 10, size=(8, 8))
    rows = [AnnotationRow(str(good), 0) for _ in range(9)] + [AnnotationRow(str(tmp_path / "gone"), 1)]
    # One bad item out of 10 = 10 %: tolerated with max_skip_fraction 0.1, an error with 0.05.
    tolerant = _dataset(rows, "validation", max_skip_fraction=0.1)
    loader = DataLoader(tolerant, batch_size=4, num_workers=2, collate_fn=skip_bad_samples_collate)
    counter = SkipCounter(len(tolerant), 0.1)
    batches = list(filter_skipped_batches(loader, counter))
    assert sum(len(b["index"]) for b in batches) == 9 and all("skipped" not in b for b in batches)
    assert counter.count == 1 and list(counter.records) == [9] and str(tmp_path / "gone") in counter.records[9].path

    strict = _dataset(rows, "validation", max_skip_fraction=0.05)
    with pytest.raises(TooManySkippedSamples, match="gone"):
        strict[9]
    main_counter = SkipCounter(len(rows), 0.05)
    with pytest.raises(TooManySkippedSamples, match="1 of 10"):
        main_counter.update({"skipped": [SkippedSample(9, str(tmp_path / "gone"), "not found")]})


def test_invalid_arguments(tmp_path: Path) -> None:
    rows = [AnnotationRow(str(tmp_path), 0)]
    with pytest.raises(ValueError):
        _dataset(rows, "eval")
    with pytest.raises(ValueError):
        _dataset(rows, "test", input_size=32, short_side_size=20)
    with pytest.raises(ValueError):
        _dataset([], "test")
    with pytest.raises(IndexError):
        _dataset(rows, "validation").locate(1)


def test_official_train_transform_plugs_in(tmp_path: Path) -> None:
    from maedfer.data.augment import FinetuneTrainTransform

    rows = [AnnotationRow(str(_frame_folder(tmp_path / "clip", 20)), 0)]
    dataset = _dataset(rows, "train", train_transform=FinetuneTrainTransform(input_size=16, short_side_size=20))
    first, second = dataset[0]["video"], dataset[0]["video"]
    assert first.shape == (3, 16, 16, 16) and first.dtype == torch.float32
    assert torch.equal(first, second)  # the per-item generator makes the augmentation reproducible
