"""Mix and match: any video tower in HiCMAE, masks checked against the encoder, models assembled from a config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import maedfer
from maedfer.config import ConfigError, config_from_dict, dump_config, load_config
from maedfer.data.build import pretraining_mask
from maedfer.masking import PartWindowMaskGenerator, RandomMaskGenerator, TubeMaskGenerator
from maedfer.models import example_inputs
from maedfer.models.assemble import model_from_config
from maedfer.models.audio_visual import _pooled_unit, rows_on_output_grid
from maedfer.models.decoder import decode_masked_tokens
from maedfer.models.zoo_audio_visual import build_hicmae_classifier, build_hicmae_pretrain

TINY_AV_PRETRAIN = maedfer.model_entry("hicmae_pretrain_base").tiny_overrides
TOWERS = {
    "vit": {},
    "lgi_former": {"region_size": (2, 2, 4)},
    "tpsbt": {"stage_depths": (2, 1, 1), "num_bottleneck_tokens": 2},
}


def _tiny(name: str, **overrides):
    return maedfer.create_model(name, **{**maedfer.model_entry(name).tiny_overrides, **overrides})


def _tower_pretrain(tower: str, **overrides):
    kwargs = {**TINY_AV_PRETRAIN, **TOWERS[tower], "video_encoder": tower, **overrides}
    if tower == "tpsbt":
        kwargs.pop("depth")
        kwargs["depth_audio"] = 4
    return build_hicmae_pretrain(**kwargs)


# ------------------------------------------------------------------------------------------- HiCMAE video towers
def test_official_hicmae_pretraining_is_bit_identical_to_the_plain_path() -> None:
    """With ViT towers the tokens already sit in raster order on the input grid: the outputs equal the direct path
    (encoder outputs straight into fusion and decoders) exactly."""
    torch.manual_seed(0)
    model = _tiny("hicmae_pretrain_base").eval()
    video, mask, audio, mask_audio = example_inputs(model, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(video, mask, audio, mask_audio)
        v, a = model.forward_encoders(video, mask, audio, mask_audio)
        fused_v, fused_a = model.encoder_fusion(v.output.tokens, a.output.tokens)
        pred_video = decode_masked_tokens(model.decoder, model.encoder_to_decoder, model.mask_token,
                                          model.decoder_pos_table, fused_v, v.output.positions, mask, skips=v.tokens)
        pred_audio = decode_masked_tokens(model.decoder_audio, model.encoder_to_decoder_audio, model.mask_token_audio,
                                          model.decoder_pos_table_audio, fused_a, a.output.positions, mask_audio,
                                          skips=a.tokens)
    assert torch.equal(out.pred_video, pred_video) and torch.equal(out.pred_audio, pred_audio)
    for got, layer in zip(out.video_embeddings, v.tokens):
        assert torch.equal(got, _pooled_unit(layer))


@pytest.mark.parametrize("tower", list(TOWERS))
def test_every_tower_pretrains_with_a_gradient_for_every_parameter(tower: str) -> None:
    model = _tower_pretrain(tower)
    assert type(model.encoder).__name__ == {"vit": "VideoViT", "lgi_former": "LGIFormer", "tpsbt": "TPSBT"}[tower]
    video, mask, audio, mask_audio = example_inputs(model, 2, mask_ratio=0.5)
    out = model(video, mask, audio, mask_audio)
    assert out.pred_video.shape == (2, int(mask[0].sum()), 3 * 2 * 8 * 8)
    assert len(out.video_embeddings) == 3 and all(e.shape == (2, 32) for e in out.video_embeddings)
    loss = out.pred_video.square().mean() + out.pred_audio.square().mean()
    loss = loss + sum((v @ a.t()).diagonal().sum() for v, a in zip(out.video_embeddings, out.audio_embeddings))
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing  # no find_unused_parameters needed under DDP


def test_tpsbt_stage_layers_reach_the_rows_of_the_frames_they_cover() -> None:
    model = _tower_pretrain("tpsbt").eval()
    encoder = model.encoder
    mask = TubeMaskGenerator(encoder.grid_size, 0.5).batch(2, torch.Generator().manual_seed(3))
    video = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        inter = encoder.forward_intermediates(video, mask, indices=(1, 2, 3))
        tokens, positions, layers = rows_on_output_grid(inter, encoder.grid_size)
    assert inter.grids == [(4, 4, 4), (2, 4, 4), (1, 4, 4)]
    assert torch.equal(positions, positions.sort(dim=1).values) and torch.equal(layers[0], inter.tokens[0])
    for layer, stage_tokens, stage_positions, (frames, _, _) in zip(layers[1:], inter.tokens[1:], inter.positions[1:],
                                                                      inter.grids[1:]):
        stride = 4 // frames
        for b in range(2):
            for row, position in enumerate(positions[b].tolist()):
                t, hw = divmod(position, 16)
                stage_row = stage_positions[b].tolist().index((t // stride) * 16 + hw)
                assert torch.equal(layer[b, row], stage_tokens[b, stage_row])


def test_lgi_tower_rows_are_aligned_with_their_positions() -> None:
    """The LGI-Former returns its tokens region-major; the skips and the fused tokens must share raster rows."""
    model = _tower_pretrain("lgi_former", return_intermediate_features=(1, 2, 3)).eval()
    encoder = model.encoder
    mask = PartWindowMaskGenerator(encoder.grid_size, 0.5, (2, 4)).batch(2, torch.Generator().manual_seed(4))
    with torch.no_grad():
        inter = encoder.forward_intermediates(torch.randn(2, 3, 8, 32, 32), mask, indices=(1, 2, 3))
        tokens, positions, layers = rows_on_output_grid(inter, encoder.grid_size)
    assert not torch.equal(inter.output.positions, positions)  # region-major != raster: the reordering matters
    assert torch.equal(positions, inter.positions[-1]) and torch.equal(positions, (~mask).nonzero()[:, 1].view(2, -1))
    assert torch.equal(layers[-1], tokens)  # the last block's layer is the output, row for row


@pytest.mark.parametrize("tower", list(TOWERS))
def test_every_tower_fine_tunes_with_layer_weighted_features(tower: str) -> None:
    kwargs = {**maedfer.model_entry("hicmae_base").tiny_overrides, **TOWERS[tower], "video_encoder": tower}
    if tower == "tpsbt":
        kwargs.pop("depth")
    model = build_hicmae_classifier(**kwargs)
    assert model.video_layer_weights.numel() == len(model.encoder.blocks) == 4
    logits = model(*example_inputs(model, 2))
    assert logits.shape == (2, 6) and torch.isfinite(logits).all()


def test_tower_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="region_size do not apply to video_encoder='tpsbt'"):
        build_hicmae_classifier(video_encoder="tpsbt", region_size=(2, 5, 10))
    with pytest.raises(ValueError, match="video_encoder must be one of"):
        build_hicmae_classifier(video_encoder="swin")
    with pytest.raises(ValueError, match="depth=10 but stage_depths"):
        build_hicmae_classifier(video_encoder="tpsbt", depth=10, stage_depths=(2, 1, 1))


TOWER_PRESETS = ["hicmae_lgi_base", "hicmae_lgi_pretrain_base", "hicmae_tpsbt_base", "hicmae_tpsbt_pretrain_base"]


@pytest.mark.parametrize("name", TOWER_PRESETS)
def test_registered_towers_run_at_tiny_size(name: str) -> None:
    tiny = _tiny(name).eval()
    assert type(tiny.encoder).__name__ == ("LGIFormer" if "lgi" in name else "TPSBT")
    with torch.no_grad():
        tiny(*example_inputs(tiny, 1))


# Parameters at 512 wide: an attention (fused qkv 3C x C, q and v biases, C x C projection) and a LayerNorm.
_ATTENTION, _NORM = 3 * 512 * 512 + 2 * 512 + 512 * 512 + 512, 2 * 512
# The LGI tower: each of the 10 blocks adds a stage-2 and a stage-3 attention with three norms; 8 messengers.
_LGI_EXTRA = 10 * (2 * _ATTENTION + 3 * _NORM) + 8 * 512
# The TPSBT tower (stages 5/3/2): 5 blocks are cross/self blocks (a cross attention and two norms more), plus two
# temporal convolutions (k = 2) and two spatial-attention pools (norm, MLP 512 -> 128 -> 8).
_TPSBT_EXTRA = 5 * (_ATTENTION + 2 * _NORM) + 2 * (512 * 512 * 2 + 512) + 2 * (_NORM + 512 * 128 + 128 + 128 * 8 + 8)


@pytest.mark.parametrize("name,reference,extra", [
    ("hicmae_lgi_base", 80_792_602, _LGI_EXTRA), ("hicmae_lgi_pretrain_base", 99_609_344, _LGI_EXTRA),
    ("hicmae_tpsbt_base", 80_792_602, _TPSBT_EXTRA), ("hicmae_tpsbt_pretrain_base", 99_609_344, _TPSBT_EXTRA),
])
@pytest.mark.slow
def test_registered_towers_at_base_size(name: str, reference: int, extra: int) -> None:
    """HiCMAE-B's width and depth (512 wide, 10 video blocks): the released HiCMAE-B count (ViT towers, see
    test_hicmae) plus what the other tower adds."""
    with torch.device("meta"):
        base = maedfer.create_model(name)
    assert base.encoder.embed_dim == 512 and len(base.encoder.blocks) == 10
    assert sum(p.numel() for p in base.parameters()) == reference + extra


# -------------------------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize(
    "name,kind,window,error",
    [
        ("videomae_pretrain_base_160", "random", None, None),
        ("videomae_pretrain_base_160", "part_window", (2, 2), None),
        ("videomae_pretrain_base_160", "part_window", None, "needs data.mask_window"),
        ("videomae_pretrain_base_160", "part_window", (3, 2), "does not tile the token grid"),
        ("mae_dfer_pretrain_base", "part_window", None, None),
        ("mae_dfer_pretrain_base", "part_window", (1, 2), None),
        ("mae_dfer_pretrain_base", "part_window", (4, 4), "does not tile the region's spatial size"),
        ("mae_dfer_pretrain_base", "tube", None, "tube mask .* different numbers of visible tokens"),
        ("mae_dfer_pretrain_base", "random", None, "random mask leaves its 4 regions"),
        ("svfap_pretrain_base", "tube", None, None),
        ("svfap_pretrain_base", "part_window", (2, 2), None),
        ("svfap_pretrain_base", "random", None, "TPSBT: a random mask"),
        ("svfap_pretrain_base", "tube", (2, 2), "mask_window only applies"),
    ],
)
def test_masks_are_checked_against_the_encoder(name: str, kind: str, window, error: str | None) -> None:
    encoder = _tiny(name).encoder
    if error is not None:
        with pytest.raises(ValueError, match=error):
            pretraining_mask(encoder, kind, window)
        return
    got_kind, got_window = pretraining_mask(encoder, kind, window)
    generator = {"tube": lambda: TubeMaskGenerator(encoder.grid_size, 0.5),
                 "random": lambda: RandomMaskGenerator(encoder.grid_size, 0.5),
                 "part_window": lambda: PartWindowMaskGenerator(encoder.grid_size, 0.5, got_window)}[got_kind]()
    mask = generator.batch(2, torch.Generator().manual_seed(0))
    out = encoder.forward_encoder(torch.randn(2, 3, 8, 32, 32), mask)
    assert out.positions.shape == (2, generator.num_visible)


def test_an_lgi_region_spanning_the_frame_takes_a_tube_mask() -> None:
    encoder = _tiny("mae_dfer_pretrain_base", region_size=(2, 4, 4)).encoder
    assert pretraining_mask(encoder, "tube") == ("tube", None)
    encoder.forward_encoder(torch.randn(2, 3, 8, 32, 32), TubeMaskGenerator(encoder.grid_size, 0.5).batch(2))


# -------------------------------------------------------------------------------------------- assembled models
_GEOMETRY = "img_size: 32, patch_size: 8, num_frames: 8, embed_dim: 32, num_heads: 2"
# Each description is written out by hand from the preset's documented settings (tiny sizes of the registry).
DESCRIPTIONS = {
    "mae_dfer_pretrain_base": f"""
        encoder: {{type: lgi_former, {_GEOMETRY}, depth: 2, region_size: [2, 2, 4]}}
        decoder: {{embed_dim: 16, depth: 1, num_heads: 2}}
    """,
    "svfap_base": f"""
        encoder: {{type: tpsbt, {_GEOMETRY}, stage_depths: [1, 1, 1], num_bottleneck_tokens: [2]}}
        head: {{num_classes: 7, init_scale: 0.001}}
        block: {{drop_path: 0.1}}
    """,
    "videomae_base_160": f"""
        encoder: {{type: vit, {_GEOMETRY}, depth: 2}}
        head: {{num_classes: 7, init_scale: 0.001}}
        block: {{drop_path: 0.1}}
    """,
    "hicmae_lgi_pretrain_base": f"""
        encoder: {{type: lgi_former, {_GEOMETRY}, depth: 4, region_size: [2, 2, 4]}}
        audio: {{input_size: [32, 16], patch_size: 8}}
        fusion: {{depth: 1}}
        decoder: {{embed_dim: 16, num_heads: 2}}
        objective: {{taps: [1, 2, 3]}}
    """,
    "hicmae_tpsbt_base": f"""
        encoder: {{type: tpsbt, {_GEOMETRY}, stage_depths: [2, 1, 1], num_bottleneck_tokens: [2]}}
        audio: {{input_size: [32, 16], patch_size: 8, depth: 4}}
        fusion: {{depth: 1}}
        head: {{num_classes: 6}}
        block: {{drop_path: 0.1}}
    """,
}


def _outputs(model: torch.nn.Module) -> list[torch.Tensor]:
    inputs = example_inputs(model.eval(), 2, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model(*inputs)
    if isinstance(out, torch.Tensor):
        return [out]
    return [out.pred_video, out.pred_audio, *out.video_embeddings, *out.audio_embeddings]


@pytest.mark.parametrize("name", list(DESCRIPTIONS))
def test_a_yaml_assembled_model_equals_its_preset(name: str, tmp_path: Path) -> None:
    task = "pretrain" if maedfer.model_entry(name).kind == "pretrain" else "classification"
    path = tmp_path / "experiment.yaml"
    path.write_text(f"model:\n{_indent(DESCRIPTIONS[name])}\ntrain:\n  task: {task}\n")
    cfg = load_config(path)
    assert cfg.model.name is None
    torch.manual_seed(0)
    assembled = model_from_config(cfg.model)
    torch.manual_seed(0)
    preset = _tiny(name)
    got, want = assembled.state_dict(), preset.state_dict()
    assert list(got) == list(want)
    assert all(got[key].shape == want[key].shape and torch.equal(got[key], want[key]) for key in want)
    for a, b in zip(_outputs(assembled), _outputs(preset), strict=True):
        assert torch.equal(a, b)


def _indent(text: str) -> str:
    return "\n".join("  " + line.strip() for line in text.strip().splitlines())


def test_a_preset_with_sections_is_the_same_description() -> None:
    """``hicmae_pretrain_base`` with an LGI-Former encoder section is the registered ``hicmae_lgi_pretrain_base``."""
    cfg = config_from_dict({"model": {
        "name": "hicmae_pretrain_base",
        "kwargs": dict(TINY_AV_PRETRAIN),
        "encoder": {"type": "lgi_former", "region_size": [2, 2, 4]},
    }})
    torch.manual_seed(0)
    built = model_from_config(cfg.model)
    torch.manual_seed(0)
    registered = _tiny("hicmae_lgi_pretrain_base")
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), registered.state_dict().values(), strict=True))


def test_an_assembled_config_survives_dump_and_reload(tmp_path: Path) -> None:
    cfg = config_from_dict({"model": yaml.safe_load(DESCRIPTIONS["mae_dfer_pretrain_base"].replace("\n        ", "\n")),
                            "train": {"task": "pretrain"}})
    dump_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again.model == cfg.model and again.model.name is None


@pytest.mark.parametrize(
    "model,extra,match",
    [
        ({"encoder": {"type": "lgi_former", "regoin_size": [2, 2, 4]}, "decoder": {}}, {},
         r"model\.encoder\.regoin_size \(did you mean region_size"),
        ({"encoder": {"type": "vit"}, "decoder": {"depht": 1}}, {}, r"model\.decoder\.depht \(did you mean depth"),
        ({"encoder": {"type": "swin"}, "decoder": {}}, {}, "model.encoder.type must be one of vit, lgi_former, tpsbt"),
        ({"encoder": {"type": "lgi_former", "img_size": 32, "patch_size": 8, "region_size": [2, 3, 4]}, "decoder": {}},
         {}, r"not divisible by 3 \(set by model\.encoder\.region_size\)"),
        ({"encoder": {"type": "vit", "depth": 4}, "audio": {"depth": 4}, "decoder": {}, "objective": {"taps": [1, 7]}},
         {}, r"out of range .* \(set by model\.objective\.taps\)"),
        ({"encoder": {"type": "lgi_former", "img_size": 32, "patch_size": 8, "region_size": [2, 2, 4]}, "decoder": {},
          "objective": {"mask": "random"}}, {}, r"model\.objective\.mask .*random mask leaves its 8 regions"),
        ({"encoder": {"type": "tpsbt", "img_size": 32, "patch_size": 8, "num_frames": 8}, "decoder": {},
          "objective": {"mask": "random"}}, {}, r"model\.objective\.mask .*TPSBT"),
        ({"encoder": {"type": "vit"}, "decoder": {}}, {"train": {"task": "classification"}},
         "description is a pretrain model .* train.task is 'classification'"),
        ({"encoder": {"type": "vit"}, "head": {"num_classes": 3}, "decoder": {}}, {}, r"model\.head\.num_classes"),
        ({"encoder": {"type": "vit"}, "objective": {"frame_diff_group_size": 2.5}}, {"train": {"task": "classification"}},
         r"model\.objective\.frame_diff_group_size: expected int"),
        ({"name": "videomae_pretrain_base_160", "objective": {"mask": "random"}}, {"data": {"mask_type": "tube"}},
         r"model\.objective\.mask='random' conflicts with data\.mask_type='tube'"),
        ({"name": "videomae_base_160", "encoder": {"region_size": [2, 5, 10]}}, {"train": {"task": "classification"}},
         r"region_size .*\(set by model\.encoder\.region_size\)"),
        ({"name": "mae_dfer_base", "encoder": {"type": "vit"}}, {"train": {"task": "classification"}},
         "the encoder of 'mae_dfer_base' is 'lgi_former'"),
        ({"decoder": {"depth": 1}}, {}, "give model.name .* or model.encoder.type"),
        ({"encoder": {"type": "vit"}, "decoder": {}, "objective": {"frame_diff_group_size": 3}}, {},
         r"frame_diff_group_size=3 .* must divide data\.num_frames=16"),
        ({"encoder": {"type": "vit"}, "decoder": {}, "kwargs": {"depth": 2}}, {}, "model.kwargs applies to a registry preset"),
    ],
)
def test_a_wrong_description_names_its_key(model: dict, extra: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"model": model, "train": {"task": "pretrain"}, **extra})


def test_objective_settings_fill_in_the_training_sections() -> None:
    cfg = config_from_dict({"model": {
        "encoder": {"type": "vit", "img_size": 32, "patch_size": 8, "num_frames": 8, "depth": 2},
        "decoder": {"depth": 1},
        "objective": {"mask": "part_window", "mask_window": [2, 2], "mask_ratio": 0.75, "frame_diff_group_size": 4,
                      "normalize_target": False},
    }})
    assert (cfg.data.mask_type, cfg.data.mask_window, cfg.data.mask_ratio) == ("part_window", [2, 2], 0.75)
    assert cfg.train.frame_diff_group_size == 4 and cfg.train.normalize_target is False


def test_the_readme_example_builds_what_it_says() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Mix and match"):]
    example = section[section.index("```yaml\n") + 8: section.index("```", section.index("```yaml\n") + 8)]
    cfg = config_from_dict(yaml.safe_load(example))
    model = model_from_config(cfg.model)
    assert type(model.encoder).__name__ == "LGIFormer" and model.return_intermediate_features == (1, 2, 3)
    assert (cfg.data.mask_type, cfg.train.frame_diff_group_size, cfg.data.mask_ratio) == ("part_window", 2, 0.75)
