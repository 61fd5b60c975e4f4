"""The fast data pipeline (``data.pipeline: fast``): output format, closeness to the official PIL operations, the
recipe's parameter distributions, determinism across workers, the PyAV decoder and training with both pipelines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from maedfer.data.augment import (
    RAND_INCREASING_OPS,
    AugmentOpDraw,
    FinetuneTrainTransform,
    VideoRandAugment,
    apply_augment_op,
    augment_op_args,
)
from maedfer.data.build import ResumableDistributedSampler
from maedfer.data.fast_pipeline import FastFinetuneTrainTransform, FastRandAugment, check_pipeline, resize_clip
from maedfer.data.readers import VideoFileReader, _PyAVBackend
from maedfer.synthetic import make_synthetic_world
from maedfer.data.video_datasets import VideoClipDataset, skip_bad_samples_collate

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """A smooth, textured 8-frame clip (gradients + a moving disc + noise), 64x64."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:64, 0:64]
    frames = []
    for t in range(8):
        disc = ((xs - 20 - 3 * t) ** 2 + (ys - 30) ** 2 < 150) * 90
        frame = np.stack([xs * 3, ys * 3, 200 - xs - ys], axis=-1) + disc[..., None] + rng.normal(0, 6, (64, 64, 3))
        frames.append(np.clip(frame, 0, 255))
    return np.stack(frames).astype(np.uint8)


def _pil_reference(frames: np.ndarray, op: AugmentOpDraw) -> np.ndarray:
    return np.stack([np.asarray(apply_augment_op(Image.fromarray(f), op.name, op.args)) for f in frames])


@pytest.mark.parametrize("name", RAND_INCREASING_OPS)
def test_each_randaugment_op_is_close_to_pil(clip: np.ndarray, name: str) -> None:
    for negate in (False, True):
        op = AugmentOpDraw(name, 7.0, negate, augment_op_args(name, 7.0, negate))
        fast = FastRandAugment().apply(clip, [op])
        assert fast.dtype == np.uint8 and fast.shape == clip.shape
        diff = np.abs(fast.astype(np.int16) - _pil_reference(clip, op))
        if name in GEOMETRIC:  # bilinear once instead of PIL bicubic: a few levels inside, more next to the fill
            assert diff.mean() < 2.5, (name, diff.mean())
        elif name in ("AutoContrast", "Equalize", "Invert", "PosterizeIncreasing", "SolarizeIncreasing",
                      "SolarizeAdd"):
            assert diff.max() == 0, (name, diff.max())
        else:  # float32 blend rounded to nearest vs PIL's integer arithmetic
            assert diff.max() <= 1, (name, diff.max())
        assert not np.array_equal(fast, clip) or name == "PosterizeIncreasing"


def test_consecutive_geometric_ops_compose_into_one_warp(clip: np.ndarray) -> None:
    ops = [AugmentOpDraw("ShearX", 5.0, False, (0.15,)), AugmentOpDraw("TranslateYRel", 5.0, True, (-0.2,))]
    fast = FastRandAugment().apply(clip, ops)
    reference = clip
    for op in ops:
        reference = _pil_reference(reference, op)
    assert np.abs(fast.astype(np.int16) - reference).mean() < 3.0
    # The fill colour of the uncovered band (the content moves down by 20 % of the height: 12.8 rows).
    assert np.all(fast[:, :8] == 128) and np.all(reference[:, :8] == 128)


def test_resize_clip_matches_pil_bilinear_within_one_level(clip: np.ndarray) -> None:
    out = resize_clip(clip, 40, 48)
    reference = np.stack([np.asarray(Image.fromarray(f).resize((48, 40), Image.BILINEAR)) for f in clip])
    assert out.shape == (8, 40, 48, 3) and out.dtype == np.uint8
    diff = np.abs(out.astype(np.int16) - reference)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.05
    assert resize_clip(clip, 64, 64) is clip


def test_fast_transform_output_format_and_range(clip: np.ndarray) -> None:
    transform = FastFinetuneTrainTransform(input_size=48, short_side_size=56, reprob=0.0)
    for seed in range(6):
        video = transform(clip, np.random.default_rng(seed))
        assert video.shape == (3, 8, 48, 48) and video.dtype == torch.float32 and video.is_contiguous()
        low = torch.tensor((0 - MEAN) / STD, dtype=torch.float32).view(3, 1, 1, 1)
        high = torch.tensor((1 - MEAN) / STD, dtype=torch.float32).view(3, 1, 1, 1)
        assert torch.all(video >= low - 1e-6) and torch.all(video <= high + 1e-6)


def test_fast_and_official_transforms_draw_the_same_parameters(clip: np.ndarray) -> None:
    """Same generator in, same number of draws consumed, and nearly the same clip out."""
    official, fast = FinetuneTrainTransform(input_size=48, short_side_size=64), FastFinetuneTrainTransform(
        input_size=48, short_side_size=64
    )
    diffs = []
    for seed in range(12):
        rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
        a, b = official(clip, rng_a), fast(clip, rng_b)
        assert rng_a.random() == rng_b.random()  # both consumed exactly the same draws
        diffs.append(float((a - b).abs().mean()))
    # Normalised units (1 level ~ 0.017): the same ops, boxes, flips and erasing, only rounding/interpolation apart.
    assert np.median(diffs) < 0.05 and max(diffs) < 0.4, diffs


def test_parameter_distributions_follow_the_recipe() -> None:
    """RandAugment m7 n4 mstd0.5 p0.5 draws: each of 15 ops ~ 4 * 0.5 / 15 per clip, magnitude N(7, 0.5)."""
    augment = FastRandAugment("rand-m7-n4-mstd0.5-inc1")
    rng = np.random.default_rng(123)
    clips = 3000
    counts = dict.fromkeys(RAND_INCREASING_OPS, 0)
    magnitudes = []
    for _ in range(clips):
        for op in augment.draw(rng):
            counts[op.name] += 1
            magnitudes.append(op.magnitude)
    expected = clips * 4 * 0.5 / 15  # 400
    for name, count in counts.items():
        assert abs(count - expected) < 5 * math.sqrt(expected), (name, count)
    assert abs(np.mean(magnitudes) - 7.0) < 0.02 and abs(np.std(magnitudes) - 0.5) < 0.02


def test_flip_crop_and_erasing_rates() -> None:
    """Flip p=0.5 and erasing p=0.25, seen in the outputs of the whole fast transform."""
    ramp = np.broadcast_to(np.arange(32, dtype=np.uint8)[None, None, :, None] * 8, (2, 32, 32, 3)).copy()
    transform = FastFinetuneTrainTransform(32, 32, rand_augment=None, reprob=0.25, scale=(1.0, 1.0),
                                           ratio=(1.0, 1.0))
    flips = erased = 0
    trials = 800
    for seed in range(trials):
        video = transform(ramp, np.random.default_rng(seed))
        row = video[0, 0, 0]
        flips += bool(row[0] > row[-1])
        low, high = (0 - MEAN[0]) / STD[0], (1 - MEAN[0]) / STD[0]
        erased += bool(((video[0] < low - 1e-3) | (video[0] > high + 1e-3)).any())  # N(0, 1) noise leaves the range
    assert abs(flips / trials - 0.5) < 0.06 and abs(erased / trials - 0.25) < 0.06


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fastworld") / "synthetic"
    make_synthetic_world(root, num_identities=3, clips_per_class=1, num_frames=16, size=32, preview=False)
    return root


def _batches(loader: DataLoader, sampler: ResumableDistributedSampler, epochs: int) -> list[torch.Tensor]:
    out = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        out.extend(batch["video"] for batch in loader)
    return out


def test_draws_depend_on_seed_and_epoch_not_on_workers(world: Path) -> None:
    def run(workers: int) -> list[torch.Tensor]:
        dataset = VideoClipDataset(world / "classification" / "train.csv", "train", num_frames=8, sampling_rate=2,
                                   input_size=32, short_side_size=32, pipeline="fast",
                                   train_transform=FastFinetuneTrainTransform(32, 32))
        sampler = ResumableDistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0, drop_last=True,
                                              with_epoch=workers > 0)
        loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=workers, drop_last=True,
                            collate_fn=skip_bad_samples_collate, persistent_workers=workers > 0)
        return _batches(loader, sampler, 2)

    single, persistent = run(0), run(2)
    assert len(single) == len(persistent) > 2
    for a, b in zip(single, persistent):
        assert torch.equal(a, b)
    half = len(single) // 2
    assert not torch.equal(single[0], single[half])  # epoch 1 draws differ from epoch 0


def test_jpeg_decoders_give_the_same_training_items(world: Path) -> None:
    def items(pipeline: str, decoder: str) -> tuple[str, list[torch.Tensor]]:
        transform = FastFinetuneTrainTransform(32, 32) if pipeline == "fast" else FinetuneTrainTransform(32, 32)
        dataset = VideoClipDataset(world / "classification" / "train.csv", "train", num_frames=8, sampling_rate=2,
                                   input_size=32, short_side_size=32, pipeline=pipeline, image_decoder=decoder,
                                   train_transform=transform)
        return dataset.image_decoder, [dataset[index]["video"] for index in range(4)]

    decoder, fast_auto = items("fast", "auto")
    assert decoder == "torchvision"  # the fast pipeline's default when torchvision is installed (the dev extra)
    for other in ("pil", "opencv"):
        assert all(torch.equal(a, b) for a, b in zip(fast_auto, items("fast", other)[1]))
    decoder, official_auto = items("official", "auto")
    assert decoder == "pil"  # the official pipeline keeps the official decoder
    assert all(torch.equal(a, b) for a, b in zip(official_auto, items("official", "torchvision")[1]))


def test_pipeline_setting_is_validated() -> None:
    assert check_pipeline("fast") == "fast"
    with pytest.raises(ValueError, match="pipeline"):
        check_pipeline("quick")


def test_pyav_skipping_non_reference_frames_gives_the_frames_of_a_full_decode(world: Path) -> None:
    video = sorted((world / "videos").glob("*.mp4"))[0]
    wanted = [1, 3, 6, 7, 10, 14]
    skipping = VideoFileReader(video, backend="pyav")
    assert isinstance(skipping._impl, _PyAVBackend) and skipping._impl.skip_nonref
    full = VideoFileReader(video, backend="pyav")
    full._impl.skip_nonref = False
    assert np.array_equal(skipping.read(wanted), full.read(wanted))
    assert np.array_equal(skipping.read(wanted), VideoFileReader(video, backend="decord").read(wanted))


def test_auto_backend_falls_back_to_pyav_for_tiny_h264(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    path = tmp_path / "tiny48.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 48, "yuv420p"
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((48, 48, 3), 8 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    reader = VideoFileReader(path, backend="auto")
    frames = reader.read([0, 10, 29])
    assert reader.backend == "pyav" and frames.shape == (3, 48, 48, 3)
    assert np.all(np.abs(frames[:, 24, 24, 0].astype(int) - [0, 80, 232]) <= 3)


@pytest.mark.parametrize("pipeline", ["fast", "official"])
def test_training_runs_with_each_pipeline(world: Path, tmp_path: Path, pipeline: str) -> None:
    from maedfer.apps.train import main

    root = Path(__file__).resolve().parents[2]
    tiny = ["model.kwargs.img_size=32", "model.kwargs.patch_size=8", "model.kwargs.num_frames=8",
            "model.kwargs.embed_dim=32", "model.kwargs.depth=2", "model.kwargs.num_heads=2",
            "model.kwargs.region_size=[2,2,4]", "data.synthetic={}", "data.num_frames=8", "data.input_size=32",
            "data.short_side_size=32", "data.batch_size=4", "data.num_workers=0", "optim.warmup_epochs=0",
            f"data.root={world}", f"data.pipeline={pipeline}", "train.epochs=1"]
    pre = main(["--config", str(root / "pretrain" / "configs" / "demo.yaml"), "model.name=mae_dfer_pretrain_base",
                "data.mask_type=part_window", "model.kwargs.decoder_embed_dim=16", *tiny,
                f"train.output_dir={tmp_path / 'pre'}"])
    assert pre["steps"] > 0 and pre["nonfinite_losses"] == 0
    ft = main(["--config", str(root / "finetune" / "configs" / "demo.yaml"), "model.name=mae_dfer_base", *tiny,
               f"train.output_dir={tmp_path / 'ft'}", f"model.checkpoint={tmp_path / 'pre' / 'checkpoint-last.pth'}"])
    assert 0.0 <= ft["test"]["uar"] <= 1.0
