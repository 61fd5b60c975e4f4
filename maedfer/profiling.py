"""Operation counting that sees fused attention.

``torch.utils.flop_counter.FlopCounterMode`` (and fvcore) count 0 for the CPU kernel behind
:func:`torch.nn.functional.scaled_dot_product_attention`; :func:`count_macs` registers that kernel (forward and backward)
so the fused path is counted like the explicit ``q @ k^T`` / ``attn @ v`` products.

Convention (the one the MAE-DFER / SVFAP / HiCMAE papers call "GFLOPs", and fvcore's): one multiply-add counts 1
(so GMACs = GFLOPs / 2 in the usual sense), LayerNorm counts 5 per input element, element-wise ops, softmax and GELU
count 0. With this convention the counts equal the official fvcore figures in
``tests/fixtures/official/manifests/flops.json``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["MacCount", "count_macs"]

aten = torch.ops.aten

# Ops whose count is already in "fvcore units" (not 2 x multiply-adds).
_ELEMENTWISE_UNITS = {"native_layer_norm", "native_layer_norm_backward"}


def _sdpa_cpu_forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _sdpa_cpu_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


def _layer_norm(inputs, *args, out_shape=None, **kwargs) -> int:
    return 5 * math.prod(inputs)


def _custom_mapping() -> dict[Any, Callable[..., int]]:
    mapping: dict[Any, Callable[..., int]] = {aten.native_layer_norm: _layer_norm}
    # The CPU fused-attention kernels are not in torch's FLOP registry (they count 0 otherwise).
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_forward
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _sdpa_cpu_backward
    return mapping


@dataclass
class MacCount:
    """Result of :func:`count_macs`.

    Attributes:
        macs: Multiply-adds (fvcore convention, LayerNorm at 5 per element).
        by_operator: The same split by aten operator name.
    """

    macs: float
    by_operator: dict[str, float] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        """``macs / 1e9``."""
        return self.macs / 1e9


def count_macs(fn: Callable[[], Any]) -> MacCount:
    """Count the multiply-adds of running ``fn()`` (forward, or forward + backward).

    Args:
        fn: A no-argument callable, e.g. ``lambda: model(video)``.

    Returns:
        :class:`MacCount`.
    """
    mode = FlopCounterMode(display=False, custom_mapping=_custom_mapping())
    with mode:
        fn()
    by_operator: dict[str, float] = {}
    for op, flops in mode.get_flop_counts()["Global"].items():
        name = str(op).split(".")[-1] if not hasattr(op, "__name__") else op.__name__.split(".")[0]
        units = flops if name in _ELEMENTWISE_UNITS else flops / 2
        by_operator[name] = by_operator.get(name, 0.0) + units
    return MacCount(macs=sum(by_operator.values()), by_operator=by_operator)
