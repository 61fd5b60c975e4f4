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


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_without_native_support_is_warned_once(native: bool, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """On an AVX2-only CPU a bf16 matmul runs about 150x slower than fp32: asking for bf16 there says so, once."""
    from maedfer.engine import backends

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    monkeypatch.setattr(backends, "_WARNED_EMULATED_BF16", False)
    cpu = torch.device("cpu")
    with caplog.at_level("WARNING", logger="maedfer.engine.backends"):
        assert backends.resolve_precision("bf16", cpu) == "bf16"
        assert backends.resolve_precision("bf16", cpu) == "bf16"
        assert backends.resolve_precision("auto", cpu) == "fp32"
    warnings = [r.getMessage() for r in caplog.records if "without native bfloat16" in r.getMessage()]
    assert len(warnings) == (0 if native else 1)
    assert backends.cpu_has_native_bf16() is native


def test_native_bf16_check_matches_the_cpu_flags() -> None:
    """The check agrees with what the kernel says the CPU can do (Linux): AVX-512 (oneDNN's bf16 floor) or AMX."""
    from pathlib import Path

    from maedfer.engine.backends import cpu_has_native_bf16

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo")
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("flags")), [])
    assert cpu_has_native_bf16() == ("avx512bw" in flags or "amx_bf16" in flags)
