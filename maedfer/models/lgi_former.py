"""LGI-Former: the local-global interaction encoder of MAE-DFER.

Details: ``docs/modules.md``, section ``maedfer/models/lgi_former.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torch.fx.experimental.symbolic_shapes import guard_or_false

from ..compile import check_size
from ..layers import Attention, BlockSettings, DropPath, Mlp
from .encoder import EncoderOutput, LayerTokens, TokenEncoder, _check_divisible

__all__ = ["LGIBlock", "LGIFormer"]

AttnKind = Literal["self", "cross"]
SharedAttn = Literal["none", "first_third", "all"]
ClassifyTokens = Literal["region", "org", "all"]


class LGIBlock(nn.Module):
    """One LGI-Former block (three attention stages and an MLP), keys as the official ``LGBlock``.

    Args:
        dim: Token width C.
        num_heads: Heads of every attention.
        settings: Block settings (:class:`~maedfer.layers.BlockSettings`, without layer scale). ``drop_path`` is this
            block's stochastic-depth rate: stage 1 and the MLP drop per (clip, region) row, stages 2 and 3 per clip.
        first_attn: ``"self"``: stage 1 updates all tokens of a region; ``"cross"``: only the messenger, reading its
            region's local tokens (adds ``first_attn_norm1``).
        third_attn: ``"cross"``: local tokens read all messengers of the clip; ``"self"``: a second intra-region
            self-attention.
        share_attn: ``"first_third"`` makes ``third_attn`` the same module as ``first_attn``; ``"all"`` also
            ``second_attn``. Shared weights appear under every alias in the state dict, as in the official files.
        use_second: Run stage 2 (``lg_no_second`` in the official code is ``use_second=False``).
        use_third: Run stage 3.
        **changes: :class:`~maedfer.layers.BlockSettings` fields replacing those of ``settings``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        settings: BlockSettings = BlockSettings(),
        *,
        first_attn: AttnKind = "self",
        third_attn: AttnKind = "cross",
        share_attn: SharedAttn = "none",
        use_second: bool = True,
        use_third: bool = True,
        **changes: Any,
    ) -> None:
        super().__init__()
        s = settings.replace(**changes) if changes else settings
        if s.init_values:
            raise ValueError("the LGI-Former does not support layer scale (init_values must be 0 or None)")
        for name, value in (("first_attn", first_attn), ("third_attn", third_attn)):
            if value not in ("self", "cross"):
                raise ValueError(f"{name} must be 'self' or 'cross', got {value!r}")
        if share_attn not in ("none", "first_third", "all"):
            raise ValueError(f"share_attn must be 'none', 'first_third' or 'all', got {share_attn!r}")
        self.first_attn_type = first_attn
        self.third_attn_type = third_attn
        self.use_second = use_second
        self.use_third = use_third

        def make_attention() -> Attention:
            return Attention(
                dim,
                num_heads=num_heads,
                qkv_bias=s.qkv_bias,
                qk_scale=s.qk_scale,
                attn_drop=s.attn_drop,
                proj_drop=s.drop,
                layout="split",
            )

        self.first_attn_norm0 = nn.LayerNorm(dim, eps=s.norm_eps)
        if first_attn == "cross":
            self.first_attn_norm1 = nn.LayerNorm(dim, eps=s.norm_eps)
        self.first_attn = make_attention()
        if use_second:
            self.second_attn_norm0 = nn.LayerNorm(dim, eps=s.norm_eps)
            self.second_attn = self.first_attn if share_attn == "all" else make_attention()
        if use_third:
            self.third_attn_norm0 = nn.LayerNorm(dim, eps=s.norm_eps)
            if third_attn == "cross":
                self.third_attn_norm1 = nn.LayerNorm(dim, eps=s.norm_eps)
            self.third_attn = self.first_attn if share_attn != "none" else make_attention()
        self.drop_path = DropPath(s.drop_path) if s.drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=s.norm_eps)
        self.mlp = Mlp(dim, int(dim * s.mlp_ratio), drop=s.drop)

    def forward(self, x: torch.Tensor, batch_size: int, messengers_only: bool = False) -> torch.Tensor:
        """Run one block.

        Args:
            x: ``(B * M, 1 + R, C)``: per (clip, region) row, the messenger at slot 0 then the R local tokens; rows are
                batch-major (row ``b * M + m``).
            batch_size: B.
            messengers_only: Compute only what the messengers need: with a cross-attention stage 3 the local tokens'
                stage 3 and MLP are skipped (the last block under the 'region' head, where nothing reads them).

        Returns:
            ``(B * M, 1 + R, C)``, or ``(B * M, 1, C)`` (the messengers) with ``messengers_only``.
        """
        rows, length, channels = x.shape
        num_regions = rows // batch_size
        # Stage 1: inside each region.
        if self.first_attn_type == "self":
            x = x + self.drop_path(self.first_attn(self.first_attn_norm0(x)))
        else:
            messenger, local = x[:, :1], x[:, 1:]
            update = self.first_attn(self.first_attn_norm0(messenger), self.first_attn_norm1(local))
            x = torch.cat((messenger + self.drop_path(update), local), dim=1)
        # Stage 2: messengers of a clip talk to each other.
        messengers = x[:, 0].reshape(batch_size, num_regions, channels)
        if self.use_second:
            messengers = messengers + self.drop_path(self.second_attn(self.second_attn_norm0(messengers)))
        local = x[:, 1:]
        if messengers_only and not (self.use_third and self.third_attn_type == "self"):
            messengers = messengers.reshape(rows, 1, channels)
            return messengers + self.drop_path(self.mlp(self.norm2(messengers)))
        # Stage 3: inject the global information back into the local tokens.
        if self.use_third:
            if self.third_attn_type == "cross":
                flat = local.reshape(batch_size, num_regions * (length - 1), channels)
                update = self.third_attn(self.third_attn_norm0(flat), self.third_attn_norm1(messengers))
                local = (flat + self.drop_path(update)).reshape(rows, length - 1, channels)
            else:
                x = torch.cat((messengers.reshape(rows, 1, channels), local), dim=1)
                x = x + self.drop_path(self.third_attn(self.third_attn_norm0(x)))
                messengers, local = x[:, :1], x[:, 1:]
        x = torch.cat((messengers.reshape(rows, 1, channels), local), dim=1)
        if messengers_only:
            return x[:, :1] + self.drop_path(self.mlp(self.norm2(x[:, :1])))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def stage3_parameters(self) -> list[nn.Parameter]:
        """Parameters only the local tokens' stage 3 uses (empty when stage 3 shares the stage-1 attention)."""
        if not self.use_third or self.third_attn is self.first_attn:
            return []
        modules = [self.third_attn_norm0, self.third_attn, getattr(self, "third_attn_norm1", None)]
        return [p for module in modules if module is not None for p in module.parameters()]


class LGIFormer(TokenEncoder):
    """LGI-Former encoder (MAE-DFER).

    Args:
        depth: Number of LGI blocks.
        num_heads: Attention heads.
        region_size: Region size ``(t, h, w)`` in token units; must divide the token grid. MAE-DFER uses ``(2, 5, 10)``
            on the ``(8, 10, 10)`` grid of a 16x160x160 clip: 8 regions of 100 tokens.
        classify_tokens: Tokens pooled for classification: ``"region"`` (the messengers; every released MAE-DFER
            model), ``"org"`` (the local tokens) or ``"all"``.
        first_attn, third_attn, share_attn, use_second, use_third: Block variants, see :class:`LGIBlock`.
        skip_unused: With the ``"region"`` head, classification reads only the messengers, so the last block's local
            stage 3 and local MLP feed nothing (about 4 % of the FLOPs): skip them in :meth:`forward` and freeze the
            stage-3 parameters (which then get no gradient), so DDP needs no ``find_unused_parameters``. Outputs are
            identical; ``False`` computes the dead branch as the official code does (same drop-path RNG use).
        **kwargs: :class:`~maedfer.models.encoder.TokenEncoder` arguments. Layer scale (``init_values``) is not
            supported by the LGI-Former (the official block raises on it).
    """

    summary_name = "messenger"

    def __init__(
        self,
        *,
        depth: int = 16,
        region_size: tuple[int, int, int] = (2, 5, 10),
        classify_tokens: ClassifyTokens = "region",
        first_attn: AttnKind = "self",
        third_attn: AttnKind = "cross",
        share_attn: SharedAttn = "none",
        use_second: bool = True,
        use_third: bool = True,
        skip_unused: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("num_heads", 8)
        super().__init__(**kwargs)
        if classify_tokens not in ("region", "org", "all"):
            raise ValueError(f"classify_tokens must be 'region', 'org' or 'all', got {classify_tokens!r}")
        region_size = tuple(int(v) for v in region_size)  # type: ignore[assignment]
        if len(region_size) != 3:
            raise ValueError(f"region_size must be (t, h, w), got {region_size}")
        for axis, total, part in zip("THW", self.grid_size, region_size):
            _check_divisible(f"token grid {axis}' vs region_size", total, part)
        self.region_size = region_size
        self.region_grid = tuple(g // r for g, r in zip(self.grid_size, region_size))
        self.num_regions = self.region_grid[0] * self.region_grid[1] * self.region_grid[2]
        self.classify_tokens = classify_tokens
        self.lg_region_tokens = nn.Parameter(torch.zeros(self.num_regions, self.embed_dim))
        self.blocks.extend(
            LGIBlock(
                self.embed_dim,
                self.num_heads,
                settings,
                first_attn=first_attn,
                third_attn=third_attn,
                share_attn=share_attn,
                use_second=use_second,
                use_third=use_third,
            )
            for settings in self.block_settings.ramp(depth)
        )
        self.skip_unused = skip_unused
        if self.skips_last_local_stage and third_attn == "cross" and len(self.blocks):
            for param in self.blocks[-1].stage3_parameters():
                param.requires_grad_(False)
        # Region id of every raster position, and the grouping permutation for the full (unmasked) grid.
        t_idx, h_idx, w_idx = torch.meshgrid(*(torch.arange(g) for g in self.grid_size), indexing="ij")
        region_t, region_h, region_w = (idx // size for idx, size in zip((t_idx, h_idx, w_idx), region_size))
        region_of = (region_t * self.region_grid[1] + region_h) * self.region_grid[2] + region_w
        region_of = region_of.flatten()
        self.register_buffer("region_of_position", region_of, persistent=False)
        self.register_buffer("full_grid_order", self._grouping_order(region_of[None], torch.arange(region_of.numel())[None])[0], persistent=False)
        nn.init.trunc_normal_(self.lg_region_tokens, std=0.02, a=-2.0, b=2.0)
        self.init_weights()

    @property
    def skips_last_local_stage(self) -> bool:
        """Whether pooled outputs skip the last block's local-token work (see ``skip_unused``)."""
        return self.skip_unused and self.classify_tokens == "region" and self.global_pool != ""

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {"lg_region_tokens"}

    def check_mask_kind(self, kind: str, window: Sequence[int] | None = None) -> None:
        """Every region must keep the same number of visible tokens (the blocks attend within equal-size regions):
        a part-window mask whose window tiles the region's spatial size ``(h, w)``; a tube mask only when a region
        spans the whole frame; a random mask only with a single region."""
        super().check_mask_kind(kind, window)
        region_hw = tuple(self.region_size[1:])
        advice = (f"use mask part_window with a window that tiles the region's spatial size {region_hw} "
                  f"(e.g. the region itself, {region_hw})")
        if kind == "part_window":
            assert window is not None
            if region_hw[0] % window[0] or region_hw[1] % window[1]:
                raise ValueError(f"LGI-Former: part_window window {tuple(window)} does not tile the region's spatial "
                                 f"size {region_hw}, so regions would keep different numbers of visible tokens; "
                                 f"{advice}")
        elif kind == "tube" and region_hw != tuple(self.grid_size[1:]):
            raise ValueError(f"LGI-Former: a tube mask hides a random spatial set, so its regions of spatial size "
                             f"{region_hw} keep different numbers of visible tokens; {advice}")
        elif kind == "random" and self.num_regions > 1:
            raise ValueError(f"LGI-Former: a random mask leaves its {self.num_regions} regions different numbers of "
                             f"visible tokens; {advice}")

    def _grouping_order(self, regions: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Permutation that sorts tokens region-major, raster order inside a region: ``(B, N)`` -> ``(B, N)``."""
        key = regions * self.patch_embed.num_patches + positions
        return key.argsort(dim=1)

    def encode_tokens(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        all_tokens: torch.Tensor | None = None,
        taps: Collection[int] = (),
        pooled_only: bool = False,
    ) -> EncoderOutput:
        """Group tokens into regions, add messengers, run the LGI blocks.

        Args:
            x: ``(B, N, C)`` tokens in raster order (``N`` = all tokens, or the visible ones).
            positions: ``(B, N)`` raster indices.
            taps: Blocks whose outputs to keep: local tokens region-major ``(B, N, C)``, messengers as summary.
            pooled_only: Only :meth:`pool` will read the result; with :attr:`skips_last_local_stage` the local tokens
                are then not finished and come back empty, ``(B, 0, C)``.

        Returns:
            :class:`EncoderOutput` whose ``tokens`` are the local tokens region-major ``(B, N, C)`` with matching
            ``positions``, and ``summary_tokens`` the messengers ``(B, M, C)``.
        """
        batch, num_tokens, channels = x.shape
        regions = self.num_regions
        full = num_tokens == self.patch_embed.num_patches  # a tensor under torch.jit.trace (fvcore counts)
        if bool(full) if torch.jit.is_tracing() else guard_or_false(full):  # False for an unbacked (masked) count
            order = self.full_grid_order.expand(batch, num_tokens)
        else:
            region_ids = self.region_of_position[positions]
            hint = (f"Use the part-window mask with window = region spatial size {self.region_size[1:]} "
                    "(maedfer.masking.PartWindowMaskGenerator).")
            if not torch.compiler.is_compiling():  # a data-dependent check: eager only
                counts = torch.zeros(batch, regions, dtype=torch.long, device=x.device)
                counts.scatter_add_(1, region_ids, torch.ones_like(region_ids))
                if bool((counts != num_tokens // regions).any()):
                    raise ValueError("LGI-Former needs the same number of visible tokens in every region; got "
                                     f"per-region counts {counts.tolist()}. {hint}")
            message = f"LGI-Former: {num_tokens} tokens do not fill {regions} regions equally. {hint}"
            check_size(num_tokens % regions == 0, message)
            check_size(num_tokens >= regions, message)
            order = self._grouping_order(region_ids, positions)
        per_region = num_tokens // regions
        x = x.gather(1, order[..., None].expand(-1, -1, channels)).reshape(batch, regions, per_region, channels)
        positions = positions.gather(1, order)
        messengers = self.lg_region_tokens.to(x.dtype)[None, :, None, :].expand(batch, -1, -1, -1)
        x = torch.cat((messengers, x), dim=2).reshape(batch * regions, 1 + per_region, channels)
        last = len(self.blocks) - 1 if pooled_only and self.skips_last_local_stage else len(self.blocks)
        layers = {}
        for index, block in enumerate(self.blocks[:last]):
            x = self.run_block(block, x, batch)
            if index in taps:
                grouped = x.reshape(batch, regions, 1 + per_region, channels)
                local = grouped[:, :, 1:].reshape(batch, num_tokens, channels)
                layers[index] = LayerTokens(local, positions, self.grid_size, summary=grouped[:, :, 0])
        if last < len(self.blocks):
            messengers = self.run_block(self.blocks[last], x, batch, True).reshape(batch, regions, channels)
            return EncoderOutput(tokens=x.new_zeros(batch, 0, channels), positions=positions[:, :0],
                                 summary_tokens=messengers)
        x = x.reshape(batch, regions, 1 + per_region, channels)
        return EncoderOutput(
            tokens=x[:, :, 1:].reshape(batch, num_tokens, channels),
            positions=positions,
            summary_tokens=x[:, :, 0],
            layers=layers if taps else None,
        )

    def pool_tokens(self, out: EncoderOutput) -> torch.Tensor:
        """Token set chosen by ``classify_tokens``, in the official order (per region: messenger, then locals)."""
        if self.classify_tokens == "region":
            return out.summary_tokens
        if self.classify_tokens == "org":
            return out.tokens
        batch, regions, channels = out.summary_tokens.shape
        local = out.tokens.reshape(batch, regions, -1, channels)
        return torch.cat((out.summary_tokens[:, :, None], local), dim=2).flatten(1, 2)
