"""Tests of maedfer.data.augment: clip RandAugment, RandomResizedCrop, flip, erasing, Mixup/CutMix, the train transform.

Expected values come from the official rules written out by hand, from plain PIL / torch reference
computations, or from timm's own RandAugment operation functions (an independent implementation).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps

from maedfer.data.augment import (
    RAND_INCREASING_OPS,
    RAND_OPS,
    FinetuneTrainTransform,
    Mixup,
    VideoRandAugment,
    apply_augment_op,
    augment_op_args,
    cutmix_box,
    horizontal_flip_clip,
    random_erasing_clip,
    random_resized_crop_clip,
    random_resized_crop_params,
    smoothed_one_hot,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def textured_image(seed: int = 0, height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth gradient plus noise: every operation visibly changes it."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (width + height)], axis=-1)
    noise = np.random.default_rng(seed).integers(-20, 21, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def identical_clip(frames: int = 4, height: int = 48, width: int = 64) -> np.ndarray:
    return np.repeat(textured_image(0, height, width)[None], frames, axis=0)


def frames_all_equal(video: torch.Tensor | np.ndarray, axis: int) -> bool:
    array = video.numpy() if isinstance(video, torch.Tensor) else video
    first = np.take(array, [0], axis=axis)
    return bool(np.array_equal(np.broadcast_to(first, array.shape), array))


# ------------------------------------------------------------------------------------------------
# RandAugment: parameter mappings and operations
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "negate", "expected"),
    [
        # magnitude 7 on the [0, 10] scale, written out from the timm "increasing" rules
        ("Rotate", False, 21.0),
        ("Rotate", True, -21.0),
        ("ShearX", False, 0.21),
        ("ShearY", True, -0.21),
        ("TranslateXRel", False, 0.315),
        ("TranslateYRel", True, -0.315),
        ("PosterizeIncreasing", False, 2),  # 4 - int(2.8)
        ("SolarizeIncreasing", False, 77),  # 256 - int(179.2)
        ("SolarizeAdd", False, 77),  # int(77.0)
        ("ColorIncreasing", False, 1.63),
        ("ContrastIncreasing", True, 0.37),
        ("BrightnessIncreasing", False, 1.63),
        ("SharpnessIncreasing", True, 0.37),
        ("Posterize", False, 2),  # int(2.8)
        ("Solarize", False, 179),  # int(179.2)
        ("Color", False, 1.36),  # 0.7 * 1.8 + 0.1
    ],
)
def test_magnitude_mappings_by_hand(name: str, negate: bool, expected: float) -> None:
    (value,) = augment_op_args(name, 7.0, negate)
    assert value == pytest.approx(expected, abs=1e-9)


def test_magnitude_mapping_extremes() -> None:
    assert augment_op_args("PosterizeIncreasing", 10.0) == (0,)
    assert augment_op_args("PosterizeIncreasing", 0.0) == (4,)
    assert augment_op_args("SolarizeIncreasing", 10.0) == (0,)
    assert augment_op_args("SolarizeIncreasing", 0.0) == (256,)
    assert augment_op_args("SolarizeAdd", 10.0) == (110,)
    assert augment_op_args("ColorIncreasing", 10.0, True)[0] == pytest.approx(0.1)
    for name in ("AutoContrast", "Equalize", "Invert"):
        assert augment_op_args(name, 7.0, True) == ()
    with pytest.raises(ValueError, match="unknown RandAugment operation"):
        augment_op_args("Blur", 5.0)


def test_operations_by_hand_on_small_images() -> None:
    img = Image.fromarray(textured_image(1))
    array = np.asarray(img).astype(np.int32)
    # Invert, solarize-add and posterize are simple per-pixel rules.
    np.testing.assert_array_equal(np.asarray(apply_augment_op(img, "Invert", ())), 255 - array)
    add = np.asarray(apply_augment_op(img, "SolarizeAdd", (77,))).astype(np.int32)
    np.testing.assert_array_equal(add, np.where(array < 128, np.minimum(array + 77, 255), array))
    post = np.asarray(apply_augment_op(img, "PosterizeIncreasing", (2,))).astype(np.int32)
    np.testing.assert_array_equal(post, array & 0b11000000)
    sol = np.asarray(apply_augment_op(img, "SolarizeIncreasing", (77,))).astype(np.int32)
    np.testing.assert_array_equal(sol, np.where(array >= 77, 255 - array, array))
    # An integer translation with nearest resampling shifts content and fills with the fill colour.
    shifted = np.asarray(apply_augment_op(img, "TranslateXRel", (0.25,), fill=(1, 2, 3), resample="nearest"))
    pixels = int(0.25 * array.shape[1])
    np.testing.assert_array_equal(shifted[:, : array.shape[1] - pixels], array[:, pixels:])
    assert (shifted[:, array.shape[1] - pixels :] == np.array([1, 2, 3], np.uint8)).all()
    # Enhancers with factor 1 and rotation by 0 change nothing.
    for name in ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"):
        np.testing.assert_array_equal(np.asarray(apply_augment_op(img, name, (1.0,))), array)
    np.testing.assert_array_equal(np.asarray(apply_augment_op(img, "Rotate", (0.0,))), array)


def _timm_reference(
    name: str, magnitude: float, negate: bool, img: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> Image.Image:
    """Apply the operation with timm's functions and level mappings (sign forced by patching the negation)."""
    import timm.data.auto_augment as timm_aa

    monkeypatch.setattr(timm_aa, "_randomly_negate", lambda v: -v if negate else v)
    hparams = {"translate_pct": 0.45, "img_mean": (128, 128, 128)}
    level_fn = timm_aa.LEVEL_TO_ARG[name]
    args = level_fn(magnitude, hparams) if level_fn is not None else ()
    return timm_aa.NAME_TO_OP[name](img, *args, fillcolor=(128, 128, 128), resample=Image.Resampling.BICUBIC)


@pytest.mark.parametrize("name", sorted(set(RAND_INCREASING_OPS) | set(RAND_OPS)))
def test_operations_match_timm(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    img = Image.fromarray(textured_image(2))
    for magnitude, negate in ((7.3, False), (5.9, True), (10.0, True)):
        ours = apply_augment_op(img, name, augment_op_args(name, magnitude, negate), (128, 128, 128), "bicubic")
        if name == "PosterizeIncreasing" and magnitude == 10.0:
            # 0 bits kept: black (Pillow >= 10 refuses bits=0, so timm's function cannot serve as reference)
            np.testing.assert_array_equal(np.asarray(ours), np.zeros_like(np.asarray(img)))
            continue
        expected = _timm_reference(name, magnitude, negate, img, monkeypatch)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(expected), err_msg=f"{name} m={magnitude}")


def test_rand_augment_draw_statistics() -> None:
    aug = VideoRandAugment(prob=1.0)
    counts = dict.fromkeys(RAND_INCREASING_OPS, 0)
    magnitudes, repeats = [], 0
    for seed in range(1500):
        draws = aug.draw(rng(seed))
        assert len(draws) == 4  # prob 1: every drawn op fires
        names = [d.name for d in draws]
        repeats += len(set(names)) < 4
        for d in draws:
            counts[d.name] += 1
            magnitudes.append(d.magnitude)
    total = sum(counts.values())
    assert all(abs(c / total - 1 / 15) < 0.02 for c in counts.values()), counts  # uniform
    # with replacement: P(some repeat among 4 of 15) = 1 - 15*14*13*12/15^4 = 0.353
    assert 0.30 < repeats / 1500 < 0.41
    assert np.mean(magnitudes) == pytest.approx(7.0, abs=0.03)
    assert np.std(magnitudes) == pytest.approx(0.5, abs=0.03)
    assert min(magnitudes) >= 0 and max(magnitudes) <= 10


def test_rand_augment_official_probability_and_clipping() -> None:
    fired = [len(VideoRandAugment().draw(rng(seed))) for seed in range(2000)]
    assert np.mean(fired) == pytest.approx(4 * 0.5, abs=0.06)  # each op fires with probability 0.5
    clipped = VideoRandAugment(magnitude=10.0, magnitude_std=5.0, prob=1.0)
    mags = [d.magnitude for seed in range(200) for d in clipped.draw(rng(seed))]
    assert max(mags) == 10.0 and min(mags) >= 0.0 and sum(m == 10.0 for m in mags) > 100


def test_rand_augment_from_string() -> None:
    aug = VideoRandAugment.from_string("rand-m7-n4-mstd0.5-inc1")
    assert (aug.magnitude, aug.num_ops, aug.magnitude_std, aug.increasing) == (7.0, 4, 0.5, True)
    assert aug.ops == RAND_INCREASING_OPS and aug.fill == (128, 128, 128) and aug.interpolation == "bicubic"
    assert VideoRandAugment.from_string("rand-m9-n2").ops == RAND_OPS
    with pytest.raises(ValueError, match="unknown field"):
        VideoRandAugment.from_string("rand-m7-q3")
    with pytest.raises(ValueError, match="must start with 'rand'"):
        VideoRandAugment.from_string("auto-m7")


def test_rand_augment_same_for_every_frame_and_deterministic() -> None:
    clip = identical_clip(5)
    aug = VideoRandAugment(prob=1.0)
    changed = 0
    for seed in range(12):
        out = aug(clip, rng(seed))
        assert out.dtype == np.uint8 and out.shape == clip.shape
        assert frames_all_equal(out, axis=0)
        np.testing.assert_array_equal(out, aug(clip, rng(seed)))
        changed += not np.array_equal(out, clip)
    assert changed >= 10


def test_rand_augment_apply_equals_per_frame_ops() -> None:
    # Different frames: each output frame is exactly the drawn ops applied to that frame alone.
    clip = np.stack([textured_image(seed) for seed in range(3)])
    aug = VideoRandAugment(prob=1.0)
    draws = aug.draw(rng(3))
    out = aug.apply(clip, draws)
    for frame, result in zip(clip, out):
        img = Image.fromarray(frame)
        for op in draws:
            img = apply_augment_op(img, op.name, op.args, (128, 128, 128), "bicubic")
        np.testing.assert_array_equal(result, np.asarray(img))


# ------------------------------------------------------------------------------------------------
# RandomResizedCrop, flip, erasing
# ------------------------------------------------------------------------------------------------


def test_random_resized_crop_statistics() -> None:
    gen = rng(0)
    areas, ratios = [], []
    for _ in range(3000):
        top, left, h, w = random_resized_crop_params(160, 160, gen)
        assert 0 <= top <= 160 - h and 0 <= left <= 160 - w and h > 0 and w > 0
        areas.append(h * w / 160**2)
        ratios.append(w / h)
    # rounding of w and h moves the area and ratio slightly outside the nominal ranges
    assert min(areas) >= 0.075 and max(areas) <= 1.0
    assert min(ratios) >= 0.74 and max(ratios) <= 1.35
    areas_np = np.array(areas)
    assert np.mean(areas_np > 0.8) > 0.05
    # areas below 0.5 always fit (w, h <= 160 for any ratio), so they stay uniform: [0.08, 0.2) vs [0.2, 0.32)
    low, mid = np.sum(areas_np < 0.2), np.sum((areas_np >= 0.2) & (areas_np < 0.32))
    assert 0.85 < low / mid < 1.15
    assert np.mean(np.log(ratios)) == pytest.approx(0.0, abs=0.03)


def test_random_resized_crop_fallback_by_hand() -> None:
    # An impossible area range forces the centre-crop fallback: W/H = 2 > 4/3, so h = H, w = round(H * 4/3).
    assert random_resized_crop_params(100, 200, rng(0), scale=(1.5, 2.0)) == (0, 33, 100, 133)
    assert random_resized_crop_params(200, 100, rng(0), scale=(1.5, 2.0)) == (33, 0, 133, 100)
    assert random_resized_crop_params(90, 100, rng(0), scale=(1.5, 2.0)) == (0, 0, 90, 100)
    video = torch.arange(3 * 2 * 100 * 200, dtype=torch.float32).reshape(3, 2, 100, 200)
    out = random_resized_crop_clip(video, 50, rng(0), scale=(1.5, 2.0))
    expected = F.interpolate(video[:, :, 0:100, 33:166], size=(50, 50), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_random_resized_crop_clip_shares_box() -> None:
    base = torch.from_numpy(textured_image(0)).permute(2, 0, 1).float()
    video = base[:, None].repeat(1, 6, 1, 1)  # (3, 6, 48, 64), identical frames
    for seed in range(10):
        out = random_resized_crop_clip(video, 32, rng(seed))
        assert out.shape == (3, 6, 32, 32) and out.dtype == torch.float32
        assert frames_all_equal(out, axis=1)
        torch.testing.assert_close(out, random_resized_crop_clip(video, 32, rng(seed)), rtol=0, atol=0)


def test_horizontal_flip() -> None:
    video = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    torch.testing.assert_close(horizontal_flip_clip(video, rng(0), p=1.0), video[..., [4, 3, 2, 1, 0]])
    assert horizontal_flip_clip(video, rng(0), p=0.0) is video
    flips = sum(not torch.equal(horizontal_flip_clip(video, rng(s)), video) for s in range(1000))
    assert 430 < flips < 570


def test_random_erasing_box_shared_noise_per_frame() -> None:
    video = torch.full((3, 8, 40, 50), 7.0)
    seen_areas = []
    for seed in range(30):
        out = random_erasing_clip(video, rng(seed), prob=1.0)
        changed = out != 7.0  # (3, 8, 40, 50); N(0, 1) noise never equals 7 in practice
        assert changed.any()
        # same rectangle in every frame and channel
        assert frames_all_equal(changed, axis=1) and frames_all_equal(changed, axis=0)
        rows = torch.nonzero(changed[0, 0].any(dim=1)).flatten()
        cols = torch.nonzero(changed[0, 0].any(dim=0)).flatten()
        h, w = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
        assert int(changed[0, 0].sum()) == h * w  # a full rectangle
        seen_areas.append(h * w / (40 * 50))
        assert h < 40 and w < 50
        assert 0.3 * 0.9 <= h / w <= 3.34 * 1.1 or min(h, w) <= 3  # rounding on tiny boxes
        # noise differs between frames
        patch = out[:, :, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        assert not torch.equal(patch[:, 0], patch[:, 1])
        torch.testing.assert_close(out, random_erasing_clip(video, rng(seed), prob=1.0), rtol=0, atol=0)
    assert min(seen_areas) >= 0.015 and max(seen_areas) <= 0.36
    # per-pixel noise is standard normal
    big = random_erasing_clip(torch.full((3, 8, 100, 100), 99.0), rng(1), prob=1.0)
    values = big[big != 99.0]
    assert values.numel() > 1000 and float(values.mean()) == pytest.approx(0.0, abs=0.05)
    assert float(values.std()) == pytest.approx(1.0, abs=0.05)


def test_random_erasing_probability_and_input_untouched() -> None:
    video = torch.zeros(3, 2, 30, 30)
    erased = sum(not torch.equal(random_erasing_clip(video, rng(s)), video) for s in range(1200))
    assert 0.21 < erased / 1200 < 0.29  # official reprob 0.25
    assert torch.count_nonzero(video) == 0
    with pytest.raises(ValueError, match="mode"):
        random_erasing_clip(video, rng(0), mode="cube")


def test_random_erasing_inplace_is_the_same_erasure_in_the_input() -> None:
    seed = next(s for s in range(100) if not torch.equal(random_erasing_clip(torch.zeros(3, 2, 30, 30), rng(s)),
                                                         torch.zeros(3, 2, 30, 30)))
    video = torch.zeros(3, 2, 30, 30)
    copy = random_erasing_clip(video, rng(seed))
    assert torch.count_nonzero(video) == 0
    same = random_erasing_clip(video, rng(seed), inplace=True)
    assert same is video and torch.equal(video, copy)


# ------------------------------------------------------------------------------------------------
# The per-clip training transform
# ------------------------------------------------------------------------------------------------


def test_finetune_train_transform_shapes_determinism_and_frames() -> None:
    transform = FinetuneTrainTransform()
    clip = np.random.default_rng(0).integers(0, 256, size=(16, 60, 45, 3), dtype=np.uint8)
    out = transform(clip, rng(5))
    assert out.shape == (3, 16, 160, 160) and out.dtype == torch.float32
    torch.testing.assert_close(out, transform(clip, rng(5)), rtol=0, atol=0)
    assert not torch.equal(out, transform(clip, rng(6)))
    # Identical frames stay identical through resize, RandAugment, crop and flip (erasing off).
    no_erase = FinetuneTrainTransform(reprob=0.0)
    same = identical_clip(4, 60, 45)
    for seed in range(8):
        result = no_erase(same, rng(seed))
        assert frames_all_equal(result, axis=1)


def test_finetune_train_transform_without_random_parts_is_resize_and_normalise() -> None:
    # scale (1, 1) and ratio (1, 1) make the crop the whole (square) frame; without RandAugment, flip and
    # erasing the result is the PIL bilinear square resize normalised with the ImageNet statistics.
    transform = FinetuneTrainTransform(
        input_size=32, short_side_size=32, rand_augment=None, reprob=0.0, flip=False, scale=(1.0, 1.0), ratio=(1.0, 1.0)
    )
    clip = np.stack([textured_image(s, 40, 30) for s in range(3)])
    out = transform(clip, rng(0))
    resized = np.stack([np.asarray(Image.fromarray(f).resize((32, 32), Image.Resampling.BILINEAR)) for f in clip])
    expected = torch.from_numpy(resized).permute(3, 0, 1, 2).float() / 255
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None, None]
    expected = (expected - mean) / std
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_finetune_train_transform_rejects_bad_frames() -> None:
    with pytest.raises(ValueError, match="uint8"):
        FinetuneTrainTransform()(np.zeros((4, 8, 8, 3), np.float32), rng(0))
    with pytest.raises(TypeError, match="Generator"):
        FinetuneTrainTransform()(np.zeros((4, 8, 8, 3), np.uint8), 0)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# Mixup / CutMix
# ------------------------------------------------------------------------------------------------


def test_smoothed_one_hot_by_hand() -> None:
    out = smoothed_one_hot(torch.tensor([2, 0]), 4, 0.1)
    expected = torch.tensor([[0.025, 0.025, 0.925, 0.025], [0.925, 0.025, 0.025, 0.025]])
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="class indices"):
        smoothed_one_hot(torch.tensor([4]), 4)


def test_mixup_linear_mix() -> None:
    video = torch.randn(4, 3, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1, 2, 3])
    mixup = Mixup(num_classes=5, mixup_alpha=0.8, cutmix_alpha=0.0)
    out = mixup(video, target, rng=rng(1))
    lam = out.lam
    assert 0.0 < lam < 1.0 and out.cutmix_box is None
    torch.testing.assert_close(out.video, lam * video + (1 - lam) * video.flip(0))
    soft = smoothed_one_hot(target, 5, 0.1)
    torch.testing.assert_close(out.target, lam * soft + (1 - lam) * soft.flip(0))
    torch.testing.assert_close(out.target.sum(dim=1), torch.ones(4))
    assert torch.equal(video, torch.randn(4, 3, 2, 8, 8, generator=torch.Generator().manual_seed(0)))  # input intact


def test_mixup_lambda_distribution() -> None:
    # Beta(0.8, 0.8) has mean 0.5 and variance 1 / (4 * 2.6) = 0.0962.
    mixup = Mixup(num_classes=3, mixup_alpha=0.8, cutmix_alpha=0.0)
    lams = np.array([mixup.draw(rng(s))[0] for s in range(4000)])
    assert lams.mean() == pytest.approx(0.5, abs=0.02)
    assert lams.var() == pytest.approx(1 / (4 * 2.6), abs=0.01)
    both = Mixup(num_classes=3)
    assert 0.45 < np.mean([both.draw(rng(s))[1] for s in range(2000)]) < 0.55  # switch_prob 0.5


def test_cutmix_box_paste_and_lambda() -> None:
    video = torch.stack([torch.full((3, 4, 20, 30), float(i)) for i in range(6)])
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    mixup = Mixup(num_classes=3, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)
    for seed in range(30):
        out = mixup(video, target, rng=rng(seed))
        box = out.cutmix_box
        assert box is not None
        inside = torch.zeros(20, 30, dtype=torch.bool)
        inside[box.top : box.bottom, box.left : box.right] = True
        for i in range(6):
            expected = torch.where(inside, float(5 - i), float(i)).expand(3, 4, 20, 30)
            torch.testing.assert_close(out.video[i], expected)
        assert out.lam == pytest.approx(1 - int(inside.sum()) / (20 * 30))
        torch.testing.assert_close(out.target.sum(dim=1), torch.ones(6))
        onehot = F.one_hot(target, 3).float()
        torch.testing.assert_close(out.target, out.lam * onehot + (1 - out.lam) * onehot.flip(0))


def test_cutmix_box_rule_by_hand() -> None:
    # lam = 0.75 -> sqrt(0.25) = 0.5: nominal box 10 x 15 around the drawn centre, clipped.
    gen_a, gen_b = rng(4), rng(4)
    box = cutmix_box(20, 30, 0.75, gen_a)
    cy, cx = int(gen_b.integers(0, 20)), int(gen_b.integers(0, 30))
    assert box == (max(cy - 5, 0), min(cy + 5, 20), max(cx - 7, 0), min(cx + 7, 30))


def test_mixup_errors_and_audio() -> None:
    mixup = Mixup(num_classes=4, mixup_alpha=0.8, cutmix_alpha=0.0)
    with pytest.raises(ValueError, match="even batch size"):
        mixup(torch.zeros(3, 3, 2, 4, 4), torch.tensor([0, 1, 2]), rng=rng(0))
    video = torch.randn(2, 3, 2, 4, 4)
    audio = torch.randn(2, 1, 16, 8)
    out = mixup(video, torch.tensor([0, 1]), audio, rng=rng(0))
    assert out.audio is audio  # official: audio untouched
    mixed = Mixup(num_classes=4, mixup_alpha=0.8, cutmix_alpha=0.0, mix_audio=True)(
        video, torch.tensor([0, 1]), audio, rng=rng(0)
    )
    torch.testing.assert_close(mixed.audio, mixed.lam * audio + (1 - mixed.lam) * audio.flip(0))
    with pytest.raises(ValueError, match="batch"):
        Mixup(num_classes=4, mode="pair")
    off = Mixup(num_classes=4, prob=0.0)(video, torch.tensor([0, 3]), rng=rng(0))
    assert off.lam == 1.0 and torch.equal(off.video, video)
    torch.testing.assert_close(off.target, smoothed_one_hot(torch.tensor([0, 3]), 4, 0.1))


def test_official_cutmix_slicing_pastes_time_and_height() -> None:
    video = torch.stack([torch.full((3, 16, 20, 20), float(i)) for i in range(2)])
    mixup = Mixup(num_classes=2, mixup_alpha=0.0, cutmix_alpha=1.0, official_cutmix_slicing=True)
    for seed in range(15):
        out = mixup(video, torch.tensor([0, 1]), rng=rng(seed))
        box = out.cutmix_box
        assert box is not None
        expected = video.clone()
        # x[:, :, top:bottom, left:right] on (B, C, T, H, W): the box rows index time, its columns index height
        expected[0, :, box.top : box.bottom, box.left : box.right, :] = 1.0
        expected[1, :, box.top : box.bottom, box.left : box.right, :] = 0.0
        torch.testing.assert_close(out.video[0], expected[0])
        torch.testing.assert_close(out.video[1], expected[1])


def test_enhance_reference_formula() -> None:
    # ColorIncreasing with factor f blends the grey image and the original: PIL's own rule.
    img = Image.fromarray(textured_image(3))
    ours = np.asarray(apply_augment_op(img, "ColorIncreasing", (1.63,)))
    np.testing.assert_array_equal(ours, np.asarray(ImageEnhance.Color(img).enhance(1.63)))
    np.testing.assert_array_equal(np.asarray(apply_augment_op(img, "Equalize", ())), np.asarray(ImageOps.equalize(img)))
    assert math.isclose(augment_op_args("TranslateXRel", 10.0, translate_pct=0.3)[0], 0.3)
