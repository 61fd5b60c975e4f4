"""No dead compute, no unused parameters: every official recipe trains under DDP without find_unused_parameters.

The LGI-Former's 'region' head reads only the messengers, so the last block's local stage 3 and local MLP are skipped
(and their parameters frozen); SVFAP's official pre-training never reads its bottleneck branch (frozen likewise).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import maedfer
from maedfer.config import load_config
from maedfer.models import example_inputs
from maedfer.apps.profiling import count_macs, counting_official_work
from maedfer.apps.train import build_model

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(
    p for folder in ("pretrain", "finetune") for p in (ROOT / folder / "configs").glob("*.yaml")
    if not p.name.startswith("demo")
)


def _tiny_recipe_model(path: Path, *overrides: str) -> torch.nn.Module:
    """The recipe's model (same architecture switches), at the registry's tiny size, without its checkpoint."""
    cfg = load_config(path, ["model.checkpoint=null", *overrides])
    cfg.model.kwargs = {**cfg.model.kwargs, **maedfer.model_entry(cfg.model.name).tiny_overrides}
    return build_model(cfg)


def _scalar(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out.float().square().mean()
    tensors = [t for t in (out if isinstance(out, (tuple, list)) else vars(out).values()) if torch.is_tensor(t)]
    return sum(t.float().square().mean() for t in tensors if t.is_floating_point())


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_every_trainable_parameter_gets_a_gradient(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.train.find_unused_parameters is False
    for official in (False, True):
        model = _tiny_recipe_model(path, f"model.official_behaviour={str(official).lower()}").train()
        _scalar(model(*example_inputs(model, 2, generator=torch.Generator().manual_seed(0)))).backward()
        unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not unused, f"{path.name} (official_behaviour={official}): no gradient for {unused[:5]}"


def test_region_head_skips_the_dead_stage_with_identical_outputs() -> None:
    name = "mae_dfer_base"
    model = maedfer.create_model(name, **maedfer.model_entry(name).tiny_overrides).eval()
    full = maedfer.create_model(name, skip_unused=False, **maedfer.model_entry(name).tiny_overrides).eval()
    full.load_state_dict(model.state_dict())
    inputs = example_inputs(model, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(*inputs), full(*inputs), rtol=0, atol=0)
        executed = count_macs(lambda: model(*inputs)).macs
        with counting_official_work(model):
            official = count_macs(lambda: model(*inputs)).macs
        assert count_macs(lambda: full(*inputs)).macs == official
    assert executed < official
    last = model.blocks[-1]
    assert all(not p.requires_grad for p in last.third_attn.parameters())
    assert all(p.requires_grad for p in last.mlp.parameters()) and all(p.requires_grad for p in last.first_attn.parameters())
    # Feature extraction still gets finished local tokens.
    with torch.no_grad():
        tokens = model.forward_encoder(inputs[0]).tokens
    assert tokens.shape[1] == model.patch_embed.num_patches


def test_ddp_without_find_unused_parameters_trains_the_lgi_region_head(tmp_path: Path) -> None:
    """Two DDP steps (gloo, one process) with find_unused_parameters=False: fails if any parameter is unused."""
    name = "mae_dfer_base"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        model = maedfer.create_model(name, **maedfer.model_entry(name).tiny_overrides).train()
        ddp = DistributedDataParallel(model, find_unused_parameters=False)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        inputs = example_inputs(model, 2, generator=torch.Generator().manual_seed(0))
        before = model.blocks[-1].mlp.fc1.weight.detach().clone()
        for _ in range(2):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(ddp(*inputs), torch.tensor([0, 1])).backward()
            optimizer.step()
        assert not torch.equal(before, model.blocks[-1].mlp.fc1.weight)
    finally:
        dist.destroy_process_group()
