"""Registered models: tiny forward/backward, full-size architecture vs the official manifests, LGI token grouping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import maedfer
from maedfer.layers import use_fused_attention
from maedfer.masking import PartWindowMaskGenerator, TubeMaskGenerator
from maedfer.masking import RandomMaskGenerator
from maedfer.models import LGIFormer, MaskedVideoAutoencoder, TokenEncoder
from maedfer.models.audio_visual import AudioVisualClassifier, AudioVisualMaskedAutoencoder

MANIFESTS = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "manifests"
ALL_MODELS = maedfer.list_models(include_official=True)


def _tiny(name: str) -> torch.nn.Module:
    entry = maedfer.model_entry(name)
    return maedfer.create_model(name, **entry.tiny_overrides)


def _pretrain_mask(model: MaskedVideoAutoencoder | AudioVisualMaskedAutoencoder, batch: int) -> torch.Tensor:
    encoder = model.encoder
    if isinstance(encoder, LGIFormer):
        generator = PartWindowMaskGenerator(encoder.grid_size, 0.75, encoder.region_size[1:])
    else:
        generator = TubeMaskGenerator(encoder.grid_size, 0.75)
    return generator.batch(batch, generator=torch.Generator().manual_seed(0))


def _clip(encoder: TokenEncoder, batch: int = 2) -> torch.Tensor:
    embed = encoder.patch_embed
    return torch.randn(batch, 3, embed.num_frames, embed.img_size, embed.img_size)


def test_registry_lists_clean_and_official_names() -> None:
    clean = maedfer.list_models()
    assert {"mae_dfer_base", "mae_dfer_pretrain_base", "videomae_base_160", "videomae_pretrain_base_160"} <= set(clean)
    official = set(ALL_MODELS) - set(clean)
    assert official == {
        "vit_base_patch16_160",
        "vit_base_dim512_no_depth_patch16_160",
        "pretrain_videomae_base_patch16_160",
        "pretrain_videomae_base_dim512_no_depth_patch16_160",
        "svfap_base_patch16_160",
        "pretrain_svfap_base_patch16_160",
        "avit_dim256_patch16_160_a256",
        "avit_dim384_patch16_160_a256",
        "avit_dim512_patch16_160_a256",
        "pretrain_hicmae_dim384_patch16_160_a256",
        "pretrain_hicmae_dim512_patch16_160_a256",
    }
    assert maedfer.list_models("mae_dfer*") == ["mae_dfer_base", "mae_dfer_pretrain_base"]
    assert maedfer.list_models(kind="pretrain", system="videomae") == ["videomae_pretrain_base_160"]
    with pytest.raises(KeyError, match="did you mean"):
        maedfer.create_model("mae_dfer_bsae")


def _spectrogram(encoder: TokenEncoder, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 1, *encoder.patch_embed.input_size)


def _run_tiny(model: torch.nn.Module, kind: str) -> torch.Tensor:
    """Forward a tiny model on random inputs of the right kind; returns one tensor to back-propagate."""
    if isinstance(model, AudioVisualClassifier):
        out = model(_clip(model.encoder), _spectrogram(model.encoder_audio))
        assert out.shape == (2, model.num_classes)
        return out
    if isinstance(model, AudioVisualMaskedAutoencoder):
        mask = _pretrain_mask(model, 2)  # a part-window mask for an LGI-Former video tower
        mask_audio = RandomMaskGenerator(model.encoder_audio.grid_size, 0.75).batch(2)
        out = model(_clip(model.encoder), mask, _spectrogram(model.encoder_audio), mask_audio)
        assert out.pred_video.shape[:2] == (2, int(mask[0].sum()))
        assert out.pred_audio.shape == (2, int(mask_audio[0].sum()), model.encoder_audio.patch_embed.patch_size**2)
        assert len(out.video_embeddings) == len(model.return_intermediate_features)
        return torch.cat([out.pred_video.flatten(), out.pred_audio.flatten(), torch.stack(out.logits_per_video).flatten()])
    if kind == "finetune":
        out = model(_clip(model))
        assert out.shape == (2, model.num_classes)
        return out
    video = _clip(model.encoder)
    mask = _pretrain_mask(model, 2)
    out = model(video, mask)
    patch = model.encoder.patch_embed
    assert out.shape == (2, int(mask[0].sum()), 3 * patch.tubelet_size * patch.patch_size**2)
    return out


@pytest.mark.parametrize("name", ALL_MODELS)
def test_tiny_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = _tiny(name).train()
    entry = maedfer.model_entry(name)
    if entry.system == "hicmae" or entry.kind == "finetune":
        out = _run_tiny(model, entry.kind)
    else:
        video = _clip(model.encoder)
        mask = _pretrain_mask(model, 2)
        out = model(video, mask)
        patch = model.encoder.patch_embed
        assert out.shape == (2, int(mask[0].sum()), 3 * patch.tubelet_size * patch.patch_size**2)
    assert torch.isfinite(out).all()
    out.float().pow(2).mean().backward()
    params = dict(model.named_parameters())
    no_grad = [n for n, p in params.items() if p.grad is None]
    # Only the last LGI block's stage-3 attention can be unused (messenger-pooled classifier); nothing else.
    allowed = ("third_attn", "third_attn_norm0", "third_attn_norm1")
    last = f"blocks.{len(model.blocks) - 1}." if entry.kind == "finetune" and entry.system != "hicmae" else None
    for n in no_grad:
        assert last is not None and n.startswith(last) and n[len(last):].split(".")[0] in allowed, n
    assert all(torch.isfinite(p.grad).all() for p in params.values() if p.grad is not None)


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if maedfer.model_entry(n).kind == "finetune"])
def test_fused_and_manual_attention_agree_on_models(name: str) -> None:
    torch.manual_seed(1)
    model = _tiny(name).eval()
    if isinstance(model, AudioVisualClassifier):
        inputs = (_clip(model.encoder), _spectrogram(model.encoder_audio))
    else:
        inputs = (_clip(model),)
    with torch.no_grad(), use_fused_attention(True):
        fused = model.forward_features(*inputs)
    with torch.no_grad(), use_fused_attention(False):
        manual = model.forward_features(*inputs)
    torch.testing.assert_close(fused, manual, atol=1e-5, rtol=1e-4)


def _manifest_cases() -> list[tuple[str, str]]:
    cases = []
    for path in sorted(MANIFESTS.glob("*.json")):
        if path.name == "flops.json":
            continue
        data = json.loads(path.read_text())
        if "construction_error" not in data:
            cases.append((path.name, data["official_name"]))
    return cases


@pytest.mark.parametrize("manifest,name", _manifest_cases())
def test_full_size_matches_official_manifest(manifest: str, name: str) -> None:
    data = json.loads((MANIFESTS / manifest).read_text())
    with torch.device("meta"):
        model = maedfer.create_model(name, **data["kwargs"])
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(shapes) == list(data["state_dict"])  # same keys in the same order
    assert shapes == data["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == data["num_params"]


def test_clean_names_equal_paper_configurations() -> None:
    manifest = json.loads((MANIFESTS / "vit_base_dim512_no_depth_patch16_160@dfew_script.json").read_text())
    with torch.device("meta"):
        lgi = maedfer.create_model("mae_dfer_base")
        pre = maedfer.create_model("mae_dfer_pretrain_base")
        vit = maedfer.create_model("videomae_base_160")
    assert sum(p.numel() for p in lgi.parameters()) == manifest["num_params"] == 84_878_343
    assert sum(p.numel() for p in pre.parameters()) == 92_760_192  # the official pre-training log
    assert sum(p.numel() for p in vit.parameters()) == 86_232_583  # ViT-B with a 7-class head
    assert lgi.num_regions == 8 and lgi.classify_tokens == "region"


def test_lgi_groups_tokens_by_region() -> None:
    model = maedfer.create_model("mae_dfer_base", embed_dim=16, num_heads=2, depth=1).eval()
    video = _clip(model, batch=1)
    with torch.no_grad():
        out = model.forward_encoder(video)
    assert out.tokens.shape == (1, 800, 16) and out.summary_tokens.shape == (1, 8, 16)
    t, h, w = (out.positions[0] // 100), (out.positions[0] // 10) % 10, out.positions[0] % 10
    region = (t // 2) * 2 + h // 5
    assert torch.equal(region, torch.arange(8).repeat_interleave(100))  # region-major, 100 tokens each
    assert torch.equal(out.positions[0].sort().values, torch.arange(800))


def test_lgi_masked_encoder_and_official_decoder_positions() -> None:
    """Part-window masks keep the regions; the official decoder order misplaces 40 of 80 visible tokens."""
    model = maedfer.create_model(
        "mae_dfer_pretrain_base", embed_dim=16, num_heads=2, depth=1, decoder_embed_dim=8, decoder_num_heads=2
    ).eval()
    mask = PartWindowMaskGenerator((8, 10, 10), 0.9, (5, 10)).batch(2, generator=torch.Generator().manual_seed(3))
    video = _clip(model.encoder)
    with torch.no_grad():
        encoded = model.encoder.forward_encoder(video, mask)
    assert encoded.tokens.shape == (2, 80, 16)
    visible_raster = (~mask).nonzero()[:, 1].reshape(2, 80)
    assert torch.equal(encoded.positions.sort(dim=1).values, visible_raster)
    assert ((encoded.positions != visible_raster).sum(1) == 40).all()
    model.decoder_pos_order = "official"
    with torch.no_grad():
        official = model(video, mask)
    model.decoder_pos_order = "raster"
    with torch.no_grad():
        fixed = model(video, mask)
    assert official.shape == fixed.shape == (2, 720, 1536)
    assert not torch.allclose(official, fixed)


def test_lgi_rejects_masks_that_break_regions() -> None:
    model = maedfer.create_model("mae_dfer_pretrain_base", **maedfer.model_entry("mae_dfer_pretrain_base").tiny_overrides)
    # A tube mask whose visible cells all lie in the upper half: the lower regions would be empty.
    mask = torch.ones(1, 64, dtype=torch.bool)
    grid = mask.reshape(1, 4, 4, 4)
    grid[:, :, 0, :2] = False
    with pytest.raises(ValueError, match="same number of visible tokens in every region"):
        model(_clip(model.encoder, batch=1), grid.reshape(1, 64))


def test_vit_decoder_order_flag_is_a_no_op() -> None:
    model = _tiny("videomae_pretrain_base_160").eval()
    video, mask = _clip(model.encoder), _pretrain_mask(model, 2)
    with torch.no_grad():
        fixed = model(video, mask)
        model.decoder_pos_order = "official"
        official = model(video, mask)
    torch.testing.assert_close(fixed, official)


def test_official_arguments_are_translated_and_validated() -> None:
    model = maedfer.create_model(
        "vit_base_dim512_no_depth_patch16_160",
        img_size=32,
        patch_size=8,
        all_frames=8,
        depth=1,
        attn_type="local_global",
        lg_region_size=[2, 4, 2],
        lg_classify_token_type="all",
        lg_attn_param_sharing_all=True,
        head_activation_func="sigmoid",
        num_classes=3,
    )
    assert isinstance(model, LGIFormer) and model.classify_tokens == "all"
    block = model.blocks[0]
    assert block.second_attn is block.first_attn and block.third_attn is block.first_attn
    assert "blocks.0.third_attn.q.weight" in model.state_dict()  # shared weights keep every alias name
    out = model(torch.randn(1, 3, 8, 32, 32))
    assert ((out > 0) & (out < 1)).all()  # sigmoid head
    with pytest.raises(ValueError, match="keep_temporal_dim"):
        maedfer.create_model("vit_base_patch16_160", keep_temporal_dim=True)
    with pytest.raises(ValueError, match="decoder_num_classes"):
        maedfer.create_model("pretrain_videomae_base_patch16_160", img_size=32, patch_size=8, decoder_num_classes=100)
    with pytest.raises(ValueError, match="layer scale"):
        maedfer.create_model("mae_dfer_base", init_values=0.1)


def test_gradient_checkpointing_gives_same_gradients() -> None:
    torch.manual_seed(0)
    model = _tiny("mae_dfer_base").train()
    video = _clip(model)
    grads = []
    for enable in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(enable)
        torch.manual_seed(1)  # same drop-path draws in both runs
        model(video).sum().backward()
        grads.append(model.patch_embed.proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_layer_ids_for_layer_decay() -> None:
    model = _tiny("mae_dfer_base")
    assert model.layer_id("patch_embed.proj.weight") == 0
    assert model.layer_id("blocks.1.mlp.fc1.weight") == 2
    assert model.layer_id("lg_region_tokens") == model.num_layers + 1 == 3
    assert "lg_region_tokens" in model.no_weight_decay()


def test_head_init_scale_and_reset_classifier() -> None:
    torch.manual_seed(0)
    model = maedfer.create_model("videomae_base_160", **maedfer.model_entry("videomae_base_160").tiny_overrides)
    std = model.head.weight.std().item()
    assert 0.02 * 0.001 * 0.5 < std < 0.02 * 0.001 * 1.5  # trunc-normal(0.02) scaled by init_scale 0.001
    model.reset_classifier(11)
    assert model(torch.randn(1, 3, 8, 32, 32)).shape == (1, 11)


def test_token_pooling_without_mean_pooling() -> None:
    model = maedfer.create_model(
        "vit_base_dim512_no_depth_patch16_160", **_OFFICIAL_TINY_LGI, use_mean_pooling=False, lg_classify_token_type="region"
    ).eval()
    assert model.fc_norm is None and isinstance(model.norm, torch.nn.LayerNorm)
    video = _clip(model, batch=1)
    with torch.no_grad():
        out = model.forward_encoder(video)
        features = model.forward_features(video)
    torch.testing.assert_close(features, out.summary_tokens[:, 0])  # first messenger, after the final norm


_OFFICIAL_TINY_LGI = {
    "img_size": 32, "patch_size": 8, "all_frames": 8, "embed_dim": 32, "depth": 1, "num_heads": 2,
    "attn_type": "local_global", "lg_region_size": (2, 2, 4),
}


def test_pretraining_task_reduces_the_loss_on_one_batch() -> None:
    from maedfer.tasks import MaskedVideoPretrainTask, VideoReconstructionObjective

    torch.manual_seed(0)
    model = _tiny("mae_dfer_pretrain_base")
    task = MaskedVideoPretrainTask(model, VideoReconstructionObjective(patch_size=8, frame_diff_group_size=2))
    # A smooth clip (upsampled noise) so that masked patches are predictable from visible ones.
    coarse = torch.randn(2, 3, 4, 4, 4)
    video = torch.nn.functional.interpolate(coarse, size=(8, 32, 32), mode="trilinear", align_corners=True)
    batch = {"video": video, "mask": _pretrain_mask(model, 2)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = task(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.9 * losses[0]
