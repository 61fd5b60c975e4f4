"""Typed model settings: BlockSettings reaches every block, the official-name translation, argument checking."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import maedfer
from maedfer.config import ConfigError, load_config
from maedfer.layers import Attention, Block, BlockSettings, Mlp
from maedfer.models import LGIBlock
from maedfer.models.official import translate_official

MANIFESTS = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "manifests"
ALL_MODELS = maedfer.list_models(include_official=True)


def _tiny(name: str, **overrides) -> nn.Module:
    return maedfer.create_model(name, **{**maedfer.model_entry(name).tiny_overrides, **overrides})


def test_block_settings_are_frozen_and_name_a_wrong_field() -> None:
    settings = BlockSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.qkv_bias = False  # type: ignore[misc]
    with pytest.raises(TypeError, match="mlp_ration"):
        Block(8, 2, settings, mlp_ration=2.0)
    with pytest.raises(ValueError, match="layer scale"):
        LGIBlock(8, 2, BlockSettings(init_values=0.1))


def test_drop_path_ramp() -> None:
    rates = [s.drop_path for s in BlockSettings(drop_path=0.3, qkv_bias=False).ramp(4)]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert all(not s.qkv_bias for s in BlockSettings(qkv_bias=False).ramp(3))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_flat_block_settings_reach_every_block(name: str) -> None:
    model = _tiny(name, qkv_bias=False, norm_eps=1e-3, mlp_ratio=2.0, attn_drop_rate=0.25)
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    assert norms and attentions
    assert all(m.eps == 1e-3 for m in norms)
    for attention in attentions:
        assert attention.attn_drop == 0.25
        assert not hasattr(attention, "q_bias") or attention.q_bias is None
    block_mlps = [
        m
        for block_name, block in model.named_modules()
        if isinstance(block, nn.Module) and block_name.rsplit(".", 1)[-1].isdigit() and hasattr(block, "norm2")
        for m in [block.mlp]
    ]
    assert block_mlps
    for mlp in block_mlps:
        assert isinstance(mlp, Mlp) and mlp.fc1.out_features == 2 * mlp.fc1.in_features


@pytest.mark.parametrize("name", ["videomae_base_160", "mae_dfer_pretrain_base", "svfap_base", "hicmae_pretrain_base"])
def test_drop_path_rate_ramps_to_the_last_encoder_block(name: str) -> None:
    model = _tiny(name, drop_path_rate=0.4)
    encoder = getattr(model, "encoder", model)
    rates = [getattr(block.drop_path, "drop_prob", 0.0) for block in encoder.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.4)
    assert rates == sorted(rates)


@pytest.mark.parametrize("name", ["mae_dfer_base", "hicmae_base", "vit_base_patch16_160", "avit_dim512_patch16_160_a256"])
def test_a_wrong_argument_is_an_error_naming_it(name: str) -> None:
    with pytest.raises(TypeError, match="mlp_ration"):
        maedfer.create_model(name, mlp_ration=4)


def test_a_wrong_model_kwarg_in_a_config_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text("model:\n  name: mae_dfer_base\n  kwargs: {mlp_ration: 4}\n")
    with pytest.raises(ConfigError, match="mlp_ration") as err:
        load_config(path)
    assert str(path) in str(err.value) and "model.kwargs" in str(err.value)
    with pytest.raises(ConfigError, match="lg_region_siz"):
        load_config(None, ["model.name=vit_base_dim512_no_depth_patch16_160", "model.kwargs.lg_region_siz=[2,5,10]"])
    config = load_config(None, ["model.name=hicmae_base", "model.kwargs.drop_path_rate=0.2", "model.kwargs.depth_audio=4"])
    assert config.model.kwargs == {"drop_path_rate": 0.2, "depth_audio": 4}


def test_official_video_names_are_translated() -> None:
    official = {
        "all_frames": 8,
        "attn_type": "local_global",
        "lg_region_size": [2, 5, 10],
        "lg_no_second": True,
        "lg_attn_param_sharing_first_third": True,
        "use_mean_pooling": False,
        "pretrained": False,
        "drop_path_rate": 0.1,
    }
    assert translate_official(official, "video", "finetune") == {
        "num_frames": 8,
        "attn_type": "local_global",
        "region_size": (2, 5, 10),
        "use_second": False,
        "share_attn": "first_third",
        "global_pool": "token",
        "drop_path_rate": 0.1,
    }
    # With joint attention the official code ignores the lg_* switches.
    assert translate_official({**official, "attn_type": "joint"}, "video", "finetune") == {
        "num_frames": 8, "attn_type": "joint", "global_pool": "token", "drop_path_rate": 0.1
    }
    assert translate_official({"encoder_embed_dim": 384, "num_classes": 3}, "video", "pretrain") == {
        "embed_dim": 384, "attn_type": "joint", "num_frames": 16
    }
    with pytest.raises(ValueError, match="encoder_num_classes"):
        translate_official({"encoder_num_classes": 5}, "video", "pretrain")


def test_official_audio_visual_names_are_translated() -> None:
    official = {"img_size_audio": (256, 128), "encoder_fusion_depth": 1, "use_mean_pooling": True, "attn_type": "joint"}
    assert translate_official(official, "audio_visual", "finetune") == {"audio_size": (256, 128), "fusion_depth": 1}
    with pytest.raises(ValueError, match="attn_type"):
        translate_official({"attn_type": "local_global"}, "audio_visual", "finetune")
    with pytest.raises(ValueError, match="norm_layer"):
        translate_official({"norm_layer": "LayerNorm"}, "svfap", "finetune")


def test_official_name_builds_the_clean_model_bit_for_bit() -> None:
    """The official MAE-DFER fine-tuning arguments and ``mae_dfer_base`` (paper configuration) give one model."""
    tiny = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
    torch.manual_seed(0)
    clean = maedfer.create_model("mae_dfer_base", **tiny, num_frames=8, region_size=(2, 2, 4), num_classes=5)
    torch.manual_seed(0)
    official = maedfer.create_model(
        "vit_base_dim512_no_depth_patch16_160", **tiny, all_frames=8, attn_type="local_global",
        lg_region_size=(2, 2, 4), lg_classify_token_type="region", use_mean_pooling=True, num_classes=5,
        drop_path_rate=0.1, init_scale=0.001,
    )
    clean_state, official_state = clean.state_dict(), official.state_dict()
    assert list(clean_state) == list(official_state)
    for key, value in clean_state.items():
        torch.testing.assert_close(official_state[key], value, rtol=0, atol=0)


@pytest.mark.parametrize(
    "manifest",
    ["vit_base_dim512_no_depth_patch16_160@dfew_script.json", "pretrain_svfap_base_patch16_160.json",
     "avit_dim512_patch16_160_a256@crema_d_script.json", "pretrain_hicmae_dim512_patch16_160_a256@voxceleb2_script.json"],
)
def test_official_names_keep_the_official_state_dict_keys(manifest: str) -> None:
    data = json.loads((MANIFESTS / manifest).read_text())
    with torch.device("meta"):
        model = maedfer.create_model(data["official_name"], **data["kwargs"])
    assert list(model.state_dict()) == list(data["state_dict"])


def test_audio_visual_head_reset_honours_init_scale() -> None:
    torch.manual_seed(0)
    model = _tiny("hicmae_base", init_scale=0.5)
    assert model.head.weight.std().item() == pytest.approx(0.02 * 0.5, rel=0.3)
    model.reset_classifier(40)
    assert model.head.out_features == 40
    assert model.head.weight.std().item() == pytest.approx(0.02 * 0.5, rel=0.3)
    official = _tiny("avit_dim512_patch16_160_a256")  # the official head keeps PyTorch's Linear init
    official.reset_classifier(40)
    bound = official.num_features**-0.5
    assert official.head.weight.abs().max().item() <= bound
    assert official.head.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.3)
