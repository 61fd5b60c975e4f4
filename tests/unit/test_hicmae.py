"""HiCMAE models: official names that upstream cannot build, single-modality fine-tuning, skip routing, loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import maedfer
from maedfer.masking import RandomMaskGenerator, TubeMaskGenerator
from maedfer.models.audio_visual import AudioVisualClassifier

MANIFESTS = Path(__file__).resolve().parents[1] / "fixtures" / "official" / "manifests"
TINY = maedfer.model_entry("hicmae_base").tiny_overrides
TINY_PRETRAIN = maedfer.model_entry("hicmae_pretrain_base").tiny_overrides


@pytest.mark.parametrize(
    "name,params",
    [("pretrain_hicmae_dim512_patch16_160_a256", 112_216_832), ("pretrain_hicmae_dim384_patch16_160_a256", 57_680_896)],
)
def test_bare_official_pretraining_names_build(name: str, params: int) -> None:
    manifest = json.loads((MANIFESTS / f"{name}.json").read_text())
    assert "construction_error" in manifest  # upstream fails here (decoder depth 8 vs 3 taps)
    with torch.device("meta"):
        model = maedfer.create_model(name)
    assert len(model.decoder.blocks) == 4 and sum(p.numel() for p in model.parameters()) == params
    with pytest.raises(ValueError, match="decoder_depth=8"):
        maedfer.create_model(name, decoder_depth=8)


def test_released_configuration_sizes() -> None:
    with torch.device("meta"):
        pretrain = maedfer.create_model("hicmae_pretrain_base")
        classifier = maedfer.create_model("hicmae_base")
    assert sum(p.numel() for p in pretrain.parameters()) == 99_609_344
    assert sum(p.numel() for p in classifier.parameters()) == 80_792_602  # CREMA-D, 6 classes
    assert classifier.num_features == 2048 and classifier.num_layers == 12


def _pretrain_checkpoint() -> dict:
    torch.manual_seed(0)
    return maedfer.create_model("hicmae_pretrain_base", **TINY_PRETRAIN).state_dict()


@pytest.mark.parametrize("modality", ["video", "audio"])
def test_single_modality_fine_tuning(modality: str) -> None:
    tiny = {k: v for k, v in TINY.items()}
    model = maedfer.create_model("hicmae_base", modality=modality, num_classes=4, **tiny).eval()
    assert isinstance(model, AudioVisualClassifier) and model.modality == modality
    assert model.encoder_fusion is None
    report = maedfer.load_checkpoint(model, _pretrain_checkpoint())
    other = "encoder_audio." if modality == "video" else "encoder."
    assert any(k.startswith(other) for k in report.unexpected_keys)  # the other branch is simply not used
    assert set(report.missing_keys) == {f"{modality}_layer_weights", "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    video, audio = torch.randn(2, 3, 8, 32, 32), torch.randn(2, 1, 32, 16)
    out = model(video=video) if modality == "video" else model(audio=audio)
    assert out.shape == (2, 4) and model.num_features == 32
    with pytest.raises(ValueError, match="needs a"):
        model(video=None, audio=None)


def test_no_fusion_ablation_and_audio_visual_inputs_required() -> None:
    model = maedfer.create_model("hicmae_base", fusion_depth=0, **{k: v for k, v in TINY.items() if k != "fusion_depth"})
    assert model.encoder_fusion is None and model.modality == "audio_visual" and model.num_features == 64
    out = model(torch.randn(1, 3, 8, 32, 32), torch.randn(1, 1, 32, 16))
    assert out.shape == (1, 6)
    full = maedfer.create_model("hicmae_base", **TINY)
    with pytest.raises(ValueError, match="needs an audio input"):
        full(torch.randn(1, 3, 8, 32, 32))


def test_layer_weights_are_a_softmax_mixture() -> None:
    model = maedfer.create_model("hicmae_base", **TINY).eval()
    video, audio = torch.randn(1, 3, 8, 32, 32), torch.randn(1, 1, 32, 16)
    with torch.no_grad():
        model.video_layer_weights.copy_(torch.tensor([0.0, 0.0, 0.0, 50.0]))  # all weight on the last layer
        features = model.forward_features(video, audio)
        last = model.encoder.forward_encoder(video).tokens.mean(1)
    # The first C entries before fc_norm are the video feature; undo fc_norm by comparing normalised vectors.
    pre_norm = torch.cat([last, torch.zeros_like(last)], dim=-1)  # only used for its shape
    assert features.shape == (1, 4 * 32) and pre_norm.shape[-1] == 64
    weights = torch.softmax(model.video_layer_weights, 0)
    assert weights[-1] > 0.999


def test_decoder_skips_are_routed_deepest_first() -> None:
    """Changing the deepest tap must change what decoder block 1 sees (skip[-1]); the tap order is checked by parity."""
    torch.manual_seed(0)
    model = maedfer.create_model("hicmae_pretrain_base", **TINY_PRETRAIN).eval()
    decoder = model.decoder
    calls = []
    for index, block in enumerate(decoder.blocks):
        block.register_forward_hook(lambda module, args, output, index=index: calls.append((index, len(args))))
    video, audio = torch.randn(1, 3, 8, 32, 32), torch.randn(1, 1, 32, 16)
    mask = TubeMaskGenerator(model.encoder.grid_size, 0.75).batch(1)
    mask_audio = RandomMaskGenerator(model.encoder_audio.grid_size, 0.75).batch(1)
    with torch.no_grad():
        model(video, mask, audio, mask_audio)
    assert calls == [(0, 1), (1, 2), (2, 2), (3, 2)]  # block 0 plain, blocks 1-3 read a skip feature


def test_official_fine_tuning_head_keeps_pytorch_init() -> None:
    torch.manual_seed(0)
    official = maedfer.create_model("avit_dim512_patch16_160_a256", **maedfer.model_entry("avit_dim512_patch16_160_a256").tiny_overrides)
    bound = 1 / official.num_features**0.5
    assert official.head.weight.abs().max() <= bound and official.head.weight.std() > bound / 3  # U(+-1/sqrt(fan_in))
    clean = maedfer.create_model("hicmae_base", **TINY)
    assert clean.head.weight.std() < 0.02 * 0.001 * 2  # truncated normal scaled by init_scale
