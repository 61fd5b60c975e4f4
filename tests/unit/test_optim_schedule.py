"""Parameter groups (weight-decay exclusions, layer-wise LR decay), LR scaling, AdamW and the cosine schedule.

Expected values come from the MAE-DFER and SVFAP papers/repositories and the released pre-training log, the HiCMAE paper/repository) and from
hand computation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import maedfer
from maedfer.engine.optim import param_groups, scaled_lr
from maedfer.engine.schedule import cosine_schedule, warmup_iterations


def tiny(name: str, **overrides) -> nn.Module:
    return maedfer.create_model(name, **{**maedfer.model_entry(name).tiny_overrides, **overrides})


def group_of(groups: list[dict], name: str) -> dict:
    matches = [g for g in groups if name in g["param_names"]]
    assert len(matches) == 1, f"{name} is in {len(matches)} groups"
    return matches[0]


# --------------------------------------------------------------------------------------------------- groups
def test_every_trainable_parameter_in_exactly_one_group() -> None:
    model = tiny("mae_dfer_base")
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.75)
    names = [n for g in groups for n in g["param_names"]]
    assert sorted(names) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    # The only frozen tensors: the last block's local stage 3, which the 'region' head never reads.
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(f"blocks.{len(model.blocks) - 1}.third_attn") for n in frozen)
    assert sum(len(g["params"]) for g in groups) == len(names)
    for group in groups:
        assert len(group["params"]) == len(group["param_names"]) > 0
        assert set(group) >= {"params", "weight_decay", "lr_scale", "name"}


def test_layer_decay_scales_and_names_lgi_finetune() -> None:
    """official recipe: id 0 for patch_embed/tokens, i+1 for blocks.i, L+1 for everything else; scale 0.75^(L+1-id)."""
    model = tiny("mae_dfer_base")  # L = 2 blocks
    assert model.num_layers == 2
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.75)
    expectations = {
        # name: (layer id, decayed?)
        "patch_embed.proj.weight": (0, True),
        "patch_embed.proj.bias": (0, False),
        "blocks.0.mlp.fc1.weight": (1, True),
        "blocks.0.mlp.fc1.bias": (1, False),
        "blocks.1.mlp.fc2.weight": (2, True),
        "blocks.1.norm2.weight": (2, False),  # 1-D
        "lg_region_tokens": (3, False),  # in no_weight_decay(); trains at the full LR
        "head.weight": (3, True),
        "head.bias": (3, False),
        "fc_norm.weight": (3, False),
    }
    present = {n for n, _ in model.named_parameters()}
    for name, (layer, decayed) in expectations.items():
        assert name in present, f"model has no {name}"
        group = group_of(groups, name)
        assert group["lr_scale"] == pytest.approx(0.75 ** (3 - layer), rel=1e-12), name
        assert group["weight_decay"] == (0.05 if decayed else 0.0), name
        assert group["name"] == f"layer_{layer}_{'decay' if decayed else 'no_decay'}"
    # 0.75^3, 0.75^2, 0.75, 1.0 are the only scales.
    assert sorted({round(g["lr_scale"], 12) for g in groups}) == [0.421875, 0.5625, 0.75, 1.0]


def test_full_size_scale_tables_match_the_spec() -> None:
    """LGI-Former L=16: 18 scales 0.75^17 ~ 0.00752 ... 1; HiCMAE: 14 ids, multipliers listed in the HiCMAE paper/repository."""
    with torch.device("meta"):
        lgi = maedfer.create_model("mae_dfer_base")
        hicmae = maedfer.create_model("hicmae_base")
    scales = sorted({g["lr_scale"] for g in param_groups(lgi, weight_decay=0.05, layer_decay=0.75)})
    assert len(scales) == 18
    assert scales[0] == pytest.approx(0.0075169, rel=1e-4) and scales[-1] == 1.0
    table = {0: 0.023757, 1: 0.031676, 5: 0.100113, 10: 0.421875, 11: 0.5625, 12: 0.75, 13: 1.0}
    groups = param_groups(hicmae, weight_decay=0.05, layer_decay=0.75)
    by_id = {g["layer_id"]: g["lr_scale"] for g in groups}
    assert sorted(by_id) == list(range(14))
    for layer, multiplier in table.items():
        assert by_id[layer] == pytest.approx(multiplier, abs=1e-6)


def test_hicmae_layer_ids_and_no_decay() -> None:
    model = tiny("hicmae_base")  # depth 4 (video and audio), fusion depth 1 -> L = 5
    assert model.num_layers == 5
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.75)
    names = {n for n, _ in model.named_parameters()}
    video_block = next(
        n for n in names if n.startswith("encoder.blocks.2.") and n.endswith("weight") and "norm" not in n
    )
    audio_block = video_block.replace("encoder.", "encoder_audio.", 1)
    assert audio_block in names
    assert group_of(groups, video_block)["lr_scale"] == group_of(groups, audio_block)["lr_scale"] == pytest.approx(
        0.75 ** (6 - 3)
    )
    fusion = [n for n in names if n.startswith(("encoder_fusion.blocks.0.", "encoder_fusion.blocks_audio.0."))]
    assert fusion
    for name in fusion:
        assert group_of(groups, name)["layer_id"] == 5
    patch = next(n for n in names if n.startswith("encoder_audio.patch_embed") and n.endswith("weight"))
    assert group_of(groups, patch)["lr_scale"] == pytest.approx(0.75**6)
    for name in ("video_layer_weights", "audio_layer_weights"):  # 1-D: no weight decay, full LR
        group = group_of(groups, name)
        assert group["weight_decay"] == 0.0 and group["lr_scale"] == 1.0
    for name in names:
        group = group_of(groups, name)
        if name.endswith(".bias") or name.endswith(("q_bias", "v_bias")):
            assert group["weight_decay"] == 0.0, name


def test_pretraining_region_tokens_decayed_only_with_exact_matching() -> None:
    """Official recipe: the official pre-training matches exact names, so encoder.lg_region_tokens is decayed."""
    model = tiny("mae_dfer_pretrain_base")
    exact = param_groups(model, weight_decay=0.05, exact_name_skip=True)
    assert [g["name"] for g in exact] and {g["name"] for g in exact} <= {"decay", "no_decay"}
    assert all(g["lr_scale"] == 1.0 for g in exact)
    assert group_of(exact, "encoder.lg_region_tokens")["weight_decay"] == 0.05
    assert group_of(exact, "mask_token")["weight_decay"] == 0.0
    relative = param_groups(model, weight_decay=0.05)
    assert group_of(relative, "encoder.lg_region_tokens")["weight_decay"] == 0.0
    assert group_of(relative, "mask_token")["weight_decay"] == 0.0
    # the decoder's weights are decayed in both
    weight = next(n for n, p in model.named_parameters() if n.startswith("decoder.") and p.ndim == 2)
    assert group_of(exact, weight)["weight_decay"] == group_of(relative, weight)["weight_decay"] == 0.05


def test_explicit_no_weight_decay_and_suffix_matching() -> None:
    model = tiny("mae_dfer_pretrain_base")
    groups = param_groups(model, weight_decay=0.1, no_weight_decay={"lg_region_tokens"})
    assert group_of(groups, "encoder.lg_region_tokens")["weight_decay"] == 0.0
    assert group_of(groups, "mask_token")["weight_decay"] == 0.1  # explicit set replaces the model's
    exact = param_groups(model, weight_decay=0.1, no_weight_decay={"lg_region_tokens"}, exact_name_skip=True)
    assert group_of(exact, "encoder.lg_region_tokens")["weight_decay"] == 0.1


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 6, bias=False)
        self.head = nn.Linear(4, 6)
        self.head.weight = self.embed.weight  # shared parameter
        self.alias = self.embed  # the same module registered twice
        self.frozen = nn.Parameter(torch.zeros(3, 3), requires_grad=False)


def test_shared_parameters_once_and_frozen_skipped() -> None:
    model = _Tied()
    groups = param_groups(model, weight_decay=0.05)
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == 2  # the tied weight and head.bias
    assert all(p.requires_grad for p in params)


def test_layer_decay_needs_layer_ids() -> None:
    with pytest.raises(ValueError, match="layer_id"):
        param_groups(_Tied(), weight_decay=0.05, layer_decay=0.75)
    with pytest.raises(ValueError, match="layer_decay"):
        param_groups(tiny("mae_dfer_base"), weight_decay=0.05, layer_decay=1.5)


def test_scaled_lr_matches_the_recipes() -> None:
    assert scaled_lr(3e-4, 160) == pytest.approx(1.875e-4)  # MAE-DFER / HiCMAE pre-training peak
    assert scaled_lr(1e-5, 160) == pytest.approx(6.25e-6)
    assert scaled_lr(1e-3, 96) == pytest.approx(3.75e-4)  # DFEW / MAFW
    assert scaled_lr(1e-3, 120) == pytest.approx(4.6875e-4)  # FERV39k
    assert scaled_lr(1e-3, 64) == pytest.approx(2.5e-4)  # SVFAP
    with pytest.raises(ValueError):
        scaled_lr(1e-3, 0)


# -------------------------------------------------------------------------------------------------- schedule
HAND_COSINE = [  # 1e-6 + 0.5 * (1e-3 - 1e-6) * (1 + cos(pi * i / 8)), i = 0..7
    1e-3,
    9.619778264893878e-4,
    8.536998372026805e-4,
    6.916503744663625e-4,
    5.005e-4,
    3.0934962553363774e-4,
    1.4730016279731955e-4,
    3.902217351061228e-5,
]


def test_cosine_schedule_hand_values() -> None:
    values = cosine_schedule(1e-3, 1e-6, epochs=3, iters_per_epoch=4, warmup_epochs=1)
    assert values.shape == (12,) and values.dtype == np.float64
    expected = [0.0, 1e-3 / 3, 2e-3 / 3, 1e-3, *HAND_COSINE]  # linspace(0, base, 4) includes both ends
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-18)


def test_cosine_schedule_warmup_variants() -> None:
    no_warmup = cosine_schedule(1e-3, 1e-6, 2, 4)
    np.testing.assert_allclose(no_warmup[0], 1e-3)
    np.testing.assert_allclose(no_warmup[4], 1e-6 + 0.5 * (1e-3 - 1e-6))  # i = 4 of 8: cos(pi/2) = 0
    steps = cosine_schedule(1e-3, 0.0, 3, 4, warmup_epochs=1, warmup_steps=2)  # steps override epochs
    np.testing.assert_allclose(steps[:2], [0.0, 1e-3])
    np.testing.assert_allclose(steps[2], 1e-3)
    np.testing.assert_allclose(steps[7], 0.5 * 1e-3 * (1 + math.cos(math.pi * 5 / 10)), atol=1e-18)
    only_steps = cosine_schedule(1e-3, 0.0, 3, 4, warmup_steps=3)
    np.testing.assert_allclose(only_steps[:3], [0.0, 5e-4, 1e-3])
    started = cosine_schedule(1e-3, 0.0, 3, 4, warmup_epochs=1, start_warmup_value=1e-4)
    np.testing.assert_allclose(started[:4], [1e-4, 4e-4, 7e-4, 1e-3])
    assert warmup_iterations(97, 5) == 485  # DFEW fold 1 (official recipe)
    assert warmup_iterations(259, 5) == 1295 and warmup_iterations(76, 5) == 380
    with pytest.raises(ValueError):
        cosine_schedule(1e-3, 0.0, 1, 4, warmup_epochs=1)
    with pytest.raises(ValueError):
        cosine_schedule(1e-3, 0.0, 0, 4)


def test_official_pretraining_log_epoch_means() -> None:
    """the MAE-DFER and SVFAP papers/repositories: peak 3e-4 x 160/256, min 1e-5 x 160/256, 100 epochs, 5 warm-up, ~6823 iters/epoch."""
    iters = 6823
    peak, final = 3e-4 * 160 / 256, 1e-5 * 160 / 256
    assert peak == pytest.approx(1.875e-4)
    values = cosine_schedule(peak, final, 100, iters, warmup_epochs=5)
    means = values.reshape(100, iters).mean(axis=1)
    logged = {
        0: 1.875e-5, 1: 5.625e-5, 2: 9.375e-5, 4: 1.6875e-4, 5: 1.8748e-4,
        9: 1.8649e-4, 19: 1.7728e-4, 29: 1.5934e-4, 39: 1.3464e-4, 49: 1.0585e-4,
    }
    for epoch, mean in logged.items():
        assert means[epoch] == pytest.approx(mean, rel=2e-4), f"epoch {epoch}: {means[epoch]:.6g} vs logged {mean}"
    # the peak is reached at the end of the warm-up and repeated by the first cosine step
    assert values[5 * iters - 1] == pytest.approx(peak, rel=1e-12) and values[5 * iters] == pytest.approx(peak)
    assert final < values[-1] < final * 1.0001
