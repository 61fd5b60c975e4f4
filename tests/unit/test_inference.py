"""The shared inference pieces (maedfer.apps.inference): loading checkpoints, reading videos, clip inputs and audio."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maedfer.audio import FbankConfig, wav_to_fbank
from maedfer.checkpoint import CheckpointError, save_checkpoint
from maedfer.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig, config_to_dict
from maedfer.data.readers import ClipReadError
from maedfer.data.sampling import AudioSegmentError
from maedfer.synthetic import EMOTION_CLASSES, SyntheticIdentity, render_clip, write_mp4
from maedfer.apps.inference import (
    InferenceModel,
    NoAudioError,
    clip_filterbank,
    clip_to_input,
    load_inference_model,
    read_soundtrack,
    read_video_frames,
)
from maedfer.registry import create_model, model_entry

FPS = 25.0
SAMPLE_RATE = 16000
NUM_VIDEO_FRAMES = 12
VIDEO_SIZE = 96
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def _tiny(name: str, seed: int = 0, **overrides: object) -> tuple[torch.nn.Module, dict[str, object]]:
    torch.manual_seed(seed)
    kwargs = dict(model_entry(name).tiny_overrides)
    kwargs.update(overrides)
    return create_model(name, **kwargs), kwargs


def _trainer_checkpoint(path: Path, name: str, task: str = "classification", **overrides: object) -> Path:
    """Weights and config, as maedfer's trainer saves them (input 32 px, short side 40, 8 frames every 3rd)."""
    model, kwargs = _tiny(name, **overrides)
    config = ExperimentConfig(
        model=ModelConfig(name=name, kwargs=kwargs),
        data=DataConfig(dataset="synthetic", num_frames=8, sampling_rate=3, input_size=32, short_side_size=40),
        train=TrainConfig(task=task),
    )
    return save_checkpoint({"model": model.state_dict(), "config": config_to_dict(config)}, path)


def _same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    loaded = model.state_dict()
    return set(loaded) == set(state) and all(torch.equal(loaded[key].cpu(), state[key]) for key in state)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A rendered synthetic face clip as mp4 with and without its soundtrack, plus the rendered frames and audio."""
    folder = tmp_path_factory.mktemp("videos")
    identity = SyntheticIdentity.sample(np.random.default_rng(7), identity_id=7)
    frames, audio, _ = render_clip(identity, "happy", num_frames=NUM_VIDEO_FRAMES, size=VIDEO_SIZE, seed=2, fps=FPS)
    voiced, silent = folder / "voiced.mp4", folder / "silent.mp4"
    write_mp4(voiced, frames, audio, FPS, SAMPLE_RATE)
    write_mp4(silent, frames, None, FPS, SAMPLE_RATE)
    return {"voiced": voiced, "silent": silent, "frames": frames, "audio": audio}


# ------------------------------------------------------------------------------------------------ loading


def test_trainer_checkpoint_rebuilds_model_and_geometry(tmp_path: Path) -> None:
    path = _trainer_checkpoint(tmp_path / "ckpt.pth", "mae_dfer_base", num_classes=7)
    state = torch.load(path, weights_only=True)["model"]
    loaded = load_inference_model(path)
    assert isinstance(loaded, InferenceModel)
    assert (loaded.name, loaded.kind, loaded.task, loaded.modality) == ("mae_dfer_base", "finetune",
                                                                       "classification", "video")
    assert (loaded.num_frames, loaded.sampling_rate, loaded.input_size, loaded.short_side_size) == (8, 3, 32, 40)
    assert loaded.label_names == list(EMOTION_CLASSES) and loaded.num_outputs == 7
    assert loaded.fbank is None and not loaded.needs_audio
    assert loaded.config is not None and loaded.config.model.name == "mae_dfer_base"
    assert not loaded.model.training and loaded.device == torch.device("cpu")
    assert _same_weights(loaded.model, state)

    regression = load_inference_model(
        _trainer_checkpoint(tmp_path / "va.pth", "videomae_base_160", task="regression", num_classes=2)
    )
    assert regression.task == "regression" and regression.label_names == ["valence", "arousal"]


def test_bare_state_dict_needs_the_model_name(tmp_path: Path) -> None:
    name = "videomae_base_160"
    model, kwargs = _tiny(name, seed=3)
    path = save_checkpoint(model.state_dict(), tmp_path / "bare.pth")
    loaded = load_inference_model(path, model_name=name, model_kwargs=kwargs)
    # No config: the geometry comes from the model (tiny: 8 frames of 32 px), the stride is the default 4.
    assert loaded.config is None and loaded.label_names is None
    assert (loaded.num_frames, loaded.input_size, loaded.short_side_size, loaded.sampling_rate) == (8, 32, 32, 4)
    assert loaded.kind == "finetune" and loaded.task == "classification" and loaded.modality == "video"
    assert _same_weights(loaded.model, model.state_dict())

    with pytest.raises(CheckpointError, match="model_name") as caught:
        load_inference_model(path)
    assert "bare.pth" in str(caught.value)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_inference_model(tmp_path / "missing.pth", model_name=name)


@pytest.mark.parametrize(
    "name, overrides, kind, modality",
    [
        ("hicmae_base", {}, "finetune", "audio_visual"),
        ("hicmae_pretrain_base", {}, "pretrain", "audio_visual"),
        ("hicmae_base", {"modality": "audio"}, "finetune", "audio"),
    ],
)
def test_hicmae_modality_and_filterbank_geometry(
    tmp_path: Path, name: str, overrides: dict[str, object], kind: str, modality: str
) -> None:
    model, kwargs = _tiny(name, **overrides)
    path = save_checkpoint(model.state_dict(), tmp_path / f"{name}.pth")
    loaded = load_inference_model(path, model_name=name, model_kwargs=kwargs)
    assert loaded.kind == kind and loaded.modality == modality and loaded.needs_audio
    assert loaded.task == ("pretrain" if kind == "pretrain" else "classification")
    # The filter bank the model reads: the tiny audio encoder takes (32 frames, 16 mel bins) at 16 kHz.
    assert loaded.fbank is not None
    assert (loaded.fbank.target_length, loaded.fbank.num_mel_bins) == (32, 16)
    assert (loaded.fbank.target_length, loaded.fbank.num_mel_bins) == tuple(
        loaded.model.encoder_audio.patch_embed.input_size
    )
    assert loaded.fbank.sample_rate == SAMPLE_RATE


# ------------------------------------------------------------------------------------------------ frames


def test_read_video_frames_without_face_detection(videos: dict[str, object]) -> None:
    read = read_video_frames(videos["voiced"], detect_faces=False)
    rendered = videos["frames"]
    assert read.frames.dtype == np.uint8 and read.frames.shape == (NUM_VIDEO_FRAMES, VIDEO_SIZE, VIDEO_SIZE, 3)
    assert len(read) == NUM_VIDEO_FRAMES and read.fps == pytest.approx(FPS) and read.face_boxes is None
    assert read.path == videos["voiced"]
    # H.264 at CRF 18 is nearly lossless: the decoded frames are the rendered ones up to small errors.
    assert np.abs(read.frames.astype(np.int16) - rendered.astype(np.int16)).mean() < 4.0


def test_read_video_frames_crops_the_face(videos: dict[str, object], tmp_path: Path) -> None:
    read = read_video_frames(videos["voiced"], face_size=48)
    assert read.frames.dtype == np.uint8 and read.frames.shape == (NUM_VIDEO_FRAMES, 48, 48, 3)
    boxes = np.asarray(read.face_boxes)
    assert boxes.shape == (NUM_VIDEO_FRAMES, 4)
    x, y, w, h = boxes.T
    assert (w > 10).all() and (h > 10).all()  # a face, not a speck ...
    assert (w < VIDEO_SIZE).all() and (h < VIDEO_SIZE).all()  # ... and not the whole frame
    centres = np.stack([x + w / 2, y + h / 2], axis=1)
    assert ((centres > 0) & (centres < VIDEO_SIZE)).all()

    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        read_video_frames(tmp_path / "nowhere.mp4")


# ------------------------------------------------------------------------------------------------ clip input


def _geometry(tmp_path: Path, num_frames: int, input_size: int, short_side: int) -> InferenceModel:
    name = "videomae_base_160"
    model, kwargs = _tiny(name)
    loaded = load_inference_model(save_checkpoint(model.state_dict(), tmp_path / "m.pth"), model_name=name,
                                  model_kwargs=kwargs)
    return replace(loaded, num_frames=num_frames, input_size=input_size, short_side_size=short_side)


def test_clip_to_input_crops_and_normalises(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(4, 32, 40, 3), dtype=np.uint8)  # short side already 32: no resize
    loaded = _geometry(tmp_path, num_frames=4, input_size=24, short_side=32)
    clip = clip_to_input(frames, loaded)
    assert clip.dtype == torch.float32 and tuple(clip.shape) == (3, 4, 24, 24)
    crop = frames[:, 4:28, 8:32].astype(np.float64)  # centred: (32 - 24) / 2 rows, (40 - 24) / 2 columns
    expected = ((crop / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(3, 0, 1, 2)
    np.testing.assert_allclose(clip.numpy(), expected, atol=1e-5)

    # Another short side: resized first. A flat colour stays that colour whatever the interpolation.
    flat = np.empty((4, 48, 64, 3), dtype=np.uint8)
    flat[...] = (200, 100, 30)
    clip = clip_to_input(flat, loaded)
    assert tuple(clip.shape) == (3, 4, 24, 24)
    colour = (np.array([200, 100, 30]) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(clip.numpy(), np.broadcast_to(colour[:, None, None, None], clip.shape), atol=0.02)

    with pytest.raises(ValueError, match="4 frames"):
        clip_to_input(frames[:3], loaded)


# ------------------------------------------------------------------------------------------------ audio


def test_read_soundtrack(videos: dict[str, object], tmp_path: Path) -> None:
    waveform = read_soundtrack(videos["voiced"], SAMPLE_RATE)
    assert waveform.dtype == np.float32 and waveform.ndim == 2 and waveform.shape[0] == 1
    duration = NUM_VIDEO_FRAMES / FPS  # 0.48 s rendered; AAC adds at most a frame of padding (1024 samples)
    assert abs(waveform.shape[1] - duration * SAMPLE_RATE) <= 1024
    assert float(np.abs(waveform).max()) > 0.01  # a voice, not silence
    assert np.isfinite(waveform).all()


def test_no_audio_error(videos: dict[str, object], tmp_path: Path) -> None:
    with pytest.raises(NoAudioError, match="silent.mp4") as caught:
        read_soundtrack(videos["silent"], SAMPLE_RATE)
    error = caught.value
    assert isinstance(error, ClipReadError) and error.reason == "no audio track" and error.modality is None

    with pytest.raises(NoAudioError) as caught:
        read_soundtrack(videos["silent"], SAMPLE_RATE, modality="audio_visual")
    assert "silent.mp4" in str(caught.value) and "audio-visual" in str(caught.value)
    assert "soundtrack" in str(caught.value)
    assert "audio-only" in str(NoAudioError(videos["silent"], modality="audio"))

    copy = pickle.loads(pickle.dumps(caught.value))  # e.g. from a DataLoader worker
    assert type(copy) is NoAudioError and str(copy) == str(caught.value)
    assert (copy.path, copy.reason, copy.modality) == (str(videos["silent"]), "no audio track", "audio_visual")

    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(folder / "00001.jpg")
    with pytest.raises(NoAudioError, match="frame folder"):
        read_soundtrack(folder, SAMPLE_RATE)
    with pytest.raises(FileNotFoundError, match="gone.mp4"):
        read_soundtrack(tmp_path / "gone.mp4", SAMPLE_RATE)


def test_clip_filterbank_relative_time_cut() -> None:
    config = FbankConfig(num_mel_bins=16, target_length=32)
    waveform = (np.random.default_rng(4).standard_normal((1, SAMPLE_RATE)) * 0.1).astype(np.float32)  # 1 s
    # Frames 10 .. 20 of 51: i / 50 of the waveform -> samples 3200 .. 6400.
    bank = clip_filterbank(waveform, 10, 20, 51, config, path="clip.mp4")
    assert bank.dtype == torch.float32 and tuple(bank.shape) == (1, 32, 16)
    torch.testing.assert_close(bank, wav_to_fbank(waveform[:, 3200:6400], config))
    torch.testing.assert_close(clip_filterbank(torch.from_numpy(waveform), 10, 20, 51, config, path="clip.mp4"),
                               bank)
    # Frames 10 .. 11 cut only 320 samples: a waveform shorter than 2.56 s is then used whole (HiCMAE's fallback).
    torch.testing.assert_close(clip_filterbank(waveform, 10, 11, 51, config, path="clip.mp4"),
                               wav_to_fbank(waveform, config))


def test_clip_filterbank_too_short_names_the_file() -> None:
    config = FbankConfig(num_mel_bins=16, target_length=32)
    long = np.zeros((1, 3 * SAMPLE_RATE), dtype=np.float32)  # 3 s: too long for the whole-waveform fallback
    with pytest.raises(AudioSegmentError, match="long.mp4"):
        clip_filterbank(long, 10, 10, 51, config, path="long.mp4")
    tiny = np.zeros((1, 300), dtype=np.float32)  # fewer samples than one 25 ms frame (400)
    with pytest.raises(ValueError, match="tiny.mp4.*filter-bank frame"):
        clip_filterbank(tiny, 0, 1, 100, config, path="tiny.mp4")


def test_model_card_id_sets_classes_stride_and_label_names(tmp_path: Path) -> None:
    from maedfer.apps.model_cards import find_card

    card = find_card("mae_dfer_ferv39k")
    tiny = dict(model_entry("mae_dfer_base").tiny_overrides)
    model, _ = _tiny("mae_dfer_base", num_classes=card.num_classes)
    file = tmp_path / "ferv39k.pth"
    torch.save({"model": model.state_dict()}, file)
    loaded = load_inference_model(file, model_name="mae_dfer_ferv39k", model_kwargs=tiny)
    assert loaded.name == card.model == "mae_dfer_base"
    assert loaded.sampling_rate == card.input["sampling_rate"] == 1  # FERV39k is sampled every frame
    assert loaded.label_names == card.label_names and len(loaded.label_names) == loaded.num_outputs
    assert _same_weights(loaded.model, model.state_dict())


def test_a_checkpoint_without_the_models_head_is_refused(tmp_path: Path) -> None:
    model, _ = _tiny("mae_dfer_base", num_classes=7)
    file = tmp_path / "seven.pth"
    torch.save({"model": model.state_dict()}, file)
    tiny = dict(model_entry("mae_dfer_base").tiny_overrides)
    with pytest.raises(CheckpointError, match="head"):  # the MAFW card's model has 11 classes
        load_inference_model(file, model_name="mae_dfer_mafw_fold1", model_kwargs=tiny)
    with pytest.raises(CheckpointError, match="neither a registered model nor a model card"):
        load_inference_model(file, model_name="no_such_model")


def test_output_names_come_from_the_dataset_registry() -> None:
    from maedfer.data.registry import dataset_info
    from maedfer.apps.inference import label_names_for

    werewolf = dataset_info("Werewolf-XL")  # three regression targets, named in the registry
    assert label_names_for("Werewolf-XL", 3, "regression") == list(werewolf.label_names)
    assert label_names_for("synthetic", 2, "regression") == ["valence", "arousal"]
    assert label_names_for("synthetic", 7, "classification") == list(EMOTION_CLASSES)
    assert label_names_for("DFEW", 7, "classification") == list(dataset_info("DFEW").label_names)
    assert label_names_for("DFEW", 6, "classification") is None  # one name per output, or none
    assert label_names_for("no_such_dataset", 7, "classification") is None
