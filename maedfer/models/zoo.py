"""Registered models: sizes only.

Clean names (``videomae_base_160``, ``mae_dfer_base``, ...) default to the configuration of the papers. The official
registered names of the released code are registered too and accept the official constructor arguments
(``all_frames``, ``attn_type``, ``lg_region_size``, ``use_mean_pooling``, ``encoder_embed_dim``, ...), with the official
functions' defaults, so official checkpoints and configurations carry over unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..layers import BlockSettings
from .encoder import TokenEncoder, VideoViT
from .lgi_former import LGIFormer
from .mae import MaskedVideoAutoencoder
from .official import class_arguments, official_arguments, register, translate_official
from .tpsbt import TPSBT

__all__ = ["build_encoder", "build_mae"]

# Small sizes that keep each architecture intact (token grid (4, 4, 4); LGI regions (2, 2, 4) -> 4 regions).
_TINY_VIDEO = {"img_size": 32, "patch_size": 8, "num_frames": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
_TINY_LGI = {**_TINY_VIDEO, "region_size": (2, 2, 4)}
_TINY_DECODER = {"decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2}

_DECODER_KEYS = ("decoder_embed_dim", "decoder_depth", "decoder_num_heads", "decoder_pos_order")
_VIDEO_ENCODERS: dict[str, type[TokenEncoder]] = {"joint": VideoViT, "local_global": LGIFormer}


def _finetune_arguments(*classes: type[TokenEncoder]) -> frozenset[str]:
    """Flat arguments of a fine-tuning builder of ``classes``."""
    return class_arguments(*classes)


def _pretrain_arguments(*classes: type[TokenEncoder]) -> frozenset[str]:
    """Flat arguments of a pre-training builder (:func:`build_mae`) of ``classes``."""
    return class_arguments(*classes, exclude=("num_classes", "global_pool")) | set(_DECODER_KEYS)


def build_encoder(encoder_cls: type[TokenEncoder], kwargs: dict[str, Any]) -> TokenEncoder:
    """Build an encoder from flat arguments (block settings as ``drop_path_rate``, ``qkv_bias`` ...)."""
    kwargs = dict(kwargs)
    block = BlockSettings.pop_flat(kwargs)
    return encoder_cls(**kwargs, block=block)


def build_mae(encoder_cls: type[TokenEncoder], kwargs: dict[str, Any]) -> MaskedVideoAutoencoder:
    """Build a :class:`MaskedVideoAutoencoder` from one flat dict of encoder + ``decoder_*`` arguments; the block
    settings apply to encoder and decoder."""
    kwargs = dict(kwargs)
    decoder_args = {key.removeprefix("decoder_"): kwargs.pop(key) for key in _DECODER_KEYS if key in kwargs}
    block = BlockSettings.pop_flat(kwargs)
    encoder = encoder_cls(**kwargs, block=block, num_classes=0, global_pool="")
    return MaskedVideoAutoencoder(
        encoder,
        decoder_embed_dim=decoder_args.get("embed_dim", 384),
        decoder_depth=decoder_args.get("depth", 4),
        decoder_num_heads=decoder_args.get("num_heads", 6),
        decoder_pos_order=decoder_args.get("pos_order", "raster"),
        block=block,
    )


def _official_pretrain(
    defaults: dict[str, Any], overrides: dict[str, Any], encoder_cls: type[TokenEncoder] | None = None
) -> MaskedVideoAutoencoder:
    kwargs = translate_official({**defaults, **overrides}, "svfap" if encoder_cls else "video", "pretrain")
    decoder_out = kwargs.pop("decoder_num_classes", None)
    model = build_mae(encoder_cls or _VIDEO_ENCODERS[kwargs.pop("attn_type")], kwargs)
    if decoder_out is not None and decoder_out != model.decoder.head.out_features:
        raise ValueError(
            f"decoder_num_classes={decoder_out} but the model predicts {model.decoder.head.out_features} values per "
            "token (3 * tubelet_size * patch_size ** 2)"
        )
    return model


def _official_finetune(
    defaults: dict[str, Any], overrides: dict[str, Any], encoder_cls: type[TokenEncoder] | None = None
) -> TokenEncoder:
    kwargs = translate_official({**defaults, **overrides}, "svfap" if encoder_cls else "video", "finetune")
    return build_encoder(encoder_cls or _VIDEO_ENCODERS[kwargs.pop("attn_type")], kwargs)


# ----------------------------------------------------------------------------------------------- clean names
_PAPER_FINETUNE = {"num_classes": 7, "drop_path_rate": 0.1, "init_scale": 0.001}


@register("videomae_base_160", _finetune_arguments(VideoViT), system="videomae", kind="finetune", tiny_overrides=_TINY_VIDEO)
def videomae_base_160(**overrides: Any) -> TokenEncoder:
    """VideoMAE ViT-B (768 wide, 12 blocks, 12 heads) for 16x160x160 clips, mean pooling, 7 classes."""
    return build_encoder(VideoViT, {"embed_dim": 768, "depth": 12, "num_heads": 12, **_PAPER_FINETUNE, **overrides})


@register("videomae_dim512_depth16_160", _finetune_arguments(VideoViT), system="videomae", kind="finetune", tiny_overrides=_TINY_VIDEO)
def videomae_dim512_depth16_160(**overrides: Any) -> TokenEncoder:
    """Plain joint-attention ViT with the LGI-Former's size (512 wide, 16 blocks, 8 heads): the FLOP comparison."""
    return build_encoder(VideoViT, {"embed_dim": 512, "depth": 16, "num_heads": 8, **_PAPER_FINETUNE, **overrides})


@register(
    "videomae_pretrain_base_160",
    _pretrain_arguments(VideoViT),
    system="videomae",
    kind="pretrain",
    tiny_overrides={**_TINY_VIDEO, **_TINY_DECODER},
    pretrain_cfg={"mask": {"type": "tube", "ratio": 0.9}, "frame_diff_group_size": None},
)
def videomae_pretrain_base_160(**overrides: Any) -> MaskedVideoAutoencoder:
    """VideoMAE ViT-B masked autoencoder (decoder 384 wide, 4 blocks, 6 heads), tube masking."""
    return build_mae(VideoViT, {"embed_dim": 768, "depth": 12, "num_heads": 12, **overrides})


@register("mae_dfer_base", _finetune_arguments(LGIFormer), system="mae_dfer", kind="finetune", tiny_overrides=_TINY_LGI)
def mae_dfer_base(**overrides: Any) -> TokenEncoder:
    """MAE-DFER LGI-Former (512 wide, 16 blocks, 8 heads, regions 2x5x10, messenger pooling) as fine-tuned on DFEW."""
    return build_encoder(
        LGIFormer, {"embed_dim": 512, "depth": 16, "num_heads": 8, "region_size": (2, 5, 10), **_PAPER_FINETUNE, **overrides}
    )


@register(
    "mae_dfer_pretrain_base",
    _pretrain_arguments(LGIFormer),
    system="mae_dfer",
    kind="pretrain",
    tiny_overrides={**_TINY_LGI, **_TINY_DECODER},
    pretrain_cfg={"mask": {"type": "part_window", "ratio": 0.9}, "frame_diff_group_size": 2},
)
def mae_dfer_pretrain_base(**overrides: Any) -> MaskedVideoAutoencoder:
    """MAE-DFER pre-training model: LGI-Former encoder, MAE decoder; part-window masking, frame-difference target."""
    return build_mae(LGIFormer, {"embed_dim": 512, "depth": 16, "num_heads": 8, "region_size": (2, 5, 10), **overrides})


_SVFAP = {"embed_dim": 512, "num_heads": 8, "stage_depths": (12, 6, 3), "num_bottleneck_tokens": (8,)}
_TINY_TPSBT = {
    **{k: v for k, v in _TINY_VIDEO.items() if k != "depth"},
    "stage_depths": (1, 1, 1),
    "num_bottleneck_tokens": (2,),
}
_SVFAP_OFFICIAL_BEHAVIOUR = "pretrain_context='official', upsample='official' reproduce the official pre-training"


@register("svfap_base", _finetune_arguments(TPSBT), system="svfap", kind="finetune", tiny_overrides=_TINY_TPSBT)
def svfap_base(**overrides: Any) -> TokenEncoder:
    """SVFAP TPSBT (512 wide, 8 heads, stages 12/6/3, 8 bottleneck tokens per frame) as fine-tuned on DFEW."""
    return build_encoder(TPSBT, {**_SVFAP, **_PAPER_FINETUNE, **overrides})


@register(
    "svfap_pretrain_base",
    _pretrain_arguments(TPSBT),
    system="svfap",
    kind="pretrain",
    tiny_overrides={**_TINY_TPSBT, **_TINY_DECODER},
    pretrain_cfg={"mask": {"type": "tube", "ratio": 0.9}, "frame_diff_group_size": None, "note": _SVFAP_OFFICIAL_BEHAVIOUR},
)
def svfap_pretrain_base(**overrides: Any) -> MaskedVideoAutoencoder:
    """SVFAP pre-training model with the 512-wide TPSBT encoder that fine-tuning uses; decoder 384x4, tube masking."""
    return build_mae(TPSBT, {**_SVFAP, **overrides})


# -------------------------------------------------------------------------------------------- official names
_OFFICIAL_TINY_FT = {"img_size": 32, "patch_size": 8, "all_frames": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
_OFFICIAL_TINY_PT = {
    "img_size": 32,
    "patch_size": 8,
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "decoder_embed_dim": 16,
    "decoder_depth": 1,
    "decoder_num_heads": 2,
    "decoder_num_classes": 384,
}
_OFFICIAL_VIDEO_FT = _finetune_arguments(VideoViT, LGIFormer) | official_arguments("video", "finetune")
_OFFICIAL_VIDEO_PT = _pretrain_arguments(VideoViT, LGIFormer) | official_arguments("video", "pretrain") | {"decoder_num_classes"}
_OFFICIAL_SVFAP_FT = _finetune_arguments(TPSBT) | official_arguments("svfap", "finetune")
_OFFICIAL_SVFAP_PT = _pretrain_arguments(TPSBT) | official_arguments("svfap", "pretrain") | {"decoder_num_classes"}
_OFFICIAL_FT_DEFAULTS = {"img_size": 160, "patch_size": 16, "num_classes": 1000, "init_scale": 0.0, "qkv_bias": True}
_OFFICIAL_LG_DEFAULTS = {"lg_region_size": (2, 2, 10), "lg_classify_token_type": "org"}
_OFFICIAL_PT_DEFAULTS = {
    "img_size": 160,
    "patch_size": 16,
    "decoder_embed_dim": 384,
    "decoder_num_heads": 6,
    "decoder_depth": 8,
    "decoder_num_classes": 1536,
    "qkv_bias": True,
}


def _with_lg_defaults(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Official LGI defaults apply only when ``attn_type='local_global'`` is requested."""
    if overrides.get("attn_type") == "local_global":
        return {**defaults, **_OFFICIAL_LG_DEFAULTS}
    return defaults


@register(
    "vit_base_patch16_160", _OFFICIAL_VIDEO_FT, system="mae_dfer", kind="finetune", official=True, tiny_overrides=_OFFICIAL_TINY_FT
)
def vit_base_patch16_160(**overrides: Any) -> nn.Module:
    """Official name: VideoMAE ViT-B (768/12/12) classifier; official arguments and defaults (1000 classes)."""
    defaults = {**_OFFICIAL_FT_DEFAULTS, "embed_dim": 768, "depth": 12, "num_heads": 12}
    return _official_finetune(_with_lg_defaults(defaults, overrides), overrides)


@register(
    "vit_base_dim512_no_depth_patch16_160",
    _OFFICIAL_VIDEO_FT,
    system="mae_dfer",
    kind="finetune",
    official=True,
    tiny_overrides={**_OFFICIAL_TINY_FT, "attn_type": "local_global", "lg_region_size": (2, 2, 4)},
)
def vit_base_dim512_no_depth_patch16_160(**overrides: Any) -> nn.Module:
    """Official name: 512-wide, 8-head classifier; ``attn_type='local_global'`` gives the MAE-DFER LGI-Former."""
    defaults = {**_OFFICIAL_FT_DEFAULTS, "embed_dim": 512, "depth": 12, "num_heads": 8}
    return _official_finetune(_with_lg_defaults(defaults, overrides), overrides)


@register(
    "pretrain_videomae_base_patch16_160",
    _OFFICIAL_VIDEO_PT,
    system="mae_dfer",
    kind="pretrain",
    official=True,
    tiny_overrides=_OFFICIAL_TINY_PT,
    pretrain_cfg={"mask": {"type": "tube", "ratio": 0.9}, "frame_diff_group_size": None},
)
def pretrain_videomae_base_patch16_160(**overrides: Any) -> nn.Module:
    """Official name: VideoMAE ViT-B pre-training model (decoder 384/6, official default depth 8)."""
    defaults = {**_OFFICIAL_PT_DEFAULTS, "encoder_embed_dim": 768, "encoder_depth": 12, "encoder_num_heads": 12}
    return _official_pretrain(_with_lg_defaults(defaults, overrides), overrides)


@register(
    "pretrain_videomae_base_dim512_no_depth_patch16_160",
    _OFFICIAL_VIDEO_PT,
    system="mae_dfer",
    kind="pretrain",
    official=True,
    tiny_overrides={**_OFFICIAL_TINY_PT, "attn_type": "local_global", "lg_region_size": (2, 2, 4)},
    pretrain_cfg={"mask": {"type": "part_window", "ratio": 0.9}, "frame_diff_group_size": 2},
)
def pretrain_videomae_base_dim512_no_depth_patch16_160(**overrides: Any) -> nn.Module:
    """Official name: 512-wide pre-training model; with ``attn_type='local_global'`` the MAE-DFER model."""
    defaults = {**_OFFICIAL_PT_DEFAULTS, "encoder_embed_dim": 512, "encoder_depth": 12, "encoder_num_heads": 8}
    return _official_pretrain(_with_lg_defaults(defaults, overrides), overrides)


_OFFICIAL_TPSBT_TINY = {"stage_depths": (1, 1, 1), "num_bottleneck_tokens": (2,)}
_OFFICIAL_TINY_TPSBT_FT = {**{k: v for k, v in _OFFICIAL_TINY_FT.items() if k != "depth"}, **_OFFICIAL_TPSBT_TINY}
_OFFICIAL_TINY_TPSBT_PT = {**{k: v for k, v in _OFFICIAL_TINY_PT.items() if k != "encoder_depth"}, **_OFFICIAL_TPSBT_TINY}


@register(
    "svfap_base_patch16_160",
    _OFFICIAL_SVFAP_FT,
    system="svfap",
    kind="finetune",
    official=True,
    tiny_overrides=_OFFICIAL_TINY_TPSBT_FT,
)
def svfap_base_patch16_160(**overrides: Any) -> nn.Module:
    """Official name: SVFAP TPSBT classifier (512/8, stages 12/6/3); official arguments and defaults."""
    defaults = {**_OFFICIAL_FT_DEFAULTS, "embed_dim": 512, "num_heads": 8}
    return _official_finetune(defaults, overrides, TPSBT)


@register(
    "pretrain_svfap_base_patch16_160",
    _OFFICIAL_SVFAP_PT,
    system="svfap",
    kind="pretrain",
    official=True,
    tiny_overrides=_OFFICIAL_TINY_TPSBT_PT,
    pretrain_cfg={"mask": {"type": "tube", "ratio": 0.9}, "frame_diff_group_size": None, "note": _SVFAP_OFFICIAL_BEHAVIOUR},
)
def pretrain_svfap_base_patch16_160(**overrides: Any) -> nn.Module:
    """Official name: SVFAP pre-training model as registered (768-wide, 12-head encoder; fine-tuning is 512/8)."""
    defaults = {**_OFFICIAL_PT_DEFAULTS, "encoder_embed_dim": 768, "encoder_num_heads": 12}
    return _official_pretrain(defaults, overrides, TPSBT)
from . import zoo_audio_visual  # noqa: E402,F401  (registers the HiCMAE entries)
