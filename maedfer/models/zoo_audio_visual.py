"""Registered HiCMAE models: clean names and the official ``avit_*`` / ``pretrain_hicmae_*`` names.

The official pre-training factories cannot be built with their own defaults (decoder depth 8 does not fit the three
tapped layers); here the decoder depth defaults to ``len(return_intermediate_features) + 1`` so they build.
"""

from __future__ import annotations

from typing import Any

from ..layers import FLAT_BLOCK_NAMES, BlockSettings
from .audio_visual import AudioViT, AudioVisualClassifier, AudioVisualMaskedAutoencoder, CrossModalFusion
from .encoder import TokenEncoder, VideoViT
from .lgi_former import LGIFormer
from .official import official_arguments, register, translate_official
from .tpsbt import TPSBT

__all__ = ["VIDEO_TOWERS", "VIDEO_TOWER_ARGUMENTS", "build_hicmae_classifier", "build_hicmae_pretrain"]

#: ``video_encoder`` values: the class of HiCMAE's video tower.
VIDEO_TOWERS: dict[str, type[TokenEncoder]] = {"vit": VideoViT, "lgi_former": LGIFormer, "tpsbt": TPSBT}
#: Arguments only one video tower takes (the rest are shared). Pooling, head and the switches that reproduce the
#: official SVFAP pre-training do not apply to a tower (it returns tokens; HiCMAE pools them).
VIDEO_TOWER_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "vit": (),
    "lgi_former": ("region_size", "first_attn", "third_attn", "share_attn", "use_second", "use_third"),
    "tpsbt": ("stage_depths", "num_bottleneck_tokens", "temporal_kernel_size", "bottleneck_hidden_dim"),
}

# Flat arguments of the builders below.
_ENCODER_KEYS = (
    "embed_dim", "num_heads", "depth", "embed_dim_audio", "num_heads_audio", "depth_audio", "learnable_pos_embed",
    "img_size", "patch_size", "num_frames", "tubelet_size", "in_chans", "audio_size", "audio_patch_size",
    "audio_in_chans", "fusion_depth", "fusion_num_heads", "video_encoder",
    *(name for names in VIDEO_TOWER_ARGUMENTS.values() for name in names), *FLAT_BLOCK_NAMES,
)
_CLASSIFIER_KEYS = frozenset((*_ENCODER_KEYS, "modality", "num_classes", "head_activation", "head_init", "init_scale"))
_PRETRAIN_KEYS = frozenset((
    *_ENCODER_KEYS, "return_intermediate_features", "temperature", "decoder_depth", "decoder_depth_audio",
    "decoder_embed_dim", "decoder_num_heads", "decoder_embed_dim_audio", "decoder_num_heads_audio",
    "decoder_num_classes", "decoder_num_classes_audio",
))


def _video_tower(kw: dict[str, Any]) -> tuple[type[TokenEncoder], dict[str, Any], int | None]:
    """Pop ``video_encoder`` and its own arguments from ``kw``: ``(class, arguments, depth)``; the TPSBT's depth is
    ``sum(stage_depths)`` (it takes no ``depth``).

    Raises:
        ValueError: An unknown ``video_encoder``, or an argument of another tower (naming it).
    """
    tower = kw.pop("video_encoder", "vit")
    if tower not in VIDEO_TOWERS:
        raise ValueError(f"video_encoder must be one of {', '.join(VIDEO_TOWERS)}, got {tower!r}")
    foreign = sorted(key for other, names in VIDEO_TOWER_ARGUMENTS.items() if other != tower
                     for key in names if key in kw and key not in VIDEO_TOWER_ARGUMENTS[tower])
    if foreign:
        raise ValueError(f"argument(s) {', '.join(foreign)} do not apply to video_encoder={tower!r}")
    own = {key: kw.pop(key) for key in VIDEO_TOWER_ARGUMENTS[tower] if key in kw}
    if tower != "tpsbt":
        return VIDEO_TOWERS[tower], own, kw.pop("depth", 10)
    own.setdefault("stage_depths", (5, 3, 2))
    total = sum(int(d) for d in own["stage_depths"])
    depth = kw.pop("depth", total)
    if depth not in (0, total):  # 0: no video tower (audio-only fine-tuning)
        raise ValueError(f"video_encoder='tpsbt': depth={depth} but stage_depths {tuple(own['stage_depths'])} sum to "
                         f"{total} (a TPSBT's depth is the sum of its stage depths)")
    return TPSBT, own, depth


def _encoders(kw: dict[str, Any], block: BlockSettings) -> tuple[TokenEncoder | None, AudioViT | None]:
    """Build the two modality encoders (``None`` for a depth of 0), popping their arguments from ``kw``."""
    video_cls, video_own, depth = _video_tower(kw)
    embed_dim, num_heads = kw["embed_dim"], kw["num_heads"]
    depth_audio = kw.pop("depth_audio", depth)
    common = dict(global_pool="", num_classes=0, learnable_pos_embed=kw.pop("learnable_pos_embed", False), block=block)
    video = audio = None
    video_geometry = {key: kw.pop(key) for key in ("img_size", "patch_size", "num_frames", "tubelet_size", "in_chans") if key in kw}
    audio_geometry = dict(
        input_size=tuple(kw.pop("audio_size", (256, 128))),
        patch_size=kw.pop("audio_patch_size", 16),
        in_chans=kw.pop("audio_in_chans", 1),
    )
    if depth > 0:
        if video_cls is not TPSBT:
            video_own["depth"] = depth
        video = video_cls(**video_geometry, embed_dim=embed_dim, num_heads=num_heads, **video_own, **common)
    if depth_audio > 0:
        audio = AudioViT(
            **audio_geometry, embed_dim=kw["embed_dim_audio"], depth=depth_audio, num_heads=kw["num_heads_audio"], **common
        )
    return video, audio


def _fusion(kw: dict[str, Any], block: BlockSettings) -> CrossModalFusion:
    return CrossModalFusion(
        embed_dim=kw["embed_dim"],
        embed_dim_audio=kw["embed_dim_audio"],
        depth=kw["fusion_depth"],
        num_heads=kw.get("fusion_num_heads", kw["num_heads"]),
        block=block,
    )


def _flat(kwargs: dict[str, Any]) -> tuple[dict[str, Any], BlockSettings]:
    """Copy of ``kwargs`` with the encoder widths, heads and fusion depth defaulted, and the block settings."""
    kw = dict(kwargs)
    block = BlockSettings.pop_flat(kw)
    kw.setdefault("embed_dim", 512)
    kw.setdefault("num_heads", 8)
    kw.setdefault("embed_dim_audio", kw["embed_dim"])
    kw.setdefault("num_heads_audio", kw["num_heads"])
    kw.setdefault("fusion_depth", 2)
    return kw, block


def build_hicmae_classifier(**kwargs: Any) -> AudioVisualClassifier:
    """Build an :class:`AudioVisualClassifier` from flat arguments.

    Video: ``img_size``, ``patch_size``, ``num_frames``, ``tubelet_size``, ``embed_dim``, ``depth``, ``num_heads``.
    Audio: ``audio_size`` (time, mel), ``audio_patch_size``, ``embed_dim_audio``, ``depth_audio``, ``num_heads_audio``
    (default: the video values). Fusion: ``fusion_depth``, ``fusion_num_heads``. ``modality``: ``"audio_visual"``,
    ``"video"`` or ``"audio"`` (a depth of 0 also drops that encoder). Head: ``num_classes``, ``head_activation``,
    ``head_init``, ``init_scale``. Block settings: ``mlp_ratio``, ``qkv_bias``, ``drop_rate``, ``drop_path_rate``, ...

    Raises:
        TypeError: For an argument not listed here.
    """
    _reject_unknown(kwargs, _CLASSIFIER_KEYS)
    kw, block = _flat(kwargs)
    modality = kw.pop("modality", "audio_visual")
    if modality not in ("audio_visual", "video", "audio"):
        raise ValueError(f"modality must be 'audio_visual', 'video' or 'audio', got {modality!r}")
    if modality == "video":
        kw["depth_audio"] = 0
    elif modality == "audio":
        kw.setdefault("depth_audio", kw.get("depth", 10))  # the audio depth defaults to the video one
        kw["depth"] = 0
    head = {k: kw.pop(k) for k in ("num_classes", "head_activation", "head_init", "init_scale") if k in kw}
    video, audio = _encoders(kw, block)
    fusion = None
    if video is not None and audio is not None and kw["fusion_depth"] > 0:
        fusion = _fusion(kw, block.replace(drop=0.0))  # the official fusion encoder has dropout 0 (but drop path)
    return AudioVisualClassifier(video, audio, fusion, norm_eps=block.norm_eps, **head)


def build_hicmae_pretrain(**kwargs: Any) -> AudioVisualMaskedAutoencoder:
    """Build an :class:`AudioVisualMaskedAutoencoder` from flat arguments (see :func:`build_hicmae_classifier` for
    the encoder ones; plus ``decoder_embed_dim``, ``decoder_num_heads``, ``decoder_depth`` and their ``*_audio``
    twins, ``decoder_num_classes(_audio)`` (checked), ``fusion_depth``, ``return_intermediate_features``,
    ``temperature``)."""
    _reject_unknown(kwargs, _PRETRAIN_KEYS)
    kw, block = _flat(kwargs)
    taps = tuple(kw.pop("return_intermediate_features", (3, 6, 9)))
    for key in ("decoder_depth", "decoder_depth_audio"):
        depth = kw.pop(key, len(taps) + 1)
        if depth != len(taps) + 1:
            raise ValueError(f"{key}={depth} must be len(return_intermediate_features) + 1 = {len(taps) + 1}")
    decoder = {
        "decoder_embed_dim": kw.pop("decoder_embed_dim", 384),
        "decoder_num_heads": kw.pop("decoder_num_heads", 6),
    }
    decoder["decoder_embed_dim_audio"] = kw.pop("decoder_embed_dim_audio", decoder["decoder_embed_dim"])
    decoder["decoder_num_heads_audio"] = kw.pop("decoder_num_heads_audio", decoder["decoder_num_heads"])
    video, audio = _encoders(kw, block)
    if video is None or audio is None:
        raise ValueError("HiCMAE pre-training needs both encoders (depth > 0 and depth_audio > 0)")
    model = AudioVisualMaskedAutoencoder(
        video, audio, _fusion(kw, block), return_intermediate_features=taps, temperature=kw.get("temperature", 0.07),
        block=block, **decoder,
    )
    for name, got in (("decoder_num_classes", model.decoder.head.out_features),
                      ("decoder_num_classes_audio", model.decoder_audio.head.out_features)):
        if kw.get(name) is not None and kw[name] != got:
            raise ValueError(f"{name}={kw[name]} but the model predicts {got} values per token")
    return model


def _reject_unknown(kwargs: dict[str, Any], accepted: frozenset[str]) -> None:
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TypeError(f"unknown argument(s) {', '.join(unknown)}; accepted: {', '.join(sorted(accepted))}")


# ----------------------------------------------------------------------------------------------- clean names
_TINY_AV = {
    "img_size": 32,
    "patch_size": 8,
    "num_frames": 8,
    "audio_size": (32, 16),
    "audio_patch_size": 8,
    "embed_dim": 32,
    "num_heads": 2,
    "depth": 4,
    "fusion_depth": 1,
}
_PAPER_AV = {"num_classes": 6, "drop_path_rate": 0.1}


@register("hicmae_base", _CLASSIFIER_KEYS, system="hicmae", kind="finetune", tiny_overrides=_TINY_AV)
def hicmae_base(**overrides: Any) -> AudioVisualClassifier:
    """HiCMAE-B classifier (512 wide, 8 heads, 10 video + 10 audio + 2 fusion layers) as fine-tuned on CREMA-D."""
    return build_hicmae_classifier(**{"embed_dim": 512, "num_heads": 8, "depth": 10, **_PAPER_AV, **overrides})


@register("hicmae_small", _CLASSIFIER_KEYS, system="hicmae", kind="finetune", tiny_overrides=_TINY_AV)
def hicmae_small(**overrides: Any) -> AudioVisualClassifier:
    """HiCMAE-S classifier (384 wide, 6 heads, 10 + 10 + 2 layers)."""
    return build_hicmae_classifier(**{"embed_dim": 384, "num_heads": 6, "depth": 10, **_PAPER_AV, **overrides})


_TINY_AV_PRETRAIN = {
    **_TINY_AV,
    "decoder_embed_dim": 16,
    "decoder_num_heads": 2,
    "return_intermediate_features": (1, 2, 3),
}


@register(
    "hicmae_pretrain_base",
    _PRETRAIN_KEYS,
    system="hicmae",
    kind="pretrain",
    tiny_overrides=_TINY_AV_PRETRAIN,
    pretrain_cfg={"mask": {"type": "tube", "ratio": 0.9}, "mask_audio": {"type": "random", "ratio": 0.8},
                  "frame_diff_group_size": 2, "contrastive_weight": 0.0025},
)
def hicmae_pretrain_base(**overrides: Any) -> AudioVisualMaskedAutoencoder:
    """HiCMAE-B pre-training model as released (encoders 512x10, decoders 384x4, fusion 2, taps 3/6/9)."""
    return build_hicmae_pretrain(**{"embed_dim": 512, "num_heads": 8, "depth": 10, **overrides})


@register(
    "hicmae_pretrain_small",
    _PRETRAIN_KEYS,
    system="hicmae",
    kind="pretrain",
    tiny_overrides=_TINY_AV_PRETRAIN,
    pretrain_cfg={"mask": {"type": "tube", "ratio": 0.9}, "mask_audio": {"type": "random", "ratio": 0.8},
                  "frame_diff_group_size": 2, "contrastive_weight": 0.0025},
)
def hicmae_pretrain_small(**overrides: Any) -> AudioVisualMaskedAutoencoder:
    """HiCMAE-S pre-training model (encoders 384x10, decoders 192x4 with 3 heads, fusion 2)."""
    return build_hicmae_pretrain(
        **{"embed_dim": 384, "num_heads": 6, "depth": 10, "decoder_embed_dim": 192, "decoder_num_heads": 3, **overrides}
    )


# ------------------------------------------------------------------------------- other video towers (mix and match)
# HiCMAE with MAE-DFER's LGI-Former or SVFAP's TPSBT as its video tower, at HiCMAE-B's width and depth (512 wide,
# 8 heads, 10 video blocks). The LGI tower uses MAE-DFER's regions (2 x 5 x 10 tokens) and so its part-window mask;
# the TPSBT tower has stages 5 / 3 / 2, so the taps 3 / 6 / 9 fall one in each stage. Summary tokens (messengers,
# bottleneck tokens) stay inside the tower: skips, contrastive taps, fusion and layer-weighted features read the
# patch tokens (see maedfer.models.audio_visual.rows_on_output_grid).
_LGI_TOWER = {"video_encoder": "lgi_former", "region_size": (2, 5, 10)}
_TPSBT_TOWER = {"video_encoder": "tpsbt", "stage_depths": (5, 3, 2), "num_bottleneck_tokens": (8,)}
_TINY_LGI_TOWER = {"region_size": (2, 2, 4)}
_TINY_TPSBT_TOWER = {"stage_depths": (2, 1, 1), "num_bottleneck_tokens": (2,)}
_AV_PRETRAIN_OBJECTIVE = {"frame_diff_group_size": 2, "contrastive_weight": 0.0025,
                          "mask_audio": {"type": "random", "ratio": 0.8}}


def _without_depth(overrides: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in overrides.items() if key != "depth"}


@register("hicmae_lgi_base", _CLASSIFIER_KEYS, system="hicmae", kind="finetune",
          tiny_overrides={**_TINY_AV, **_TINY_LGI_TOWER})
def hicmae_lgi_base(**overrides: Any) -> AudioVisualClassifier:
    """HiCMAE-B classifier with an LGI-Former video tower (512x10, regions 2x5x10), audio ViT 512x10, fusion 2."""
    return build_hicmae_classifier(
        **{"embed_dim": 512, "num_heads": 8, "depth": 10, **_LGI_TOWER, **_PAPER_AV, **overrides}
    )


@register(
    "hicmae_lgi_pretrain_base",
    _PRETRAIN_KEYS,
    system="hicmae",
    kind="pretrain",
    tiny_overrides={**_TINY_AV_PRETRAIN, **_TINY_LGI_TOWER},
    pretrain_cfg={"mask": {"type": "part_window", "ratio": 0.9}, **_AV_PRETRAIN_OBJECTIVE},
)
def hicmae_lgi_pretrain_base(**overrides: Any) -> AudioVisualMaskedAutoencoder:
    """HiCMAE-B pre-training with an LGI-Former video tower (part-window mask), decoders 384x4, taps 3/6/9."""
    return build_hicmae_pretrain(**{"embed_dim": 512, "num_heads": 8, "depth": 10, **_LGI_TOWER, **overrides})


@register("hicmae_tpsbt_base", _CLASSIFIER_KEYS, system="hicmae", kind="finetune",
          tiny_overrides={**_without_depth(_TINY_AV), **_TINY_TPSBT_TOWER, "depth_audio": 4})
def hicmae_tpsbt_base(**overrides: Any) -> AudioVisualClassifier:
    """HiCMAE-B classifier with a TPSBT video tower (512 wide, stages 5/3/2, 8 bottleneck tokens per frame)."""
    return build_hicmae_classifier(**{"embed_dim": 512, "num_heads": 8, **_TPSBT_TOWER, **_PAPER_AV, **overrides})


@register(
    "hicmae_tpsbt_pretrain_base",
    _PRETRAIN_KEYS,
    system="hicmae",
    kind="pretrain",
    tiny_overrides={**_without_depth(_TINY_AV_PRETRAIN), **_TINY_TPSBT_TOWER, "depth_audio": 4},
    pretrain_cfg={"mask": {"type": "tube", "ratio": 0.9}, **_AV_PRETRAIN_OBJECTIVE},
)
def hicmae_tpsbt_pretrain_base(**overrides: Any) -> AudioVisualMaskedAutoencoder:
    """HiCMAE-B pre-training with a TPSBT video tower (tube mask), decoders 384x4, taps 3/6/9 (one per stage)."""
    return build_hicmae_pretrain(**{"embed_dim": 512, "num_heads": 8, **_TPSBT_TOWER, **overrides})


# -------------------------------------------------------------------------------------------- official names
_OFFICIAL_TINY_AVIT = {
    "img_size": 32,
    "patch_size": 8,
    "all_frames": 8,
    "img_size_audio": (32, 16),
    "patch_size_audio": 8,
    "depth": 2,
    "depth_audio": 2,
    "fusion_depth": 1,
}
_OFFICIAL_TINY_PRETRAIN = {
    "img_size": 32,
    "patch_size": 8,
    "img_size_audio": (32, 16),
    "patch_size_audio": 8,
    "encoder_depth": 3,
    "encoder_depth_audio": 3,
    "decoder_embed_dim": 16,
    "decoder_num_heads": 2,
    "decoder_embed_dim_audio": 16,
    "decoder_num_heads_audio": 2,
    "decoder_num_classes": 384,
    "decoder_num_classes_audio": 64,
    "encoder_fusion_depth": 1,
    "return_intermediate_features": (0, 2),
}


def _official_avit(width: int, heads: int, overrides: dict[str, Any]) -> AudioVisualClassifier:
    defaults = {
        "img_size": 160,
        "patch_size": 16,
        "num_classes": 1000,
        "embed_dim": width,
        "num_heads": heads,
        "depth": 12,
        "depth_audio": 12,
        "fusion_depth": 2,
        "fusion_num_heads": heads,
        "drop_path_rate": 0.0,
        "head_init": "pytorch",
    }
    return build_hicmae_classifier(**translate_official({**defaults, **overrides}, "audio_visual", "finetune"))


def _official_pretrain(
    width: int, heads: int, decoder_width: int, decoder_heads: int, overrides: dict[str, Any]
) -> AudioVisualMaskedAutoencoder:
    defaults = {
        "img_size": 160,
        "patch_size": 16,
        "encoder_embed_dim": width,
        "encoder_num_heads": heads,
        "encoder_depth": 12,
        "encoder_embed_dim_audio": width,
        "encoder_num_heads_audio": heads,
        "encoder_depth_audio": 12,
        "decoder_embed_dim": decoder_width,
        "decoder_num_heads": decoder_heads,
        "decoder_embed_dim_audio": decoder_width,
        "decoder_num_heads_audio": decoder_heads,
        "encoder_fusion_depth": 2,
        "encoder_fusion_num_heads": heads,
    }
    return build_hicmae_pretrain(**translate_official({**defaults, **overrides}, "audio_visual", "pretrain"))


def _register_official_avit(width: int, heads: int) -> None:
    name = f"avit_dim{width}_patch16_160_a256"

    @register(
        name,
        _CLASSIFIER_KEYS | official_arguments("audio_visual", "finetune"),
        system="hicmae",
        kind="finetune",
        official=True,
        tiny_overrides={**_OFFICIAL_TINY_AVIT, "embed_dim": 32, "num_heads": 2, "fusion_num_heads": 2},
        description=f"Official name: HiCMAE audio-visual classifier, {width} wide, {heads} heads (official defaults)",
    )
    def builder(**overrides: Any) -> AudioVisualClassifier:
        return _official_avit(width, heads, overrides)


def _register_official_pretrain(width: int, heads: int, decoder_width: int, decoder_heads: int) -> None:
    name = f"pretrain_hicmae_dim{width}_patch16_160_a256"

    @register(
        name,
        _PRETRAIN_KEYS | official_arguments("audio_visual", "pretrain"),
        system="hicmae",
        kind="pretrain",
        official=True,
        tiny_overrides={**_OFFICIAL_TINY_PRETRAIN, "encoder_embed_dim": 32, "encoder_num_heads": 2,
                        "encoder_embed_dim_audio": 32, "encoder_num_heads_audio": 2, "encoder_fusion_num_heads": 2},
        pretrain_cfg={"mask": {"type": "tube", "ratio": 0.9}, "mask_audio": {"type": "random", "ratio": 0.8}},
        description=(
            f"Official name: HiCMAE pre-training model, {width} wide (decoder depth defaults to taps + 1, so the bare "
            "name builds, unlike the official factory)"
        ),
    )
    def builder(**overrides: Any) -> AudioVisualMaskedAutoencoder:
        return _official_pretrain(width, heads, decoder_width, decoder_heads, overrides)


for _width, _heads in ((256, 4), (384, 6), (512, 8)):
    _register_official_avit(_width, _heads)
_register_official_pretrain(384, 6, 192, 3)
_register_official_pretrain(512, 8, 384, 6)
