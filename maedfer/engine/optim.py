"""AdamW parameter groups with weight-decay exclusions and layer-wise learning-rate decay.

Details: ``docs/modules.md``, section ``maedfer/engine/optim.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ..models.utils import unwrap_model
from ..utils import check_int

__all__ = ["param_groups", "scaled_lr"]

logger = logging.getLogger(__name__)


def scaled_lr(base_lr: float, total_batch: int) -> float:
    """The official linear scaling rule: ``base_lr * total_batch / 256``.

    Args:
        base_lr: Learning rate for a total batch of 256 (the ``--lr`` / ``--min_lr`` arguments).
        total_batch: Samples per optimizer step over all processes (per-process batch x processes x accumulation).

    Returns:
        The learning rate for ``total_batch``.

    Raises:
        ValueError: If ``total_batch`` is not a positive integer or ``base_lr`` is negative.
    """
    check_int(total_batch, "total_batch")
    if not base_lr >= 0.0:
        raise ValueError(f"base_lr must be >= 0, got {base_lr!r}")
    return float(base_lr) * total_batch / 256.0


def _skip_names(
    model: nn.Module, no_weight_decay: set[str] | None, exact_name_skip: bool
) -> tuple[set[str], set[str]]:
    """Names excluded from weight decay by name.

    Args:
        model: The (unwrapped) model.
        no_weight_decay: Explicit names, or ``None`` for ``model.no_weight_decay()`` (and, unless
            ``exact_name_skip``, every submodule's ``no_weight_decay()`` relative to that submodule).
        exact_name_skip: Match only the top-level names, exactly.

    Returns:
        ``(top, full)``: the top-level names and the full names (top-level plus prefixed submodule names). A
        parameter is excluded iff its full name is in ``full`` or (unless ``exact_name_skip``) ends with
        ``"." + entry`` for an entry of ``top``.
    """
    if no_weight_decay is not None:
        top = {str(name) for name in no_weight_decay}
    else:
        top = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    full = set(top)
    if not exact_name_skip and no_weight_decay is None:
        for prefix, module in model.named_modules():
            if prefix and hasattr(module, "no_weight_decay"):
                full.update(f"{prefix}.{name}" for name in module.no_weight_decay())
    return top, full


def param_groups(
    model: nn.Module,
    *,
    weight_decay: float,
    layer_decay: float | None = None,
    no_weight_decay: set[str] | None = None,
    exact_name_skip: bool = False,
) -> list[dict[str, Any]]:
    """Split a model's trainable parameters into AdamW groups.

    Every parameter with ``requires_grad`` appears in exactly one group, once even if it is shared by several
    modules (``named_parameters`` de-duplicates). Groups come in order of first appearance and empty groups are
    omitted.

    Args:
        model: The network (DDP / DataParallel / DeepSpeed / ``torch.compile`` wrappers are unwrapped).
        weight_decay: Weight decay of the decayed groups (the excluded groups get 0).
        layer_decay: Layer-wise LR decay factor; ``None`` disables it (every ``lr_scale`` is 1, as in the official
            pre-training). Needs ``model.num_layers`` and ``model.layer_id(name)``.
        no_weight_decay: Names excluded from weight decay besides 1-D tensors and ``*.bias``. ``None`` asks the
            model: ``model.no_weight_decay()`` and, unless ``exact_name_skip``, each submodule's
            ``no_weight_decay()`` matched relative to that submodule.
        exact_name_skip: Match the exclusion names against exact full parameter names only (the official
            pre-training behaviour: ``encoder.lg_region_tokens`` is then decayed). Without it a name also matches
            as the last dotted components of a full name (``lg_region_tokens`` matches ``encoder.lg_region_tokens``).

    Returns:
        A list of dicts with keys ``params`` (list of tensors), ``param_names`` (their names), ``weight_decay``
        (float), ``lr_scale`` (float), ``layer_id`` (int or ``None`` without layer decay) and ``name``:
        ``"layer_{id}_{decay|no_decay}"`` with layer decay, ``"decay"`` / ``"no_decay"`` without (as the official
        pre-training groups).

    Raises:
        ValueError: If ``layer_decay`` is given but the model has no ``num_layers`` / ``layer_id``, a layer id is
            out of ``[0, L + 1]``, or the arguments are out of range.
    """
    model = unwrap_model(model)
    if not weight_decay >= 0.0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    num_layers: int | None = None
    if layer_decay is not None:
        if not 0.0 < float(layer_decay) <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1] or None, got {layer_decay!r}")
        if not (hasattr(model, "num_layers") and callable(getattr(model, "layer_id", None))):
            raise ValueError(
                f"layer_decay needs a model with num_layers and layer_id(name); {type(model).__name__} has neither "
                "(pre-training models use layer_decay=None)"
            )
        num_layers = int(model.num_layers)
    top, skip = _skip_names(model, no_weight_decay, exact_name_skip)
    suffixes = () if exact_name_skip else tuple(f".{name}" for name in sorted(top))

    groups: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        excluded = param.ndim <= 1 or name.endswith(".bias") or name in skip
        if not excluded and suffixes:
            excluded = name.endswith(suffixes)
        kind = "no_decay" if excluded else "decay"
        if num_layers is not None:
            layer = int(model.layer_id(name))
            if not 0 <= layer <= num_layers + 1:
                raise ValueError(f"layer_id({name!r}) = {layer} is outside [0, {num_layers + 1}]")
            scale = float(layer_decay) ** (num_layers + 1 - layer)  # type: ignore[operator]
            group_name = f"layer_{layer}_{kind}"
        else:
            layer, scale, group_name = None, 1.0, kind
        group = groups.get(group_name)
        if group is None:
            group = groups[group_name] = {
                "name": group_name,
                "params": [],
                "param_names": [],
                "weight_decay": 0.0 if excluded else float(weight_decay),
                "lr_scale": scale,
                "layer_id": layer,
            }
        group["params"].append(param)
        group["param_names"].append(name)
    result = list(groups.values())
    logger.debug(
        "parameter groups: %s",
        ", ".join(f"{g['name']} ({len(g['params'])} tensors, lr_scale {g['lr_scale']:.4g})" for g in result),
    )
    return result
