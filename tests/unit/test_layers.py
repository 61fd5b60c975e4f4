"""Shared layers: attention (fused vs manual vs the reference formula), blocks, embeddings, drop path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from maedfer.layers import (
    Attention,
    Block,
    CrossSelfBlock,
    DropPath,
    TubeletEmbed,
    sinusoid_table_1d,
    use_fused_attention,
)


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)


def _reference_attention(
    x: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor, q_bias, v_bias, heads: int, proj, ctx=None
) -> torch.Tensor:
    """Textbook multi-head attention with q/v biases and no k bias, written independently of the module."""
    ctx = x if ctx is None else ctx
    q = x @ w_q.T + (0 if q_bias is None else q_bias)
    k = ctx @ w_k.T
    v = ctx @ w_v.T + (0 if v_bias is None else v_bias)
    batch, n, inner = q.shape
    hd = inner // heads
    out = torch.zeros_like(q)
    for b in range(batch):
        for h in range(heads):
            sl = slice(h * hd, (h + 1) * hd)
            logits = (q[b, :, sl] @ k[b, :, sl].T) / math.sqrt(hd)
            out[b, :, sl] = torch.softmax(logits, dim=-1) @ v[b, :, sl]
    return proj(out)


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_fused_layout_matches_reference(qkv_bias: bool) -> None:
    attn = Attention(16, num_heads=4, qkv_bias=qkv_bias, layout="fused").eval()
    _randomise(attn)
    x = torch.randn(2, 7, 16)
    w_q, w_k, w_v = attn.qkv.weight.chunk(3, dim=0)
    expected = _reference_attention(x, w_q, w_k, w_v, attn.q_bias, attn.v_bias, 4, attn.proj)
    for fused in (True, False):
        with use_fused_attention(fused):
            torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def test_split_layout_cross_attention_matches_reference() -> None:
    attn = Attention(16, num_heads=2, qkv_bias=True, layout="split", context_dim=12).eval()
    _randomise(attn, seed=1)
    x, ctx = torch.randn(3, 5, 16), torch.randn(3, 9, 12)
    w_k, w_v = attn.kv.weight.chunk(2, dim=0)
    expected = _reference_attention(x, attn.q.weight, w_k, w_v, attn.q_bias, attn.v_bias, 2, attn.proj, ctx=ctx)
    with use_fused_attention(True):
        fused = attn(x, ctx)
    with use_fused_attention(False):
        manual = attn(x, ctx)
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(manual, expected, atol=1e-5, rtol=1e-5)
    assert fused.shape == (3, 5, 16)


def test_auto_kernel_choice_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """'auto' takes the manual path for small CPU score matrices, SDPA for large ones, and both agree."""
    from maedfer.layers import attention as module

    def q_k(batch: int, heads: int, n: int, m: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.empty(batch, heads, n, 8, dtype=dtype), torch.empty(batch, heads, m, 8, dtype=dtype)

    assert not module.choose_sdpa(*q_k(8, 8, 101, 101, torch.float32))  # LGI-Former region
    assert module.choose_sdpa(*q_k(1, 12, 1568, 1568, torch.float32))  # ViT-B on a whole clip
    assert not module.choose_sdpa(*q_k(1, 12, 1568, 1568, torch.bfloat16))
    assert module.choose_sdpa(*q_k(32, 12, 1568, 1568, torch.bfloat16))  # scores too large to store
    calls = []
    real_sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(module.F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real_sdpa(*a, **k))
    attn = Attention(16, num_heads=2, qkv_bias=True).eval()
    _randomise(attn, seed=4)
    small, large = torch.randn(2, 10, 16), torch.randn(1, 300, 16)
    for x, sdpa_expected in ((small, False), (large, True)):
        calls.clear()
        with use_fused_attention("auto"):
            auto = attn(x)
        assert bool(calls) is sdpa_expected
        with use_fused_attention(not sdpa_expected):
            other = attn(x)
        torch.testing.assert_close(auto, other, atol=1e-5, rtol=1e-5)


def test_key_bias_is_never_learned_and_state_dict_names() -> None:
    fused = Attention(8, num_heads=2, qkv_bias=True)
    split = Attention(8, num_heads=2, qkv_bias=True, layout="split")
    assert set(fused.state_dict()) == {"qkv.weight", "q_bias", "v_bias", "proj.weight", "proj.bias"}
    assert set(split.state_dict()) == {"q.weight", "kv.weight", "q_bias", "v_bias", "proj.weight", "proj.bias"}
    _randomise(fused, seed=3)
    x = torch.randn(1, 4, 8)
    q, k, v = fused.project_qkv(x)
    no_bias_k = F.linear(x, fused.qkv.weight)[..., 8:16].reshape(1, 4, 2, 4).transpose(1, 2)
    torch.testing.assert_close(k, no_bias_k)  # keys: weight only
    with_bias_q = (F.linear(x, fused.qkv.weight[:8]) + fused.q_bias).reshape(1, 4, 2, 4).transpose(1, 2)
    torch.testing.assert_close(q, with_bias_q)


def test_fused_layout_refuses_context() -> None:
    attn = Attention(8, num_heads=2)
    with pytest.raises(ValueError, match="cross-attention"):
        attn(torch.randn(1, 3, 8), torch.randn(1, 2, 8))
    with pytest.raises(ValueError, match="divisible"):
        Attention(10, num_heads=3)


def test_keep_attention_stores_normalised_maps() -> None:
    attn = Attention(8, num_heads=2, layout="split").eval()
    attn.keep_attention = True
    out = attn(torch.randn(2, 3, 8), torch.randn(2, 5, 8))
    assert out.shape == (2, 3, 8)
    assert attn.last_attention is not None and attn.last_attention.shape == (2, 2, 3, 5)
    torch.testing.assert_close(attn.last_attention.sum(-1), torch.ones(2, 2, 3))


def test_sinusoid_table_formula() -> None:
    table = sinusoid_table_1d(50, 6)
    assert table.shape == (50, 6) and table.dtype == torch.float32
    for pos in (0, 1, 17, 49):
        for j in range(6):
            angle = pos / 10000 ** (2 * (j // 2) / 6)
            expected = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert abs(table[pos, j].item() - expected) < 1e-6


def test_tubelet_embed_raster_order() -> None:
    embed = TubeletEmbed(img_size=8, patch_size=4, num_frames=4, tubelet_size=2, in_chans=1, embed_dim=1)
    with torch.no_grad():
        embed.proj.weight.zero_()
        embed.proj.weight[0, 0, 0, 0, 0] = 1.0  # each token reads the top-left pixel of its first frame
        embed.proj.bias.zero_()
    video = torch.arange(4 * 8 * 8, dtype=torch.float32).reshape(1, 1, 4, 8, 8)
    tokens = embed(video)[0, :, 0]
    assert embed.grid_size == (2, 2, 2) and tokens.shape == (8,)
    for n in range(8):
        t, h, w = n // 4, (n // 2) % 2, n % 2
        assert tokens[n].item() == video[0, 0, 2 * t, 4 * h, 4 * w].item()
    with pytest.raises(ValueError, match="built for"):
        embed(torch.zeros(1, 1, 4, 16, 16))


def test_drop_path_per_sample() -> None:
    drop = DropPath(0.5)
    x = torch.ones(64, 3, 4)
    drop.eval()
    assert torch.equal(drop(x), x)
    drop.train()
    torch.manual_seed(0)
    out = drop(x)
    per_sample = out.reshape(64, -1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert bool((per_sample == per_sample[:, :1]).all())  # whole samples dropped or kept
    assert 0 < int((per_sample[:, 0] == 0).sum()) < 64


def test_block_layer_scale_keys_and_residual() -> None:
    block = Block(8, 2, init_values=0.1)
    keys = set(block.state_dict())
    assert {"gamma_1", "gamma_2", "attn.qkv.weight", "attn.q_bias", "mlp.fc1.weight", "norm1.weight"} <= keys
    plain = Block(8, 2)
    assert not any(k.startswith("gamma") for k in plain.state_dict())
    with torch.no_grad():
        block.gamma_1.zero_()
        block.gamma_2.zero_()
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(block(x), x)  # zero layer scale -> identity


def test_cross_self_block_uses_context() -> None:
    block = CrossSelfBlock(8, 2, context_dim=6, init_values=0.5).eval()
    _randomise(block, seed=5)
    x, ctx = torch.randn(2, 4, 8), torch.randn(2, 3, 6)
    out = block(x, ctx)
    assert out.shape == (2, 4, 8)
    assert not torch.allclose(out, block(x, torch.randn(2, 3, 6)))
    names = set(block.state_dict())
    assert {"cross_attn.q.weight", "cross_attn.kv.weight", "cross_norm1.weight", "cross_norm2.weight"} <= names
    assert {"gamma_0", "gamma_1", "gamma_2", "attn.qkv.weight"} <= names
