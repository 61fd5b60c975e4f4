"""Feature extraction: levels and shapes of every model family, clip/audio cutting, folder output and the CLI."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

from maedfer.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig, config_to_dict
from maedfer.data.readers import ClipReadError, read_audio
from maedfer.apps.features import (
    clip_views,
    encode_clip,
    extract_features_to_folder,
    extract_video_features,
    output_names,
    read_video_list,
)
from maedfer.apps.inference import InferenceModel, load_inference_model
from maedfer.registry import create_model, model_entry

ROOT = Path(__file__).resolve().parents[2]


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("extract_features_tool", ROOT / "tools" / "extract_features.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


extract_features_tool = _load_tool()

# Tiny models: 8 frames of 32 x 32, 8 x 8 patches, tubelet 2 -> a (4, 4, 4) token grid of 64 tokens, width 32.
GRID = (8 // 2, 32 // 8, 32 // 8)
NUM_TOKENS = GRID[0] * GRID[1] * GRID[2]
WIDTH = 32
AUDIO_TOKENS = (32 // 8) * (16 // 8)  # HiCMAE tiny spectrogram (32 frames, 16 bins), 8 x 8 patches


def _save_tiny(tmp: Path, name: str, *, with_config: bool = False) -> Path:
    """A tiny ``name`` with a large random head (so that head outputs are far from 0), saved to ``tmp``."""
    torch.manual_seed(0)
    kwargs = dict(model_entry(name).tiny_overrides)
    model = create_model(name, **kwargs)
    with torch.no_grad():
        head = getattr(model, "head", None)
        if isinstance(head, torch.nn.Linear):
            head.weight.normal_(0.0, 1.0)
            head.bias.normal_(0.0, 1.0)
        for attribute in ("video_layer_weights", "audio_layer_weights"):
            if hasattr(model, attribute):
                getattr(model, attribute).normal_(0.0, 1.0)
    path = tmp / f"{name}.pth"
    if with_config:
        cfg = ExperimentConfig(
            model=ModelConfig(name=name, kwargs=kwargs),
            data=DataConfig(num_frames=8, sampling_rate=4, input_size=32, short_side_size=32),
            train=TrainConfig(task="classification"),
        )
        torch.save({"model": model.state_dict(), "config": config_to_dict(cfg)}, path)
    else:
        torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, InferenceModel]:
    folder = tmp_path_factory.mktemp("models")
    names = ["mae_dfer_base", "videomae_base_160", "svfap_base", "hicmae_base", "hicmae_pretrain_base",
             "videomae_pretrain_base_160", "mae_dfer_pretrain_base"]
    return {
        name: load_inference_model(_save_tiny(folder, name), model_name=name,
                                   model_kwargs=model_entry(name).tiny_overrides)
        for name in names
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic face videos (64 x 64, 16 frames at 25 fps, AAC audio); returns the videos folder."""
    from maedfer.synthetic import make_synthetic_world

    root = tmp_path_factory.mktemp("world")
    make_synthetic_world(root, num_identities=3, clips_per_class=1, num_frames=16, size=64, formats=("mp4",),
                         preview=False)
    return root / "videos"


def _videos(world: Path, count: int) -> list[Path]:
    return sorted(world.glob("*.mp4"))[:count]


def _silent_mp4(path: Path, num_frames: int = 16, size: int = 64) -> Path:
    """An mp4 with a video stream only (random frames)."""
    from maedfer.synthetic import write_mp4

    frames = np.random.default_rng(0).integers(0, 255, (num_frames, size, size, 3), dtype=np.uint8)
    write_mp4(path, frames, None, 25.0)
    return path


def _clip_batch(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))


def _audio_batch(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 1, 32, 16, generator=torch.Generator().manual_seed(2))


# ------------------------------------------------------------------------------------------------ encode_clip


@pytest.mark.parametrize("name", ["mae_dfer_base", "videomae_base_160", "svfap_base"])
def test_pooled_feature_is_the_head_input(models: dict[str, InferenceModel], name: str) -> None:
    loaded = models[name]
    video = _clip_batch()
    pooled = encode_clip(loaded, video, level="pooled")["pooled"]
    assert pooled.shape == (2, WIDTH)
    with torch.no_grad():
        logits = loaded.model(video)
        assert logits.abs().max() > 0.1  # the large head makes a wrong feature visible
        torch.testing.assert_close(loaded.model.head(pooled), logits, rtol=1e-4, atol=1e-5)


def test_hicmae_pooled_feature_is_the_head_input(models: dict[str, InferenceModel]) -> None:
    loaded = models["hicmae_base"]
    video, audio = _clip_batch(), _audio_batch()
    pooled = encode_clip(loaded, video, audio, level="pooled")["pooled"]
    assert pooled.shape == (2, 2 * (WIDTH + WIDTH))
    with torch.no_grad():
        logits = loaded.model(video, audio)
        assert logits.abs().max() > 0.1
        torch.testing.assert_close(loaded.model.head(pooled), logits, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="audio"):
        encode_clip(loaded, video, None)


def test_pretrain_pooled_is_the_mean_of_all_visible_tokens(models: dict[str, InferenceModel]) -> None:
    video = _clip_batch()
    loaded = models["videomae_pretrain_base_160"]
    pooled = encode_clip(loaded, video)["pooled"]
    with torch.no_grad():
        visible = loaded.model.encoder.forward_encoder(video, torch.zeros(2, NUM_TOKENS, dtype=torch.bool))
    torch.testing.assert_close(pooled, visible.tokens.mean(1))
    # MAE-DFER pre-training: the mean over the local tokens only (the messengers are not part of it).
    loaded = models["mae_dfer_pretrain_base"]
    features = encode_clip(loaded, video, level="tokens")
    torch.testing.assert_close(encode_clip(loaded, video)["pooled"], features["tokens"].mean(1))
    assert features["tokens"].shape == (2, NUM_TOKENS, WIDTH)
    # HiCMAE pre-training: video, audio, fused video and fused audio token means side by side.
    loaded = models["hicmae_pretrain_base"]
    audio = _audio_batch()
    tokens = encode_clip(loaded, video, audio, level="tokens")
    expected = torch.cat([tokens[key].mean(1) for key in ("video_tokens", "audio_tokens", "fused_video",
                                                          "fused_audio")], dim=-1)
    torch.testing.assert_close(encode_clip(loaded, video, audio)["pooled"], expected)


def test_tokens_are_in_raster_order(models: dict[str, InferenceModel]) -> None:
    video = _clip_batch()
    for name in ("videomae_base_160", "mae_dfer_base"):
        features = encode_clip(models[name], video, level="tokens")
        assert features["tokens"].shape == (2, NUM_TOKENS, WIDTH)
        assert features["grid"].tolist() == list(GRID)
    assert "messenger" not in encode_clip(models["videomae_base_160"], video, level="tokens")

    # The LGI-Former works region-major: regions of (2, 2, 4) tokens, raster inside a region. Build that order by
    # hand and check that the raster tokens, permuted into it, are the encoder's own output.
    loaded = models["mae_dfer_base"]
    features = encode_clip(loaded, video, level="tokens")
    region_major = []
    for region_t in range(2):
        for region_h in range(2):
            for t in range(2 * region_t, 2 * region_t + 2):
                for h in range(2 * region_h, 2 * region_h + 2):
                    region_major += [(t * 4 + h) * 4 + w for w in range(4)]
    with torch.no_grad():
        out = loaded.model.forward_encoder(video)
    torch.testing.assert_close(features["tokens"][:, region_major], out.tokens)
    assert features["messenger"].shape == (2, 4, WIDTH)  # 2 x 2 x 1 regions, not part of the 64 tokens
    torch.testing.assert_close(features["messenger"], out.summary_tokens)

    # SVFAP fine-tuned: the last of 3 stages halves time twice, 4 -> 1 token frames.
    features = encode_clip(models["svfap_base"], video, level="tokens")
    assert features["grid"].tolist() == [1, 4, 4]
    assert features["tokens"].shape == (2, 16, WIDTH)


def test_single_modality_layers_come_from_the_blocks(models: dict[str, InferenceModel]) -> None:
    video = _clip_batch()
    loaded = models["videomae_base_160"]
    features = encode_clip(loaded, video, level="layers")
    assert sorted(features) == ["grid", "layer_0", "layer_1"]
    assert features["layer_0"].shape == (2, NUM_TOKENS, WIDTH)
    tokens = encode_clip(loaded, video, level="tokens")["tokens"]
    torch.testing.assert_close(features["layer_1"], tokens)  # mean pooling: no final norm on the tokens
    assert not torch.allclose(features["layer_0"], tokens)
    assert sorted(encode_clip(loaded, video, level="layers", layers=[-1])) == ["grid", "layer_1"]

    loaded = models["mae_dfer_base"]
    features = encode_clip(loaded, video, level="layers", layers=[1])
    tokens = encode_clip(loaded, video, level="tokens")
    torch.testing.assert_close(features["layer_1"], tokens["tokens"])
    torch.testing.assert_close(features["layer_1_messenger"], tokens["messenger"])

    with pytest.raises(ValueError, match="out of range"):
        encode_clip(loaded, video, level="layers", layers=[2])
    with pytest.raises(ValueError, match="level='layers'"):
        encode_clip(loaded, video, level="pooled", layers=[0])
    with pytest.raises(ValueError, match="level"):
        encode_clip(loaded, video, level="frames")  # type: ignore[arg-type]


def test_hicmae_layers_are_the_fused_hierarchy(models: dict[str, InferenceModel]) -> None:
    loaded = models["hicmae_base"]
    model = loaded.model
    video, audio = _clip_batch(), _audio_batch()
    features = encode_clip(loaded, video, audio, level="layers")
    expected_keys = {f"video_layer_{i}" for i in range(4)} | {f"audio_layer_{i}" for i in range(4)}
    expected_keys |= {"fused_video", "fused_audio", "video_grid", "audio_grid"}
    assert set(features) == expected_keys
    assert features["video_layer_2"].shape == (2, NUM_TOKENS, WIDTH)
    assert features["audio_layer_2"].shape == (2, AUDIO_TOKENS, WIDTH)
    assert features["fused_video"].shape == (2, NUM_TOKENS, WIDTH)
    assert features["fused_audio"].shape == (2, AUDIO_TOKENS, WIDTH)
    assert features["audio_grid"].tolist() == [4, 2]
    # HiCMAE's classifier feature rebuilt from the returned layers: softmax-weighted layer means + fused means.
    with torch.no_grad():
        parts = []
        for modality, weights in (("video", model.video_layer_weights), ("audio", model.audio_layer_weights)):
            means = torch.stack([features[f"{modality}_layer_{i}"].mean(1) for i in range(4)], dim=1)
            parts.append((means * weights.softmax(0)[None, :, None]).sum(1))
        parts += [features["fused_video"].mean(1), features["fused_audio"].mean(1)]
        rebuilt = model.fc_norm(torch.cat(parts, dim=-1))
    torch.testing.assert_close(rebuilt, encode_clip(loaded, video, audio)["pooled"], rtol=1e-4, atol=1e-5)

    chosen = encode_clip(loaded, video, audio, level="layers", layers=[1, 3])
    assert {k for k in chosen if "_layer_" in k} == {"video_layer_1", "video_layer_3", "audio_layer_1",
                                                     "audio_layer_3"}
    # Pre-training model: the default layers are its taps, (1, 2, 3) in the tiny configuration.
    loaded = models["hicmae_pretrain_base"]
    features = encode_clip(loaded, video, audio, level="layers")
    assert {k for k in features if "_layer_" in k} == {f"{m}_layer_{i}" for m in ("video", "audio") for i in (1, 2, 3)}
    tokens = encode_clip(loaded, video, audio, level="tokens")
    torch.testing.assert_close(features["video_layer_3"], tokens["video_tokens"])
    torch.testing.assert_close(features["fused_audio"], tokens["fused_audio"])


# ------------------------------------------------------------------------------------------------ video files


def test_clip_views_follow_the_test_stride_rule() -> None:
    # 100 frames, stride 4: 25 loaded frames 0, 4, ..., 96; a clip takes 8 of them.
    _, starts, indices = clip_views(100, 8, 4, 1)
    assert starts == [8]  # centred: (25 - 8) // 2
    assert indices.tolist() == [[32, 36, 40, 44, 48, 52, 56, 60]]
    _, starts, indices = clip_views(100, 8, 4, 3)
    assert starts == [0, 8, 17]  # int(k * (25 - 8) / 2)
    assert indices[0, 0] == 0 and indices[2, -1] == 96
    # 10 frames: 0, 4, 8 then the last repeated up to 8 entries.
    _, _, indices = clip_views(10, 8, 4, 1)
    assert indices.tolist() == [[0, 4, 8, 8, 8, 8, 8, 8]]
    with pytest.raises(ValueError):
        clip_views(10, 8, 4, 0)


def test_audio_visual_video_features_cut_the_audio_per_clip(models: dict[str, InferenceModel], world: Path) -> None:
    from maedfer.audio import wav_to_fbank
    from maedfer.apps.inference import clip_to_input, read_video_frames

    loaded = replace(models["hicmae_base"], sampling_rate=1)  # 16 frames: two clips, frames 0-7 and 8-15
    video = _videos(world, 1)[0]
    arrays = extract_video_features(loaded, video, num_clips=2, detect_faces=False)
    assert arrays["pooled"].shape == (2, 128) and arrays["pooled"].dtype == np.float32
    assert arrays["frame_indices"].tolist() == [list(range(8)), list(range(8, 16))]
    # Audio of a view: frames first .. min(last + sr, n - 1) on the relative clock i / (n - 1).
    total = read_audio(video).shape[1]
    cuts = [(0, int(8 / 15 * total)), (int(8 / 15 * total), total)]
    assert arrays["audio_samples"].tolist() == [list(c) for c in cuts]
    # The same clips built by hand give the same features.
    frames = read_video_frames(video, detect_faces=False).frames
    clips = torch.stack([clip_to_input(frames[0:8], loaded), clip_to_input(frames[8:16], loaded)])
    waveform = read_audio(video)
    banks = torch.stack([wav_to_fbank(waveform[:, a:b], loaded.fbank) for a, b in cuts])
    expected = encode_clip(loaded, clips, banks)["pooled"].numpy()
    np.testing.assert_allclose(arrays["pooled"], expected, rtol=1e-5, atol=1e-6)


def test_audio_visual_model_without_audio_track_names_the_file(
    models: dict[str, InferenceModel], tmp_path: Path
) -> None:
    from maedfer.apps.inference import NoAudioError

    silent = _silent_mp4(tmp_path / "silent.mp4")
    with pytest.raises(ClipReadError, match="silent.mp4.*no audio track") as caught:
        extract_video_features(models["hicmae_base"], silent, detect_faces=False)
    assert isinstance(caught.value, NoAudioError) and "audio-visual" in str(caught.value)
    # A frame folder has no soundtrack either.
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(16):
        Image.fromarray(np.full((64, 64, 3), 40 * (index % 5), dtype=np.uint8)).save(folder / f"{index + 1:05d}.jpg")
    with pytest.raises(NoAudioError, match="frame folder"):
        extract_video_features(models["hicmae_base"], folder, detect_faces=False)
    # A video-only model reads the same file fine.
    arrays = extract_video_features(models["videomae_base_160"], silent, detect_faces=False, level="tokens")
    assert arrays["tokens"].shape == (1, NUM_TOKENS, WIDTH)
    assert arrays["grid"].tolist() == list(GRID)


def test_face_detection_path(models: dict[str, InferenceModel], world: Path) -> None:
    arrays = extract_video_features(models["videomae_base_160"], _videos(world, 1)[0], detect_faces=True)
    assert arrays["pooled"].shape == (1, WIDTH)
    assert arrays["frame_indices"].tolist() == [[0, 4, 8, 12, 12, 12, 12, 12]]


# ------------------------------------------------------------------------------------------------ folders


def test_output_names_disambiguate_shared_stems(tmp_path: Path) -> None:
    names = output_names([tmp_path / "a" / "clip.mp4", tmp_path / "b" / "clip.mp4", tmp_path / "a" / "other.mp4"])
    assert names == ["a__clip", "b__clip", "other"]
    names = output_names([tmp_path / "a" / "x" / "clip.mp4", tmp_path / "b" / "x" / "clip.mp4"])
    assert names == ["a__x__clip", "b__x__clip"]
    names = output_names([tmp_path / "clip.mp4", tmp_path / "clip.avi"])
    assert names[0].endswith(f"{tmp_path.name}__clip.mp4") and names[1].endswith(f"{tmp_path.name}__clip.avi")
    with pytest.raises(ValueError):
        output_names([tmp_path / "clip.mp4", tmp_path / "clip.mp4"])


def _manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def test_folder_extraction_resumes_and_lists_failures(
    models: dict[str, InferenceModel], world: Path, tmp_path: Path
) -> None:
    loaded = models["videomae_base_160"]
    good = _videos(world, 2)
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    out = tmp_path / "features"
    summary = extract_features_to_folder(loaded, [good[0], broken, good[1]], out, detect_faces=False)
    assert (summary.done, summary.skipped_existing) == (2, 0)
    assert [path for path, _ in summary.failed] == [broken]
    assert "broken.mp4" in summary.failed[0][1]
    for video in good:
        pooled = np.load(out / f"{video.stem}.pooled.npy")
        np.testing.assert_allclose(pooled, extract_video_features(loaded, video, detect_faces=False)["pooled"],
                                   rtol=1e-5, atol=1e-6)
        assert np.load(out / f"{video.stem}.frame_indices.npy").shape == (1, 8)
        assert (out / f"{video.stem}.json").is_file()
    records = _manifest(out)
    assert sorted(r["name"] for r in records) == sorted(v.stem for v in good)
    assert records[0]["shapes"]["pooled"] == [1, WIDTH]

    # Second run: everything that was written is skipped; the broken video fails again.
    first_bytes = (out / f"{good[0].stem}.pooled.npy").read_bytes()
    summary = extract_features_to_folder(loaded, [good[0], broken, good[1]], out, detect_faces=False)
    assert (summary.done, summary.skipped_existing, len(summary.failed)) == (0, 2, 1)
    assert len(_manifest(out)) == 2

    # A deleted output is recomputed (and only that video).
    (out / f"{good[0].stem}.pooled.npy").unlink()
    summary = extract_features_to_folder(loaded, good, out, detect_faces=False)
    assert (summary.done, summary.skipped_existing, summary.failed) == (1, 1, [])
    assert (out / f"{good[0].stem}.pooled.npy").read_bytes() == first_bytes
    assert sorted(r["name"] for r in _manifest(out)) == sorted(v.stem for v in good)

    # Other settings: recomputed, and the files of the old level are removed.
    summary = extract_features_to_folder(loaded, good, out, detect_faces=False, level="tokens")
    assert summary.done == 2
    assert not (out / f"{good[0].stem}.pooled.npy").exists()
    assert np.load(out / f"{good[0].stem}.tokens.npy").shape == (1, NUM_TOKENS, WIDTH)
    assert {r["settings"]["level"] for r in _manifest(out)} == {"tokens"}


def test_safetensors_round_trip(models: dict[str, InferenceModel], world: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    loaded = models["hicmae_base"]
    video = _videos(world, 1)[0]
    out = tmp_path / "st"
    summary = extract_features_to_folder(loaded, [video], out, format="safetensors", level="layers", layers=[0, 3],
                                         num_clips=2, detect_faces=False)
    assert summary.done == 1 and not summary.failed
    expected = extract_video_features(loaded, video, level="layers", layers=[0, 3], num_clips=2, detect_faces=False)
    with safe_open(str(out / f"{video.stem}.safetensors"), framework="numpy") as handle:
        metadata = handle.metadata()
        stored = {key: handle.get_tensor(key) for key in handle.keys()}
    assert set(stored) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(stored[key], value, rtol=1e-5, atol=1e-6)
    assert stored["video_layer_3"].shape == (2, NUM_TOKENS, WIDTH)
    assert metadata["model"] == "hicmae_base" and metadata["level"] == "layers"
    assert json.loads(metadata["layers"]) == [0, 3]
    assert json.loads(metadata["frame_indices"]) == expected["frame_indices"].tolist()
    assert metadata["video"] == str(video)
    record = _manifest(out)[0]
    assert record["files"] == [f"{video.stem}.safetensors"]
    assert record["shapes"]["audio_layer_0"] == [2, AUDIO_TOKENS, WIDTH]
    # Resume on safetensors too; the manifest record is rebuilt from the file when the manifest is gone.
    (out / "manifest.jsonl").unlink()
    summary = extract_features_to_folder(loaded, [video], out, format="safetensors", level="layers", layers=[0, 3],
                                         num_clips=2, detect_faces=False)
    assert (summary.done, summary.skipped_existing) == (0, 1)
    rebuilt = _manifest(out)[0]
    assert rebuilt["shapes"] == record["shapes"] and rebuilt["dtypes"] == record["dtypes"]


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_exit_codes(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = _save_tiny(tmp_path, "hicmae_base", with_config=True)
    videos = _videos(world, 2)
    out = tmp_path / "cli"
    code = extract_features_tool.main([*map(str, videos), "--checkpoint", str(checkpoint), "--out", str(out),
                                       "--no-face-detect", "--no-progress"])
    assert code == 0
    assert all((out / f"{v.stem}.pooled.npy").is_file() for v in videos)
    assert "done: 2" in capsys.readouterr().out

    # An annotation file (<clip> <audio> <label>): detected, its audio column used; all outputs exist -> skipped.
    listing = tmp_path / "test.csv"
    listing.write_text("".join(f"{v} {v} {k}\n" for k, v in enumerate(videos)))
    assert read_video_list(listing) == (videos, videos)
    code = extract_features_tool.main(["--list", str(listing), "--checkpoint", str(checkpoint), "--out", str(out),
                                       "--no-face-detect", "--no-progress"])
    assert code == 0 and "skipped (existing): 2" in capsys.readouterr().out

    # A plain list with a video without audio: listed as failed, exit 2, the others still written.
    silent = _silent_mp4(tmp_path / "silent.mp4")
    plain = tmp_path / "videos.txt"
    plain.write_text(f"# inputs\n{silent}\n{videos[0]}\n")
    assert read_video_list(plain) == ([silent, videos[0]], [None, None])
    code = extract_features_tool.main(["--list", str(plain), "--checkpoint", str(checkpoint), "--out",
                                       str(tmp_path / "cli2"), "--no-face-detect", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 2 and "failed: 1" in printed and "silent.mp4" in printed
    assert (tmp_path / "cli2" / f"{videos[0].stem}.pooled.npy").is_file()

    # Bad checkpoint: one line on stderr, no traceback.
    code = extract_features_tool.main([str(videos[0]), "--checkpoint", str(tmp_path / "missing.pth"), "--out",
                                       str(out)])
    captured = capsys.readouterr()
    assert code == 2 and "missing.pth" in captured.err and "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    # A bare state dict without --model is a CheckpointError, also exit 2.
    (tmp_path / "bare").mkdir()
    bare = _save_tiny(tmp_path / "bare", "videomae_base_160")
    code = extract_features_tool.main([str(videos[0]), "--checkpoint", str(bare), "--out", str(out)])
    assert code == 2 and "model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as error:
        extract_features_tool.main(["--checkpoint", str(checkpoint), "--out", str(out)])  # no inputs
    assert error.value.code == 2
