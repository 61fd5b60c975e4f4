"""maedfer's bf16 evaluation path (weights cast once, autocast) against fp32 on every paper model, tiny size."""

from __future__ import annotations

import copy

import pytest
import torch

import maedfer
from maedfer.compile import optimize_for_inference
from maedfer.engine.backends import autocast_context
from maedfer.models import example_inputs

PAPER_MODELS = ["mae_dfer_base", "videomae_base_160", "svfap_base", "hicmae_base"]


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_bf16_path_casts_weights_once_and_stays_close_to_fp32(name: str) -> None:
    torch.manual_seed(0)
    model = maedfer.create_model(name, **maedfer.model_entry(name).tiny_overrides).eval()
    half = optimize_for_inference(copy.deepcopy(model), "bf16")
    assert not half.training
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    inputs = example_inputs(model, 2, generator=torch.Generator().manual_seed(3))
    cpu = torch.device("cpu")
    with torch.inference_mode():
        reference = model(*inputs).softmax(-1)
        with autocast_context(cpu, "bf16"):
            out = half(*inputs)
    assert out.dtype == torch.bfloat16
    assert (out.float().softmax(-1) - reference).abs().max() < 2e-2


def test_fp32_path_changes_nothing() -> None:
    model = maedfer.create_model("mae_dfer_base", **maedfer.model_entry("mae_dfer_base").tiny_overrides).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert optimize_for_inference(model, "fp32") is model and not model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
