"""Registered models: sizes only.

Clean names (``videomae_base_160``, ``mae_dfer_base``, ...) default to the configuration of the papers. The official
registered names of the released code are registered too and accept the official constructor arguments
(``all_frames``, ``attn_type``, ``lg_region_size``, ``use_mean_pooling``, ``encoder_embed_dim``, ...), with the official
functions' defaults, so official checkpoints and configurations carry over unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..registry import register_model
from .encoder import TokenEncoder, VideoViT, block_settings
from .lgi_former import LGIFormer
from .mae import MaskedVideoAutoencoder
from .tpsbt import TPSBT

__all__ = ["translate_official_encoder_kwargs", "build_mae"]

# Small sizes that keep each architecture intact (token grid (4, 4, 4); LGI regions (2, 2, 4) -> 4 regions).
_TINY_VIDEO = {"img_size": 32, "patch_size": 8, "num_frames": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
_TINY_LGI = {**_TINY_VIDEO, "region_size": (2, 2, 4)}
_TINY_DECODER = {"decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2}

_DECODER_KEYS = ("decoder_embed_dim", "decoder_depth", "decoder_num_heads", "decoder_pos_order")

# Official argument name -> maedfer argument name (same meaning).
_RENAMED = {
    "all_frames": "num_frames",
    "head_activation_func": "head_activation",
    "use_learnable_pos_emb": "learnable_pos_embed",
    "lg_region_size": "region_size",
    "lg_first_attn_type": "first_attn",
    "lg_third_attn_type": "third_attn",
    "lg_classify_token_type": "classify_tokens",
    "encoder_in_chans": "in_chans",
    "encoder_embed_dim": "embed_dim",
    "encoder_depth": "depth",
    "encoder_num_heads": "num_heads",
}
_LGI_ONLY = ("region_size", "first_attn", "third_attn", "classify_tokens", "share_attn", "use_second", "use_third")


def translate_official_encoder_kwargs(
    kwargs: dict[str, Any], encoder_cls: type[TokenEncoder] | None = None
) -> tuple[type[TokenEncoder], dict[str, Any]]:
    """Map official constructor arguments onto a maedfer encoder class and its arguments.

    Without ``encoder_cls``, ``attn_type`` picks the class (``"joint"``: :class:`VideoViT`, ``"local_global"``:
    :class:`LGIFormer`); the ``lg_*`` switches are ignored for ``"joint"``, as in the official code. With
    ``encoder_cls`` (SVFAP's :class:`TPSBT`), only the argument names are translated.

    Raises:
        ValueError: For official options that maedfer does not implement because they are broken upstream
            (``keep_temporal_dim``) or meaningless here (``norm_layer``: use ``norm_eps``).
    """
    kwargs = dict(kwargs)
    out: dict[str, Any] = {}
    attn_type = "joint" if encoder_cls is not None else kwargs.pop("attn_type", "joint")
    if kwargs.pop("keep_temporal_dim", False):
        raise ValueError("keep_temporal_dim is not supported: the official per-frame output is broken for LGI/TPSBT")
    if "norm_layer" in kwargs:
        raise ValueError("norm_layer is not accepted; every maedfer model uses LayerNorm, set norm_eps instead")
    if "use_mean_pooling" in kwargs:
        out["global_pool"] = "mean" if kwargs.pop("use_mean_pooling") else "token"
    sharing_all = kwargs.pop("lg_attn_param_sharing_all", False)
    sharing_first_third = kwargs.pop("lg_attn_param_sharing_first_third", False)
    if sharing_all or sharing_first_third:
        out["share_attn"] = "all" if sharing_all else "first_third"
    if "lg_no_second" in kwargs:
        out["use_second"] = not kwargs.pop("lg_no_second")
    if "lg_no_third" in kwargs:
        out["use_third"] = not kwargs.pop("lg_no_third")
    for key, value in kwargs.items():
        out[_RENAMED.get(key, key)] = value
    if "region_size" in out:
        out["region_size"] = tuple(out["region_size"])
    if encoder_cls is not None:
        return encoder_cls, out
    if attn_type == "joint":
        for key in _LGI_ONLY:
            out.pop(key, None)
        return VideoViT, out
    if attn_type == "local_global":
        return LGIFormer, out
    raise ValueError(f"attn_type must be 'joint' or 'local_global', got {attn_type!r}")


def build_mae(encoder_cls: type[TokenEncoder], kwargs: dict[str, Any]) -> MaskedVideoAutoencoder:
    """Build a :class:`MaskedVideoAutoencoder` from one flat dict of encoder + ``decoder_*`` arguments."""
    decoder_args = {key.removeprefix("decoder_"): kwargs.pop(key) for key in _DECODER_KEYS if key in kwargs}
    shared = block_settings(kwargs)
    encoder = encoder_cls(**kwargs, num_classes=0, global_pool="")
    return MaskedVideoAutoencoder(
        encoder,
        decoder_embed_dim=decoder_args.get("embed_dim", 384),
        decoder_depth=decoder_args.get("depth", 4),
        decoder_num_heads=decoder_args.get("num_heads", 6),
        decoder_pos_order=decoder_args.get("pos_order", "raster"),
        **shared,
    )


def _official_pretrain(
    defaults: dict[str, Any], overrides: dict[str, Any], encoder_cls: type[TokenEncoder] | None = None
) -> MaskedVideoAutoencoder:
    kwargs = {**defaults, **overrides}
    kwargs.pop("num_classes", None)  # accepted and ignored by the official class
    kwargs.pop("in_chans", None)
    kwargs.pop("pretrained", None)
    if kwargs.pop("encoder_num_classes", 0):
        raise ValueError("encoder_num_classes must be 0 for a pre-training model")
    decoder_out = kwargs.pop("decoder_num_classes", None)
    pos_order = kwargs.pop("decoder_pos_order", "raster")
    decoder = {key: kwargs.pop(key) for key in ("decoder_embed_dim", "decoder_depth", "decoder_num_heads") if key in kwargs}
    encoder_cls, encoder_kwargs = translate_official_encoder_kwargs(kwargs, encoder_cls)
    encoder_kwargs.setdefault("num_frames", 16)  # the official pre-training patch embedding always assumes 16 frames
    model = build_mae(encoder_cls, {**encoder_kwargs, **decoder, "decoder_pos_order": pos_order})
    if decoder_out is not None and decoder_out != model.decoder.head.out_features:
        raise ValueError(
            f"decoder_num_classes={decoder_out} but the model predicts {model.decoder.head.out_features} values per "
            "token (3 * tubelet_size * patch_size ** 2)"
        )
    return model


def _official_finetune(
    defaults: dict[str, Any], overrides: dict[str, Any], encoder_cls: type[TokenEncoder] | None = None
) -> TokenEncoder:
    kwargs = {**defaults, **overrides}
    kwargs.pop("pretrained", None)
    encoder_cls, encoder_kwargs = translate_official_encoder_kwargs(kwargs, encoder_cls)
    return encoder_cls(**encoder_kwargs)


# ----------------------------------------------------------------------------------------------- clean names
_PAPER_FINETUNE = {"num_classes": 7, "drop_path_rate": 0.1, "init_scale": 0.001}


@register_model("videomae_base_160", system="videomae", kind="finetune", tiny_overrides=_TINY_VIDEO)
def videomae_base_160(**overrides: Any) -> TokenEncoder:
    """VideoMAE ViT-B (768 wide, 12 blocks, 12 heads) for 16x160x160 clips, mean pooling, 7 classes."""
    return VideoViT(**{"embed_dim": 768, "depth": 12, "num_heads": 12, **_PAPER_FINETUNE, **overrides})


@register_model("videomae_dim512_depth16_160", system="videomae", kind="finetune", tiny_overrides=_TINY_VIDEO)
def videomae_dim512_depth16_160(**overrides: Any) -> TokenEncoder:
    """Plain joint-attention ViT with the LGI-Former's size (512 wide, 16 blocks, 8 heads): the FLOP comparison."""
    return VideoViT(**{"embed_dim": 512, "depth": 16, "num_heads": 8, **_PAPER_FINETUNE, **overrides})


@register_model(
    "videomae_pretrain_base_160",
    system="videomae",
    kind="pretrain",
    tiny_overrides={**_TINY_VIDEO, **_TINY_DECODER},
    pretrain_cfg={"mask": {"type": "tube", "ratio": 0.9}, "frame_diff_group_size": None},
)
def videomae_pretrain_base_160(**overrides: Any) -> MaskedVideoAutoencoder:
    """VideoMAE ViT-B masked autoencoder (decoder 384 wide, 4 blocks, 6 heads), tube masking."""
    return build_mae(VideoViT, {"embed_dim": 768, "depth": 12, "num_heads": 12, **overrides})


@register_model("mae_dfer_base", system="mae_dfer", kind="finetune", tiny_overrides=_TINY_LGI)
def mae_dfer_base(**overrides: Any) -> TokenEncoder:
    """MAE-DFER LGI-Former (512 wide, 16 blocks, 8 heads, regions 2x5x10, messenger pooling) as fine-tuned on DFEW."""
    return LGIFormer(
        **{"embed_dim": 512, "depth": 16, "num_heads": 8, "region_size": (2, 5, 10), **_PAPER_FINETUNE, **overrides}
    )


@register_model(
    "mae_dfer_pretrain_base",
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


@register_model("svfap_base", system="svfap", kind="finetune", tiny_overrides=_TINY_TPSBT)
def svfap_base(**overrides: Any) -> TokenEncoder:
    """SVFAP TPSBT (512 wide, 8 heads, stages 12/6/3, 8 bottleneck tokens per frame) as fine-tuned on DFEW."""
    return TPSBT(**{**_SVFAP, **_PAPER_FINETUNE, **overrides})


@register_model(
    "svfap_pretrain_base",
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


@register_model(
    "vit_base_patch16_160", system="mae_dfer", kind="finetune", official=True, tiny_overrides=_OFFICIAL_TINY_FT
)
def vit_base_patch16_160(**overrides: Any) -> nn.Module:
    """Official name: VideoMAE ViT-B (768/12/12) classifier; official arguments and defaults (1000 classes)."""
    defaults = {**_OFFICIAL_FT_DEFAULTS, "embed_dim": 768, "depth": 12, "num_heads": 12}
    return _official_finetune(_with_lg_defaults(defaults, overrides), overrides)


@register_model(
    "vit_base_dim512_no_depth_patch16_160",
    system="mae_dfer",
    kind="finetune",
    official=True,
    tiny_overrides={**_OFFICIAL_TINY_FT, "attn_type": "local_global", "lg_region_size": (2, 2, 4)},
)
def vit_base_dim512_no_depth_patch16_160(**overrides: Any) -> nn.Module:
    """Official name: 512-wide, 8-head classifier; ``attn_type='local_global'`` gives the MAE-DFER LGI-Former."""
    defaults = {**_OFFICIAL_FT_DEFAULTS, "embed_dim": 512, "depth": 12, "num_heads": 8}
    return _official_finetune(_with_lg_defaults(defaults, overrides), overrides)


@register_model(
    "pretrain_videomae_base_patch16_160",
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


@register_model(
    "pretrain_videomae_base_dim512_no_depth_patch16_160",
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


@register_model(
    "svfap_base_patch16_160",
    system="svfap",
    kind="finetune",
    official=True,
    tiny_overrides=_OFFICIAL_TINY_TPSBT_FT,
)
def svfap_base_patch16_160(**overrides: Any) -> nn.Module:
    """Official name: SVFAP TPSBT classifier (512/8, stages 12/6/3); official arguments and defaults."""
    defaults = {**_OFFICIAL_FT_DEFAULTS, "embed_dim": 512, "num_heads": 8}
    return _official_finetune(defaults, overrides, TPSBT)


@register_model(
    "pretrain_svfap_base_patch16_160",
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
