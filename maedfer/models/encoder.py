"""Token encoders: the shared base class and the plain ViT (VideoMAE on clips, AudioMAE-style on spectrograms).

Details: ``docs/modules.md``, section ``maedfer/models/encoder.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers import Block, BlockSettings, TubeletEmbed, sinusoid_table_1d
from ..compile import check_size
from ..masking import visible_first_order
from .contract import bind_inputs

__all__ = ["EncoderOutput", "TokenEncoder", "VideoViT", "HEAD_ACTIVATIONS", "init_head", "init_weights_trunc_normal"]

GlobalPool = Literal["mean", "token", ""]

HEAD_ACTIVATIONS: dict[str | None, type[nn.Module]] = {
    None: nn.Identity,
    "none": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
}


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
        layers: Outputs of the requested blocks (``return_layers``), each ``(B, N, C)`` after the encoder's final
            norm (the same LayerNorm for every layer, as HiCMAE); ``None`` when none were requested.
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    summary_tokens: torch.Tensor | None = None
    layers: list[torch.Tensor] | None = None


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
    :meth:`encode_tokens`; pooling can be customised through :meth:`pool_tokens`.

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
        return_layers: Sequence[int] | None = None,
        pooled_only: bool = False,
    ) -> EncoderOutput:
        """Run the blocks.

        Args:
            x: Embedded tokens ``(B, N, C)`` in raster order (all tokens, or the visible ones).
            positions: Raster index of each row, ``(B, N)``.
            all_tokens: The embedding of every token before masking ``(B, N_all, C)``. Only encoders that reproduce an
                official pre-training which reads masked tokens use it (SVFAP's TPSBT); the others ignore it.
            return_layers: Indices of blocks whose outputs to return in ``EncoderOutput.layers`` (before the norm);
                encoders that cannot provide them raise ``ValueError``.
            pooled_only: Only :meth:`pool` will read the result: an encoder may skip work that feeds nothing else.

        Returns:
            :class:`EncoderOutput` before the final norm.
        """
        raise NotImplementedError

    def forward_encoder(
        self,
        video: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_layers: Sequence[int] | Literal["all"] | None = None,
        pooled_only: bool = False,
    ) -> EncoderOutput:
        """Encode a clip (or spectrogram), optionally keeping only visible tokens.

        Args:
            video: ``(B, 3, T, H, W)`` (or ``(B, 1, T, F)`` for a spectrogram encoder).
            mask: ``(B, N)`` bool, ``True`` = masked (dropped). Every sample must keep the same number of tokens.
            return_layers: Block indices whose outputs are returned in ``layers`` (``"all"`` for every block).

        Returns:
            :class:`EncoderOutput` with the final norm applied to tokens, summary tokens and layers.
        """
        x = all_tokens = self.embed(video)
        batch, num_tokens, channels = x.shape
        if mask is None:
            positions = torch.arange(num_tokens, device=x.device).expand(batch, num_tokens)
        else:
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
            positions = visible_first_order(mask)[:, :num_visible]
            x = x.gather(1, positions[..., None].expand(-1, -1, channels))
        if return_layers == "all":
            return_layers = range(len(self.blocks))
        if return_layers is not None:
            return_layers = [int(i) for i in return_layers]
            if any(not 0 <= i < len(self.blocks) for i in return_layers):
                raise ValueError(f"return_layers {return_layers} out of range for {len(self.blocks)} blocks")
        out = self.encode_tokens(x, positions, all_tokens, return_layers, pooled_only)
        if out.layers is not None:
            raw_layers = out.layers
            out.layers = [self.norm(layer) for layer in raw_layers]
            # The last block's output is usually among the layers: normalise it once.
            same = [i for i, layer in enumerate(raw_layers) if layer is out.tokens]
            out.tokens = out.layers[same[0]] if same else self.norm(out.tokens)
        else:
            out.tokens = self.norm(out.tokens)
        if out.summary_tokens is not None and self.global_pool:
            # Only pooling reads them; pre-training encoders drop them (as the official code), so skip that norm.
            out.summary_tokens = self.norm(out.summary_tokens)
        return out

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
        return_layers: Sequence[int] | None = None,
        pooled_only: bool = False,
    ) -> EncoderOutput:
        """Joint attention over all given tokens; order and positions pass through unchanged."""
        wanted = set(return_layers or ())
        layers = []
        for index, block in enumerate(self.blocks):
            x = self.run_block(block, x)
            if index in wanted:
                layers.append(x)
        if return_layers is not None:
            by_index = dict(zip(sorted(wanted), layers))
            layers = [by_index[i] for i in return_layers]
        return EncoderOutput(tokens=x, positions=positions, layers=layers if return_layers is not None else None)


def _check_divisible(name: str, total: int, part: int) -> None:
    if part <= 0 or total % part:
        raise ValueError(f"{name}: {total} is not divisible by {part}")
