"""SVFAP (TPSBT): the official pre-training behaviours behind switches, token order, width checks."""

from __future__ import annotations

import pytest
import torch

import maedfer
from maedfer.checkpoint import CheckpointShapeError
from maedfer.masking import PartWindowMaskGenerator, TubeMaskGenerator
from maedfer.models import TPSBT


def _tiny_pretrain(**flags) -> torch.nn.Module:
    overrides = maedfer.model_entry("svfap_pretrain_base").tiny_overrides
    return maedfer.create_model("svfap_pretrain_base", **overrides, **flags)


def _video_and_mask(model, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    embed = model.encoder.patch_embed
    video = torch.randn(batch, 3, embed.num_frames, embed.img_size, embed.img_size, generator=generator)
    mask = TubeMaskGenerator(model.encoder.grid_size, 0.75).batch(batch, generator=generator)
    return video, mask


def _masked_pixels(model, mask: torch.Tensor) -> torch.Tensor:
    """Bool pixel mask (B, 1, T, H, W) of the masked tokens."""
    embed = model.encoder.patch_embed
    t, h, w = model.encoder.grid_size
    grid = mask.reshape(-1, 1, t, h, w).float()
    up = torch.nn.functional.interpolate(grid, scale_factor=(embed.tubelet_size, embed.patch_size, embed.patch_size))
    return up.bool()


@pytest.mark.parametrize("context,leaks", [("bottleneck", False), ("official", True)])
def test_official_context_reads_masked_tokens(context: str, leaks: bool) -> None:
    torch.manual_seed(0)
    model = _tiny_pretrain(pretrain_context=context).eval()
    video, mask = _video_and_mask(model)
    changed = torch.where(_masked_pixels(model, mask), torch.randn_like(video), video)
    with torch.no_grad():
        before = model.encoder.forward_encoder(video, mask).tokens
        after = model.encoder.forward_encoder(changed, mask).tokens
    assert (not torch.allclose(before, after, atol=1e-6)) == leaks


@pytest.mark.parametrize("context", ["bottleneck", "official"])
def test_bottleneck_branch_gradients(context: str) -> None:
    torch.manual_seed(0)
    model = _tiny_pretrain(pretrain_context=context).train()
    video, mask = _video_and_mask(model)
    model(video, mask).pow(2).mean().backward()
    spatial = [p.grad for n, p in model.named_parameters() if n.startswith("encoder.spatial_downsamples")]
    assert spatial
    if context == "bottleneck":
        assert all(g is not None and g.abs().sum() > 0 for g in spatial)
    else:  # the official pre-training never trains the spatial attention
        assert all(g is None for g in spatial)


def _stage_output(frames: int, per_frame: int) -> torch.Tensor:
    """(1, frames * per_frame, 2) tokens whose channels hold (frame, slot)."""
    frame = torch.arange(frames).repeat_interleave(per_frame)
    slot = torch.arange(per_frame).repeat(frames)
    return torch.stack((frame, slot), dim=-1)[None].float()


@pytest.mark.parametrize("stage", [1, 2])
def test_upsample_maps(stage: int) -> None:
    """Full-size geometry: 8 frames, 10 visible tokens per frame, k = 2 (the spec's worked example)."""
    encoder = TPSBT(embed_dim=16, num_heads=2, stage_depths=(1, 1, 1), num_bottleneck_tokens=(2,), global_pool="")
    frames_before = 8 // 2 ** (stage - 1)
    stage_out = _stage_output(frames_before // 2, 10)
    encoder.upsample = "repeat"
    fixed = encoder._upsample(stage_out, stage, frames_before).reshape(8, 10, 2)
    encoder.upsample = "official"
    official = encoder._upsample(stage_out, stage, frames_before).reshape(8, 10, 2)
    for f in range(8):
        for s in range(10):
            assert fixed[f, s].tolist() == [f // 2**stage, s]  # frame f reads the stage frame covering it
            rho = f // 2 ** (stage - 1)
            assert official[f, s].tolist() == [rho // 2, (rho % 2) * 5 + s % 5]  # the official scrambled order


def test_tpsbt_rejects_non_tube_masks() -> None:
    model = _tiny_pretrain()
    video, _ = _video_and_mask(model)
    mask = PartWindowMaskGenerator((4, 4, 4), 0.75, (2, 4)).batch(2, generator=torch.Generator().manual_seed(0))
    # A part-window mask is constant over time, so it is accepted; an arbitrary random mask is not.
    model(video, mask)
    random_mask = torch.zeros(2, 64, dtype=torch.bool)
    random_mask[:, torch.randperm(64)[:48]] = True
    with pytest.raises(ValueError, match="tube mask|same number of tokens"):
        model(video, random_mask)


def test_last_stage_positions_and_pooling() -> None:
    model = maedfer.create_model("svfap_base", **maedfer.model_entry("svfap_base").tiny_overrides).eval()
    video = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        out = model.forward_encoder(video)
        features = model.forward_features(video)
    assert out.tokens.shape == (1, 16, 32)  # 4 frames -> 1 frame after two temporal halvings, 16 spatial tokens
    assert torch.equal(out.positions[0], torch.arange(16))
    torch.testing.assert_close(features, model.fc_norm(out.tokens.mean(1)))


def test_official_pretraining_width_is_768_and_loading_it_fails_clearly(tmp_path) -> None:
    with torch.device("meta"):
        registered = maedfer.create_model("pretrain_svfap_base_patch16_160")
    assert registered.encoder.embed_dim == 768 and registered.encoder.blocks[0].attn.num_heads == 12
    # A small pre-training checkpoint 48 wide (3 heads) into a 32-wide classifier.
    tiny = dict(img_size=32, patch_size=8, stage_depths=(1, 1, 1), num_bottleneck_tokens=(2,), decoder_num_classes=384,
                decoder_embed_dim=16, decoder_num_heads=2, decoder_depth=1)
    pretrain = maedfer.create_model("pretrain_svfap_base_patch16_160", encoder_embed_dim=48, encoder_num_heads=3, **tiny)
    path = tmp_path / "checkpoint-99.pth"
    torch.save({"model": pretrain.state_dict(), "epoch": 99}, path)
    finetune_args = dict(img_size=32, patch_size=8, stage_depths=(1, 1, 1), num_bottleneck_tokens=(2,), num_classes=7)
    with pytest.raises(CheckpointShapeError, match="checkpoint's encoder is 48 wide but the model's is 512"):
        maedfer.create_model("svfap_base_patch16_160", checkpoint=str(path), **finetune_args)
    model = maedfer.create_model(
        "svfap_base_patch16_160", checkpoint=str(path), width_from_checkpoint=True, num_heads=3, **finetune_args
    )
    assert model.embed_dim == 48
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, pretrain.encoder.blocks[0].attn.qkv.weight)
    torch.testing.assert_close(
        model.spatial_downsamples[0].mlp.fc1.weight, pretrain.encoder.spatial_downsamples[0].mlp.fc1.weight
    )
