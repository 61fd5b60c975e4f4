"""Token encoders: the shared base class and the plain ViT (VideoMAE on clips, AudioMAE-style on spectrograms).

Details: ``docs/modules.md``, section ``maedfer/models/encoder.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers import Block, BlockSettings, TubeletEmbed, sinusoid_table_1d
from ..compile import assume_at_least_two, check_size
from ..masking import visible_first_order
from .contract import bind_inputs

__all__ = [
    "EncoderOutput",
    "HEAD_ACTIVATIONS",
    "Intermediates",
    "LayerTokens",
    "TokenEncoder",
    "VideoViT",
    "init_head",
    "init_weights_trunc_normal",
    "raster_order",
    "take_indices",
]

GlobalPool = Literal["mean", "token", ""]

HEAD_ACTIVATIONS: dict[str | None, type[nn.Module]] = {
    None: nn.Identity,
    "none": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
}


@dataclass
class LayerTokens:
    """One block's output as the encoder holds it (the encoder's own token order), before any norm.

    Attributes:
        tokens: ``(B, N, C)`` patch tokens after the block.
        positions: ``(B, N)`` int64 raster index of each row on ``grid``.
        grid: The token grid the block works on, e.g. ``(T', H', W')``; a later TPSBT stage has ``(T'_s, H', W')``.
        summary: Extra tokens after the block (LGI-Former messengers ``(B, M, C)``, TPSBT bottleneck tokens
            ``(B, T'_s G, C)``), or ``None``.
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    grid: tuple[int, ...]
    summary: torch.Tensor | None = None


@dataclass
class EncoderOutput:
    """What an encoder returns before pooling.

    Attributes:
        tokens: Patch tokens after the final norm, ``(B, N, C)``; ``N`` is every token, or the visible ones when a
            mask was given. Their order is encoder specific (raster for the ViT, region-major for the LGI-Former).
        positions: Raster index (``(t * H' + h) * W' + w``) of each row of ``tokens``, ``(B, N)`` int64.
        summary_tokens: Extra learned tokens, e.g. the LGI-Former messenger tokens ``(B, M, C)``, after the final norm
            when the encoder pools (``global_pool`` set; pre-training encoders leave them un-normalised because nothing
            reads them); ``None`` for encoders without them.
        layers: Raw outputs of the blocks :meth:`TokenEncoder.encode_tokens` was asked to keep, by block index;
            ``None`` when none were requested (read them through :meth:`TokenEncoder.forward_intermediates`).
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    summary_tokens: torch.Tensor | None = None
    layers: dict[int, LayerTokens] | None = None


@dataclass
class Intermediates:
    """Per-block outputs of :meth:`TokenEncoder.forward_intermediates`, one list entry per requested block.

    Attributes:
        indices: The (non-negative) block indices, in the requested order.
        tokens: ``(B, N_l, C)`` per block, rows sorted by raster position on the block's grid (for a masked input,
            the visible tokens only).
        positions: ``(B, N_l)`` int64 per block, the ascending raster positions of the rows of ``tokens``.
        grids: Token grid of each block (``(T', H', W')``; ``(T'_s, H', W')`` in TPSBT stage ``s``; ``(T', F')`` for
            a spectrogram).
        summary: Per block, the encoder's extra tokens after that block (LGI-Former messengers ``(B, M, C)`` in
            region raster order; TPSBT bottleneck tokens ``(B, T'_s G, C)`` time-major), or ``None``.
        output: What :meth:`TokenEncoder.forward_encoder` returns for the same input.
    """

    indices: list[int]
    tokens: list[torch.Tensor]
    positions: list[torch.Tensor]
    grids: list[tuple[int, ...]]
    summary: list[torch.Tensor | None]
    output: EncoderOutput


def take_indices(depth: int, indices: int | Sequence[int] | None = None) -> list[int]:
    """Block indices to return (timm convention): ``None`` = every block, an int ``n`` = the last ``n`` blocks, a
    sequence = those blocks (negative ones count from the end), in the given order.

    Raises:
        ValueError: An index (or ``n``) out of range, or an empty selection.
    """
    if indices is None:
        return list(range(depth))
    if isinstance(indices, int):
        if not 0 < indices <= depth:
            raise ValueError(f"cannot take the last {indices} of {depth} blocks")
        return list(range(depth - indices, depth))
    taken = [int(i) for i in indices]
    if not taken:
        raise ValueError("indices must name at least one block")
    bad = [i for i in taken if not -depth <= i < depth]
    if bad:
        raise ValueError(f"block indices {bad} are out of range for {depth} blocks")
    return [i % depth for i in taken]


def raster_order(tokens: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort rows by raster position: ``(B, N, C)``, ``(B, N)`` -> the same, with ascending positions."""
    order = positions.argsort(dim=1)
    return tokens.gather(1, order[..., None].expand(-1, -1, tokens.shape[-1])), positions.gather(1, order)


def init_weights_trunc_normal(module: nn.Module, std: float = 0.02) -> None:
    """Fine-tuning initialisation: truncated-normal Linear weights (cut-offs at +/-2), zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=std, a=-2.0, b=2.0)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def init_head(head: nn.Module, init_scale: float, *, fresh: bool = True) -> None:
    """Initialise a classification head ``Linear(C, K)``: truncated normal (std 0.02, zero bias), then weight and bias
    multiplied by ``init_scale``. ``fresh=False`` only scales (the head was just initialised with the rest of the
    model). No-op for an Identity head."""
    if not isinstance(head, nn.Linear):
        return
    if fresh:
        init_weights_trunc_normal(head)
    with torch.no_grad():
        head.weight.mul_(init_scale)
        head.bias.mul_(init_scale)


class TokenEncoder(nn.Module):
    """Base class of every encoder: patch embedding, fixed position table, blocks, norm, pooling and head.

    The patch embedding is a video :class:`~maedfer.layers.TubeletEmbed` built from the clip geometry, unless a
    ``patch_embed`` module is given (e.g. a :class:`~maedfer.layers.SpectrogramEmbed` for audio).

    Subclasses build ``self.blocks`` (from :attr:`num_heads` and ``self.block_settings.ramp(depth)``) and implement
    :meth:`encode_tokens`; pooling can be customised through :meth:`pool_tokens`. Every encoder answers
    :meth:`forward_intermediates` (per-block tokens in raster order, with its summary tokens).

    Args:
        img_size: Frame height and width.
        patch_size: Spatial patch size.
        num_frames: Frames per clip T.
        tubelet_size: Frames per token.
        in_chans: Input channels.
        embed_dim: Token width C.
        num_heads: Attention heads of every block.
        block: Block settings; ``block.drop_path`` is the final stochastic-depth rate (linear ramp over all blocks),
            ``block.drop`` also drops after the position embedding, ``block.norm_eps`` is every LayerNorm's epsilon.
        num_classes: Head outputs K; 0 leaves ``head`` as Identity.
        global_pool: ``"mean"``: mean over tokens, then ``fc_norm`` (LayerNorm) and no final token norm; ``"token"``:
            final LayerNorm and the first pooled token; ``""``: final LayerNorm on the tokens, no pooling (pre-training).
        head_activation: ``None``, ``"sigmoid"``, ``"relu"`` or ``"tanh"`` after the head (regression).
        init_scale: Multiplier applied to the initial head weight and bias (the official recipes use 0.001).
        learnable_pos_embed: Learn a ``pos_embed`` parameter ``(1, N, C)`` instead of the fixed sinusoid table.
        patch_embed: A prebuilt patch embedding with ``grid_size`` and ``num_patches`` attributes (the clip geometry
            arguments are then ignored).
    """

    #: The data :meth:`forward` takes (see :mod:`maedfer.models.contract`); the audio ViT takes ``("audio",)``.
    input_modalities: tuple[str, ...] = ("video",)

    #: What the encoder's summary tokens are called (``"messenger"``, ``"bottleneck"``); ``None`` without them.
    summary_name: str | None = None

    def __init__(
        self,
        *,
        img_size: int = 160,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        num_heads: int = 12,
        block: BlockSettings = BlockSettings(),
        num_classes: int = 0,
        global_pool: GlobalPool = "mean",
        head_activation: str | None = None,
        init_scale: float = 1.0,
        learnable_pos_embed: bool = False,
        patch_embed: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if global_pool not in ("mean", "token", ""):
            raise ValueError(f"global_pool must be 'mean', 'token' or '', got {global_pool!r}")
        if head_activation not in HEAD_ACTIVATIONS:
            raise ValueError(f"head_activation must be one of {sorted(map(str, HEAD_ACTIVATIONS))}, got {head_activation!r}")
        self.embed_dim = self.num_features = embed_dim
        self.num_heads = num_heads
        self.block_settings = block
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.init_scale = init_scale
        self.grad_checkpointing = False
        if patch_embed is None:
            patch_embed = TubeletEmbed(
                img_size=img_size,
                patch_size=patch_size,
                num_frames=num_frames,
                tubelet_size=tubelet_size,
                in_chans=in_chans,
                embed_dim=embed_dim,
            )
        self.patch_embed = patch_embed
        self.grid_size: tuple[int, ...] = tuple(self.patch_embed.grid_size)
        num_patches = self.patch_embed.num_patches
        if learnable_pos_embed:
            self.pos_embed: nn.Parameter | None = nn.Parameter(torch.zeros(1, num_patches, embed_dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02, a=-2.0, b=2.0)
        else:
            self.pos_embed = None
            self.register_buffer("pos_table", sinusoid_table_1d(num_patches, embed_dim)[None], persistent=False)
        self.pos_drop = nn.Dropout(block.drop)
        self.blocks = nn.ModuleList()
        self.norm: nn.Module = nn.Identity() if global_pool == "mean" else nn.LayerNorm(embed_dim, eps=block.norm_eps)
        self.fc_norm: nn.Module | None = nn.LayerNorm(embed_dim, eps=block.norm_eps) if global_pool == "mean" else None
        self.head: nn.Module = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.head_activation = HEAD_ACTIVATIONS[head_activation]()

    # ------------------------------------------------------------------ construction helpers
    def init_weights(self) -> None:
        """Fine-tuning initialisation of every Linear / LayerNorm, then scale the head by ``init_scale``."""
        self.apply(init_weights_trunc_normal)
        init_head(self.head, self.init_scale, fresh=False)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised ``Linear(C, num_classes)`` (Identity for 0)."""
        self.num_classes = num_classes
        if num_classes > 0:
            head = nn.Linear(self.embed_dim, num_classes)
            init_head(head, self.init_scale)
            self.head = head.to(self.patch_embed.proj.weight.device)
        else:
            self.head = nn.Identity()

    def move_head_last(self) -> None:
        """Re-register ``norm``, ``fc_norm``, ``head`` after modules a subclass added, so that the state dict (and the
        parameter order that optimizer states refer to) follows the official layout."""
        for name in ("norm", "fc_norm", "head", "head_activation"):
            if name in self._modules:
                self._modules[name] = self._modules.pop(name)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass to save memory."""
        self.grad_checkpointing = enable

    def run_block(self, block: nn.Module, *args: torch.Tensor | int) -> torch.Tensor:
        """Call ``block(*args)``, through activation checkpointing when enabled and training."""
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    # ------------------------------------------------------------------ optimisation metadata
    @property
    def num_layers(self) -> int:
        """Number of blocks L (used for layer-wise learning-rate decay)."""
        return len(self.blocks)

    def layer_id(self, param_name: str) -> int:
        """Layer index of a parameter for layer-wise LR decay.

        0 for the patch embedding and position/special tokens, ``i + 1`` for ``blocks.{i}``, ``L + 1`` for everything
        else (heads, norms, and encoder-specific modules such as the LGI-Former region tokens), as the official recipes.
        """
        if param_name.startswith("patch_embed") or param_name in ("pos_embed", "cls_token", "mask_token"):
            return 0
        if param_name.startswith("blocks."):
            return int(param_name.split(".")[1]) + 1
        return self.num_layers + 1

    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay besides biases and 1-D tensors."""
        return {"pos_embed", "cls_token"}

    def check_mask_kind(self, kind: str, window: Sequence[int] | None = None) -> None:
        """Raise ``ValueError`` saying why if pre-training masks of ``kind`` (``"tube"``, ``"part_window"`` with
        ``window = (h, w)`` token cells, ``"random"``) cannot feed this encoder. Joint attention takes any mask; the
        LGI-Former and the TPSBT override this with their structural needs."""
        from ..masking import MASK_KINDS

        if kind not in MASK_KINDS:
            raise ValueError(f"unknown mask kind {kind!r}; valid kinds are {', '.join(MASK_KINDS)}")
        if kind == "part_window":
            if window is None or len(window) != 2:
                raise ValueError(f"a part_window mask needs a window (h, w) in token cells, got {window!r}")
            height, width = self.grid_size[-2:]
            if height % window[0] or width % window[1]:
                raise ValueError(f"part_window window {tuple(window)} does not tile the token grid's frame "
                                 f"({height}, {width})")

    # ------------------------------------------------------------------ forward
    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """Tubelet embedding plus positions: ``(B, 3, T, H, W)`` -> ``(B, N, C)`` in raster order."""
        x = self.patch_embed(video)
        pos = self.pos_embed if self.pos_embed is not None else self.pos_table
        return self.pos_drop(x + pos.to(dtype=x.dtype))

    def encode_tokens(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        all_tokens: torch.Tensor | None = None,
        taps: Collection[int] = (),
        pooled_only: bool = False,
    ) -> EncoderOutput:
        """Run the blocks.

        Args:
            x: Embedded tokens ``(B, N, C)`` in raster order (all tokens, or the visible ones).
            positions: Raster index of each row, ``(B, N)``.
            all_tokens: The embedding of every token before masking ``(B, N_all, C)``. Only encoders that reproduce an
                official pre-training which reads masked tokens use it (SVFAP's TPSBT); the others ignore it.
            taps: Indices of blocks whose raw outputs to keep in ``EncoderOutput.layers`` (:class:`LayerTokens`).
            pooled_only: Only :meth:`pool` will read the result: an encoder may skip work that feeds nothing else.

        Returns:
            :class:`EncoderOutput` before the final norm.
        """
        raise NotImplementedError

    def visible_tokens(
        self, video: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed a clip and keep the visible tokens.

        Args:
            video: ``(B, 3, T, H, W)`` (or ``(B, 1, T, F)`` for a spectrogram encoder).
            mask: ``(B, N)`` bool, ``True`` = masked (dropped). Every sample must keep the same number of tokens.

        Returns:
            ``(tokens (B, N_visible, C), raster positions (B, N_visible) ascending, all embedded tokens (B, N, C))``.
        """
        x = all_tokens = self.embed(video)
        batch, num_tokens, channels = x.shape
        if mask is None:
            return x, torch.arange(num_tokens, device=x.device).expand(batch, num_tokens), all_tokens
        if mask.shape != (batch, num_tokens):
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {(batch, num_tokens)}")
        visible = ~mask.to(torch.bool)
        if not torch.compiler.is_compiling():  # a data-dependent check: eager only
            counts = visible.sum(1)
            if bool((counts != counts[0]).any()):
                raise ValueError(f"every sample must keep the same number of visible tokens, got {counts.tolist()}")
        # Under torch.compile this is an unbacked size (needs capture_scalar_outputs, see maedfer.compile).
        num_visible = int(visible[0].sum())
        check_size(num_visible > 0, "the mask hides every token")
        check_size(num_visible <= num_tokens, "more visible tokens than tokens")  # (for the compiler)
        assume_at_least_two(num_visible)
        positions = visible_first_order(mask)[:, :num_visible]
        return x.gather(1, positions[..., None].expand(-1, -1, channels)), positions, all_tokens

    def finish(self, out: EncoderOutput) -> EncoderOutput:
        """Apply the final norm to ``out.tokens`` (and to the summary tokens when the encoder pools)."""
        out.tokens = self.norm(out.tokens)
        if out.summary_tokens is not None and self.global_pool:
            # Only pooling reads them; pre-training encoders drop them (as the official code), so skip that norm.
            out.summary_tokens = self.norm(out.summary_tokens)
        return out

    def forward_encoder(
        self, video: torch.Tensor, mask: torch.Tensor | None = None, pooled_only: bool = False
    ) -> EncoderOutput:
        """Encode a clip (or spectrogram), optionally keeping only visible tokens.

        Args:
            video: ``(B, 3, T, H, W)`` (or ``(B, 1, T, F)`` for a spectrogram encoder).
            mask: ``(B, N)`` bool, ``True`` = masked (dropped). Every sample must keep the same number of tokens.
            pooled_only: Only :meth:`pool` will read the result (see :meth:`encode_tokens`).

        Returns:
            :class:`EncoderOutput` with the final norm applied to the tokens (and summary tokens when pooling).
        """
        return self.finish(self.encode_tokens(*self.visible_tokens(video, mask), pooled_only=pooled_only))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        indices: int | Sequence[int] | None = None,
        norm: bool = True,
    ) -> Intermediates:
        """The outputs of selected blocks, in raster order, with the encoder's summary tokens.

        Args:
            x: ``(B, 3, T, H, W)`` clip (or ``(B, 1, T, F)`` spectrogram).
            mask: ``(B, N)`` bool (``True`` = masked); the blocks then see the visible tokens only.
            indices: ``None``: every block; ``n``: the last ``n`` blocks; a sequence: those blocks (negative ones
                count from the end). See :func:`take_indices`.
            norm: Apply the encoder's final norm (``norm``; an Identity for mean-pooling classifiers) to every
                block's tokens and summary tokens, as HiCMAE reads its layers; ``False`` gives the raw block outputs.

        Returns:
            :class:`Intermediates`; ``output`` equals :meth:`forward_encoder` on the same input.

        Raises:
            ValueError: ``indices`` out of range, or a mask the encoder cannot take.
        """
        taken = take_indices(len(self.blocks), indices)
        raw = self.encode_tokens(*self.visible_tokens(x, mask), taps=set(taken))
        assert raw.layers is not None
        last_tokens = raw.tokens
        out = self.finish(EncoderOutput(raw.tokens, raw.positions, raw.summary_tokens))
        finish = self.norm if norm else nn.Identity()
        result = Intermediates(indices=taken, tokens=[], positions=[], grids=[], summary=[], output=out)
        for index in taken:
            layer = raw.layers[index]
            # The last block's output is usually the final output too: normalise it once.
            tokens = out.tokens if norm and layer.tokens is last_tokens else finish(layer.tokens)
            tokens, positions = raster_order(tokens, layer.positions)
            result.tokens.append(tokens)
            result.positions.append(positions)
            result.grids.append(layer.grid)
            result.summary.append(None if layer.summary is None else finish(layer.summary))
        return result

    def pool_tokens(self, out: EncoderOutput) -> torch.Tensor:
        """The token set that is pooled for classification, ``(B, n, C)``."""
        return out.tokens

    def pool(self, out: EncoderOutput) -> torch.Tensor:
        """Pool an :class:`EncoderOutput` into one feature vector per clip ``(B, C)`` (``fc_norm`` applied)."""
        tokens = self.pool_tokens(out)
        if self.global_pool == "mean":
            assert self.fc_norm is not None
            return self.fc_norm(tokens.mean(1))
        if self.global_pool == "token":
            return tokens[:, 0]
        raise RuntimeError("this encoder was built without pooling (global_pool=''); use forward_encoder()")

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """Pre-head clip features: ``(B, 3, T, H, W)`` -> ``(B, C)``."""
        return self.pool(self.forward_encoder(video, pooled_only=True))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Head and its activation: ``(B, C)`` -> ``(B, K)``."""
        return self.head_activation(self.head(features))

    def forward(
        self, *inputs: torch.Tensor, video: torch.Tensor | None = None, audio: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Classify (or regress) the one input of :attr:`input_modalities`, positional or by keyword:
        ``(B, 3, T, H, W)`` clip (``(B, 1, T, F)`` filter bank for the audio ViT) -> ``(B, K)``.

        Raises:
            TypeError / ValueError: On the other modality, or a missing input (see :func:`~maedfer.models.contract.bind_inputs`).
        """
        (x,) = bind_inputs(self, inputs, video=video, audio=audio).values()
        return self.forward_head(self.forward_features(x))


class VideoViT(TokenEncoder):
    """Plain space-time ViT with joint attention over all tokens (the VideoMAE baseline).

    Args:
        depth: Number of blocks.
        **kwargs: :class:`TokenEncoder` arguments (sizes, heads, block settings, head ...).
    """

    def __init__(self, *, depth: int = 12, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.blocks.extend(Block(self.embed_dim, self.num_heads, settings) for settings in self.block_settings.ramp(depth))
        self.init_weights()

    def encode_tokens(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        all_tokens: torch.Tensor | None = None,
        taps: Collection[int] = (),
        pooled_only: bool = False,
    ) -> EncoderOutput:
        """Joint attention over all given tokens; order and positions pass through unchanged."""
        layers = {}
        for index, block in enumerate(self.blocks):
            x = self.run_block(block, x)
            if index in taps:
                layers[index] = LayerTokens(x, positions, self.grid_size)
        return EncoderOutput(tokens=x, positions=positions, layers=layers if taps else None)


def _check_divisible(name: str, total: int, part: int) -> None:
    if part <= 0 or total % part:
        raise ValueError(f"{name}: {total} is not divisible by {part}")
