"""Parity with the official code: every MAE-DFER fixture through the library and through tools/check_parity.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maedfer.parity.models import check_fixture, collect_fixture_files, read_fixture_header

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL = ROOT / "tests" / "fixtures" / "official"
SYSTEMS = ("mae_dfer", "svfap", "hicmae")
SUPPORTED = [p for p in collect_fixture_files([OFFICIAL]) if read_fixture_header(p)["system"] in SYSTEMS]
MAE_DFER = [p for p in SUPPORTED if read_fixture_header(p)["system"] == "mae_dfer"]


def test_all_supported_fixtures_are_present() -> None:
    assert {p.stem for p in SUPPORTED} - {p.stem for p in MAE_DFER} == {
        "svfap_finetune",
        "svfap_pretrain",
        "svfap_pretrain_to_finetune",
        "hicmae_audio_fbank",
        "hicmae_finetune",
        "hicmae_finetune_regression",
        "hicmae_pretrain",
        "hicmae_pretrain_to_finetune",
    }
    names = {p.stem for p in MAE_DFER}
    assert names == {
        "mae_dfer_finetune_lgi_all",
        "mae_dfer_finetune_lgi_org",
        "mae_dfer_finetune_vit",
        "mae_dfer_pretrain_lgi",
        "mae_dfer_pretrain_vit",
        "mae_dfer_pretrain_to_finetune",
        "mask_generators",
    }


@pytest.mark.parametrize("path", SUPPORTED, ids=lambda p: p.stem)
def test_fixture_passes(path: Path) -> None:
    result = check_fixture(path)
    assert result.passed, result.reason
    fx = read_fixture_header(path)
    if fx["kind"] != "mask_generator":
        assert result.max_abs_err <= fx["atol"]
        assert any(name.endswith(("logits", "pred", "pred_video", "fbank")) for name in result.checked)
    if fx["kind"] == "pretrain":
        targets = "targets_video" if fx["system"] == "hicmae" else "targets"
        assert {"official_script.loss", f"official_script.{targets}"} <= set(result.checked)
    if fx["system"] == "hicmae" and fx["kind"] == "pretrain":
        assert {"official_script.loss_hcmcl", "argparse_default.loss_audio", "fusion_audio"} <= set(result.checked)


def test_tampered_fixture_fails(tmp_path: Path) -> None:
    fx = read_fixture_header(OFFICIAL / "mae_dfer_finetune_vit.pt")
    fx["outputs"]["logits"] = fx["outputs"]["logits"] + 1e-3
    bad = tmp_path / "tampered.pt"
    torch.save(fx, bad)
    result = check_fixture(bad)
    assert not result.passed and "logits" in result.reason and result.line().startswith("FAIL ")


@pytest.mark.parametrize("system,fixture", [("mae_dfer", "mae_dfer_pretrain_lgi"), ("svfap", "svfap_pretrain")])
def test_pretrain_fixture_fails_without_the_official_switches(monkeypatch, system: str, fixture: str) -> None:
    """The fixtures pin the official behaviours: maedfer's fixed defaults must not reproduce them."""
    from maedfer.parity import models as parity

    monkeypatch.setitem(parity.OFFICIAL_BEHAVIOUR, system, {})
    result = check_fixture(OFFICIAL / f"{fixture}.pt")
    assert not result.passed and result.reason.startswith("pred")


def test_svfap_each_official_switch_matters(monkeypatch) -> None:
    from maedfer.parity import models as parity

    for flags in ({"pretrain_context": "official"}, {"upsample": "official"}):
        monkeypatch.setitem(parity.OFFICIAL_BEHAVIOUR, "svfap", flags)
        assert not check_fixture(OFFICIAL / "svfap_pretrain.pt").passed


def _run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "check_parity.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_cli_passes_on_every_official_fixture() -> None:
    proc = _run_tool(str(OFFICIAL))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(lines) == 15 and all(line.startswith("PASS ") and "max_abs_err=" in line for line in lines)


def test_cli_fails_on_unsupported_kind(tmp_path: Path) -> None:
    fake = tmp_path / "future.pt"
    torch.save({"system": "mae_dfer", "kind": "not_a_kind", "name": "future"}, fake)
    proc = _run_tool(str(fake))
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"FAIL {fake} unsupported system/kind mae_dfer/not_a_kind")


def test_cli_data_fixtures_pass_per_record_group() -> None:
    proc = _run_tool(str(ROOT / "tests" / "fixtures" / "official_data"), "--systems", "data")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    files = {line.split()[1].split(":")[0] for line in lines}
    assert len(files) == 5 and len(lines) > 50 and all(line.startswith("PASS ") for line in lines)
