"""Our data pipeline against the official data fixtures (tests/fixtures/official_data)."""

from __future__ import annotations

import copy
import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from maedfer.parity.data import check_data_fixture

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official_data"
Result = tuple[str, bool, float, str]


def _load(name: str) -> dict[str, Any]:
    return torch.load(FIXTURES / name, weights_only=True)


@functools.lru_cache(maxsize=None)
def _results(file: str) -> tuple[Result, ...]:
    """Results of the unmodified fixture, computed once per test session."""
    return tuple(check_data_fixture(FIXTURES / file))


def _by_name(results: Sequence[Result]) -> dict[str, tuple[bool, float, str]]:
    return {name: (passed, err, reason) for name, passed, err, reason in results}


@pytest.mark.parametrize(
    ("file", "expected_groups"),
    [
        ("inputs.pt", 3),
        ("frame_resize.pt", 7),  # 6 clips + 1 image
        ("finetune_dataset.pt", 12),  # 4 configs x 3 modes
        ("hicmae_av_dataset.pt", 12),  # 2 configs x 3 modes x (video, audio)
    ],
)
def test_every_record_group_passes(file: str, expected_groups: int) -> None:
    results = _results(file)
    failed = [(name, reason) for name, passed, _, reason in results if not passed]
    assert not failed, failed
    assert len(results) == expected_groups


def test_video_outputs_are_bit_exact_on_pil_stack() -> None:
    # libjpeg-turbo decode + PIL bilinear + float32 normalisation reproduce the official tensors exactly.
    results = _by_name(list(_results("finetune_dataset.pt")))
    assert results["finetune_dataset/dfew/test"] == (True, 0.0, "")
    assert results["finetune_dataset/dfew/validation"] == (True, 0.0, "")


def test_tampered_frame_index_fails_only_its_group() -> None:
    fixture = _load("finetune_dataset.pt")
    fixture["configs"] = [c for c in fixture["configs"] if c["name"] in ("mafw", "dfew_short_side_176")]
    tampered = copy.deepcopy(fixture)
    item = tampered["configs"][1]["modes"]["test"]["items"][2]
    item["frame_indices"][1] += 1
    results = _by_name(check_data_fixture(FIXTURES / "finetune_dataset.pt", fixture=tampered))
    passed, _, reason = results["finetune_dataset/dfew_short_side_176/test"]
    assert not passed and "frame indices" in reason
    others = {name: r for name, r in results.items() if name != "finetune_dataset/dfew_short_side_176/test"}
    assert others and all(r[0] for r in others.values()), others


def test_tampered_audio_index_and_random_window_fail() -> None:
    fixture = _load("hicmae_av_dataset.pt")
    fixture["configs"] = [c for c in fixture["configs"] if c["name"] == "crema_d"]
    for mode in list(fixture["configs"][0]["modes"]):
        if mode != "validation":
            del fixture["configs"][0]["modes"][mode]
    items = fixture["configs"][0]["modes"]["validation"]["items"]
    clip_d = next(item for item in items if item["clip"] == "clip_d")
    assert clip_d["random_start"]
    clip_d["audio"]["audio_start_idx"] += 1
    clip_d["frame_indices"][5] -= 1  # the window start (index 0) is the recorded draw; a later index is derived
    results = _by_name(check_data_fixture(FIXTURES / "hicmae_av_dataset.pt", fixture=fixture))
    video_passed, _, video_reason = results["hicmae_av_dataset/crema_d/validation/video"]
    audio_passed, _, audio_reason = results["hicmae_av_dataset/crema_d/validation/audio"]
    assert not video_passed and "frame indices" in video_reason
    assert not audio_passed and "start sample" in audio_reason


def test_tampered_resized_frame_fails() -> None:
    fixture = _load("frame_resize.pt")
    fixture["clips"] = [c for c in fixture["clips"] if c["clip"] in ("clip_s", "clip_p")]
    resized = fixture["clips"][0]["resized"][0]
    resized["resized_sha256"][0] = "0" * 64
    results = _by_name(check_data_fixture(FIXTURES / "frame_resize.pt", fixture=fixture))
    bad = fixture["clips"][0]["clip"]
    good = fixture["clips"][1]["clip"]
    assert not results[f"frame_resize/{bad}"][0] and "sha256" in results[f"frame_resize/{bad}"][2]
    assert results[f"frame_resize/{good}"][0]


def test_pretrain_fixture_is_dispatched() -> None:
    results = check_data_fixture(FIXTURES / "pretrain_dataset.pt")
    assert results and all(isinstance(name, str) for name, *_ in results)
    if importlib.util.find_spec("maedfer.data.pretrain_datasets") is None:
        assert len(results) == 1 and not results[0][1] and results[0][3].startswith("unsupported")
    else:  # the other helper's checker ran: its groups are named after the pre-training configs
        assert not any(reason.startswith("unsupported") for *_, reason in results)
