"""Tests of maedfer.apps.visualize (reconstruction figures, attention maps, overlays, PNG output) and tools/visualize.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maedfer.config import ExperimentConfig, config_to_dict
from maedfer.synthetic import write_mp4
from maedfer.masking import build_mask_generator, is_part_window_mask, is_tube_mask
from maedfer.registry import create_model, model_entry
from maedfer.apps.visualize import (
    LABEL_WIDTH,
    attention_maps,
    attention_overlay,
    centre_clip_indices,
    default_video_mask,
    reconstruction_figure,
    save_png,
)

ROOT = Path(__file__).resolve().parents[2]
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float64)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float64)
# Tiny registry models: 8 frames of 32 x 32 pixels, 8 x 8 patches, tubelets of 2 -> token grid (4, 4, 4).
FRAMES, SIZE, PATCH, TUBELET = 8, 32, 8, 2
GRID = (FRAMES // TUBELET, SIZE // PATCH, SIZE // PATCH)


def tiny_model(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, **model_entry(name).tiny_overrides).eval()


def random_clip(seed: int = 0) -> tuple[np.ndarray, torch.Tensor]:
    """uint8 frames (T, H, W, 3) with smooth structure plus noise, and the ImageNet-normalised (1, 3, T, H, W) input."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(FRAMES, 4, 4, 3)).repeat(8, axis=1).repeat(8, axis=2)
    frames = np.clip(base + rng.integers(-30, 31, size=base.shape), 0, 255).astype(np.uint8)
    normalised = (frames / 255.0 - MEAN) / STD
    return frames, torch.from_numpy(normalised.transpose(3, 0, 1, 2)[None].astype(np.float32))


def shown_frames(total: int, max_frames: int) -> list[int]:
    count = min(total, max_frames)
    return [int(round(i * (total - 1) / (count - 1))) for i in range(count)]


def tile(image: np.ndarray, row: int, column: int, *, pad: int, label_width: int) -> np.ndarray:
    y = pad + row * (SIZE + pad)
    x = label_width + pad + column * (SIZE + pad)
    return image[y : y + SIZE, x : x + SIZE].astype(np.int64)


def test_default_video_mask_follows_the_training_mask_kind() -> None:
    lgi = tiny_model("mae_dfer_pretrain_base")
    vit = tiny_model("videomae_pretrain_base_160")
    lgi_mask = default_video_mask(lgi, mask_ratio=0.75, seed=3)
    vit_mask = default_video_mask(vit, mask_ratio=0.75, seed=3)
    assert lgi_mask.shape == vit_mask.shape == (1, 64) and lgi_mask.dtype == torch.bool
    # Region (2, 2, 4) -> part-window of 2 x 4 cells: int(0.75 * 8) = 6 masked per window, 2 windows per slice.
    assert is_part_window_mask(lgi_mask, GRID, (2, 4)) and int(lgi_mask.sum()) == 4 * 2 * 6
    assert is_tube_mask(vit_mask, GRID) and int(vit_mask.sum()) == 4 * int(0.75 * 16)
    assert torch.equal(default_video_mask(vit, mask_ratio=0.75, seed=3), vit_mask)
    assert not torch.equal(default_video_mask(vit, mask_ratio=0.75, seed=4), vit_mask)


@pytest.mark.parametrize(
    "name, frame_diff, max_frames, pad",
    [
        ("mae_dfer_pretrain_base", 2, 8, 2),
        ("mae_dfer_pretrain_base", None, 5, 3),
        ("videomae_pretrain_base_160", None, 8, 2),
        ("videomae_pretrain_base_160", 2, 3, 1),
        ("svfap_pretrain_base", None, 8, 2),
        ("hicmae_pretrain_base", 2, 4, 2),
    ],
)
def test_reconstruction_figure_layout_and_visible_patches(
    name: str, frame_diff: int | None, max_frames: int, pad: int
) -> None:
    model = tiny_model(name)
    frames, video = random_clip(1)
    window = (2, 4) if name.startswith("mae_dfer") else None
    generator = torch.Generator().manual_seed(5)
    mask = build_mask_generator("part_window" if window else "tube", GRID, 0.75, window).batch(1, generator)
    audio = torch.randn(1, 1, 32, 16, generator=generator) if name.startswith("hicmae") else None
    image = reconstruction_figure(
        model, video, mask=mask, frame_diff_group_size=frame_diff, max_frames=max_frames, pad=pad, audio=audio
    )
    rows = 5 if frame_diff else 3
    columns = min(max_frames, FRAMES)
    assert image.dtype == np.uint8
    assert image.shape == (rows * (SIZE + pad) + pad, LABEL_WIDTH + columns * (SIZE + pad) + pad, 3)

    masked_cells = mask[0].reshape(GRID).numpy()
    for column, t in enumerate(shown_frames(FRAMES, max_frames)):
        assert np.array_equal(tile(image, 0, column, pad=pad, label_width=LABEL_WIDTH), frames[t])
        masked_tile = tile(image, 1, column, pad=pad, label_width=LABEL_WIDTH)
        recon_tile = tile(image, 2, column, pad=pad, label_width=LABEL_WIDTH)
        for h in range(GRID[1]):
            for w in range(GRID[2]):
                cell = (slice(h * PATCH, (h + 1) * PATCH), slice(w * PATCH, (w + 1) * PATCH))
                if masked_cells[t // TUBELET, h, w]:
                    assert (masked_tile[cell] == 128).all()
                else:
                    assert np.array_equal(masked_tile[cell], frames[t][cell])
                    assert np.array_equal(recon_tile[cell], frames[t][cell])
    # Every row has a label: dark text pixels in its band of the label column.
    for row in range(rows):
        band = image[pad + row * (SIZE + pad) : pad + row * (SIZE + pad) + SIZE, :LABEL_WIDTH]
        assert (band < 100).any()
    assert (image[:pad, :LABEL_WIDTH] == 255).all()


def test_reconstruction_row_denormalises_the_prediction_and_diff_rows() -> None:
    """Masked patches: prediction * patch std + patch mean; diff rows: 0.5 + frame difference, computed here."""
    model = tiny_model("videomae_pretrain_base_160", seed=2)
    frames, video = random_clip(2)
    mask = build_mask_generator("tube", GRID, 0.5).batch(1, torch.Generator().manual_seed(1))
    with torch.no_grad():
        pred = model(video, mask)[0].numpy().astype(np.float64)  # (N_masked, 2 * 8 * 8 * 3)
    image = reconstruction_figure(model, video, mask=mask, frame_diff_group_size=2)
    pixels = frames.astype(np.float64) / 255.0  # (T, H, W, 3)
    masked_positions = np.flatnonzero(mask[0].numpy())
    expected_recon = pixels.copy()
    for row, position in enumerate(masked_positions):
        tt, hh, ww = np.unravel_index(position, GRID)
        block = pixels[tt * 2 : tt * 2 + 2, hh * 8 : hh * 8 + 8, ww * 8 : ww * 8 + 8]  # (2, 8, 8, 3)
        flat = block.reshape(-1, 3)
        mean, std = flat.mean(axis=0), flat.std(axis=0, ddof=1) + 1e-6
        values = pred[row].reshape(2, 8 * 8, 3)  # first half: frame 0; second half: frame 1 - frame 0
        values = np.concatenate((values[0], values[1] + values[0])).reshape(2, 8, 8, 3) * std + mean
        expected_recon[tt * 2 : tt * 2 + 2, hh * 8 : hh * 8 + 8, ww * 8 : ww * 8 + 8] = values

    def diff_display(clip: np.ndarray, t: int) -> np.ndarray:
        first = (t // 2) * 2
        return np.clip(0.5 + clip[first + 1] - clip[first], 0, 1)

    for column, t in enumerate(shown_frames(FRAMES, 8)):
        got = tile(image, 2, column, pad=2, label_width=LABEL_WIDTH)
        assert np.abs(got - np.round(np.clip(expected_recon[t], 0, 1) * 255)).max() <= 1
        got = tile(image, 3, column, pad=2, label_width=LABEL_WIDTH)
        assert np.abs(got - np.round(diff_display(pixels, t) * 255)).max() <= 1
        got = tile(image, 4, column, pad=2, label_width=LABEL_WIDTH)
        assert np.abs(got - np.round(diff_display(expected_recon, t) * 255)).max() <= 1


def test_reconstruction_figure_refuses_a_classifier() -> None:
    _, video = random_clip()
    with pytest.raises(ValueError, match="pre-training"):
        reconstruction_figure(tiny_model("videomae_base_160"), video)


def test_audio_visual_reconstruction_needs_audio() -> None:
    """No silent spectrogram is made up for a HiCMAE model: its audio input is required and checked."""
    model = tiny_model("hicmae_pretrain_base")
    _, video = random_clip()
    with pytest.raises(ValueError, match="audio"):
        reconstruction_figure(model, video)
    with pytest.raises(ValueError, match="audio"):
        reconstruction_figure(model, video, audio=torch.zeros(1, 1, 16, 16))


def _randomise_attention(model: torch.nn.Module) -> None:
    """Large random q/k weights, so that the attention is far from uniform."""
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("q.weight", "kv.weight", "qkv.weight", "lg_region_tokens")):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def _softmax_attention(x: torch.Tensor, q_weight: torch.Tensor, q_bias: torch.Tensor | None, k_weight: torch.Tensor,
                       heads: int) -> torch.Tensor:
    """(L, C) normalised tokens -> (heads, L, L) attention probabilities."""
    q_weight, k_weight = q_weight.detach(), k_weight.detach()
    q_bias = q_bias.detach() if q_bias is not None else None
    q = x @ q_weight.T + (q_bias if q_bias is not None else 0)
    k = x @ k_weight.T
    head_dim = q.shape[1] // heads
    q = q.reshape(-1, heads, head_dim).transpose(0, 1)
    k = k.reshape(-1, heads, head_dim).transpose(0, 1)
    return torch.softmax(q @ k.transpose(1, 2) * head_dim**-0.5, dim=-1)


def _capture_input(module: torch.nn.Module) -> tuple[list[torch.Tensor], torch.utils.hooks.RemovableHandle]:
    inputs: list[torch.Tensor] = []
    handle = module.register_forward_pre_hook(lambda mod, args: inputs.append(args[0].detach().clone()))
    return inputs, handle


@pytest.mark.parametrize("layer", [0, -1])
def test_messenger_attention_matches_attention_recomputed_from_weights(layer: int) -> None:
    model = tiny_model("mae_dfer_base")
    _randomise_attention(model)
    _, video = random_clip(3)
    block = model.blocks[layer]
    inputs, handle = _capture_input(block.first_attn)
    maps = attention_maps(model, video, layer=layer)
    handle.remove()
    assert maps["kind"] == "messenger" and maps["layer"] == layer % len(model.blocks)
    token_map = maps["map"]
    assert token_map.shape == GRID and token_map.dtype == np.float32
    assert maps["tubelet_size"] == TUBELET and maps["region_size"] == (2, 2, 4)

    # Regions of (2, 2, 4) tokens on the (4, 4, 4) grid, numbered t-major; local tokens in raster order.
    t, h, w = np.meshgrid(*(np.arange(g) for g in GRID), indexing="ij")
    region_of = ((t // 2) * 2 + h // 2) * 1 + w // 4
    for region in range(4):
        assert token_map[region_of == region].sum() == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(token_map, 1 / 16, atol=1e-3)

    normed = inputs[0]  # first call = stage 1: (regions, 1 + 16, C), messenger first
    attn = block.first_attn
    inner = attn.num_heads * attn.head_dim
    for region in (0, 3):
        probs = _softmax_attention(normed[region], attn.q.weight, attn.q_bias, attn.kv.weight[:inner], attn.num_heads)
        messenger = probs[:, 0, 1:].mean(dim=0)
        expected = (messenger / messenger.sum()).numpy()
        positions = np.flatnonzero(region_of.reshape(-1) == region)  # raster order inside the region
        assert np.allclose(token_map.reshape(-1)[positions], expected, atol=1e-5)


@pytest.mark.parametrize("name", ["videomae_base_160", "svfap_base"])
def test_mean_received_attention_fallback(name: str) -> None:
    model = tiny_model(name)
    _randomise_attention(model)
    _, video = random_clip(4)
    attn = model.blocks[-1].attn
    inputs, handle = _capture_input(attn)
    maps = attention_maps(model, video)
    handle.remove()
    assert maps["kind"] == "mean_received" and "messenger" not in maps and maps["region_size"] is None
    token_map = maps["map"]
    assert token_map.shape == GRID and token_map.sum() == pytest.approx(1.0, abs=1e-5)

    inner = attn.num_heads * attn.head_dim
    bias = attn.q_bias
    weight = attn.qkv.weight[: 2 * inner]
    probs = _softmax_attention(inputs[0][0], weight[:inner], bias[:inner] if bias is not None else None,
                               weight[inner:], attn.num_heads)
    received = probs.mean(dim=(0, 1)).numpy()
    key_frames = received.size // 16
    expected = np.repeat(received.reshape(key_frames, 4, 4), GRID[0] // key_frames, axis=0) / (GRID[0] // key_frames)
    assert np.allclose(token_map, expected, atol=1e-6)
    if name == "svfap_base":  # the last TPSBT stage has one frame of tokens: the map is the same in every slice
        assert key_frames == 1 and np.allclose(token_map, token_map[:1])


def test_attention_maps_reject_out_of_range_layer() -> None:
    _, video = random_clip()
    with pytest.raises(ValueError, match="out of range"):
        attention_maps(tiny_model("videomae_base_160"), video, layer=5)


def test_attention_overlay_shape_and_blending() -> None:
    frames, _ = random_clip(5)
    token_map = np.zeros(GRID, dtype=np.float32)
    token_map[1, 0, 0] = 1.0
    image = attention_overlay(frames, token_map, TUBELET, alpha=1.0, max_frames=8, pad=2)
    assert image.dtype == np.uint8 and image.shape == (2 * (SIZE + 2) + 2, LABEL_WIDTH + 8 * (SIZE + 2) + 2, 3)
    jet_top, jet_bottom = np.array([127.5, 0, 0]), np.array([0, 0, 127.5])  # jet(1.0), jet(0.0)
    for column, t in enumerate(shown_frames(FRAMES, 8)):
        assert np.array_equal(tile(image, 0, column, pad=2, label_width=LABEL_WIDTH), frames[t])
        overlay = tile(image, 1, column, pad=2, label_width=LABEL_WIDTH)
        assert np.abs(overlay[SIZE - 1, SIZE - 1] - jet_bottom).max() <= 1
        assert np.abs(overlay[0, 0] - (jet_top if t // TUBELET == 1 else jet_bottom)).max() <= 1
    transparent = attention_overlay(frames, token_map, TUBELET, alpha=0.0, label_width=0, pad=2)
    assert transparent.shape == (2 * (SIZE + 2) + 2, 8 * (SIZE + 2) + 2, 3)
    assert np.array_equal(transparent[SIZE + 4 : 2 * SIZE + 4, 2 : SIZE + 2], frames[0])
    with pytest.raises(ValueError):
        attention_overlay(frames, np.zeros((3, 4, 4)), TUBELET)


def test_save_png_round_trip(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(7, 9, 3)).astype(np.uint8)
    target = save_png(image, tmp_path / "sub" / "figure.png")
    assert target == tmp_path / "sub" / "figure.png"
    assert np.array_equal(np.asarray(Image.open(target)), image)
    assert sorted(p.name for p in target.parent.iterdir()) == ["figure.png"]
    with pytest.raises(ValueError):
        save_png(image.astype(np.float32), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_centre_clip_indices() -> None:
    # 100 frames, stride 4: 25 loaded frames 0, 4, ..., 96; the middle 8 start at loaded position (25 - 8) // 2 = 8.
    assert centre_clip_indices(100, 8, 4).tolist() == [32, 36, 40, 44, 48, 52, 56, 60]
    # A short video repeats its last loaded frame.
    assert centre_clip_indices(10, 8, 4).tolist() == [0, 4, 8, 8, 8, 8, 8, 8]


def test_centre_clip_audio_uses_the_evaluation_cut(tmp_path: Path) -> None:
    import soundfile

    from maedfer.audio import FbankConfig, wav_to_fbank
    from maedfer.apps.inference import NoAudioError
    from maedfer.apps.visualize import centre_clip_audio

    rate = 16000
    waveform = (np.random.default_rng(0).standard_normal(rate) * 0.1).astype(np.float32)  # 1 s
    wav = tmp_path / "voice.wav"
    soundfile.write(str(wav), waveform, rate, subtype="FLOAT")
    config = FbankConfig(num_mel_bins=16, target_length=64)
    # 100 frames, 8 every 4th: the centre clip is frames 32 .. 60; its audio runs to 60 + 4 = 64, on the relative
    # clock i / 99 of the waveform (not at absolute times: the video's frame rate plays no part).
    fbank = centre_clip_audio(wav, 100, 8, 4, config)
    expected = wav_to_fbank(torch.from_numpy(waveform[None, int(32 / 99 * rate) : int(64 / 99 * rate)]), config)
    assert fbank.shape == (1, 64, 16) and fbank.dtype == torch.float32
    assert torch.allclose(fbank, expected)
    # A video without a soundtrack is an error, never silence.
    silent = tmp_path / "silent.mp4"
    write_mp4(silent, np.zeros((4, 16, 16, 3), dtype=np.uint8), None, 25.0)
    with pytest.raises(NoAudioError, match="silent.mp4.*audio-visual"):
        centre_clip_audio(silent, 4, 8, 4, config)


# ----------------------------------------------------------------------------------------------------------- CLI
def load_tool():
    spec = importlib.util.spec_from_file_location("visualize_tool", ROOT / "tools" / "visualize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_trainer_checkpoint(path: Path, name: str, **train: object) -> Path:
    cfg = ExperimentConfig()
    cfg.model.name = name
    cfg.model.kwargs = dict(model_entry(name).tiny_overrides)
    cfg.data.num_frames, cfg.data.sampling_rate = FRAMES, 2
    cfg.data.input_size = cfg.data.short_side_size = SIZE
    for key, value in train.items():
        setattr(cfg.train, key, value)
    torch.save({"model": tiny_model(name).state_dict(), "config": config_to_dict(cfg)}, path)
    return path


@pytest.fixture(scope="module")
def face_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A synthetic face video (24 frames at 25 fps) with its voice track, and the same frames without audio."""
    from maedfer.synthetic import SyntheticIdentity, render_clip

    identity = SyntheticIdentity.sample(np.random.default_rng(0))
    frames, audio, _ = render_clip(identity, "happy", num_frames=24, size=64, seed=1)
    folder = tmp_path_factory.mktemp("video")
    paths = {"voiced": folder / "face_clip.mp4", "silent": folder / "silent_clip.mp4"}
    write_mp4(paths["voiced"], frames, audio, 25.0)
    write_mp4(paths["silent"], frames, None, 25.0)
    return paths


@pytest.fixture(scope="module")
def face_video(face_videos: dict[str, Path]) -> Path:
    return face_videos["voiced"]


def test_cli_reconstruct_uses_the_training_config(tmp_path: Path, face_video: Path, capsys) -> None:
    tool = load_tool()
    checkpoint = save_trainer_checkpoint(tmp_path / "pretrain.pth", "mae_dfer_pretrain_base", frame_diff_group_size=2)
    out = tmp_path / "figures"
    argv = ["reconstruct", str(face_video), "--checkpoint", str(checkpoint), "--out", str(out), "--no-face-detect"]
    assert tool.main(argv) == 0
    image = np.asarray(Image.open(out / "face_clip_reconstruction.png"))
    assert image.shape == (5 * (SIZE + 2) + 2, LABEL_WIDTH + 8 * (SIZE + 2) + 2, 3)  # with the frame-diff rows
    assert tool.main(argv + ["--no-frame-diff", "--max-frames", "4"]) == 0
    image = np.asarray(Image.open(out / "face_clip_reconstruction.png"))
    assert image.shape == (3 * (SIZE + 2) + 2, LABEL_WIDTH + 4 * (SIZE + 2) + 2, 3)
    assert sorted(p.name for p in out.iterdir()) == ["face_clip_reconstruction.png"]


def test_cli_attention_writes_png(tmp_path: Path, face_video: Path, capsys) -> None:
    tool = load_tool()
    for name, note in (("mae_dfer_base", "messenger"), ("videomae_base_160", "not an LGI-Former")):
        checkpoint = save_trainer_checkpoint(tmp_path / f"{name}.pth", name)
        out = tmp_path / name
        argv = ["attention", str(face_video), "--checkpoint", str(checkpoint), "--out", str(out), "--no-face-detect"]
        assert tool.main(argv) == 0
        assert note in capsys.readouterr().out
        image = np.asarray(Image.open(out / "face_clip_attention.png"))
        assert image.shape == (2 * (SIZE + 2) + 2, LABEL_WIDTH + 8 * (SIZE + 2) + 2, 3)


def test_cli_errors_exit_2(tmp_path: Path, face_video: Path, capsys) -> None:
    tool = load_tool()
    classifier = save_trainer_checkpoint(tmp_path / "finetune.pth", "videomae_base_160")
    common = ["--out", str(tmp_path / "out"), "--no-face-detect"]
    assert tool.main(["reconstruct", str(face_video), "--checkpoint", str(classifier), *common]) == 2
    error = capsys.readouterr().err
    assert "pre-training checkpoint" in error and len(error.strip().splitlines()) == 1
    assert tool.main(["attention", str(tmp_path / "missing.mp4"), "--checkpoint", str(classifier), *common]) == 2
    assert "missing.mp4" in capsys.readouterr().err
    assert tool.main(["attention", str(face_video), "--checkpoint", str(tmp_path / "none.pth"), *common]) == 2
    assert "none.pth" in capsys.readouterr().err
    bare = tmp_path / "bare.pth"
    torch.save({"model": tiny_model("videomae_base_160").state_dict()}, bare)
    assert tool.main(["attention", str(face_video), "--checkpoint", str(bare), *common]) == 2
    assert "--model" in capsys.readouterr().err
    grey = tmp_path / "grey.mp4"
    write_mp4(grey, np.full((10, 64, 64, 3), 128, dtype=np.uint8), None, 25.0)
    argv = ["attention", str(grey), "--checkpoint", str(classifier), "--out", str(tmp_path / "out")]
    assert tool.main(argv) == 2
    assert "face" in capsys.readouterr().err.lower()
    assert not (tmp_path / "out").exists()


def test_cli_reconstruct_audio_visual_reads_the_soundtrack(
    tmp_path: Path, face_videos: dict[str, Path], capsys
) -> None:
    from maedfer.audio import wav_to_fbank
    from maedfer.data.readers import read_audio
    from maedfer.apps.inference import clip_to_input, load_inference_model, read_video_frames

    tool = load_tool()
    checkpoint = save_trainer_checkpoint(tmp_path / "hicmae.pth", "hicmae_pretrain_base")
    out = tmp_path / "figures"
    argv = ["reconstruct", str(face_videos["voiced"]), "--checkpoint", str(checkpoint), "--out", str(out),
            "--no-face-detect"]
    assert tool.main(argv) == 0, capsys.readouterr().err
    written = np.asarray(Image.open(out / "face_clip_reconstruction.png").convert("RGB"))

    # The same figure built by hand: 24 frames, 8 every 2nd -> loaded 0, 2, ..., 22, centre clip frames 4 .. 18;
    # audio from frame 4 to 18 + 2 = 20 on the relative clock i / 23; the default config's mask settings.
    loaded = load_inference_model(checkpoint)
    cfg = ExperimentConfig()
    frames = read_video_frames(face_videos["voiced"], detect_faces=False).frames
    clip = clip_to_input(frames[4:20:2], loaded)[None]
    waveform = read_audio(face_videos["voiced"], sample_rate=16000)
    total = waveform.shape[1]
    audio = wav_to_fbank(waveform[:, int(4 / 23 * total) : int(20 / 23 * total)], loaded.fbank)
    mask = default_video_mask(loaded.model, mask_ratio=cfg.data.mask_ratio, seed=0)

    def figure(spectrogram: torch.Tensor) -> np.ndarray:
        return reconstruction_figure(loaded.model, clip, mask=mask, normalize_target=cfg.train.normalize_target,
                                     audio=spectrogram, audio_mask_ratio=cfg.data.audio_mask_ratio, seed=0)

    assert np.array_equal(written, figure(audio))
    assert not np.array_equal(written, figure(torch.zeros_like(audio)))  # the soundtrack really is used

    # Without a soundtrack: one line on stderr naming the file, exit 2, nothing written.
    argv = ["reconstruct", str(face_videos["silent"]), "--checkpoint", str(checkpoint), "--out", str(out),
            "--no-face-detect"]
    assert tool.main(argv) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "Traceback" not in error
    assert "silent_clip.mp4" in error and "audio" in error
    assert not (out / "silent_clip_reconstruction.png").exists()
