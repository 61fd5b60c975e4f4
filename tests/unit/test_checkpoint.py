"""Tests for maedfer.checkpoint: reading, adapting, loading and saving checkpoints."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import safetensors
import safetensors.torch
import torch
from torch import nn

from maedfer.checkpoint import (
    CheckpointError,
    CheckpointShapeError,
    LoadReport,
    adapt_state_dict,
    extract_state_dict,
    load_checkpoint,
    load_safetensors,
    read_checkpoint,
    save_checkpoint,
    save_safetensors,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official"
DIM = 8


# ----------------------------------------------------------------------------- toys


class ToyPatchEmbed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, DIM)


class ToyEncoder(nn.Module):
    """Mimics a pre-training encoder: patch_embed, blocks, norm."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = ToyPatchEmbed()
        self.blocks = nn.ModuleList([nn.Linear(DIM, DIM) for _ in range(2)])
        self.norm = nn.LayerNorm(DIM)


class ToyDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(4, 4)])
        self.head = nn.Linear(4, 6)


class ToyPretrain(nn.Module):
    """Keys like the official pre-training models: mask_token, encoder.*, decoder.*, ..."""

    def __init__(self) -> None:
        super().__init__()
        self.mask_token = nn.Parameter(torch.randn(1, 1, 4))
        self.encoder = ToyEncoder()
        self.decoder = ToyDecoder()
        self.encoder_to_decoder = nn.Linear(DIM, 4, bias=False)


class ToyFinetune(nn.Module):
    """Keys like the official fine-tuning models (no encoder. prefix, fc_norm, head)."""

    def __init__(self, num_classes: int = 7) -> None:
        super().__init__()
        self.patch_embed = ToyPatchEmbed()
        self.blocks = nn.ModuleList([nn.Linear(DIM, DIM) for _ in range(2)])
        self.norm = nn.Identity()
        self.fc_norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, num_classes)


class ToyAudioVisual(nn.Module):
    """Like HiCMAE fine-tuning models, which keep encoder.* / encoder_audio.* keys."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = ToyEncoder()
        self.encoder_audio = ToyEncoder()
        self.head = nn.Linear(DIM, 3)


class ToyShared(nn.Module):
    """Two modules sharing one weight (parameter sharing)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(DIM, DIM)
        self.third = nn.Linear(DIM, DIM)
        self.third.weight = self.first.weight
        self.other = nn.Linear(DIM, 2)


def randomize(model: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model


def clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert torch.equal(a, b)


# ------------------------------------------------------------------ reading formats


def test_raw_state_dict_file(tmp_path: Path) -> None:
    src = randomize(ToyFinetune(), 1)
    path = tmp_path / "raw.pth"
    torch.save(src.state_dict(), path)
    dst = randomize(ToyFinetune(), 2)
    report = load_checkpoint(dst, path)
    assert report.model_key_used is None
    assert report.missing_keys == []
    assert report.unexpected_keys == []
    assert report.removed_head_keys == []
    assert report.source == str(path)
    for key, value in src.state_dict().items():
        assert_same(dst.state_dict()[key], value)


def test_official_training_file_with_namespace_args(tmp_path: Path) -> None:
    src = randomize(ToyFinetune(), 3)
    ckpt = {
        "model": src.state_dict(),
        "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
                      "param_groups": [{"lr": 1e-3, "betas": [0.9, 0.999], "params": [0, 1]}]},
        "epoch": "best",
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0},
        "args": argparse.Namespace(model="vit_base_dim512_no_depth_patch16_160", lr=1e-3,
                                   lg_region_size=[2, 5, 10], finetune=""),
    }
    path = tmp_path / "checkpoint-best.pth"
    torch.save(ckpt, path)

    obj = read_checkpoint(path)
    assert isinstance(obj["args"], argparse.Namespace)
    assert obj["args"].model == "vit_base_dim512_no_depth_patch16_160"
    assert obj["args"].lg_region_size == [2, 5, 10]
    assert obj["epoch"] == "best"

    dst = randomize(ToyFinetune(), 4)
    report = load_checkpoint(dst, path)
    assert report.model_key_used == "model"
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert_same(dst.head.weight, src.head.weight)
    assert_same(dst.blocks[1].bias, src.blocks[1].bias)


def test_namespace_is_only_extra_allowed_class(tmp_path: Path) -> None:
    # argparse.FileType is another argparse class: still refused.
    path = tmp_path / "filetype.pth"
    torch.save({"model": {"w": torch.ones(2)}, "type": argparse.FileType("r")}, path)
    with pytest.raises(CheckpointError, match="refuses to run code"):
        read_checkpoint(path)


def test_deepspeed_module_key(tmp_path: Path) -> None:
    src = randomize(ToyFinetune(), 5)
    path = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": src.state_dict(), "global_steps": 10}, path)
    dst = ToyFinetune()
    report = load_checkpoint(dst, path)
    assert report.model_key_used == "module"
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert_same(dst.patch_embed.proj.weight, src.patch_embed.proj.weight)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_wrapper_prefix_is_stripped(tmp_path: Path, prefix: str) -> None:
    src = randomize(ToyFinetune(), 6)
    path = tmp_path / "ddp.pth"
    torch.save({"model": {prefix + k: v for k, v in src.state_dict().items()}}, path)
    dst = ToyFinetune()
    report = load_checkpoint(dst, path)
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert_same(dst.fc_norm.weight, src.fc_norm.weight)


def test_wrapper_prefix_kept_unless_on_every_key() -> None:
    sd = {"module.a": torch.zeros(1), "b": torch.zeros(1)}
    out, key = extract_state_dict(sd)
    assert key is None
    assert sorted(out) == ["b", "module.a"]


def test_extract_state_dict_priority_and_errors() -> None:
    a = {"x": torch.zeros(1)}
    b = {"y": torch.zeros(1)}
    assert extract_state_dict({"module": b, "model": a}) == (a, "model")
    # A non-mapping under "model" (e.g. a model name string) is skipped.
    assert extract_state_dict({"model": "vit_base", "module": b}) == (b, "module")
    assert extract_state_dict({"weights": a}, model_keys=("weights",)) == (a, "weights")
    with pytest.raises(CheckpointError, match="optimizer"):
        extract_state_dict({"optimizer": {}, "epoch": 3}, source="opt-only.pth")
    with pytest.raises(CheckpointError, match="opt-only.pth"):
        extract_state_dict({"optimizer": {}, "epoch": 3}, source="opt-only.pth")
    with pytest.raises(CheckpointError):
        extract_state_dict([torch.zeros(1)])


def test_read_safetensors_by_suffix_and_by_content(tmp_path: Path) -> None:
    tensors = {"a.weight": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2])}
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(tensors, str(path))
    got = read_checkpoint(path)
    assert sorted(got) == ["a.weight", "b"]
    assert_same(got["a.weight"], tensors["a.weight"])
    assert_same(got["b"], tensors["b"])
    other = tmp_path / "w.bin"
    other.write_bytes(path.read_bytes())
    got2 = read_checkpoint(other)
    assert_same(got2["a.weight"], tensors["a.weight"])


# ------------------------------------------------------------ pre-training transfer


def test_pretrain_to_finetune_report(tmp_path: Path) -> None:
    pre = randomize(ToyPretrain(), 7)
    path = tmp_path / "pretrain-799.pth"
    torch.save({"model": pre.state_dict(), "epoch": 799,
                "args": argparse.Namespace(mask_ratio=0.9)}, path)
    ft = ToyFinetune()
    before = clone_state(ft)
    report = load_checkpoint(ft, path)

    assert report.model_key_used == "model"
    assert report.removed_head_keys == []
    assert report.missing_keys == ["fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"]
    assert report.unexpected_keys == [
        "mask_token",
        "norm.weight",
        "norm.bias",
        "decoder.blocks.0.weight",
        "decoder.blocks.0.bias",
        "decoder.head.weight",
        "decoder.head.bias",
        "encoder_to_decoder.weight",
    ]
    assert_same(ft.patch_embed.proj.weight, pre.encoder.patch_embed.proj.weight)
    assert_same(ft.blocks[0].weight, pre.encoder.blocks[0].weight)
    assert_same(ft.blocks[1].bias, pre.encoder.blocks[1].bias)
    # Missing parameters keep their own initial values.
    assert_same(ft.head.weight, before["head.weight"])
    assert_same(ft.fc_norm.bias, before["fc_norm.bias"])


def test_backbone_prefix_is_stripped() -> None:
    src = randomize(ToyFinetune(), 8)
    sd = {"backbone." + k: v for k, v in src.state_dict().items() if not k.startswith("head")}
    sd["head.weight"] = src.head.weight.detach().clone()
    sd["head.bias"] = src.head.bias.detach().clone()
    dst = ToyFinetune()
    report = load_checkpoint(dst, sd)
    assert report.source == "<state_dict>"
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert_same(dst.blocks[0].weight, src.blocks[0].weight)


def test_model_with_encoder_prefix_is_not_stripped() -> None:
    pre_sd = {}
    enc = randomize(ToyEncoder(), 9)
    enc_a = randomize(ToyEncoder(), 10)
    pre_sd["mask_token"] = torch.zeros(1, 1, 4)
    pre_sd.update({"encoder." + k: v for k, v in enc.state_dict().items()})
    pre_sd.update({"encoder_audio." + k: v for k, v in enc_a.state_dict().items()})
    pre_sd["decoder.norm.weight"] = torch.ones(4)
    pre_sd["encoder_to_decoder.weight"] = torch.zeros(4, DIM)

    model = ToyAudioVisual()
    adapted, removed = adapt_state_dict(pre_sd, model)
    assert removed == []
    assert list(adapted) == list(pre_sd)  # nothing renamed

    report = load_checkpoint(model, pre_sd)
    assert report.missing_keys == ["head.weight", "head.bias"]
    assert report.unexpected_keys == ["mask_token", "decoder.norm.weight",
                                       "encoder_to_decoder.weight"]
    # encoder.norm is loaded (not turned into an unexpected "norm.*").
    assert_same(model.encoder.norm.weight, enc.norm.weight)
    assert_same(model.encoder_audio.blocks[1].weight, enc_a.blocks[1].weight)


def test_head_removed_on_class_count_mismatch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = randomize(ToyFinetune(num_classes=10), 11)
    path = tmp_path / "ft10.pth"
    torch.save({"model": src.state_dict()}, path)
    dst = ToyFinetune(num_classes=7)
    head_before = dst.head.weight.detach().clone()
    with caplog.at_level(logging.INFO, logger="maedfer.checkpoint"):
        report = load_checkpoint(dst, path)
    assert report.removed_head_keys == ["head.weight", "head.bias"]
    assert report.missing_keys == ["head.weight", "head.bias"]
    assert report.unexpected_keys == []
    assert_same(dst.head.weight, head_before)
    assert_same(dst.fc_norm.weight, src.fc_norm.weight)
    assert "head.weight" in caplog.text

    with pytest.raises(CheckpointShapeError, match="head.weight"):
        load_checkpoint(ToyFinetune(num_classes=7), path, drop_mismatched_head=False)


def test_head_kept_when_shapes_match() -> None:
    src = randomize(ToyFinetune(num_classes=7), 12)
    _, removed = adapt_state_dict(src.state_dict(), ToyFinetune(num_classes=7))
    assert removed == []


def test_shape_mismatch_error_lists_keys_shapes_and_file(tmp_path: Path) -> None:
    src = ToyFinetune()
    sd = src.state_dict()
    sd["blocks.0.weight"] = torch.zeros(DIM, 6)
    sd["fc_norm.bias"] = torch.zeros(5)
    path = tmp_path / "bad-shape.pth"
    torch.save({"model": sd}, path)
    dst = randomize(ToyFinetune(), 13)
    before = clone_state(dst)
    with pytest.raises(CheckpointShapeError) as info:
        load_checkpoint(dst, path)
    msg = str(info.value)
    assert "bad-shape.pth" in msg
    assert "blocks.0.weight" in msg and "(8, 6)" in msg and "(8, 8)" in msg
    assert "fc_norm.bias" in msg and "(5)" in msg and "(8)" in msg
    assert isinstance(info.value, CheckpointError)
    assert isinstance(info.value, RuntimeError)
    assert {m[0] for m in info.value.mismatches} == {"blocks.0.weight", "fc_norm.bias"}
    # Nothing was loaded: the model is untouched.
    for key, value in dst.state_dict().items():
        assert_same(value, before[key])


def test_strict_mode(tmp_path: Path) -> None:
    path = tmp_path / "pre.pth"
    torch.save({"model": ToyPretrain().state_dict()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(ToyFinetune(), path, strict=True)
    msg = str(info.value)
    assert "pre.pth" in msg
    assert "fc_norm.weight" in msg and "mask_token" in msg and "encoder_to_decoder.weight" in msg
    assert not isinstance(info.value, CheckpointShapeError)

    full = tmp_path / "full.pth"
    torch.save({"model": ToyFinetune().state_dict()}, full)
    report = load_checkpoint(ToyFinetune(), full, strict=True)
    assert report.missing_keys == [] and report.unexpected_keys == []


def test_checkpoint_filter_fn_hook() -> None:
    class Converting(ToyFinetune):
        def checkpoint_filter_fn(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k.replace("old_blocks.", "blocks."): v for k, v in state_dict.items()}

    src = randomize(ToyFinetune(), 14)
    sd = {k.replace("blocks.", "old_blocks."): v for k, v in src.state_dict().items()}
    dst = Converting()
    report = load_checkpoint(dst, sd)
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert_same(dst.blocks[1].weight, src.blocks[1].weight)


def test_report_str_and_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="maedfer.checkpoint"):
        report = load_checkpoint(ToyFinetune(), {"model": ToyPretrain().state_dict()})
    text = str(report)
    assert "<state_dict>" in text
    assert "'model'" in text
    for key in ("fc_norm.weight", "head.bias", "mask_token", "encoder_to_decoder.weight"):
        assert key in text
        assert key in caplog.text
    assert len(text.splitlines()) > 5
    assert isinstance(report, LoadReport)


# ------------------------------------------------------------- parameter sharing


def test_shared_parameter_load() -> None:
    src = randomize(ToyShared(), 15)
    assert "third.weight" in src.state_dict()  # both names are listed
    dst = ToyShared()
    report = load_checkpoint(dst, src.state_dict(), strict=True)
    assert report.missing_keys == []
    assert_same(dst.third.weight, src.first.weight)
    assert dst.third.weight is dst.first.weight

    # A checkpoint holding only one of the two names still fills the shared tensor.
    only_first = {k: v for k, v in src.state_dict().items() if k != "third.weight"}
    dst2 = ToyShared()
    report2 = load_checkpoint(dst2, only_first, strict=True)
    assert report2.missing_keys == []
    assert_same(dst2.third.weight, src.first.weight)


# ------------------------------------------------------------------ unsafe / corrupt


class Payload:
    """A custom class: unpickling it needs a global that is not allow-listed."""

    def __init__(self) -> None:
        self.value = 1


class RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_refuses_custom_class(tmp_path: Path) -> None:
    path = tmp_path / "custom.pth"
    torch.save({"model": {"w": torch.ones(2)}, "extra": Payload()}, path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    msg = str(info.value)
    assert "custom.pth" in msg
    assert "refuses to run code" in msg
    assert "Payload" in msg
    with pytest.raises(CheckpointError, match="refuses to run code"):
        load_checkpoint(ToyFinetune(), path)


def test_refuses_os_system_reduce(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(2)}, "x": RunsCommand(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert "evil.pth" in str(info.value)
    assert "refuses to run code" in str(info.value)
    assert "system" in str(info.value)
    assert not marker.exists()


def test_truncated_file(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save({"model": ToyFinetune().state_dict()}, good)
    data = good.read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        read_checkpoint(bad)
    with pytest.raises(CheckpointError, match="truncated.pth"):
        load_checkpoint(ToyFinetune(), bad)


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a checkpoint", bytes(range(256)) * 4],
    ids=["empty", "text", "garbage"],
)
def test_corrupt_file(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(bad)
    assert str(bad) in str(info.value)


def test_legacy_format_truncated(tmp_path: Path) -> None:
    good = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(50)}, good, _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(good)["w"], torch.ones(50))
    bad = tmp_path / "legacy-cut.pth"
    bad.write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="legacy-cut.pth"):
        read_checkpoint(bad)


def test_corrupt_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "good.safetensors"
    safetensors.torch.save_file({"w": torch.ones(100)}, str(path))
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        read_checkpoint(bad)
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_safetensors(bad)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        read_checkpoint(missing)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(ToyFinetune(), missing)
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_safetensors(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path)  # a directory


# --------------------------------------------------------------------------- saving


def test_save_checkpoint_round_trip_and_parents(tmp_path: Path) -> None:
    model = randomize(ToyFinetune(), 16)
    path = tmp_path / "a" / "b" / "checkpoint-3.pth"
    obj = {"model": model.state_dict(), "epoch": 3,
           "args": argparse.Namespace(lr=0.5)}
    assert save_checkpoint(obj, path) == path
    back = read_checkpoint(path)
    assert back["epoch"] == 3 and back["args"].lr == 0.5
    assert_same(back["model"]["head.weight"], model.head.weight.detach())
    assert sorted(os.listdir(path.parent)) == ["checkpoint-3.pth"]


def test_save_checkpoint_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ckpt.pth"
    save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)
    original = path.read_bytes()

    def failing_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04 partial data")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()

    assert path.read_bytes() == original
    assert read_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["ckpt.pth"]  # no temp file left


def test_save_checkpoint_interrupted_never_creates_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "new.pth"

    def interrupted(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"w": torch.ones(1)}, path)
    assert os.listdir(tmp_path) == []


def test_safetensors_round_trip_shared_noncontiguous_metadata(tmp_path: Path) -> None:
    model = randomize(ToyShared(), 17)
    path = tmp_path / "shared.safetensors"
    meta = {"format": "pt", "arch": "toy_shared", "epoch": "12"}
    assert save_safetensors(model, path, metadata=meta) == path

    with safetensors.safe_open(str(path), framework="pt") as f:
        assert f.metadata() == meta
        assert sorted(f.keys()) == sorted(model.state_dict())

    loaded = load_safetensors(path)
    assert sorted(loaded) == ["first.bias", "first.weight", "other.bias",
                              "other.weight", "third.bias", "third.weight"]
    assert_same(loaded["third.weight"], model.first.weight.detach())
    assert_same(loaded["first.weight"], model.first.weight.detach())
    assert_same(loaded["other.weight"], model.other.weight.detach())

    fresh = ToyShared()
    report = load_checkpoint(fresh, path, strict=True)
    assert report.model_key_used is None
    assert_same(fresh.third.weight, model.first.weight.detach())

    base = torch.arange(24.0).reshape(4, 6)
    sd = {
        "t": base.t(),               # non-contiguous view
        "row": base[1],              # view with a storage offset
        "same": base,                # shares storage with the two above
        "strided": base[:, ::2],     # non-contiguous slice
    }
    other = tmp_path / "views.safetensors"
    save_safetensors(sd, other)
    back = load_safetensors(other)
    for key, value in sd.items():
        assert_same(back[key], value)
    assert back["t"].is_contiguous()


def test_save_safetensors_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.safetensors"
    save_safetensors({"w": torch.ones(3)}, path)
    original = path.read_bytes()

    def failing(tensors: Any, filename: str, metadata: Any = None) -> None:
        Path(filename).write_bytes(b"\x10\x00\x00\x00")
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(safetensors.torch, "save_file", failing)
    with pytest.raises(CheckpointError, match="w.safetensors"):
        save_safetensors({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["w.safetensors"]
    assert_same(load_safetensors(path)["w"], torch.ones(3))


def test_save_safetensors_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        bad_meta: Any = {"epoch": 3}
        save_safetensors({"w": torch.ones(1)}, tmp_path / "m.safetensors", metadata=bad_meta)
    with pytest.raises(TypeError):
        bad_value: Any = {"w": [1, 2]}
        save_safetensors(bad_value, tmp_path / "v.safetensors")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------- official fixtures (parity)


def _module_with_keys(shapes: dict[str, torch.Size]) -> nn.Module:
    root = nn.Module()
    for name, shape in shapes.items():
        *parents, leaf = name.split(".")
        mod = root
        for part in parents:
            child = mod._modules.get(part)
            if child is None:
                child = nn.Module()
                mod.add_module(part, child)
            mod = child
        mod.register_parameter(leaf, nn.Parameter(torch.zeros(shape)))
    return root


@pytest.mark.parametrize(
    ("name", "strip_encoder"),
    [("mae_dfer_pretrain_to_finetune", True), ("svfap_pretrain_to_finetune", True),
     ("hicmae_pretrain_to_finetune", False)],
)
def test_official_transfer_report(tmp_path: Path, name: str, strip_encoder: bool) -> None:
    fixture_path = FIXTURES / f"{name}.pt"
    if not fixture_path.exists():
        pytest.skip(f"fixture {fixture_path} not available")
    fx = torch.load(fixture_path, map_location="cpu", weights_only=True)
    ckpt = dict(fx["checkpoint"])
    ckpt["args"] = argparse.Namespace(**ckpt["args"])  # as in released files
    path = tmp_path / "checkpoint-799.pth"
    torch.save(ckpt, path)

    # A stand-in fine-tuning model with the keys the official model has: the
    # (renamed) checkpoint keys the official load used, plus the missing ones.
    def renamed(key: str) -> str:
        if strip_encoder and key.startswith("encoder."):
            return key[len("encoder."):]
        return key

    unexpected = set(fx["unexpected_keys"])
    shapes = {renamed(k): v.shape for k, v in ckpt["model"].items()
              if renamed(k) not in unexpected}
    shapes.update({k: fx["finetune_init_state"][k].shape for k in fx["missing_keys"]})
    model = _module_with_keys(shapes)

    report = load_checkpoint(model, path)
    assert report.model_key_used == fx["model_key_used"]
    assert report.removed_head_keys == fx["removed_head_keys"]
    assert report.missing_keys == fx["missing_keys"]
    assert report.unexpected_keys == fx["unexpected_keys"]
    some_key = next(k for k in ckpt["model"] if k.startswith("encoder.blocks."))
    assert_same(model.state_dict()[renamed(some_key)], ckpt["model"][some_key])
