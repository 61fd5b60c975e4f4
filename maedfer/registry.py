"""maedfer's own model registry (independent of timm's global registry).

Every entry is a builder function that only sets sizes. Entries carry metadata: the system they belong to, whether they
are a fine-tuning or pre-training model, the official names they answer to, and tiny overrides that make a fast test
model of the same architecture. The registry is a leaf: the zoo modules (``maedfer.models.zoo*``) register their
entries when ``maedfer`` is imported.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = [
    "OFFICIAL_BEHAVIOUR",
    "ModelEntry",
    "register_model",
    "create_model",
    "list_models",
    "model_entry",
    "is_model",
]

logger = logging.getLogger(__name__)

# Switches that make a maedfer pre-training model reproduce the official code of each system (maedfer's defaults fix
# these behaviours; see the README). The trainer and the inference loader apply them to official checkpoints; the
# parity checks apply them to the official fixtures.
OFFICIAL_BEHAVIOUR: dict[str, dict[str, Any]] = {
    "mae_dfer": {"decoder_pos_order": "official"},
    "svfap": {"pretrain_context": "official", "upsample": "official"},
}


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        name: Registry name.
        builder: ``builder(**overrides) -> nn.Module``.
        system: ``"videomae"``, ``"mae_dfer"``, ``"svfap"`` or ``"hicmae"``.
        kind: ``"finetune"`` (encoder + head) or ``"pretrain"`` (masked autoencoder).
        official: ``True`` for the official registered names, which take the official constructor argument names.
        description: One line for ``list_models`` / the README.
        tiny_overrides: Overrides that give a small, fast model of the same architecture (used by the tests).
        pretrain_cfg: Free-form metadata (mask type and ratio, clip geometry, paper configuration ...).
    """

    name: str
    builder: Callable[..., nn.Module]
    system: str
    kind: str
    official: bool = False
    description: str = ""
    tiny_overrides: dict[str, Any] = field(default_factory=dict)
    pretrain_cfg: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def register_model(
    name: str,
    *,
    system: str,
    kind: str,
    official: bool = False,
    description: str = "",
    tiny_overrides: dict[str, Any] | None = None,
    pretrain_cfg: dict[str, Any] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a builder under ``name``.

    Raises:
        ValueError: If the name is already registered or ``kind`` is unknown.
    """
    if kind not in ("finetune", "pretrain"):
        raise ValueError(f"kind must be 'finetune' or 'pretrain', got {kind!r}")

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(
            name=name,
            builder=builder,
            system=system,
            kind=kind,
            official=official,
            description=description or _first_line(builder.__doc__),
            tiny_overrides=dict(tiny_overrides or {}),
            pretrain_cfg=dict(pretrain_cfg or {}),
        )
        return builder

    return decorator


def model_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` of ``name``; ``KeyError`` with close matches if unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see maedfer.list_models()"
        raise KeyError(f"unknown model {name!r}{hint}") from None


def is_model(name: str) -> bool:
    """Whether ``name`` is registered."""
    return name in _REGISTRY


def list_models(
    pattern: str = "*",
    *,
    system: str | None = None,
    kind: str | None = None,
    include_official: bool = False,
) -> list[str]:
    """Registered model names, sorted.

    Args:
        pattern: ``fnmatch`` pattern on the name.
        system: Keep only this system (``"videomae"``, ``"mae_dfer"``, ...).
        kind: Keep only ``"finetune"`` or ``"pretrain"`` models.
        include_official: Also list the official registered names (aliases taking the official argument names).
    """
    names = []
    for entry in _REGISTRY.values():
        if entry.official and not include_official:
            continue
        if system is not None and entry.system != system:
            continue
        if kind is not None and entry.kind != kind:
            continue
        if fnmatch.fnmatch(entry.name, pattern):
            names.append(entry.name)
    return sorted(names)


def create_model(
    name: str, *, checkpoint: Any = None, width_from_checkpoint: bool = False, **overrides: Any
) -> nn.Module:
    """Build a registered model.

    Args:
        name: A name from :func:`list_models` (clean names, or an official name such as
            ``"vit_base_dim512_no_depth_patch16_160"``).
        checkpoint: Optional checkpoint (path or already loaded object) loaded with :func:`maedfer.load_checkpoint` (official ``.pth`` files,
            DeepSpeed files, pre-training checkpoints into fine-tuning models, safetensors).
        width_from_checkpoint: Take the encoder width from ``checkpoint`` (its ``patch_embed.proj.weight``) and set
            the head count to width / 64, unless given in ``overrides``. Useful for SVFAP, whose official pre-training
            model is registered 768 wide while fine-tuning is 512 wide.
        **overrides: Constructor arguments replacing the entry's values. Official names accept the official argument
            names (``all_frames``, ``lg_region_size``, ``use_mean_pooling``, ``encoder_embed_dim`` ...).

    Returns:
        The model, in training mode.
    """
    entry = model_entry(name)
    if width_from_checkpoint:
        if checkpoint is None:
            raise ValueError("width_from_checkpoint=True needs a checkpoint")
        from .checkpoint import checkpoint_encoder_width, extract_state_dict, read_checkpoint

        if not isinstance(checkpoint, Mapping):
            checkpoint = read_checkpoint(checkpoint)
        width = checkpoint_encoder_width(extract_state_dict(checkpoint)[0])
        if width is None:
            raise ValueError("width_from_checkpoint=True: the checkpoint has no patch_embed.proj.weight")
        prefix = "encoder_" if entry.official and entry.kind == "pretrain" else ""
        overrides.setdefault(f"{prefix}embed_dim", width)
        overrides.setdefault(f"{prefix}num_heads", max(width // 64, 1))
        logger.info("%s: encoder width %d taken from the checkpoint", name, width)
    model = entry.builder(**overrides)
    model.model_name = name  # type: ignore[attr-defined]
    model.model_kwargs = dict(overrides)  # type: ignore[attr-defined]  (what rebuilds it: maedfer.hub.save_pretrained)
    if checkpoint is not None:
        from .checkpoint import load_checkpoint

        report = load_checkpoint(model, checkpoint)
        logger.info("%s: loaded %s", name, report.source)
    return model
