"""Tests of maedfer.targets and the video reconstruction objective / pre-training task.

Expected values come from a loop-based reference written here from the definition (float64
Python arithmetic), and from the official MAE-DFER fixtures.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from maedfer.targets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    gather_masked,
    patchify_video,
    unpatchify_video,
    video_reconstruction_targets,
)
from maedfer.tasks import MaskedVideoPretrainTask, Task, VideoReconstructionObjective

OFFICIAL = Path(__file__).resolve().parents[1] / "fixtures" / "official"


def make_video(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return torch.randn(*shape, generator=gen)


# ----------------------------------------------------------------------------------------------
# Loop-based reference
# ----------------------------------------------------------------------------------------------


def reference_targets(
    video: torch.Tensor,
    p: int,
    tubelet: int,
    normalize: bool,
    group: int | None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Targets built element by element from the written definition."""
    batch, channels, frames, height, width = video.shape
    grid_t, grid_h, grid_w = frames // tubelet, height // p, width // p
    pixels = tubelet * p * p
    v = video.double().tolist()

    # 1. un-normalise, then 2. per-token, per-channel normalisation; stored at pixel positions.
    value: dict[tuple[int, int, int, int, int], float] = {}
    for b in range(batch):
        for tt in range(grid_t):
            for hh in range(grid_h):
                for ww in range(grid_w):
                    positions = [
                        (tt * tubelet + tau, hh * p + i, ww * p + j)
                        for tau in range(tubelet)
                        for i in range(p)
                        for j in range(p)
                    ]
                    for c in range(channels):
                        raw = [v[b][c][t][h][w] * IMAGENET_STD[c] + IMAGENET_MEAN[c] for (t, h, w) in positions]
                        if normalize:
                            mu = sum(raw) / pixels
                            var = sum((x - mu) ** 2 for x in raw) / (pixels - 1)
                            out = [(x - mu) / (math.sqrt(var) + eps) for x in raw]
                        else:
                            out = raw
                        for (t, h, w), x in zip(positions, out):
                            value[(b, c, t, h, w)] = x

    # 3. frame difference to the first frame of each group.
    if group is not None:
        diffed = {}
        for (b, c, t, h, w), x in value.items():
            first = t - t % group
            diffed[(b, c, t, h, w)] = x if t == first else x - value[(b, c, first, h, w)]
        value = diffed

    # 4. tokens in raster order, element index pixel * C + c with pixel = (tau * p + i) * p + j.
    expected = torch.zeros(batch, grid_t * grid_h * grid_w, pixels * channels, dtype=torch.float64)
    for b in range(batch):
        for tt in range(grid_t):
            for hh in range(grid_h):
                for ww in range(grid_w):
                    n = (tt * grid_h + hh) * grid_w + ww
                    for tau in range(tubelet):
                        for i in range(p):
                            for j in range(p):
                                pix = (tau * p + i) * p + j
                                for c in range(channels):
                                    t, h, w = tt * tubelet + tau, hh * p + i, ww * p + j
                                    expected[b, n, pix * channels + c] = value[(b, c, t, h, w)]
    return expected


# ----------------------------------------------------------------------------------------------
# patchify / unpatchify
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "p", "tubelet"), [((1, 3, 4, 4, 4), 2, 2), ((2, 2, 6, 4, 6), 2, 3)])
def test_patchify_layout(shape: tuple[int, ...], p: int, tubelet: int) -> None:
    video = make_video(shape)
    batch, channels, frames, height, width = shape
    patches = patchify_video(video, p, tubelet)
    grid_t, grid_h, grid_w = frames // tubelet, height // p, width // p
    assert patches.shape == (batch, grid_t * grid_h * grid_w, tubelet * p * p, channels)
    for b in range(batch):
        for t in range(frames):
            for h in range(height):
                for w in range(width):
                    n = ((t // tubelet) * grid_h + h // p) * grid_w + w // p
                    pix = ((t % tubelet) * p + h % p) * p + w % p
                    for c in range(channels):
                        assert patches[b, n, pix, c] == video[b, c, t, h, w]


def test_unpatchify_round_trip() -> None:
    video = make_video((2, 3, 4, 6, 8))
    patches = patchify_video(video, 2, 2)
    grid = (2, 3, 4)
    assert torch.equal(unpatchify_video(patches, grid, 2, 2, 3), video)
    flat = patches.reshape(2, 24, -1)
    assert torch.equal(unpatchify_video(flat, grid, patch_size=2, tubelet_size=2, channels=3), video)
    with pytest.raises(ValueError, match="shape"):
        unpatchify_video(flat, (2, 3, 3), 2, 2, 3)
    with pytest.raises(ValueError, match="shape"):
        unpatchify_video(flat[..., :-1], grid, 2, 2, 3)


def test_patchify_errors() -> None:
    with pytest.raises(ValueError, match="divisible"):
        patchify_video(torch.zeros(1, 3, 3, 4, 4), 2, 2)
    with pytest.raises(ValueError, match="divisible"):
        patchify_video(torch.zeros(1, 3, 4, 5, 4), 2, 2)
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        patchify_video(torch.zeros(3, 4, 4, 4), 2, 2)
    with pytest.raises(ValueError, match="patch_size"):
        patchify_video(torch.zeros(1, 3, 4, 4, 4), 0, 2)


# ----------------------------------------------------------------------------------------------
# Targets against the reference
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "normalize", "group"),
    [
        ((1, 3, 4, 4, 4), True, None),
        ((1, 3, 4, 4, 4), False, None),
        ((1, 3, 4, 4, 4), True, 2),
        ((1, 3, 4, 4, 4), True, 4),
        ((2, 3, 4, 4, 6), True, 2),
        ((1, 3, 8, 2, 4), False, 4),
    ],
)
def test_targets_match_reference(shape: tuple[int, ...], normalize: bool, group: int | None) -> None:
    video = make_video(shape, seed=sum(shape))
    got = video_reconstruction_targets(
        video, patch_size=2, tubelet_size=2, normalize=normalize, frame_diff_group_size=group
    )
    expected = reference_targets(video, 2, 2, normalize, group)
    assert got.dtype == torch.float32
    assert got.shape == expected.shape
    torch.testing.assert_close(got.double(), expected, atol=2e-5, rtol=1e-5)


def test_frame_diff_g2_halves() -> None:
    """With g = tubelet = 2 every token is [frame 2k ; frame 2k+1 - frame 2k]."""
    video = make_video((2, 3, 4, 4, 4), seed=1)
    plain = video_reconstruction_targets(video, patch_size=2)
    diff = video_reconstruction_targets(video, patch_size=2, frame_diff_group_size=2)
    half = plain.shape[-1] // 2
    torch.testing.assert_close(diff[..., :half], plain[..., :half], rtol=0, atol=0)
    torch.testing.assert_close(diff[..., half:], plain[..., half:] - plain[..., :half], rtol=0, atol=1e-6)


def test_frame_diff_g4_crosses_tubelets() -> None:
    """g = 4: tokens of tubelet 1 hold frames 2 and 3 minus frame 0 (from tubelet 0's first half)."""
    video = make_video((1, 3, 4, 2, 2), seed=2)  # one token per tubelet: grid (2, 1, 1)
    plain = video_reconstruction_targets(video, patch_size=2)
    diff = video_reconstruction_targets(video, patch_size=2, frame_diff_group_size=4)
    half = plain.shape[-1] // 2
    f0, f1 = plain[0, 0, :half], plain[0, 0, half:]
    f2, f3 = plain[0, 1, :half], plain[0, 1, half:]
    torch.testing.assert_close(diff[0, 0], torch.cat([f0, f1 - f0]), rtol=0, atol=1e-6)
    torch.testing.assert_close(diff[0, 1], torch.cat([f2 - f0, f3 - f0]), rtol=0, atol=1e-6)


def test_unnormalised_targets_are_pixels() -> None:
    video = make_video((1, 3, 2, 2, 2), seed=3)
    got = video_reconstruction_targets(video, patch_size=2, normalize=False)
    pixel = video[0, :, 1, 0, 1] * torch.tensor(IMAGENET_STD) + torch.tensor(IMAGENET_MEAN)
    pix = (1 * 2 + 0) * 2 + 1
    torch.testing.assert_close(got[0, 0, pix * 3 : pix * 3 + 3], pixel)


def test_targets_bf16_and_no_grad() -> None:
    video = make_video((1, 3, 4, 4, 4), seed=4)
    low = video.bfloat16()
    got = video_reconstruction_targets(low, patch_size=2, frame_diff_group_size=2)
    assert got.dtype == torch.float32
    expected = reference_targets(low.float(), 2, 2, True, 2)
    torch.testing.assert_close(got.double(), expected, atol=2e-5, rtol=1e-5)

    leaf = video.clone().requires_grad_(True)
    assert not video_reconstruction_targets(leaf, patch_size=2).requires_grad


def test_targets_errors() -> None:
    video = torch.zeros(1, 3, 6, 4, 4)
    with pytest.raises(ValueError, match="divisible by frame_diff_group_size"):
        video_reconstruction_targets(video, patch_size=2, frame_diff_group_size=4)
    with pytest.raises(ValueError, match="frame_diff_group_size"):
        video_reconstruction_targets(video, patch_size=2, frame_diff_group_size=1)
    with pytest.raises(ValueError, match="channels"):
        video_reconstruction_targets(torch.zeros(1, 2, 4, 4, 4), patch_size=2)


# ----------------------------------------------------------------------------------------------
# gather_masked
# ----------------------------------------------------------------------------------------------


def test_gather_masked_order_and_errors() -> None:
    tokens = torch.arange(2 * 5 * 2, dtype=torch.float32).reshape(2, 5, 2)
    mask = torch.tensor([[False, True, False, True, False], [True, False, False, False, True]])
    out = gather_masked(tokens, mask)
    expected = torch.stack([torch.stack([tokens[0, 1], tokens[0, 3]]), torch.stack([tokens[1, 0], tokens[1, 4]])])
    assert torch.equal(out, expected)
    with pytest.raises(ValueError, match="same number of masked"):
        gather_masked(tokens, torch.tensor([[True] * 5, [True, False, False, False, False]]))
    with pytest.raises(ValueError, match="bool"):
        gather_masked(tokens, mask.long())
    with pytest.raises(ValueError, match="shape"):
        gather_masked(tokens, mask[:, :4])


# ----------------------------------------------------------------------------------------------
# Objective and task
# ----------------------------------------------------------------------------------------------


def small_batch() -> dict[str, torch.Tensor]:
    video = make_video((2, 3, 4, 4, 4), seed=5)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, [0, 3, 5]] = True
    mask[1, [1, 2, 7]] = True
    return {"video": video, "mask": mask}


def test_objective_targets_are_masked_rows() -> None:
    batch = small_batch()
    obj = VideoReconstructionObjective(patch_size=2, frame_diff_group_size=2)
    got = obj.targets(batch["video"], batch["mask"])
    full = reference_targets(batch["video"], 2, 2, True, 2)
    expected = torch.stack([full[0, [0, 3, 5]], full[1, [1, 2, 7]]])
    assert got.shape == (2, 3, 24) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, atol=2e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="mask"):
        obj.targets(batch["video"], batch["mask"][:, :6])


def test_plain_loss() -> None:
    obj = VideoReconstructionObjective(patch_size=2)
    targets = torch.zeros(2, 3, 24)
    pred = torch.zeros(2, 3, 24)
    pred[0, 0, 0] = 3.0  # one squared error of 9 among 144 elements
    out = obj.loss(pred, targets)
    assert set(out) == {"loss"}
    torch.testing.assert_close(out["loss"], torch.tensor(9.0 / 144.0))


def test_weighted_loss_decomposition() -> None:
    w = 0.3
    obj = VideoReconstructionObjective(patch_size=2, frame_diff_group_size=2, target_diff_weight=w)
    targets = make_video((2, 3, 24), seed=6)
    pred = targets.clone()
    pred[..., :12] += 0.5  # loss_org = 0.25
    pred[..., 12:] -= 2.0  # loss_diff = 4.0
    out = obj.loss(pred.bfloat16(), targets)
    assert set(out) == {"loss", "loss_org", "loss_diff"}
    assert all(v.dtype == torch.float32 for v in out.values())
    out = obj.loss(pred, targets)
    torch.testing.assert_close(out["loss_org"], torch.tensor(0.25))
    torch.testing.assert_close(out["loss_diff"], torch.tensor(4.0))
    torch.testing.assert_close(out["loss"], torch.tensor((1 - w) * 0.25 + w * 4.0))


def test_objective_errors() -> None:
    with pytest.raises(ValueError, match="frame_diff_group_size"):
        VideoReconstructionObjective(patch_size=2, target_diff_weight=0.3)
    with pytest.raises(ValueError, match="target_diff_weight"):
        VideoReconstructionObjective(patch_size=2, frame_diff_group_size=2, target_diff_weight=1.5)
    with pytest.raises(ValueError, match="patch_size"):
        VideoReconstructionObjective(patch_size=0)
    with pytest.raises(ValueError, match="shape"):
        VideoReconstructionObjective(patch_size=2).loss(torch.zeros(1, 3, 24), torch.zeros(1, 4, 24))


class ConstantPredictor(nn.Module):
    """Predicts one learnable vector for every masked token."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.zeros(dim))
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.calls.append((tuple(video.shape), tuple(mask.shape)))
        num_masked = int(mask[0].sum())
        return self.value.expand(video.shape[0], num_masked, -1)


def test_pretrain_task() -> None:
    batch = small_batch()
    model = ConstantPredictor(24)
    obj = VideoReconstructionObjective(patch_size=2, frame_diff_group_size=2, target_diff_weight=0.5)
    task = MaskedVideoPretrainTask(model, obj)
    assert isinstance(task, Task) and task.model is model
    out = task(batch)
    assert model.calls == [((2, 3, 4, 4, 4), (2, 8))]
    targets = reference_targets(batch["video"], 2, 2, True, 2)[batch["mask"]]  # (6, 24), prediction is 0
    expected_org = float((targets[:, :12] ** 2).mean())
    expected_diff = float((targets[:, 12:] ** 2).mean())
    assert out["loss"].requires_grad and not out["loss_org"].requires_grad and not out["loss_diff"].requires_grad
    assert math.isclose(float(out["loss_org"]), expected_org, rel_tol=1e-5)
    assert math.isclose(float(out["loss_diff"]), expected_diff, rel_tol=1e-5)
    assert math.isclose(float(out["loss"].detach()), 0.5 * expected_org + 0.5 * expected_diff, rel_tol=1e-5)
    out["loss"].backward()
    assert model.value.grad is not None and bool(model.value.grad.abs().sum() > 0)


def test_pretrain_task_errors() -> None:
    batch = small_batch()
    task = MaskedVideoPretrainTask(ConstantPredictor(24), VideoReconstructionObjective(patch_size=2))
    with pytest.raises(ValueError, match="mask"):
        task({"video": batch["video"]})
    bad = batch["mask"].clone()
    bad[0, 6] = True
    with pytest.raises(ValueError, match="visible"):
        task({"video": batch["video"], "mask": bad})
    wrong = MaskedVideoPretrainTask(ConstantPredictor(12), VideoReconstructionObjective(patch_size=2))
    with pytest.raises(ValueError, match="N_masked"):
        wrong(batch)


# ----------------------------------------------------------------------------------------------
# Official MAE-DFER parity
# ----------------------------------------------------------------------------------------------


def objective_from_engine(kwargs: dict) -> VideoReconstructionObjective:
    use_diff = kwargs.get("use_frame_diff_as_target", False)
    return VideoReconstructionObjective(
        patch_size=kwargs["patch_size"],
        tubelet_size=2,
        normalize_target=kwargs["normlize_target"],
        frame_diff_group_size=kwargs["frame_diff_group_size"] if use_diff else None,
        target_diff_weight=kwargs.get("target_diff_weight"),
    )


@pytest.mark.parametrize("name", ["mae_dfer_pretrain_vit", "mae_dfer_pretrain_lgi"])
def test_official_targets(name: str) -> None:
    fx = torch.load(OFFICIAL / f"{name}.pt", weights_only=True)
    video, mask = fx["inputs"]["video"], fx["inputs"]["mask"]
    entry = fx["losses"][0]
    assert entry["label"] == "official_script"
    got = objective_from_engine(entry["engine_kwargs"]).targets(video, mask)
    torch.testing.assert_close(got, entry["targets"], atol=fx["atol"], rtol=fx["rtol"])


@pytest.mark.parametrize("name", ["mae_dfer_pretrain_vit", "mae_dfer_pretrain_lgi"])
def test_official_losses_from_official_predictions(name: str) -> None:
    """The stored official predictions give the stored official losses through our objective."""
    fx = torch.load(OFFICIAL / f"{name}.pt", weights_only=True)
    video, mask = fx["inputs"]["video"], fx["inputs"]["mask"]
    pred = fx["outputs"]["pred"]
    for entry in fx["losses"]:
        obj = objective_from_engine(entry["engine_kwargs"])
        out = obj.loss(pred, obj.targets(video, mask))
        expected_keys = {"loss"} | ({"loss_org", "loss_diff"} if "loss_org" in entry else set())
        assert set(out) == expected_keys, entry["label"]
        for key in expected_keys:
            torch.testing.assert_close(out[key], entry[key], atol=fx["atol"], rtol=fx["rtol"])
