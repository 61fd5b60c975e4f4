"""Tests of maedfer.data.pretrain_datasets: sampling rule, multi-scale crop, audio window, dataset, official parity.

Expected values are written out by hand from the official rules (README of tests/fixtures/official_data),
computed with plain PyAV / PIL / NumPy, or taken from the official fixture records.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maedfer.data.pretrain_datasets import (
    PRETRAIN_PRESETS,
    VOXCELEB2_FIXED_CROP_160,
    CropBox,
    GroupMultiScaleCrop,
    MaskSpec,
    PretrainAudioConfig,
    PretrainClipDataset,
    PretrainDraws,
    apply_fixed_crop,
    collate_pretrain,
    draw_pretrain_offset,
    pretrain_audio_window,
    pretrain_frame_indices,
    pretrain_offset_range,
)
from maedfer.data.video_datasets import SkippedSample
from maedfer.masking import is_part_window_mask, is_tube_mask
from maedfer.parity.pretrain_data import check_pretrain_fixture

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official_data"
MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None, None]


@pytest.fixture(scope="module")
def vox_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The official synthetic inputs (VoxCeleb2 layout) written to a temporary folder."""
    root = tmp_path_factory.mktemp("inputs")
    inputs = torch.load(FIXTURES / "inputs.pt", weights_only=True)
    for entry in inputs["files"]:
        target = root / entry["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(entry["data"].numpy().tobytes())
    return root


def vox_video(root: Path, name: str) -> str:
    return str(root / f"voxceleb2/video/file~/dev/mp4/id00001/{name}/00001.mp4")


# ------------------------------------------------------------------------------------------------
# Temporal sampling
# ------------------------------------------------------------------------------------------------


def test_sampling_duration_80_by_hand() -> None:
    assert pretrain_offset_range(80, 16, 4) == 17  # offsets 0..16
    assert pretrain_frame_indices(80, 0) == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60]
    assert pretrain_frame_indices(80, 12) == [12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68, 72]
    assert pretrain_frame_indices(80, 16) == [16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68, 72, 76]
    draws = [draw_pretrain_offset(80, np.random.default_rng(s)) for s in range(1500)]
    assert set(draws) == set(range(17))


def test_sampling_duration_40_repeats_the_tail() -> None:
    assert pretrain_offset_range(40, 16, 4) == -23
    assert {draw_pretrain_offset(40, np.random.default_rng(s)) for s in range(50)} == {0}
    assert pretrain_frame_indices(40, 0) == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 36, 36, 36, 36, 36, 36]


def test_sampling_edge_cases_by_hand() -> None:
    # o starts at 1 and advances only while o + 4 < duration (strict), so frame 4 of a 5-frame video is never used.
    assert pretrain_frame_indices(5, 0) == [0] * 16
    assert pretrain_frame_indices(6, 0) == [0] + [4] * 15
    assert pretrain_offset_range(64, 16, 4) == 1
    assert pretrain_frame_indices(64, 0) == list(range(0, 64, 4))
    assert pretrain_frame_indices(10, 2, num_frames=4, sampling_rate=3) == [2, 5, 8, 8]
    with pytest.raises(ValueError, match="offset"):
        pretrain_frame_indices(40, 40)
    with pytest.raises(ValueError, match="duration"):
        pretrain_frame_indices(0, 0)


# ------------------------------------------------------------------------------------------------
# Spatial crops
# ------------------------------------------------------------------------------------------------


def test_multiscale_crop_candidates_224_to_160_by_hand() -> None:
    crop = GroupMultiScaleCrop(160)
    # base 224: int(224 * s) = 224, 196, 168, int(147.84) = 147; none within 3 px of 160
    assert crop.crop_sizes(224, 224) == [224, 196, 168, 147]
    assert crop.candidate_pairs(224, 224) == [
        (224, 224), (196, 224),
        (224, 196), (196, 196), (168, 196),
        (196, 168), (168, 168), (147, 168),
        (168, 147), (147, 147),
    ]  # fmt: skip
    # crop 168 x 168: step (224 - 168) // 4 = 14
    assert crop.candidate_offsets(224, 224, 168, 168) == [
        (0, 0), (56, 0), (0, 56), (56, 56), (28, 28),
        (0, 28), (56, 28), (28, 56), (28, 0), (14, 14), (42, 14), (14, 42), (42, 42),
    ]  # fmt: skip
    # non-square crop 224 x 196: steps 0 and 7
    assert crop.candidate_offsets(224, 224, 224, 196)[:5] == [(0, 0), (0, 0), (0, 28), (0, 28), (0, 14)]


def test_multiscale_crop_candidates_160_and_snapping_by_hand() -> None:
    crop = GroupMultiScaleCrop(160)
    assert crop.crop_sizes(160, 160) == [160, 140, 120, 105]  # int(105.6) = 105
    assert crop.candidate_pairs(160, 160) == [
        (160, 160), (140, 160), (160, 140), (140, 140), (120, 140),
        (140, 120), (120, 120), (105, 120), (120, 105), (105, 105),
    ]  # fmt: skip
    # base 162: 162 is within 3 px of 160 and snaps; 141, 121, 106 stay
    assert crop.crop_sizes(162, 170) == [162, 141, 121, 106]
    assert crop.candidate_pairs(162, 170)[:3] == [(160, 160), (141, 160), (160, 141)]
    # base 163: |163 - 160| = 3 is not < 3, so no snapping
    assert crop.candidate_pairs(163, 163)[0] == (163, 163)
    assert len(GroupMultiScaleCrop(160, more_fix_crop=False).candidate_offsets(160, 160, 120, 120)) == 5


def test_multiscale_crop_draw_is_uniform_over_candidates() -> None:
    crop = GroupMultiScaleCrop(160)
    pairs = crop.candidate_pairs(160, 160)
    gen = np.random.default_rng(0)
    seen_pairs: dict[tuple[int, int], int] = {}
    seen_offsets: set[tuple[int, int]] = set()
    for _ in range(3000):
        box = crop.draw(160, 160, gen)
        seen_pairs[(box.crop_w, box.crop_h)] = seen_pairs.get((box.crop_w, box.crop_h), 0) + 1
        assert (box.offset_w, box.offset_h) in crop.candidate_offsets(160, 160, box.crop_w, box.crop_h)
        if (box.crop_w, box.crop_h) == (120, 120):
            seen_offsets.add((box.offset_w, box.offset_h))
    assert set(seen_pairs) == set(pairs)
    assert all(abs(count / 3000 - 0.1) < 0.025 for count in seen_pairs.values())
    assert len(seen_offsets) == 13


def test_multiscale_crop_apply_matches_pil() -> None:
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 160, 160, 3), dtype=np.uint8)
    crop = GroupMultiScaleCrop(160)
    out = crop.apply(frames, CropBox(120, 140, 30, 5))
    for frame, result in zip(frames, out):
        # crop first, then resize (PIL's resize(box=...) would filter across the box border)
        expected = Image.fromarray(frame).crop((30, 5, 150, 145)).resize((160, 160), Image.Resampling.BILINEAR)
        np.testing.assert_array_equal(result, np.asarray(expected))
    np.testing.assert_array_equal(crop.apply(frames, CropBox(160, 160, 0, 0)), frames)  # full crop: no change
    with pytest.raises(ValueError, match="does not fit"):
        crop.apply(frames, CropBox(120, 120, 50, 0))


def test_fixed_crop_voxceleb2() -> None:
    rows, cols = np.mgrid[0:224, 0:224]
    frame = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    out = apply_fixed_crop(frame[None], VOXCELEB2_FIXED_CROP_160)
    assert out.shape == (1, 160, 160, 3)
    assert out[0, 0, 0, 0] == 0 and out[0, -1, 0, 0] == 159  # rows 0..159
    assert out[0, 0, 0, 1] == 32 and out[0, 0, -1, 1] == 191  # columns 32..191
    with pytest.raises(ValueError, match="224x224"):
        apply_fixed_crop(np.zeros((1, 150, 224, 3), np.uint8), VOXCELEB2_FIXED_CROP_160)


# ------------------------------------------------------------------------------------------------
# Masks and audio window
# ------------------------------------------------------------------------------------------------


def test_mask_spec_grid_and_counts() -> None:
    spec = MaskSpec("part_window", 0.9, (5, 10))
    assert spec.grid(16, 160) == (8, 10, 10)
    generator = spec.build(16, 160)
    mask = generator(torch.Generator().manual_seed(0))
    assert mask.shape == (800,) and mask.dtype == torch.bool and int(mask.sum()) == 720
    assert is_part_window_mask(mask, (8, 10, 10), (5, 10))
    tube = MaskSpec("tube", 0.9).build(16, 160)(torch.Generator().manual_seed(1))
    assert int(tube.sum()) == 720 and is_tube_mask(tube, (8, 10, 10))
    with pytest.raises(ValueError, match="does not divide"):
        MaskSpec().grid(15, 160)


def test_audio_window_float32_by_hand() -> None:
    def frame_time(i: int) -> tuple[np.float32, np.float32]:
        return np.float32(i / 25), np.float32((i + 1) / 25)

    ids = pretrain_frame_indices(80, 12)
    window = pretrain_audio_window(ids, 80, 4, frame_time)
    assert (window.start_frame, window.end_frame) == (12, 76)  # min(72 + 4, 79)
    assert window.start_time == np.float32(0.48) and window.end_time == np.float32(3.08)
    # float32 product: float32(0.48) * 16000 rounds to 7680.0; in float64 it is 7679.9998...
    assert window.offset == 7680
    assert int(float(np.float32(0.48)) * 16000) == 7679
    assert window.num_samples == 41600  # 2.6 s
    short = pretrain_audio_window(pretrain_frame_indices(40, 0), 40, 4, frame_time)
    assert (short.start_frame, short.end_frame, short.offset, short.num_samples) == (0, 39, 0, 25600)


def test_audio_path_derivation() -> None:
    config = PretrainAudioConfig()
    video = "/d/voxceleb2/video/file~/dev/mp4/id1/x/00001.mp4"
    assert config.audio_path(video) == "/d/voxceleb2/audio/file~/dev/aac/id1/x/00001.wav"
    with pytest.raises(ValueError, match="cannot derive"):
        config.audio_path("/d/clip.avi")
    with pytest.raises(ValueError, match="cannot derive"):
        PretrainClipDataset(["/d/clip.avi"], **PRETRAIN_PRESETS["hicmae"])


# ------------------------------------------------------------------------------------------------
# Dataset
# ------------------------------------------------------------------------------------------------


def test_dataset_item_matches_independent_pipeline(vox_root: Path) -> None:
    import av

    path = vox_video(vox_root, "vox_a")
    dataset = PretrainClipDataset([path], backend="pyav", **PRETRAIN_PRESETS["mae_dfer"])
    item = dataset.load(0, return_frames=True)
    draw = item["draws"][0]
    assert item["frame_indices"] == [draw.offset + 4 * k for k in range(16)] and 0 <= draw.offset <= 16
    with av.open(path) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    box = draw.crop
    frames = []
    for index in item["frame_indices"]:
        image = Image.fromarray(decoded[index][0:160, 32:192])
        image = image.crop((box.offset_w, box.offset_h, box.offset_w + box.crop_w, box.offset_h + box.crop_h))
        frames.append(np.asarray(image.resize((160, 160), Image.Resampling.BILINEAR)))
    expected = (torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).float() / 255 - MEAN) / STD
    torch.testing.assert_close(item["video"], expected, rtol=0, atol=1e-6)
    assert item["mask"].shape == (800,) and int(item["mask"].sum()) == 720
    assert is_part_window_mask(item["mask"], (8, 10, 10), (5, 10))


def test_dataset_seeding_epochs_and_num_samples(vox_root: Path) -> None:
    paths = [vox_video(vox_root, "vox_a"), vox_video(vox_root, "vox_b")]
    dataset = PretrainClipDataset(paths, **PRETRAIN_PRESETS["svfap"])
    first = dataset[0]
    again = dataset[0]
    assert torch.equal(first["video"], again["video"]) and torch.equal(first["mask"], again["mask"])
    offsets = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        offsets.add(dataset.load(0, return_frames=True)["draws"][0].offset)
    assert len(offsets) > 1
    multi = PretrainClipDataset(paths, num_samples=2, **PRETRAIN_PRESETS["hicmae"])
    item = multi.load(0, return_frames=True)
    assert item["video"].shape == (2, 3, 16, 160, 160) and item["mask"].shape == (2, 800)
    assert item["audio"].shape == (2, 1, 256, 128) and item["mask_audio"].shape == (2, 128)
    assert not torch.equal(item["mask"][0], item["mask"][1])  # each clip has its own mask
    for ids, draw in zip(item["frame_indices"], item["draws"]):
        assert ids == pretrain_frame_indices(80, draw.offset)
    batch = collate_pretrain([multi[0], multi[1]])
    assert batch["video"].shape == (4, 3, 16, 160, 160) and batch["mask"].shape == (4, 800)
    assert batch["audio"].shape == (4, 1, 256, 128) and batch["mask_audio"].shape == (4, 128)
    assert batch["index"].tolist() == [0, 0, 1, 1] and batch["skipped"] == []
    torch.testing.assert_close(batch["video"][2:], multi[1]["video"], rtol=0, atol=0)


def test_dataset_hicmae_audio_and_masks(vox_root: Path) -> None:
    dataset = PretrainClipDataset([vox_video(vox_root, "vox_b")], **PRETRAIN_PRESETS["hicmae"])
    item = dataset.load(0, return_frames=True)
    window = item["audio_windows"][0]
    assert (window.start_frame, window.end_frame, window.offset, window.num_samples) == (0, 39, 0, 25600)
    audio = item["audio"]
    assert audio.shape == (1, 256, 128) and audio.dtype == torch.float32
    # 25600 samples give 1 + (25600 - 400) // 160 = 158 frames; the 98 padded rows equal mean / (2 std)
    torch.testing.assert_close(audio[0, 158:], torch.full((98, 128), 4.2677393 / (2 * 4.5689974)))
    assert not torch.allclose(audio[0, 157], audio[0, 158])
    assert item["mask_audio"].shape == (128,) and int(item["mask_audio"].sum()) == 102
    assert is_tube_mask(item["mask"], (8, 10, 10)) and int(item["mask"].sum()) == 720


def test_dataset_replays_given_draws(vox_root: Path) -> None:
    dataset = PretrainClipDataset([vox_video(vox_root, "vox_a")], **PRETRAIN_PRESETS["hicmae"])
    mask = torch.zeros(800, dtype=torch.bool)
    mask[:720] = True
    draws = PretrainDraws(offset=3, crop=CropBox(105, 120, 10, 20), gain=1.0, mask=mask)
    one = dataset.load(0, [draws], rng=np.random.default_rng(1), return_frames=True)
    two = dataset.load(0, [draws], rng=np.random.default_rng(2), return_frames=True)
    assert one["frame_indices"] == list(range(3, 64, 4))
    assert torch.equal(one["video"], two["video"]) and torch.equal(one["audio"], two["audio"])
    assert torch.equal(one["mask"], mask)
    with pytest.raises(ValueError, match="draws"):
        dataset.load(0, [draws, draws])
    with pytest.raises(ValueError, match="mask"):
        dataset.load(0, [PretrainDraws(offset=0, crop=CropBox(160, 160, 0, 0), mask=torch.zeros(10, dtype=torch.bool))])


def test_dataset_skips_bad_samples(vox_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    missing = tmp_path / "missing.mp4"
    good = vox_video(vox_root, "vox_a")
    dataset = PretrainClipDataset([good, str(broken), str(missing)], max_skip_fraction=1.0, **PRETRAIN_PRESETS["svfap"])
    with caplog.at_level(logging.WARNING, logger="maedfer.data.pretrain_datasets"):
        records = [dataset[1], dataset[2]]
    for record, path in zip(records, (broken, missing)):
        assert isinstance(record, SkippedSample) and record.path == str(path)
        assert str(path) in caplog.text
    assert dataset.skipped == 2
    batch = collate_pretrain([dataset[0], *records])
    assert batch["video"].shape == (1, 3, 16, 160, 160) and batch["index"].tolist() == [0]
    assert [r.index for r in batch["skipped"]] == [1, 2]
    strict = PretrainClipDataset([str(broken)], skip_bad_samples=False, **PRETRAIN_PRESETS["svfap"])
    with pytest.raises(Exception, match="broken.mp4"):
        strict[0]
    # HiCMAE: a video without its wav is skipped, naming the wav
    lonely = tmp_path / "video/file~/dev/mp4/id9/c/00001.mp4"
    lonely.parent.mkdir(parents=True)
    lonely.write_bytes(Path(good).read_bytes())
    audio_set = PretrainClipDataset([str(lonely)], max_skip_fraction=1.0, **PRETRAIN_PRESETS["hicmae"])
    record = audio_set[0]
    assert isinstance(record, SkippedSample) and record.path.endswith("audio/file~/dev/aac/id9/c/00001.wav")


# ------------------------------------------------------------------------------------------------
# Official fixture parity
# ------------------------------------------------------------------------------------------------


def test_official_pretrain_fixture_parity(tmp_path: Path) -> None:
    results = check_pretrain_fixture(FIXTURES, root=tmp_path / "root")
    failed = [r for r in results if not r[1]]
    assert not failed, failed
    names = [r[0] for r in results]
    fixture = torch.load(FIXTURES / "pretrain_dataset.pt", weights_only=True)
    for config in fixture["configs"]:
        for number, _ in enumerate(config["items"]):
            prefix = f"{config['name']}/item{number}:"
            checks = {name.rsplit("/", 1)[1] for name in names if name.startswith(prefix)}
            required = {"frame_indices", "decode[decord]", "decode[pyav]", "crop_geometry", "output", "mask"}
            required.add("output_sha256")
            if config["name"].startswith("hicmae"):
                required |= {"audio_window", "fbank", "audio_mask"}
            assert required <= checks, (prefix, checks)
    assert sum(name.endswith("output_frames_png") for name in names) == 1
    # the official script arguments map onto PRETRAIN_PRESETS (mask kind, window, fixed crop, audio)
    assert sorted(name for name in names if name.endswith("/preset")) == [
        "hicmae_voxceleb2/preset", "mae_dfer_voxceleb2/preset", "svfap_voxceleb2/preset"
    ]
    # video tensors and frames are bit-identical; the fbank is within the fixture tolerance
    assert all(r[2] == 0.0 for r in results if r[0].endswith(("/output", "output_frames_png")))
    assert all(r[2] <= 1e-3 for r in results if r[0].endswith("/fbank"))


def test_official_pretrain_fixture_tampering_fails(tmp_path: Path) -> None:
    fixture = torch.load(FIXTURES / "pretrain_dataset.pt", weights_only=True)
    fixture["configs"] = [c for c in fixture["configs"] if c["name"] == "hicmae_voxceleb2"]
    items = fixture["configs"][0]["items"]
    items[0]["audio"]["audio_start_idx"] += 1  # the float64 answer
    items[0]["frame_indices"][5] += 4
    items[1]["output_sha256"] = "0" * 64
    items[1]["crop"]["candidate_offsets"][3] = [21, 20]
    items[1]["decoded_frames_sha256"][0] = "f" * 64
    items[1]["audio"]["fbank"] = items[1]["audio"]["fbank"] + 0.01
    tampered = tmp_path / "pretrain_dataset.pt"
    torch.save(fixture, tampered)
    results = check_pretrain_fixture(
        tampered, inputs_path=FIXTURES / "inputs.pt", root=tmp_path / "root", backends=("pyav",)
    )
    failed = {r[0].split("/", 1)[1] for r in results if not r[1]}
    assert failed == {
        "item0:vox_a:seed0/audio_window",
        "item0:vox_a:seed0/frame_indices",
        "item0:vox_a:seed0/decode[pyav]",  # the wrong recorded index decodes another frame
        "item1:vox_b:seed3/output_sha256",
        "item1:vox_b:seed3/crop_geometry",
        "item1:vox_b:seed3/decode[pyav]",
        "item1:vox_b:seed3/fbank",
    }
