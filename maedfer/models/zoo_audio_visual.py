"""Registered HiCMAE models: clean names and the official ``avit_*`` / ``pretrain_hicmae_*`` names.

The official pre-training factories cannot be built with their own defaults (decoder depth 8 does not fit the three
tapped layers); here the decoder depth defaults to ``len(return_intermediate_features) + 1`` so they build.
"""

from __future__ import annotations

from typing import Any

from ..registry import register_model
from .audio_visual import AudioViT, AudioVisualClassifier, AudioVisualMaskedAutoencoder, CrossModalFusion
from .encoder import VideoViT, block_settings

__all__ = ["build_hicmae_classifier", "build_hicmae_pretrain"]


# Official argument name -> maedfer argument name.
_RENAMED = {
    "all_frames": "num_frames",
    "img_size_audio": "audio_size",
    "patch_size_audio": "audio_patch_size",
    "in_chans_audio": "audio_in_chans",
    "encoder_in_chans_audio": "audio_in_chans",
    "head_activation_func": "head_activation",
    "use_learnable_pos_emb": "learnable_pos_embed",
    "encoder_in_chans": "in_chans",
    "encoder_embed_dim": "embed_dim",
    "encoder_depth": "depth",
    "encoder_num_heads": "num_heads",
    "encoder_embed_dim_audio": "embed_dim_audio",
    "encoder_depth_audio": "depth_audio",
    "encoder_num_heads_audio": "num_heads_audio",
    "encoder_fusion_depth": "fusion_depth",
    "encoder_fusion_num_heads": "fusion_num_heads",
    "inter_contrastive_temperature": "temperature",
}


def _translate(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in kwargs.items():
        if key in ("pretrained", "use_mean_pooling", "num_classes_audio"):
            continue
        if key == "attn_type":
            if value != "joint":
                raise ValueError(f"HiCMAE encoders only have joint attention, got attn_type={value!r}")
            continue
        if key == "keep_temporal_dim":
            if value:
                raise ValueError("keep_temporal_dim is not supported by the audio-visual model")
            continue
        if key == "norm_layer":
            raise ValueError("norm_layer is not accepted; every maedfer model uses LayerNorm, set norm_eps instead")
        out[_RENAMED.get(key, key)] = value
    return out


def _encoders(kw: dict[str, Any]) -> tuple[VideoViT | None, AudioViT | None, dict[str, Any]]:
    """Build the two modality encoders (``None`` for a depth of 0) from flat arguments."""
    embed_dim = kw.pop("embed_dim", 512)
    num_heads = kw.pop("num_heads", 8)
    depth = kw.pop("depth", 10)
    embed_dim_audio = kw.pop("embed_dim_audio", embed_dim)
    num_heads_audio = kw.pop("num_heads_audio", num_heads)
    depth_audio = kw.pop("depth_audio", depth)
    learnable = kw.pop("learnable_pos_embed", False)
    block = block_settings(kw)
    common = dict(global_pool="", num_classes=0, learnable_pos_embed=learnable, **block)
    video = None
    if depth > 0:
        video = VideoViT(
            img_size=kw.pop("img_size", 160),
            patch_size=kw.pop("patch_size", 16),
            num_frames=kw.pop("num_frames", 16),
            tubelet_size=kw.pop("tubelet_size", 2),
            in_chans=kw.pop("in_chans", 3),
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            **common,
        )
    audio = None
    if depth_audio > 0:
        audio = AudioViT(
            input_size=tuple(kw.pop("audio_size", (256, 128))),
            patch_size=kw.pop("audio_patch_size", 16),
            in_chans=kw.pop("audio_in_chans", 1),
            embed_dim=embed_dim_audio,
            depth=depth_audio,
            num_heads=num_heads_audio,
            **common,
        )
    for key in ("img_size", "patch_size", "num_frames", "tubelet_size", "in_chans", "audio_size", "audio_patch_size", "audio_in_chans"):
        kw.pop(key, None)
    return video, audio, dict(kw, embed_dim=embed_dim, embed_dim_audio=embed_dim_audio, num_heads=num_heads)


def _fusion(kw: dict[str, Any], depth: int, drop_rate: float | None = None) -> CrossModalFusion:
    block = block_settings(kw)
    if drop_rate is not None:
        block["drop_rate"] = drop_rate
    return CrossModalFusion(
        embed_dim=kw["embed_dim"],
        embed_dim_audio=kw["embed_dim_audio"],
        depth=depth,
        num_heads=kw.pop("fusion_num_heads", kw["num_heads"]),
        **block,
    )


def build_hicmae_classifier(**kwargs: Any) -> AudioVisualClassifier:
    """Build an :class:`AudioVisualClassifier` from flat arguments.

    Video: ``img_size``, ``patch_size``, ``num_frames``, ``tubelet_size``, ``embed_dim``, ``depth``, ``num_heads``.
    Audio: ``audio_size`` (time, mel), ``audio_patch_size``, ``embed_dim_audio``, ``depth_audio``, ``num_heads_audio``
    (default: the video values). Fusion: ``fusion_depth``, ``fusion_num_heads``. ``modality``: ``"audio_visual"``,
    ``"video"`` or ``"audio"`` (a depth of 0 also drops that encoder). Head: ``num_classes``, ``head_activation``,
    ``head_init``, ``init_scale``. Block settings: ``mlp_ratio``, ``qkv_bias``, ``drop_rate``, ``drop_path_rate``, ...
    """
    kw = dict(kwargs)
    modality = kw.pop("modality", "audio_visual")
    if modality not in ("audio_visual", "video", "audio"):
        raise ValueError(f"modality must be 'audio_visual', 'video' or 'audio', got {modality!r}")
    if modality == "video":
        kw["depth_audio"] = 0
    elif modality == "audio":
        kw.setdefault("depth_audio", kw.get("depth", 10))  # the audio depth defaults to the video one
        kw["depth"] = 0
    fusion_depth = kw.pop("fusion_depth", 2)
    head = {k: kw.pop(k) for k in ("num_classes", "head_activation", "head_init", "init_scale") if k in kw}
    video, audio, kw = _encoders(kw)
    # The official fusion encoder is built with dropout 0 (but keeps drop path).
    fusion = _fusion(kw, fusion_depth, drop_rate=0.0) if video is not None and audio is not None and fusion_depth > 0 else None
    return AudioVisualClassifier(video, audio, fusion, norm_eps=kw.get("norm_eps", 1e-6), **head)


def build_hicmae_pretrain(**kwargs: Any) -> AudioVisualMaskedAutoencoder:
    """Build an :class:`AudioVisualMaskedAutoencoder` from flat arguments (see :func:`build_hicmae_classifier` for
    the encoder ones; plus ``decoder_embed_dim``, ``decoder_num_heads``, ``decoder_depth`` and their ``*_audio``
    twins, ``fusion_depth``, ``return_intermediate_features``, ``temperature``)."""
    kw = dict(kwargs)
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
    out_video = kw.pop("decoder_num_classes", None)
    out_audio = kw.pop("decoder_num_classes_audio", None)
    if kw.pop("encoder_num_classes", 0):
        raise ValueError("encoder_num_classes must be 0 for a pre-training model")
    temperature = kw.pop("temperature", 0.07)
    fusion_depth = kw.pop("fusion_depth", 2)
    video, audio, kw = _encoders(kw)
    if video is None or audio is None:
        raise ValueError("HiCMAE pre-training needs both encoders (depth > 0 and depth_audio > 0)")
    fusion = _fusion(kw, fusion_depth)
    block = block_settings(kw)
    model = AudioVisualMaskedAutoencoder(
        video, audio, fusion, return_intermediate_features=taps, temperature=temperature, **decoder, **block
    )
    for name, want, got in (
        ("decoder_num_classes", out_video, model.decoder.head.out_features),
        ("decoder_num_classes_audio", out_audio, model.decoder_audio.head.out_features),
    ):
        if want is not None and want != got:
            raise ValueError(f"{name}={want} but the model predicts {got} values per token")
    return model


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


@register_model("hicmae_base", system="hicmae", kind="finetune", tiny_overrides=_TINY_AV)
def hicmae_base(**overrides: Any) -> AudioVisualClassifier:
    """HiCMAE-B classifier (512 wide, 8 heads, 10 video + 10 audio + 2 fusion layers) as fine-tuned on CREMA-D."""
    return build_hicmae_classifier(**{"embed_dim": 512, "num_heads": 8, "depth": 10, **_PAPER_AV, **overrides})


@register_model("hicmae_small", system="hicmae", kind="finetune", tiny_overrides=_TINY_AV)
def hicmae_small(**overrides: Any) -> AudioVisualClassifier:
    """HiCMAE-S classifier (384 wide, 6 heads, 10 + 10 + 2 layers)."""
    return build_hicmae_classifier(**{"embed_dim": 384, "num_heads": 6, "depth": 10, **_PAPER_AV, **overrides})


_TINY_AV_PRETRAIN = {
    **_TINY_AV,
    "decoder_embed_dim": 16,
    "decoder_num_heads": 2,
    "return_intermediate_features": (1, 2, 3),
}


@register_model(
    "hicmae_pretrain_base",
    system="hicmae",
    kind="pretrain",
    tiny_overrides=_TINY_AV_PRETRAIN,
    pretrain_cfg={"mask": {"type": "tube", "ratio": 0.9}, "mask_audio": {"type": "random", "ratio": 0.8},
                  "frame_diff_group_size": 2, "contrastive_weight": 0.0025},
)
def hicmae_pretrain_base(**overrides: Any) -> AudioVisualMaskedAutoencoder:
    """HiCMAE-B pre-training model as released (encoders 512x10, decoders 384x4, fusion 2, taps 3/6/9)."""
    return build_hicmae_pretrain(**{"embed_dim": 512, "num_heads": 8, "depth": 10, **overrides})


@register_model(
    "hicmae_pretrain_small",
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
    kw = _translate({**defaults, **overrides})
    return build_hicmae_classifier(**kw)


def _official_pretrain(width: int, heads: int, decoder_width: int, decoder_heads: int, overrides: dict[str, Any]):
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
    # ``num_classes`` and ``in_chans`` are accepted and ignored by the official class (``encoder_in_chans`` counts).
    overrides = {k: v for k, v in overrides.items() if k not in ("num_classes", "in_chans")}
    kw = _translate({**defaults, **overrides})
    kw.setdefault("num_frames", 16)  # the official pre-training video patch embedding always assumes 16 frames
    return build_hicmae_pretrain(**kw)


def _register_official_avit(width: int, heads: int) -> None:
    name = f"avit_dim{width}_patch16_160_a256"

    @register_model(
        name,
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

    @register_model(
        name,
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
