"""Linear probing: only the head (and its BatchNorm statistics) changes, for every encoder; cached features equal the
uncached forward; the demo config runs through finetune/finetune.py on a tiny synthetic world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import maedfer
from maedfer.checkpoint import read_checkpoint
from maedfer.data.video_datasets import VideoClipDataset, skip_bad_samples_collate
from maedfer.synthetic import make_synthetic_world
from maedfer.tasks.linear_probe import LinearProbe, LinearProbeRegressionTask, LinearProbeTask, cache_features, unaugmented

ROOT = Path(__file__).resolve().parents[2]

# Every encoder family: ViT (VideoMAE / SVFAP-sized), LGI-Former, TPSBT, HiCMAE audio-visual and its single towers.
PROBED = [
    ("videomae_base_160", {}),
    ("mae_dfer_base", {}),
    ("svfap_base", {}),
    ("hicmae_base", {}),
    ("hicmae_base", {"modality": "audio"}),
    ("hicmae_base", {"modality": "video"}),
]


def _tiny(name: str, **extra: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return maedfer.create_model(name, **{**maedfer.model_entry(name).tiny_overrides, "num_classes": 3, **extra})


def _batch(probe: LinearProbe, model: torch.nn.Module, size: int = 4) -> dict[str, torch.Tensor]:
    batch: dict[str, torch.Tensor] = {"label": torch.arange(size) % 3}
    if "video" in probe.input_modalities:
        encoder = maedfer.models.utils.video_encoder(model)
        embed = encoder.patch_embed
        batch["video"] = torch.randn(size, 3, embed.num_frames, embed.img_size, embed.img_size)
    if "audio" in probe.input_modalities:
        audio = model.encoder_audio if hasattr(model, "encoder_audio") else model
        time_bins, mel_bins = (int(v) for v in audio.patch_embed.input_size)
        batch["audio"] = torch.randn(size, 1, time_bins, mel_bins)
    return batch


@pytest.mark.parametrize(("name", "extra"), PROBED, ids=[f"{n}{'-' + e['modality'] if e else ''}" for n, e in PROBED])
def test_only_the_head_and_its_statistics_change(name: str, extra: dict) -> None:
    model = _tiny(name, **extra)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    task = LinearProbeTask(model, num_classes=3)
    probe = task.model
    assert isinstance(probe, LinearProbe) and probe.encoder is model
    assert [n for n, p in probe.named_parameters() if p.requires_grad] == ["head.fc.weight", "head.fc.bias"]
    head_before = {key: value.clone() for key, value in probe.head.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in probe.parameters() if p.requires_grad], lr=1e-2)
    task.train()
    assert not model.training and probe.head.norm.training
    batch = _batch(probe, model)
    for _ in range(3):
        out = task(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=f"encoder entry {key} changed")
    after = probe.head.state_dict()
    for key in ("fc.weight", "fc.bias", "norm.running_mean", "norm.running_var"):
        assert not torch.equal(after[key], head_before[key]), f"head entry {key} did not change"
    assert int(after["norm.num_batches_tracked"]) == 3
    # The folded classifier answers as the probe does, and is a plain model of its kind.
    probe.eval()
    inputs = {key: batch[key] for key in probe.input_modalities}
    classifier = probe.to_classifier().eval()
    assert type(classifier) is type(model) and isinstance(classifier.head, torch.nn.Linear)
    fresh = _tiny(name, **extra)  # what trains in a fresh model of the kind trains in the classifier again
    assert {n for n, p in classifier.named_parameters() if p.requires_grad} == {
        n for n, p in fresh.named_parameters() if p.requires_grad}
    with torch.no_grad():
        torch.testing.assert_close(classifier(**inputs), probe(**inputs), rtol=1e-4, atol=1e-5)


def test_regression_probe_and_bad_models() -> None:
    model = _tiny("hicmae_base", modality="audio")
    task = LinearProbeRegressionTask(maedfer.create_model(
        "hicmae_base", **{**maedfer.model_entry("hicmae_base").tiny_overrides, "num_classes": 2, "modality": "audio"}))
    batch = _batch(task.model, model)
    batch["label"] = torch.randn(4, 2)
    out = task(batch)
    assert out["loss"].requires_grad and out["loss"].ndim == 0
    with pytest.raises(TypeError, match="forward_features"):
        LinearProbe(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="num_outputs"):
        LinearProbe(_tiny("mae_dfer_base", num_classes=0))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe_world") / "synthetic"
    make_synthetic_world(root, num_identities=6, clips_per_class=2, num_frames=16, size=32, preview=False)
    return root


def test_cached_features_equal_the_uncached_forward(world: Path) -> None:
    model = _tiny("mae_dfer_base", img_size=32, num_frames=8, num_classes=7)
    probe = LinearProbe(model)
    common = dict(num_frames=8, sampling_rate=2, input_size=32, short_side_size=32)
    train = VideoClipDataset(world / "classification" / "train.csv", "train", **common)
    loader = torch.utils.data.DataLoader(unaugmented(train), batch_size=5, shuffle=False,
                                         collate_fn=skip_bad_samples_collate)
    cached = cache_features(probe, loader)
    assert len(cached) == len(train) == 14 and cached.features.shape == (14, probe.num_features)
    plain = VideoClipDataset(world / "classification" / "train.csv", "validation", **common)
    with torch.no_grad():
        for index in (0, 5, 13):
            item = plain[index]
            expected = model.eval().forward_features(item["video"][None])[0]
            torch.testing.assert_close(cached[index]["features"], expected, rtol=1e-5, atol=1e-6)
            assert int(cached[index]["label"]) == int(item["label"])
    # The head trained on cached features sees the same numbers as on clips.
    item = plain[3]
    probe.eval()
    with torch.no_grad():
        torch.testing.assert_close(probe(features=cached[3]["features"][None]), probe(video=item["video"][None]))
    with pytest.raises(TypeError, match="training VideoClipDataset"):
        unaugmented(plain)


def test_demo_config_runs_through_finetune_py(world: Path, tmp_path: Path) -> None:
    from maedfer.apps.train import main

    tiny = ["model.kwargs.img_size=32", "model.kwargs.patch_size=8", "model.kwargs.num_frames=8",
            "model.kwargs.embed_dim=32", "model.kwargs.depth=2", "model.kwargs.num_heads=2",
            "model.kwargs.region_size=[2,2,4]", "data.synthetic={}", "data.num_frames=8", "data.input_size=32",
            "data.short_side_size=32", "data.batch_size=4", "data.num_workers=0", "optim.warmup_epochs=0",
            "train.log_every_steps=1", f"data.root={world}", "data.labels_per_class=2"]
    pre = tmp_path / "pre"
    main(["--config", str(ROOT / "pretrain" / "configs" / "demo.yaml"), f"train.output_dir={pre}",
          "model.kwargs.decoder_embed_dim=16", "train.epochs=1", *tiny[:7], *tiny[7:-1]])
    pretrained = read_checkpoint(pre / "checkpoint-last.pth")["model"]
    out = tmp_path / "probe"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "finetune" / "finetune.py"), "--config",
           str(ROOT / "finetune" / "configs" / "demo_linear_probe.yaml"), f"model.checkpoint={pre / 'checkpoint-last.pth'}",
           f"train.output_dir={out}", "train.epochs=3", "train.eval_every_epochs=3", *tiny]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cached the pooled features of 14 training clips" in done.stderr
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["num_videos"] == 14 and 0.0 <= metrics["uar"] <= 1.0
    # checkpoint-last.pth holds the probe: the frozen encoder is the pre-trained one, untouched; the head is new.
    weights = read_checkpoint(out / "checkpoint-last.pth")["model"]
    for key in ("blocks.0.first_attn.q.weight", "lg_region_tokens", "patch_embed.proj.weight"):
        torch.testing.assert_close(weights[f"encoder.{key}"], pretrained[f"encoder.{key}"], rtol=0, atol=0)
    assert weights["head.fc.weight"].shape == (7, 32) and "head.norm.running_var" in weights
    # load_inference_model (predict, --eval) rebuilds the probe from the stored config and answers as the run did.
    from maedfer.apps.inference import load_inference_model

    loaded = load_inference_model(out / "checkpoint-last.pth")
    assert isinstance(loaded.model, LinearProbe)
    torch.testing.assert_close(loaded.model.head.fc.weight, weights["head.fc.weight"], rtol=0, atol=0)
    assert len(json.loads((out / "history.json").read_text())) == 3
