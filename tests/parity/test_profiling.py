"""Profiling: fused attention is counted, two independent counters agree, official fvcore figures, CLI JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import maedfer
from maedfer.layers import use_fused_attention
from maedfer.models import example_inputs
from maedfer.apps.profiling import count_macs, count_parameters, fvcore_macs, profile_model

ROOT = Path(__file__).resolve().parents[2]
FLOPS = json.loads((ROOT / "tests" / "fixtures" / "official" / "manifests" / "flops.json").read_text())["models"]
TINY = ["mae_dfer_base", "videomae_base_160", "svfap_base", "hicmae_base", "mae_dfer_pretrain_base", "hicmae_pretrain_base"]


def _tiny(name: str) -> torch.nn.Module:
    return maedfer.create_model(name, **maedfer.model_entry(name).tiny_overrides).eval()


@pytest.mark.parametrize("name", TINY)
def test_fused_path_counted_like_manual_path(name: str) -> None:
    model = _tiny(name)
    inputs = example_inputs(model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), use_fused_attention(True):
        fused = count_macs(lambda: model(*inputs))
    with torch.no_grad(), use_fused_attention(False):
        manual = count_macs(lambda: model(*inputs))
    assert fused.macs == manual.macs > 0
    assert "_scaled_dot_product_flash_attention_for_cpu" in fused.by_operator  # attention is seen, not skipped
    assert "bmm" in manual.by_operator


@pytest.mark.parametrize("name", TINY)
def test_fvcore_agrees_with_flop_counter(name: str) -> None:
    model = _tiny(name)
    inputs = example_inputs(model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), use_fused_attention(True):  # fvcore sees SDPA through its own handle
        ours = count_macs(lambda: model(*inputs))
        theirs = fvcore_macs(model, inputs)
    assert theirs.macs == pytest.approx(ours.macs, rel=1e-9)
    assert theirs.by_operator["scaled_dot_product_attention"] > 0
    assert sum(theirs.by_module.values()) == pytest.approx(theirs.macs)


def test_sdpa_count_equals_the_textbook_formula() -> None:
    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 5)
    count = count_macs(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
    assert count.macs == 2 * 3 * 10 * 7 * (8 + 5)  # q k^T plus attn v multiply-adds


def test_backward_is_counted() -> None:
    model = _tiny("videomae_base_160")
    video = torch.randn(1, 3, 8, 32, 32)
    forward = count_macs(lambda: model(video))
    both = count_macs(lambda: model(video).sum().backward())
    assert both.macs > 2.5 * forward.macs


def test_parameter_groups_count_shared_weights_once() -> None:
    model = maedfer.create_model(
        "vit_base_dim512_no_depth_patch16_160", img_size=32, patch_size=8, all_frames=8, depth=1,
        attn_type="local_global", lg_region_size=(2, 2, 4), lg_attn_param_sharing_all=True,
    )
    counts = count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())  # parameters() de-duplicates too
    assert counts["total"] < sum(t.numel() for t in model.state_dict().values())  # aliases repeat in state_dict
    assert sum(counts["by_module"].values()) == counts["total"]


@pytest.mark.parametrize(
    "key,name",
    [
        ("vit_base_dim512_no_depth_patch16_160@dfew_script", "mae_dfer_base"),
        ("svfap_base_patch16_160@dfew_script", "svfap_base"),
        ("avit_dim512_patch16_160_a256@crema_d_script", "hicmae_base"),
        ("pretrain_videomae_base_dim512_no_depth_patch16_160@voxceleb2_script", "mae_dfer_pretrain_base"),
    ],
)
def test_full_size_gmacs_match_official_fvcore(key: str, name: str) -> None:
    report = profile_model(name, measure_speed=False, use_fvcore=False)
    expected = FLOPS[key]["gflops"]  # fvcore "flops" are multiply-adds
    assert abs(report.gmacs - expected) / expected < 0.005
    assert report.gflops == pytest.approx(2 * report.gmacs)


def test_profile_report_views_and_mode_check() -> None:
    report = profile_model("svfap_base", overrides=maedfer.model_entry("svfap_base").tiny_overrides, views=4,
                           warmup=0, repeats=1, train_step=False)
    assert report.gmacs_all_views == pytest.approx(4 * report.gmacs)
    assert report.inference["clips_per_s"] > 0 and report.counters_agree
    with pytest.raises(ValueError, match="finetune model"):
        profile_model("svfap_base", mode="pretrain", measure_speed=False)


def test_cli_json(tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "profile_model.py"), "--compare", "mae_dfer_base", "hicmae_base",
         "--tiny", "--warmup", "0", "--repeats", "1", "--views", "4", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert [d["model"] for d in data] == ["mae_dfer_base", "hicmae_base"]
    for entry in data:
        assert {"paper_config", "model", "params", "gmacs", "gflops", "clips_per_s", "ms_per_clip",
                "train_clips_per_s", "gmacs_all_views", "counters_agree"} <= set(entry)
        assert entry["gmacs_all_views"] == pytest.approx(4 * entry["gmacs"]) and entry["counters_agree"] is True
    assert "mae_dfer_base" in proc.stdout and "GMACs" in proc.stdout


def test_cli_paper_configs_labels(tmp_path: Path) -> None:
    out = tmp_path / "paper.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "profile_model.py"), "--paper-configs", "--tiny", "--no-speed",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert [d["paper_config"] for d in data] == ["videomae_vit_b", "mae_dfer", "svfap", "hicmae"]
    assert [d["model"] for d in data] == ["videomae_base_160", "mae_dfer_base", "svfap_base", "hicmae_base"]
