"""Sample-level inference on raw video (maedfer.apps.predict, tools/predict.py) with tiny models and synthetic videos."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

from maedfer.audio import wav_to_fbank
from maedfer.checkpoint import save_checkpoint
from maedfer.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig, config_to_dict
from maedfer.preprocess.faces import NoFaceError
from maedfer.data.readers import ClipReadError, read_audio
from maedfer.synthetic import EMOTION_CLASSES, SyntheticIdentity, render_clip, write_mp4
from maedfer.apps.inference import InferenceModel, clip_to_input, load_inference_model, read_video_frames
from maedfer.apps.predict import (
    NoAudioError,
    clip_frame_indices,
    plot_timeline,
    predict_video,
    save_outputs,
    window_bounds,
    window_starts,
    write_csv,
)
from maedfer.registry import create_model, model_entry

ROOT = Path(__file__).resolve().parents[2]
FPS = 25.0
SAMPLE_RATE = 16000
VIDEO_FRAMES = 30  # the face videos
GREY_FRAMES = 20
CLIP_FRAMES = 8  # tiny models: 8 frames ...
SAMPLING_RATE = 2  # ... every 2nd frame: a default window of 16 frames, stride 8
INPUT_SIZE = 32
CSV_HEAD = ["window", "start_frame", "end_frame", "start_s", "end_s"]


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("predict_tool", ROOT / "tools" / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _save_tiny_checkpoint(path: Path, name: str, task: str, num_outputs: int, **overrides: object) -> Path:
    """A trainer-style checkpoint (weights + config) of a tiny randomly initialised fine-tuning model."""
    torch.manual_seed(0)
    kwargs = dict(model_entry(name).tiny_overrides)
    kwargs.update(overrides, num_classes=num_outputs)
    model = create_model(name, **kwargs)
    with torch.no_grad():  # a fresh head is nearly zero (all classes ~1/K); spread its outputs so windows differ
        model.head.weight.normal_(0.0, 2.0 / model.head.in_features**0.5)
    config = ExperimentConfig(
        model=ModelConfig(name=name, kwargs=kwargs),
        data=DataConfig(dataset="synthetic", num_frames=CLIP_FRAMES, sampling_rate=SAMPLING_RATE,
                        input_size=INPUT_SIZE, short_side_size=INPUT_SIZE),
        train=TrainConfig(task=task),
    )
    return save_checkpoint({"model": model.state_dict(), "config": config_to_dict(config)}, path)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic face videos with and without audio, a face-less grey video and a file of random bytes."""
    folder = tmp_path_factory.mktemp("media")
    identity = SyntheticIdentity.sample(np.random.default_rng(3), identity_id=3)
    frames, audio, _ = render_clip(identity, "surprise", num_frames=VIDEO_FRAMES, size=96, seed=5, fps=FPS)
    paths = {"face": folder / "face.mp4", "silent": folder / "silent.mp4", "grey": folder / "grey.mp4",
             "broken": folder / "broken.mp4"}
    write_mp4(paths["face"], frames, audio, FPS, SAMPLE_RATE)
    write_mp4(paths["silent"], frames, None, FPS, SAMPLE_RATE)
    write_mp4(paths["grey"], np.full((GREY_FRAMES, 64, 64, 3), 128, dtype=np.uint8), audio, FPS, SAMPLE_RATE)
    paths["broken"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return paths


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        "video": _save_tiny_checkpoint(folder / "video.pth", "mae_dfer_base", "classification", 7),
        # 128 filter-bank frames (1.28 s) hold a whole window's audio (0.64 s), so where it ends matters
        "av": _save_tiny_checkpoint(folder / "av.pth", "hicmae_base", "classification", 7, audio_size=(128, 16)),
        "regression": _save_tiny_checkpoint(folder / "regression.pth", "mae_dfer_base", "regression", 2),
    }


@pytest.fixture(scope="module")
def video_model(checkpoints: dict[str, Path]) -> InferenceModel:
    return load_inference_model(checkpoints["video"])


@pytest.fixture(scope="module")
def av_model(checkpoints: dict[str, Path]) -> InferenceModel:
    return load_inference_model(checkpoints["av"])


# ------------------------------------------------------------------------------------------------ window arithmetic


def test_window_starts_examples() -> None:
    assert window_starts(32, 16, 8) == [0, 8, 16]  # fits exactly
    assert window_starts(30, 16, 8) == [0, 8, 14]  # 8 + 16 = 24 < 30: one more window ending at frame 30
    assert window_starts(20, 16, 8) == [0, 4]
    assert window_starts(100, 10, 30) == [0, 30, 60, 90]  # 90 + 10 = 100: already reaches the end
    assert window_starts(100, 10, 40) == [0, 40, 80, 90]  # stride longer than the window: gaps, end covered
    assert window_starts(17, 16, 1) == [0, 1]


def test_window_starts_short_video_gives_one_window() -> None:
    assert window_starts(10, 16, 8) == [0]
    assert window_starts(16, 16, 8) == [0]
    assert window_starts(1, 64, 32) == [0]
    assert window_bounds(10, 16, 8) == [(0, 10)]
    assert window_bounds(30, 16, 8) == [(0, 16), (8, 24), (14, 30)]


@pytest.mark.parametrize("total", [1, 5, 15, 16, 17, 31, 64, 65, 101])
@pytest.mark.parametrize("window,stride", [(16, 8), (16, 16), (16, 5), (7, 3)])
def test_windows_cover_the_whole_video(total: int, window: int, stride: int) -> None:
    bounds = window_bounds(total, window, stride)
    starts = [start for start, _ in bounds]
    assert starts == sorted(set(starts)) and starts[0] == 0
    assert bounds[-1][1] == total
    for start, end in bounds:
        assert 0 <= start < end <= total
        assert end - start == min(window, total)
    if stride <= window:  # consecutive windows touch or overlap: every frame is in some window
        covered = np.zeros(total, dtype=bool)
        for start, end in bounds:
            covered[start:end] = True
        assert covered.all()


def test_window_starts_rejects_bad_arguments() -> None:
    for args in [(0, 16, 8), (30, 0, 8), (30, 16, 0), (30, 16.0, 8), (30, True, 8)]:
        with pytest.raises(ValueError):
            window_starts(*args)


def test_clip_frame_indices() -> None:
    # A window of T * sr frames: the official test stride.
    np.testing.assert_array_equal(clip_frame_indices(8, 24, 8), [8, 10, 12, 14, 16, 18, 20, 22])
    np.testing.assert_array_equal(clip_frame_indices(0, 64, 16), np.arange(0, 64, 4))
    # Fewer frames than the clip length: frames repeat.
    np.testing.assert_array_equal(clip_frame_indices(0, 4, 8), [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(clip_frame_indices(5, 6, 3), [5, 5, 5])
    indices = clip_frame_indices(3, 13, 4)  # 10 frames, 4 taken at 10/4 = 2.5 spacing
    np.testing.assert_array_equal(indices, [3, 5, 8, 10])
    assert indices.dtype == np.int64
    with pytest.raises(ValueError):
        clip_frame_indices(5, 5, 8)


# ------------------------------------------------------------------------------------------------ predict_video


def test_predict_video_classification(media: dict[str, Path], video_model: InferenceModel) -> None:
    prediction = predict_video(video_model, media["face"])
    assert prediction.num_frames == VIDEO_FRAMES and prediction.fps == pytest.approx(FPS)
    assert prediction.label_names == list(EMOTION_CLASSES)
    assert [(w.start_frame, w.end_frame) for w in prediction.windows] == [(0, 16), (8, 24), (14, 30)]
    for record in prediction.windows:
        assert record.values.dtype == np.float32 and record.values.shape == (7,)
        assert float(record.values.sum()) == pytest.approx(1.0, abs=1e-5)
        assert (record.values >= 0).all()
        assert record.start_s == pytest.approx(record.start_frame / FPS)
        assert record.end_s == pytest.approx(record.end_frame / FPS)
        assert record.label == EMOTION_CLASSES[int(np.argmax(record.values))]
        assert record.score == pytest.approx(float(record.values.max()))

    # Each window's probabilities are those of its clip (every 2nd frame of the window) fed to the model alone.
    faces = read_video_frames(media["face"], face_size=INPUT_SIZE).frames
    for record, first in zip(prediction.windows, (0, 8, 14)):
        clip = faces[first : first + 16 : 2]
        with torch.no_grad():
            logits = video_model.model(clip_to_input(clip, video_model)[None])
        expected = torch.softmax(logits.float(), dim=-1)[0].numpy()
        np.testing.assert_allclose(record.values, expected, atol=1e-5)

    summary = prediction.mean()
    mean = np.mean([record.values for record in prediction.windows], axis=0)
    np.testing.assert_allclose(summary.values, mean, atol=1e-6)
    assert summary.label == EMOTION_CLASSES[int(np.argmax(mean))]
    assert summary.score == pytest.approx(float(mean.max()))


def test_predict_video_batching_window_and_stride(media: dict[str, Path], video_model: InferenceModel) -> None:
    frames = read_video_frames(media["face"], face_size=INPUT_SIZE)
    whole = predict_video(video_model, frames, batch_size=8)
    one_by_one = predict_video(video_model, frames, batch_size=1)
    np.testing.assert_allclose(whole.values(), one_by_one.values(), atol=1e-5)
    custom = predict_video(video_model, frames, window=10, stride=6, batch_size=2)
    # 0, 6, 12, 18 (18 + 10 = 28 < 30) and a last window [20, 30)
    assert [(w.start_frame, w.end_frame) for w in custom.windows] == [(0, 10), (6, 16), (12, 22), (18, 28), (20, 30)]
    long_window = predict_video(video_model, frames, window=64)
    assert [(w.start_frame, w.end_frame) for w in long_window.windows] == [(0, VIDEO_FRAMES)]


def test_outputs_csv_json_png(media: dict[str, Path], video_model: InferenceModel, tmp_path: Path) -> None:
    prediction = predict_video(video_model, media["face"])
    written = save_outputs(prediction, tmp_path / "out")
    assert written == {kind: tmp_path / "out" / f"face.{kind}" for kind in ("csv", "json", "png")}

    with written["csv"].open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        assert reader.fieldnames == CSV_HEAD + ["label", "score"] + [f"prob_{name}" for name in EMOTION_CLASSES]
    assert len(rows) == 3
    assert [int(row["start_frame"]) for row in rows] == [0, 8, 14]
    assert [int(row["end_frame"]) for row in rows] == [16, 24, 30]
    for row in rows:
        probabilities = [float(row[f"prob_{name}"]) for name in EMOTION_CLASSES]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
        assert float(row[f"prob_{row['label']}"]) == pytest.approx(max(probabilities), abs=1e-6)
        assert float(row["start_s"]) == pytest.approx(int(row["start_frame"]) / FPS, abs=1e-4)
        assert float(row["end_s"]) == pytest.approx(int(row["end_frame"]) / FPS, abs=1e-4)

    document = json.loads(written["json"].read_text())
    assert document["task"] == "classification" and len(document["windows"]) == 3
    assert document["num_frames"] == VIDEO_FRAMES
    mean = {name: np.mean([w["values"][name] for w in document["windows"]]) for name in EMOTION_CLASSES}
    assert mean[document["summary"]["label"]] == pytest.approx(max(mean.values()), abs=1e-6)
    assert document["summary"]["score"] == pytest.approx(max(mean.values()), abs=1e-6)

    with Image.open(written["png"]) as image:
        assert image.format == "PNG"
        assert image.width > 200 and image.height > 100
        assert len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 10

    # Only the chosen formats are written; unknown ones are refused.
    assert set(save_outputs(prediction, tmp_path / "csv_only", formats=("csv",))) == {"csv"}
    assert [path.name for path in (tmp_path / "csv_only").iterdir()] == ["face.csv"]
    with pytest.raises(ValueError, match="pdf"):
        save_outputs(prediction, tmp_path / "bad", formats=("pdf",))


def test_regression_outputs(media: dict[str, Path], checkpoints: dict[str, Path], tmp_path: Path) -> None:
    loaded = load_inference_model(checkpoints["regression"])
    prediction = predict_video(loaded, media["face"], detect_faces=False)
    assert prediction.task == "regression" and prediction.label_names == ["valence", "arousal"]
    full_frames = read_video_frames(media["face"], detect_faces=False).frames  # 96 x 96, resized by clip_to_input
    with torch.no_grad():
        expected = loaded.model(clip_to_input(full_frames[0:16:2], loaded)[None]).float()[0].numpy()
    np.testing.assert_allclose(prediction.windows[0].values, expected, atol=1e-5)  # raw outputs, no softmax
    assert prediction.windows[0].label is None
    assert prediction.mean().label is None

    csv_path = write_csv(prediction, tmp_path / "va.csv")
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        assert reader.fieldnames == CSV_HEAD + ["valence", "arousal"]
    assert len(rows) == 3
    assert float(rows[0]["valence"]) == pytest.approx(float(expected[0]), abs=1e-5)
    png = plot_timeline(prediction, tmp_path / "va.png")
    with Image.open(png) as image:
        assert image.format == "PNG"


def test_no_face_raises_naming_the_file(media: dict[str, Path], video_model: InferenceModel) -> None:
    with pytest.raises(NoFaceError, match="grey.mp4"):
        predict_video(video_model, media["grey"])
    # Without face detection the same video is used as it is: 20 frames -> windows [0, 16) and [4, 20).
    prediction = predict_video(video_model, media["grey"], detect_faces=False)
    assert [(w.start_frame, w.end_frame) for w in prediction.windows] == [(0, 16), (4, 20)]


def test_unreadable_file(media: dict[str, Path], video_model: InferenceModel, tmp_path: Path) -> None:
    with pytest.raises(ClipReadError, match="broken.mp4"):
        predict_video(video_model, media["broken"])
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        predict_video(video_model, tmp_path / "missing.mp4")


def test_pretraining_model_is_refused(media: dict[str, Path], tmp_path: Path) -> None:
    name = "mae_dfer_pretrain_base"
    model = create_model(name, **model_entry(name).tiny_overrides)
    path = save_checkpoint(model.state_dict(), tmp_path / "pretrain.pth")
    loaded = load_inference_model(path, model_name=name, model_kwargs=model_entry(name).tiny_overrides)
    with pytest.raises(ValueError, match="fine-tuned"):
        predict_video(loaded, media["face"])


# ------------------------------------------------------------------------------------------------ audio-visual


def test_audio_visual_prediction(media: dict[str, Path], av_model: InferenceModel) -> None:
    assert av_model.modality == "audio_visual" and av_model.fbank is not None
    prediction = predict_video(av_model, media["face"])
    assert [(w.start_frame, w.end_frame) for w in prediction.windows] == [(0, 16), (8, 24), (14, 30)]
    for record in prediction.windows:
        assert float(record.values.sum()) == pytest.approx(1.0, abs=1e-5)

    # HiCMAE's relative-time audio cut: frame i of 30 sits at i / 29 of the waveform; a window's audio runs from
    # its first frame to the frame after it (frame 29 at most).
    waveform = read_audio(media["face"], sample_rate=av_model.fbank.sample_rate)
    total = waveform.shape[1]
    faces = read_video_frames(media["face"], face_size=INPUT_SIZE).frames
    for record, (first, last) in zip(prediction.windows, [(0, 16), (8, 24), (14, 29)]):
        segment = waveform[:, int(first / 29 * total) : int(last / 29 * total)]
        audio = wav_to_fbank(segment, av_model.fbank)
        clip = clip_to_input(faces[record.start_frame : record.start_frame + 16 : 2], av_model)
        with torch.no_grad():
            logits = av_model.model(clip[None], audio[None])
        np.testing.assert_allclose(record.values, torch.softmax(logits.float(), -1)[0].numpy(), rtol=1e-4, atol=1e-6)


def test_audio_visual_without_audio_track(media: dict[str, Path], av_model: InferenceModel) -> None:
    import maedfer.apps.inference

    with pytest.raises(NoAudioError, match="silent.mp4") as caught:
        predict_video(av_model, media["silent"])
    assert "audio-visual" in str(caught.value)
    # One error class for every tool: maedfer.apps.predict re-exports the shared one, a ClipReadError.
    assert NoAudioError is maedfer.apps.inference.NoAudioError
    assert isinstance(caught.value, ClipReadError)


def test_audio_only_model(media: dict[str, Path], tmp_path: Path) -> None:
    path = _save_tiny_checkpoint(tmp_path / "audio.pth", "hicmae_base", "classification", 7, modality="audio")
    loaded = load_inference_model(path)
    assert loaded.modality == "audio"
    # No face needed: the grey video has a soundtrack. 20 frames, windows of 16 every 8 -> [0, 16), [4, 20).
    prediction = predict_video(loaded, media["grey"])
    assert [(w.start_frame, w.end_frame) for w in prediction.windows] == [(0, 16), (4, 20)]
    waveform = read_audio(media["grey"], sample_rate=loaded.fbank.sample_rate)
    total = waveform.shape[1]
    audio = wav_to_fbank(waveform[:, int(4 / 19 * total) :], loaded.fbank)  # frames 4 .. 19 of 0 .. 19
    with torch.no_grad():
        expected = torch.softmax(loaded.model(audio=audio[None]).float(), -1)[0].numpy()
    np.testing.assert_allclose(prediction.windows[1].values, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(NoAudioError, match="audio-only"):
        predict_video(loaded, media["silent"])


# ------------------------------------------------------------------------------------------------ CLI


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error: ")]


def test_cli_predicts_and_writes(media: dict[str, Path], checkpoints: dict[str, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    tool = _load_tool()
    out = tmp_path / "predictions"
    code = tool.main([str(media["face"]), "--checkpoint", str(checkpoints["video"]), "--out", str(out),
                      "--device", "cpu", "--quiet", "--format", "csv", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(path.name for path in out.iterdir()) == ["face.csv", "face.json"]
    document = json.loads((out / "face.json").read_text())
    summary_lines = [line for line in captured.out.splitlines() if "face.mp4" in line]
    assert len(summary_lines) == 1
    assert document["summary"]["label"] in summary_lines[0]
    assert f"{document['summary']['score']:.3f}" in summary_lines[0]


def test_cli_no_face_detect(media: dict[str, Path], checkpoints: dict[str, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    tool = _load_tool()
    code = tool.main([str(media["grey"]), "--checkpoint", str(checkpoints["video"]), "--out", str(tmp_path),
                      "--device", "cpu", "--quiet", "--no-face-detect", "--window", "10", "--stride", "10"])
    assert code == 0, capsys.readouterr().err
    with (tmp_path / "grey.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(int(row["start_frame"]), int(row["end_frame"])) for row in rows] == [(0, 10), (10, 20)]


def test_cli_errors_exit_2_and_continue(media: dict[str, Path], checkpoints: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    tool = _load_tool()
    out = tmp_path / "out"
    # Video model: a face-less video and a broken file fail, the good video after them is still predicted.
    code = tool.main([str(media["grey"]), str(media["broken"]), str(media["face"]),
                      "--checkpoint", str(checkpoints["video"]), "--out", str(out), "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err
    errors = _error_lines(captured.err)
    assert len(errors) == 2
    assert errors[0].startswith(f"error: {media['grey']}: ") and "no face" in errors[0]
    assert errors[1].startswith(f"error: {media['broken']}: ")
    assert (out / "face.csv").is_file() and not (out / "grey.csv").exists()

    # Audio-visual model on a video without an audio track.
    code = tool.main([str(media["silent"]), "--checkpoint", str(checkpoints["av"]), "--out", str(out),
                      "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    errors = _error_lines(captured.err)
    assert len(errors) == 1 and errors[0].startswith(f"error: {media['silent']}: ") and "audio" in errors[0]
    assert not (out / "silent.csv").exists()

    # A missing checkpoint: one line, exit 2.
    code = tool.main([str(media["face"]), "--checkpoint", str(tmp_path / "nope.pth"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2 and len(_error_lines(captured.err)) == 1 and "nope.pth" in captured.err
