"""Model argument names: the official-name translation and the arguments every registered model accepts.

The official factories (``vit_base_patch16_160``, ``pretrain_svfap_base_patch16_160``, ``avit_dim512_patch16_160_a256``
...) take the official constructor arguments (``all_frames``, ``lg_region_size``, ``use_mean_pooling``,
``encoder_embed_dim`` ...). :func:`translate_official` maps them, from the tables below, onto the flat arguments of the
clean maedfer builders. :func:`register` records the arguments each registered name accepts, so that a wrong key is an
error naming it (:func:`check_model_kwargs`, also used by :class:`maedfer.config.ModelConfig`).
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from torch import nn

from ..layers import FLAT_BLOCK_NAMES
from ..registry import register_model

__all__ = [
    "MODEL_ARGUMENTS",
    "check_model_kwargs",
    "class_arguments",
    "official_arguments",
    "register",
    "translate_official",
]

Family = Literal["video", "svfap", "audio_visual"]
Kind = Literal["finetune", "pretrain"]

# Official argument name -> maedfer argument name (same meaning), per group of official factories.
_RENAMED_ENCODER = {
    "all_frames": "num_frames",
    "head_activation_func": "head_activation",
    "use_learnable_pos_emb": "learnable_pos_embed",
    "encoder_in_chans": "in_chans",
    "encoder_embed_dim": "embed_dim",
    "encoder_depth": "depth",
    "encoder_num_heads": "num_heads",
}
_RENAMED_LGI = {
    "lg_region_size": "region_size",
    "lg_first_attn_type": "first_attn",
    "lg_third_attn_type": "third_attn",
    "lg_classify_token_type": "classify_tokens",
}
_RENAMED_AUDIO_VISUAL = {
    "img_size_audio": "audio_size",
    "patch_size_audio": "audio_patch_size",
    "in_chans_audio": "audio_in_chans",
    "encoder_in_chans_audio": "audio_in_chans",
    "encoder_embed_dim_audio": "embed_dim_audio",
    "encoder_depth_audio": "depth_audio",
    "encoder_num_heads_audio": "num_heads_audio",
    "encoder_fusion_depth": "fusion_depth",
    "encoder_fusion_num_heads": "fusion_num_heads",
    "inter_contrastive_temperature": "temperature",
}
RENAMED: dict[Family, dict[str, str]] = {
    "video": {**_RENAMED_ENCODER, **_RENAMED_LGI},
    "svfap": _RENAMED_ENCODER,
    "audio_visual": {**_RENAMED_ENCODER, **_RENAMED_AUDIO_VISUAL},
}

# Official switch -> (maedfer argument, value conversion).
_CONVERTED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "use_mean_pooling": ("global_pool", lambda on: "mean" if on else "token"),
    "lg_no_second": ("use_second", lambda off: not off),
    "lg_no_third": ("use_third", lambda off: not off),
}
CONVERTED: dict[Family, tuple[str, ...]] = {
    "video": ("use_mean_pooling", "lg_no_second", "lg_no_third"),
    "svfap": ("use_mean_pooling",),
    "audio_visual": (),
}
# The two official attention-sharing flags become one ``share_attn`` value ("all" wins).
_SHARING = {"lg_attn_param_sharing_all": "all", "lg_attn_param_sharing_first_third": "first_third"}

# Accepted and ignored by the official classes.
IGNORED: dict[tuple[Family, Kind], tuple[str, ...]] = {
    ("video", "finetune"): ("pretrained",),
    ("video", "pretrain"): ("pretrained", "num_classes", "in_chans"),
    ("svfap", "finetune"): ("pretrained",),
    ("svfap", "pretrain"): ("pretrained", "num_classes", "in_chans"),
    ("audio_visual", "finetune"): ("pretrained", "use_mean_pooling", "num_classes_audio"),
    ("audio_visual", "pretrain"): ("pretrained", "use_mean_pooling", "num_classes_audio", "num_classes", "in_chans"),
}

# Official options maedfer refuses: name -> (refused when, message).
_REJECTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "keep_temporal_dim": (bool, "keep_temporal_dim is not supported: the official per-frame output is broken"),
    "norm_layer": (lambda _: True, "norm_layer is not accepted; every maedfer model uses LayerNorm, set norm_eps instead"),
    "encoder_num_classes": (bool, "encoder_num_classes must be 0 for a pre-training model"),
}
_ATTN_TYPES: dict[Family, tuple[str, ...]] = {
    "video": ("joint", "local_global"),
    "svfap": (),
    "audio_visual": ("joint",),
}
# maedfer arguments that only the LGI-Former has: dropped for ``attn_type='joint'``, as the official code ignores them.
_LGI_ONLY = ("region_size", "first_attn", "third_attn", "classify_tokens", "share_attn", "use_second", "use_third")


def _rejected(kind: Kind) -> tuple[str, ...]:
    return ("keep_temporal_dim", "norm_layer", "encoder_num_classes") if kind == "pretrain" else ("keep_temporal_dim", "norm_layer")


def official_arguments(family: Family, kind: Kind) -> frozenset[str]:
    """Official argument names that :func:`translate_official` handles for ``family`` and ``kind``."""
    names = {*RENAMED[family], *CONVERTED[family], *IGNORED[family, kind], *_rejected(kind)}
    if family == "video":
        names |= set(_SHARING)
    if _ATTN_TYPES[family]:
        names.add("attn_type")
    return frozenset(names)


def translate_official(kwargs: Mapping[str, Any], family: Family, kind: Kind) -> dict[str, Any]:
    """Map official constructor arguments onto the flat arguments of the maedfer builders.

    For ``family="video"`` the result carries ``attn_type`` (``"joint"`` or ``"local_global"``) for the builder to pick
    the encoder class; with ``"joint"`` the ``lg_*`` switches are dropped, as the official code ignores them.
    Pre-training models get ``num_frames=16`` unless given (the official pre-training patch embedding assumes 16).

    Raises:
        ValueError: For official options that maedfer does not implement because they are broken upstream
            (``keep_temporal_dim``) or meaningless here (``norm_layer``: use ``norm_eps``), a non-zero
            ``encoder_num_classes`` for pre-training, or an ``attn_type`` the family does not have.
    """
    renamed, ignored = RENAMED[family], IGNORED[family, kind]
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in ignored:
            continue
        if key in _rejected(kind):
            refused, message = _REJECTED[key]
            if refused(value):
                raise ValueError(message)
        elif key in CONVERTED[family]:
            target, convert = _CONVERTED[key]
            out[target] = convert(value)
        elif family == "video" and key in _SHARING:
            if value and out.get("share_attn") != "all":
                out["share_attn"] = _SHARING[key]
        elif key == "attn_type" and _ATTN_TYPES[family]:
            if value not in _ATTN_TYPES[family]:
                raise ValueError(f"attn_type must be one of {_ATTN_TYPES[family]}, got {value!r}")
            if family == "video":
                out[key] = value
        else:
            out[renamed.get(key, key)] = value
    if "region_size" in out:
        out["region_size"] = tuple(out["region_size"])
    if family == "video":
        out.setdefault("attn_type", "joint")
        if out["attn_type"] == "joint":
            for key in _LGI_ONLY:
                out.pop(key, None)
    if kind == "pretrain":
        out.setdefault("num_frames", 16)
    return out


def class_arguments(*classes: type[nn.Module], exclude: Iterable[str] = ()) -> frozenset[str]:
    """Keyword arguments of the constructors of ``classes`` and their bases, with the flat block-setting names
    (``drop_path_rate`` ...) in place of ``block``; ``exclude`` removes names."""
    names: set[str] = set()
    for cls in classes:
        for base in cls.__mro__:
            if "__init__" not in vars(base) or base.__module__.startswith("torch"):
                continue
            for param in inspect.signature(base.__init__).parameters.values():
                if param.kind is param.KEYWORD_ONLY:
                    names.add(param.name)
    if "block" in names:
        names |= set(FLAT_BLOCK_NAMES)
    return frozenset(names - {"block", "patch_embed", *exclude})


#: Accepted argument names of every registered model built by the maedfer zoo.
MODEL_ARGUMENTS: dict[str, frozenset[str]] = {}


def check_model_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` naming the arguments of ``kwargs`` that model ``name`` does not accept (with close
    matches). Names not built by the maedfer zoo are not checked."""
    accepted = MODEL_ARGUMENTS.get(name)
    if accepted is None:
        return
    unknown = sorted(set(kwargs) - accepted)
    if not unknown:
        return
    hints = [f"{key} (did you mean {', '.join(close)}?)" if (close := difflib.get_close_matches(key, accepted, n=2))
             else key for key in unknown]
    raise TypeError(f"model {name!r} got unknown argument(s) {', '.join(hints)}; accepted: {', '.join(sorted(accepted))}")


def register(name: str, accepted: Iterable[str], **entry: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """:func:`~maedfer.registry.register_model` for a builder that accepts exactly the arguments ``accepted``
    (anything else is a ``TypeError`` naming it)."""
    MODEL_ARGUMENTS[name] = frozenset(accepted)

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        @functools.wraps(builder)
        def checked(**overrides: Any) -> nn.Module:
            check_model_kwargs(name, overrides)
            return builder(**overrides)

        register_model(name, **entry)(checked)
        return checked

    return decorator
