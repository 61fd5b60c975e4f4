"""The one multi-head attention module used by every maedfer encoder and decoder.

Details: ``docs/modules.md``, section ``maedfer/layers/attention.py``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

try:  # torch >= 2.7: decide a size test without guarding on data-dependent sizes
    from torch.fx.experimental.symbolic_shapes import guard_or_false as _symbolic_guard_or_false
except ImportError:  # pragma: no cover - older torch
    _symbolic_guard_or_false = bool


def _guard_or_false(condition: bool | torch.SymBool | torch.Tensor) -> bool:
    """A size comparison as a bool: a symbolic one (torch.compile) that depends on the data is ``False``; eager
    ints and ``torch.jit.trace``'s tensor-valued sizes are evaluated as they are."""
    if isinstance(condition, torch.Tensor):  # torch.jit.trace (fvcore's counter)
        return bool(condition)
    return _symbolic_guard_or_false(condition)

__all__ = ["Attention", "FusedAttention", "fused_attention_enabled", "set_fused_attention", "use_fused_attention"]

FusedAttention = bool | Literal["auto"]

# "auto" on CPU takes the manual path up to these score-matrix sizes: per (batch, head) matrix in fp32, where SDPA's
# CPU kernel wins from about 256 x 256 on; and for the whole (B, H, N, M) tensor in half precision, where the manual
# path is as fast or faster at every size measured but stores the scores for backward (2^26 bf16 = 128 MiB a layer).
CPU_MANUAL_MAX_SCORES_FP32 = 1 << 16
CPU_MANUAL_MAX_SCORES_HALF = 1 << 26


def _parse_setting(value: str) -> FusedAttention:
    if value.lower() in ("0", "false", "manual"):
        return False
    if value.lower() in ("1", "true", "sdpa"):
        return True
    return "auto"


_FUSED_ATTENTION: FusedAttention = _parse_setting(os.environ.get("MAEDFER_FUSED_ATTN", "auto"))


def fused_attention_enabled() -> FusedAttention:
    """The global attention-kernel setting: ``"auto"`` (default), ``True`` (always SDPA) or ``False`` (manual)."""
    return _FUSED_ATTENTION


def set_fused_attention(enabled: FusedAttention) -> None:
    """Globally choose the attention kernel (also ``MAEDFER_FUSED_ATTN=auto|1|0``).

    Args:
        enabled: ``"auto"`` (per call: SDPA on GPU, shape-based on CPU), ``True`` (always
            :func:`F.scaled_dot_product_attention`) or ``False`` (always the explicit ``softmax(q k^T) v``).
    """
    global _FUSED_ATTENTION
    _FUSED_ATTENTION = enabled if enabled == "auto" else bool(enabled)


def choose_sdpa(query: torch.Tensor, key: torch.Tensor) -> bool:
    """The ``"auto"`` rule for ``query (B, H, N, hd)`` and ``key (B, H, M, hd)``: SDPA on GPUs; on CPUs only above
    :data:`CPU_MANUAL_MAX_SCORES_FP32` scores per head (fp32) or :data:`CPU_MANUAL_MAX_SCORES_HALF` in all (bf16/fp16).

    Under ``torch.compile`` a token count that depends on the data (the visible tokens of a pre-training mask) cannot
    be compared without breaking the graph; there the manual path is taken, which is what the rule picks for the few
    visible tokens of the papers' masks (e.g. 160 of 1,568 at ratio 0.9)."""
    if query.device.type != "cpu":
        return True
    scores = query.shape[-2] * key.shape[-2]
    if query.dtype == torch.float32:
        return _guard_or_false(scores > CPU_MANUAL_MAX_SCORES_FP32)
    return _guard_or_false(scores * query.shape[0] * query.shape[1] > CPU_MANUAL_MAX_SCORES_HALF)


@contextlib.contextmanager
def use_fused_attention(enabled: FusedAttention) -> Iterator[None]:
    """Context manager form of :func:`set_fused_attention`; restores the previous setting on exit."""
    previous = _FUSED_ATTENTION
    set_fused_attention(enabled)
    try:
        yield
    finally:
        set_fused_attention(previous)


class Attention(nn.Module):
    """Multi-head (self or cross) attention with the official q/v-bias scheme.

    Args:
        dim: Width of the query tokens (and of the output).
        num_heads: Number of heads.
        qkv_bias: Learn ``q_bias`` and ``v_bias`` (the key projection never has a bias).
        qk_scale: Logit scale; defaults to ``head_dim ** -0.5``.
        attn_drop: Dropout on the attention weights (training only).
        proj_drop: Dropout after the output projection.
        head_dim: Per-head width; defaults to ``dim // num_heads``.
        context_dim: Width of the context tokens for cross-attention (``"split"`` layout only); defaults to ``dim``.
        layout: ``"fused"`` (``qkv.weight``) or ``"split"`` (``q.weight`` + ``kv.weight``).

    Attributes:
        fused_attn: ``None`` follows the global switch (:func:`set_fused_attention`); ``"auto"``, ``True`` or ``False``
            pins this module to that choice.
        keep_attention: When ``True`` the module always takes the manual path and stores the last attention weights,
            shape ``(B, heads, N_query, N_context)``, in :attr:`last_attention` (for visualisation).
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        head_dim: int | None = None,
        context_dim: int | None = None,
        layout: Literal["fused", "split"] = "fused",
    ) -> None:
        super().__init__()
        if layout not in ("fused", "split"):
            raise ValueError(f"Attention layout must be 'fused' or 'split', got {layout!r}")
        if layout == "fused" and context_dim not in (None, dim):
            raise ValueError("the 'fused' qkv layout is self-attention only; use layout='split' for a context width")
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
            head_dim = dim // num_heads
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.layout = layout
        inner = head_dim * num_heads
        self.scale = qk_scale or head_dim**-0.5
        if layout == "fused":
            self.qkv = nn.Linear(dim, inner * 3, bias=False)
        else:
            self.q = nn.Linear(dim, inner, bias=False)
            self.kv = nn.Linear(context_dim or dim, inner * 2, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(inner))
            self.v_bias = nn.Parameter(torch.zeros(inner))
        else:
            self.register_parameter("q_bias", None)
            self.register_parameter("v_bias", None)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.fused_attn: FusedAttention | None = None
        self.keep_attention = False
        self.last_attention: torch.Tensor | None = None

    def _split_heads(self, x: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        """``(B, N, parts * H * hd)`` -> ``parts`` tensors of shape ``(B, H, N, hd)``."""
        batch, length, _ = x.shape
        x = x.reshape(batch, length, parts, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return x.unbind(0)

    def project_qkv(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project tokens to per-head queries, keys and values.

        Args:
            x: Query tokens ``(B, N, dim)``.
            context: Key/value tokens ``(B, M, context_dim)``; ``None`` for self-attention.

        Returns:
            ``q (B, H, N, hd)``, ``k (B, H, M, hd)``, ``v (B, H, M, hd)``.
        """
        if self.layout == "fused":
            if context is not None:
                raise ValueError("a 'fused' layout Attention cannot take a context (cross-attention)")
            bias = None
            if self.q_bias is not None:
                bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
            return self._split_heads(F.linear(x, self.qkv.weight, bias), 3)  # type: ignore[return-value]
        kv_bias = None
        if self.v_bias is not None:
            kv_bias = torch.cat((torch.zeros_like(self.v_bias), self.v_bias))
        (q,) = self._split_heads(F.linear(x, self.q.weight, self.q_bias), 1)
        k, v = self._split_heads(F.linear(x if context is None else context, self.kv.weight, kv_bias), 2)
        return q, k, v

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from ``x`` to ``context`` (or to ``x`` itself).

        Args:
            x: Query tokens ``(B, N, dim)``.
            context: Key/value tokens ``(B, M, context_dim)``, or ``None`` for self-attention.

        Returns:
            ``(B, N, dim)``.
        """
        q, k, v = self.project_qkv(x, context)
        dropout = self.attn_drop if self.training else 0.0
        fused = _FUSED_ATTENTION if self.fused_attn is None else self.fused_attn
        if fused == "auto":
            fused = choose_sdpa(q, k)
        if fused and not self.keep_attention:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale)
        else:
            weights = (q * self.scale) @ k.transpose(-2, -1)
            weights = weights.softmax(dim=-1)
            if self.keep_attention:
                self.last_attention = weights.detach()
            if dropout > 0.0:
                weights = F.dropout(weights, p=dropout)
            out = weights @ v
        out = out.transpose(1, 2).flatten(2)
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, head_dim={self.head_dim}, layout={self.layout}"
