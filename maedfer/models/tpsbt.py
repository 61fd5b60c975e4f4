"""TPSBT: the temporal-pyramid, spatial-bottleneck transformer of SVFAP.

Details: ``docs/modules.md``, section ``maedfer/models/tpsbt.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Literal

import torch
from torch import nn

from ..compile import assume_at_least_two, check_size
from ..layers import Block, CrossSelfBlock, Mlp
from .encoder import EncoderOutput, LayerTokens, TokenEncoder, _check_divisible

__all__ = ["SpatialAttentionPool", "TPSBT"]

PretrainContext = Literal["bottleneck", "official"]
Upsample = Literal["repeat", "official"]
StageOutput = Literal["last", "multiscale"]


class SpatialAttentionPool(nn.Module):
    """Pool each frame's tokens into ``num_tokens`` bottleneck tokens with learned spatial attention.

    Logits ``mlp(norm(x))`` give, per token, one score for each bottleneck slot; a softmax over the tokens of a frame
    turns them into weights, and each slot is the weighted sum of the frame's (un-normalised) tokens.
    Keys as the official ``SpatialAttention``: ``norm``, ``mlp.fc1``, ``mlp.fc2``.

    Args:
        dim: Token width C.
        num_tokens: Bottleneck tokens per frame G.
        hidden_dim: Hidden width of the scoring MLP (128 in SVFAP).
        drop: Dropout on the scores.
        norm_eps: LayerNorm epsilon.
    """

    def __init__(self, dim: int, num_tokens: int, *, hidden_dim: int = 128, drop: float = 0.0, norm_eps: float = 1e-6):
        super().__init__()
        self.num_tokens = num_tokens
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, hidden_dim, num_tokens, drop=drop)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """Pool ``x (B, frames * P, C)`` (time-major) into ``(B, frames * G, C)``."""
        batch, length, channels = x.shape
        weights = self.mlp(self.norm(x)).reshape(batch * frames, length // frames, self.num_tokens)
        weights = weights.softmax(dim=1).transpose(1, 2)  # (B*T, G, P)
        pooled = weights @ x.reshape(batch * frames, length // frames, channels)
        return pooled.reshape(batch, frames * self.num_tokens, channels)


class TPSBT(TokenEncoder):
    """SVFAP's TPSBT encoder.

    Args:
        stage_depths: Blocks per stage; stage 0 holds plain blocks, each later stage ``d - 1`` bottleneck blocks and
            one final block. Total depth ``sum(stage_depths)`` (21 in SVFAP).
        num_bottleneck_tokens: Bottleneck tokens per frame for each later stage; one value is used for all.
        temporal_kernel_size: Kernel and stride k of the temporal convolutions; the token grid's T' must be divisible
            by ``k ** (len(stage_depths) - 1)``.
        bottleneck_hidden_dim: Hidden width of the spatial-attention MLP (128).
        output: ``"last"``: the last stage's tokens (classification); ``"multiscale"``: the sum of every stage's
            output at the input's temporal resolution (pre-training). Defaults to ``"multiscale"`` when
            ``global_pool=""`` and ``"last"`` otherwise.
        pretrain_context: See the module docstring; only used with a mask.
        upsample: See the module docstring; only used with ``output="multiscale"``.
        **kwargs: :class:`~maedfer.models.encoder.TokenEncoder` arguments (the drop-path ramp spans all blocks).

    Per-block outputs (:meth:`~maedfer.models.encoder.TokenEncoder.forward_intermediates`): a stage-0 block gives the
    tokens on the input grid ``(T', H', W')``; a block of stage ``s`` lives on the down-sampled grid
    ``(T' / k ** s, H', W')``: its tokens are the stage's full tokens ``Y`` (unchanged by the bottleneck blocks, updated
    by the last block) and its summary the bottleneck tokens ``Z`` ``(B, T'_s G, C)`` after it (for the last block,
    the ``Z`` it read; ``None`` where ``pretrain_context="official"`` skips the bottleneck branch).
    """

    summary_name = "bottleneck"

    def __init__(
        self,
        *,
        stage_depths: Sequence[int] = (12, 6, 3),
        num_bottleneck_tokens: Sequence[int] | int = (8,),
        temporal_kernel_size: int = 2,
        bottleneck_hidden_dim: int = 128,
        output: StageOutput | None = None,
        pretrain_context: PretrainContext = "bottleneck",
        upsample: Upsample = "repeat",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("num_heads", 8)
        super().__init__(**kwargs)
        stage_depths = tuple(int(d) for d in stage_depths)
        if len(stage_depths) < 1 or any(d < 1 for d in stage_depths[1:]) or stage_depths[0] < 0:
            raise ValueError(f"stage_depths must be (d0, d1, ...) with d_s >= 1 for s >= 1, got {stage_depths}")
        later = len(stage_depths) - 1
        tokens = (num_bottleneck_tokens,) if isinstance(num_bottleneck_tokens, int) else tuple(num_bottleneck_tokens)
        if len(tokens) == 1:
            tokens = tokens * later
        if len(tokens) != later:
            raise ValueError(f"num_bottleneck_tokens needs 1 or {later} values, got {tokens}")
        _check_divisible("token grid T' vs temporal_kernel_size ** (stages - 1)", self.grid_size[0], temporal_kernel_size**later)
        if output is None:
            output = "multiscale" if self.global_pool == "" else "last"
        for name, value, allowed in (
            ("output", output, ("last", "multiscale")),
            ("pretrain_context", pretrain_context, ("bottleneck", "official")),
            ("upsample", upsample, ("repeat", "official")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.stage_depths = stage_depths
        self.num_bottleneck_tokens = tokens
        self.temporal_kernel_size = temporal_kernel_size
        self.output = output
        self.pretrain_context = pretrain_context
        self.upsample = upsample

        settings = iter(self.block_settings.ramp(sum(stage_depths)))
        self.temporal_downsamples = nn.ModuleList()
        self.spatial_downsamples = nn.ModuleList()
        for stage, depth in enumerate(stage_depths):
            if stage == 0:
                self.blocks.extend(
                    Block(self.embed_dim, self.num_heads, next(settings)) for _ in range(depth)
                )
                continue
            self.temporal_downsamples.append(
                nn.Conv1d(self.embed_dim, self.embed_dim, kernel_size=temporal_kernel_size, stride=temporal_kernel_size)
            )
            self.spatial_downsamples.append(
                SpatialAttentionPool(
                    self.embed_dim,
                    tokens[stage - 1],
                    hidden_dim=bottleneck_hidden_dim,
                    drop=self.block_settings.drop,
                    norm_eps=self.block_settings.norm_eps,
                )
            )
            self.blocks.extend(
                CrossSelfBlock(self.embed_dim, self.num_heads, next(settings)) for _ in range(depth)
            )
        self.move_head_last()
        self.init_weights()
        if pretrain_context == "official" and self.global_pool == "":
            # The official pre-training never reads the bottleneck branch: freeze it (it gets no gradient), so DDP
            # needs no find_unused_parameters and AdamW skips it, as it does in the official runs.
            for stage in range(1, len(stage_depths)):
                for module in [self.spatial_downsamples[stage - 1], *self._stage_blocks(stage)[:-1]]:
                    module.requires_grad_(False)

    def check_mask_kind(self, kind: str, window: Sequence[int] | None = None) -> None:
        """The temporal convolutions pair the same spatial token across frames: a tube or part-window mask (one
        spatial mask for every frame), not a random one."""
        super().check_mask_kind(kind, window)
        if kind == "random":
            raise ValueError("TPSBT: a random mask hides different spatial positions in each frame, but the temporal "
                             "down-sampling pairs each spatial token across frames; use mask tube or part_window")

    def _stage_blocks(self, stage: int) -> list[nn.Module]:
        start = sum(self.stage_depths[:stage])
        return list(self.blocks[start : start + self.stage_depths[stage]])

    def _temporal_down(self, x: torch.Tensor, stage: int, frames: int) -> torch.Tensor:
        """``(B, frames * P, C)`` -> ``(B, frames / k * P, C)``, time-major in and out."""
        batch, length, channels = x.shape
        per_frame = length // frames
        series = x.reshape(batch, frames, per_frame, channels).permute(0, 2, 3, 1).reshape(-1, channels, frames)
        series = self.temporal_downsamples[stage - 1](series)
        frames_out = series.shape[-1]
        return series.reshape(batch, per_frame, channels, frames_out).permute(0, 3, 1, 2).reshape(batch, -1, channels)

    def _upsample(self, x: torch.Tensor, stage: int, frames_before: int) -> torch.Tensor:
        """Bring a stage output ``(B, T_s * P, C)`` back to the input's ``T'`` frames: ``(B, T' * P, C)``."""
        batch, _, channels = x.shape
        factor = self.temporal_kernel_size**stage
        if self.upsample == "official":
            # The official code splits the rows with the temporal length before down-sampling.
            return x.reshape(batch, frames_before, -1, channels).repeat_interleave(factor, dim=1).reshape(batch, -1, channels)
        frames_after = frames_before // self.temporal_kernel_size
        return x.reshape(batch, frames_after, -1, channels).repeat_interleave(factor, dim=1).reshape(batch, -1, channels)

    def _check_token_layout(self, positions: torch.Tensor) -> int:
        """Tokens must cover every frame with the same spatial positions; returns tokens per frame P."""
        batch, length = positions.shape
        frames = self.grid_size[0]
        message = f"TPSBT needs the same number of tokens in each of the {frames} frames, got {length} tokens"
        check_size(length % frames == 0, message)
        check_size(length >= frames, message)
        per_frame = length // frames
        assume_at_least_two(per_frame)
        if not torch.compiler.is_compiling() and length != self.patch_embed.num_patches:  # data-dependent: eager only
            spatial = positions.reshape(batch, frames, per_frame) % (self.grid_size[1] * self.grid_size[2])
            if bool((spatial != spatial[:, :1]).any()):
                raise ValueError("TPSBT needs a tube mask (the same visible spatial positions in every frame)")
        if self.output == "multiscale" and self.upsample == "official":
            check_size(per_frame % self.temporal_kernel_size == 0, "visible tokens per frame vs temporal_kernel_size "
                       f"(official upsample): {per_frame} is not divisible by {self.temporal_kernel_size}")
        return per_frame

    def encode_tokens(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        all_tokens: torch.Tensor | None = None,
        taps: Collection[int] = (),
        pooled_only: bool = False,
    ) -> EncoderOutput:
        """Run the stages.

        Args:
            x: ``(B, N, C)`` tokens in raster order (all, or the visible ones of a tube mask).
            positions: ``(B, N)`` raster indices.
            all_tokens: The embedding of every token before masking ``(B, N_all, C)``; the context of the last block
                of each stage when ``pretrain_context="official"``.
            taps: Blocks whose outputs to keep (see the class docstring for what a block's tokens are).

        Returns:
            ``output="last"``: the last stage's tokens ``(B, T_last * P, C)`` with the positions of the first input
            frame each covers; ``output="multiscale"``: ``(B, N, C)`` with the input positions.
        """
        self._check_token_layout(positions)
        layers: dict[int, LayerTokens] = {}
        for index, block in enumerate(self._stage_blocks(0)):
            x = self.run_block(block, x)
            if index in taps:
                layers[index] = LayerTokens(x, positions, self.grid_size)
        fused = x if self.output == "multiscale" else None
        frames = self.grid_size[0]
        for stage in range(1, len(self.stage_depths)):
            full = self._temporal_down(x, stage, frames)
            blocks = self._stage_blocks(stage)
            first = sum(self.stage_depths[:stage])
            stage_positions, grid = self._stage_positions(positions, stage)
            if self.pretrain_context == "official" and all_tokens is not None:
                # Official pre-training: the bottleneck branch is computed there but never used; skip it.
                context, summary = all_tokens, None
                layers.update({i: LayerTokens(full, stage_positions, grid)
                               for i in range(first, first + len(blocks) - 1) if i in taps})
            else:
                context = self.spatial_downsamples[stage - 1](full, frames // self.temporal_kernel_size)
                for index, block in enumerate(blocks[:-1], start=first):
                    context = self.run_block(block, context, full)
                    if index in taps:
                        layers[index] = LayerTokens(full, stage_positions, grid, summary=context)
                summary = context
            x = self.run_block(blocks[-1], full, context)
            if first + len(blocks) - 1 in taps:
                layers[first + len(blocks) - 1] = LayerTokens(x, stage_positions, grid, summary=summary)
            if fused is not None:
                fused = fused + self._upsample(x, stage, frames)
            frames //= self.temporal_kernel_size
        kept = layers if taps else None
        if fused is not None:
            return EncoderOutput(tokens=fused, positions=positions, layers=kept)
        stride = self.temporal_kernel_size ** (len(self.stage_depths) - 1)
        batch = positions.shape[0]
        first_frames = positions.reshape(batch, self.grid_size[0], -1)[:, ::stride].reshape(batch, -1)
        return EncoderOutput(tokens=x, positions=first_frames, layers=kept)

    def _stage_positions(self, positions: torch.Tensor, stage: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Raster positions ``(B, T'_s P)`` of stage ``s``'s tokens on its own grid ``(T'_s, H', W')``, and that grid."""
        stride = self.temporal_kernel_size**stage
        frames, height, width = self.grid_size
        per_frame = height * width
        first = positions.reshape(positions.shape[0], frames, -1)[:, ::stride].flatten(1)
        return first // per_frame // stride * per_frame + first % per_frame, (frames // stride, height, width)
