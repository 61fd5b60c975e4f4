"""tools/gpu_check.py: the CPU run of the GPU check (tiny models) passes with the expected checks; its helpers;
the full run on a GPU (``pytest -m gpu``)."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "gpu_check.py"

MODELS = ("mae_dfer_base", "videomae_base_160", "svfap_base", "hicmae_base")
SYSTEMS = ("mae_dfer", "svfap", "hicmae", "videomae")
EXPECTED = (
    [f"model/{m}/{kind}" for m in MODELS for kind in ("eager_bf16", "compiled_bf16")]
    + ["profile/mae_dfer_pretrain", "profile/vit_b_pretrain"]
    + [f"train/{s}/{b}" for b in ("ddp", "deepspeed_zero2") for s in SYSTEMS]
)


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    """The application behind tools/gpu_check.py (the script itself is a thin wrapper, run below as a subprocess)."""
    return importlib.import_module("maedfer.apps.gpu_check")


def _by_name(report: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in report["checks"]}


def test_cpu_tiny_run_passes_every_check(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(TOOL), "--device", "cpu", "--tiny", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    checks = _by_name(report)
    assert list(checks) == EXPECTED
    assert report["passed"] is True and report["device_type"] == "cpu"
    assert report["versions"]["torch"] == torch.__version__
    # On the CPU only the first model is compiled; the others say why they were not.
    skipped = {f"model/{m}/compiled_bf16" for m in MODELS[1:]}
    for name, entry in checks.items():
        if name in skipped:
            assert entry["status"] == "skipped" and "--compile-all" in entry["reason"], entry
        else:
            assert entry["status"] == "pass", entry
    assert report["summary"] == {**report["summary"], "pass": len(EXPECTED) - 3, "fail": 0, "skipped": 3}

    tolerances = report["tolerances"]
    for model in MODELS:
        numbers = checks[f"model/{model}/eager_bf16"]["numbers"]
        grads = {k: v for k, v in numbers.items() if k.startswith("grad_rel_l2")}
        assert len(grads) >= 3 and "grad_rel_l2[all]" in grads
        # bf16 really ran (it differs from fp32) and stays within the stated tolerance.
        assert 0 < numbers["logits_rel_l2"] <= tolerances["bf16_logits_rel_l2"]
        assert all(0 < v <= tolerances["bf16_grad_rel_l2"] for v in grads.values()), grads
    compiled = checks["model/mae_dfer_base/compiled_bf16"]["numbers"]
    assert compiled["compile_backend"] == "aot_eager" and 0 < compiled["logits_rel_l2"] <= 3e-2

    for label in ("mae_dfer_pretrain", "vit_b_pretrain"):
        numbers = checks[f"profile/{label}"]["numbers"]
        assert numbers["counters_agree"] is True and numbers["gmacs_per_clip"] > 0
        assert numbers["train_clips_per_s"] > 0 and numbers["mfu_training"] is None  # no peak known for a CPU
    for system in SYSTEMS:
        ddp, ds = checks[f"train/{system}/ddp"]["numbers"], checks[f"train/{system}/deepspeed_zero2"]["numbers"]
        assert ddp["steps"] == ds["steps"] == 1 and ds["zero_stage"] == 2
        assert math.isfinite(ddp["loss"]) and ddp["loss"] > 0
        assert ds["ddp_loss"] == ddp["loss"] and abs(ds["loss"] - ddp["loss"]) <= 2e-2 * ddp["loss"]
        assert ddp["changed_fraction"] >= 0.9 and ds["changed_fraction"] >= 0.9
        assert ds["compile"].startswith("off")
        if system != "mae_dfer":  # on the CPU only the first system's DDP step is compiled
            assert ddp["compile"].startswith("off") and "--compile-all" in ddp["compile"]
    # train.compile_options (to pick aot_eager on the CPU) is recent: without it the step says so and runs eager.
    compiled_step = checks["train/mae_dfer/ddp"]["numbers"]["compile"]
    assert compiled_step == {"backend": "aot_eager"} or compiled_step.startswith("not available"), compiled_step
    assert "passed" in proc.stdout and str(out) in proc.stdout


def test_relative_l2(tool: ModuleType) -> None:
    reference = torch.tensor([3.0, 4.0])  # norm 5
    assert tool.relative_l2(torch.tensor([3.0, 4.5]), reference) == pytest.approx(0.1)
    assert tool.relative_l2(reference.clone(), reference) == 0.0
    assert tool.relative_l2(torch.tensor([3.0, float("nan")]), reference) == math.inf
    assert tool.relative_l2(torch.tensor([1.0, 0.0]), torch.zeros(2)) == math.inf


def test_run_check_records_failures_and_skips(tool: ModuleType) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    def missing() -> None:
        raise tool.Skip("DeepSpeed is not installed")

    failed = tool.run_check("x/broken", broken)
    assert (failed.name, failed.status) == ("x/broken", "fail") and "boom" in failed.reason
    skipped = tool.run_check("x/missing", missing)
    assert skipped.status == "skipped" and skipped.reason == "DeepSpeed is not installed"


def test_a_failing_check_gives_exit_code_1(tool: ModuleType, tmp_path: Path, monkeypatch) -> None:
    def broken(label: str, name: str, settings) -> None:
        raise AssertionError(f"{label} broke")

    monkeypatch.setattr(tool, "check_profile", broken)
    out = tmp_path / "report.json"
    assert tool.main(["--device", "cpu", "--tiny", "--sections", "profile", "--out", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["passed"] is False and report["summary"]["fail"] == 2
    assert [c["status"] for c in report["checks"]] == ["fail", "fail"]


def test_bf16_error_over_tolerance_fails(tool: ModuleType, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(tool.TOLERANCES, "bf16_logits_rel_l2", 1e-7)
    settings = tool.Settings(device=torch.device("cpu"), tiny=True, compile_models=(), compile_backend="aot_eager",
                             compile_systems=(), work_dir=tmp_path, batch=2, profile_batch=2)
    eager, compiled = tool.check_model("videomae_base_160", settings)
    assert eager.status == "fail" and eager.reason.startswith("over tolerance: logits_rel_l2=")
    assert compiled.status == "skipped" and "--skip-compile" in compiled.reason


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_without_cuda_a_cuda_run_skips_every_check_with_the_reason(tool: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert tool.main(["--device", "cuda", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [c["name"] for c in report["checks"]] == EXPECTED
    assert all(c["status"] == "skipped" and "CUDA is not available" in c["reason"] for c in report["checks"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_full_gpu_check(tmp_path: Path) -> None:
    out = tmp_path / "gpu_report.json"
    proc = subprocess.run([sys.executable, str(TOOL), "--device", "cuda", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    report = json.loads(out.read_text())
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert proc.returncode == 0 and not failed, failed or proc.stderr[-3000:]
    checks = _by_name(report)
    assert list(checks) == EXPECTED
    for name, entry in checks.items():
        # Only a missing DeepSpeed may skip a check on a GPU.
        assert entry["status"] == "pass" or "DeepSpeed" in entry["reason"], entry
    for label in ("mae_dfer_pretrain", "vit_b_pretrain"):
        numbers = checks[f"profile/{label}"]["numbers"]
        assert numbers["batch"] == 32
        if any(gpu in report["device"] for gpu in ("H100", "H200", "A100")):
            assert 0 < numbers["mfu_training"] <= 1
