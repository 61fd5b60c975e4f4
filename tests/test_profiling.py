"""MAC counting: fused attention is counted, and the counts equal the official fvcore figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import maedfer
from maedfer.layers import use_fused_attention
from maedfer.models import example_inputs
from maedfer.profiling import count_macs

FLOPS = json.loads((Path(__file__).parent / "fixtures" / "official" / "manifests" / "flops.json").read_text())["models"]


@pytest.mark.parametrize("name", ["mae_dfer_base", "videomae_base_160", "svfap_base", "hicmae_base"])
def test_fused_path_counted_like_manual_path(name: str) -> None:
    model = maedfer.create_model(name, **maedfer.model_entry(name).tiny_overrides).eval()
    inputs = example_inputs(model)
    with torch.no_grad(), use_fused_attention(True):
        fused = count_macs(lambda: model(*inputs))
    with torch.no_grad(), use_fused_attention(False):
        manual = count_macs(lambda: model(*inputs))
    assert fused.macs == manual.macs > 0
    assert "_scaled_dot_product_flash_attention_for_cpu" in fused.by_operator  # attention is seen, not skipped
    assert "bmm" in manual.by_operator


def test_backward_is_counted() -> None:
    model = maedfer.create_model("videomae_base_160", **maedfer.model_entry("videomae_base_160").tiny_overrides)
    video = torch.randn(1, 3, 8, 32, 32)
    forward = count_macs(lambda: model(video))
    both = count_macs(lambda: model(video).sum().backward())
    assert both.macs > 2.5 * forward.macs


@pytest.mark.parametrize(
    "key,name",
    [
        ("vit_base_dim512_no_depth_patch16_160@dfew_script", "mae_dfer_base"),
        ("svfap_base_patch16_160@dfew_script", "svfap_base"),
        ("avit_dim512_patch16_160_a256@crema_d_script", "hicmae_base"),
    ],
)
def test_full_size_gmacs_match_official_fvcore(key: str, name: str) -> None:
    model = maedfer.create_model(name).eval()
    inputs = example_inputs(model)
    with torch.no_grad():
        count = count_macs(lambda: model(*inputs))
    expected = FLOPS[key]["gflops"]
    assert abs(count.gmacs - expected) / expected < 0.005
