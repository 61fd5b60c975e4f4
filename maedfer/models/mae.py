"""Video masked autoencoder: any maedfer encoder, the MAE decoder, and the decoder position bookkeeping.

The training objective (targets and loss) lives in :mod:`maedfer.tasks.pretrain`, not here.

References:
    He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022.
    Tong et al., "VideoMAE", NeurIPS 2022.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..layers import BlockSettings, sinusoid_table_1d
from ..masking import visible_first_order
from .decoder import MAEDecoder, decode_masked_tokens
from .encoder import EncoderOutput, TokenEncoder

__all__ = ["MaskedVideoAutoencoder", "init_weights_xavier"]

DecoderPosOrder = Literal["raster", "official"]


def init_weights_xavier(module: nn.Module) -> None:
    """Pre-training initialisation: Xavier-uniform Linear weights (fused qkv as one matrix), zero biases, unit norms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class MaskedVideoAutoencoder(nn.Module):
    """Encoder on visible tokens + transformer decoder that predicts the masked tokens' pixels.

    Args:
        encoder: A :class:`~maedfer.models.encoder.TokenEncoder` built with ``global_pool=""`` and no head.
        decoder_embed_dim: Decoder width.
        decoder_depth: Decoder blocks.
        decoder_num_heads: Decoder heads.
        block: Decoder block settings (:class:`~maedfer.layers.BlockSettings`).
        decoder_pos_order: ``"raster"`` (default, correct): every visible token gets the decoder position of its own
            raster index. ``"official"``: the visible decoder positions are taken in raster order whatever order the
            encoder returns its tokens in. That is the official MAE-DFER behaviour: with the LGI-Former (region-major
            output) 40 of 80 visible tokens get another token's position. The released MAE-DFER pre-training checkpoint
            was trained this way; use it to reproduce or continue that training. No effect for the plain ViT.

    Keys: ``encoder.*``, ``decoder.*``, ``encoder_to_decoder.weight``, ``mask_token`` (as the official files).
    """

    #: The data it reads (its forward also takes masks; see :mod:`maedfer.models.contract`).
    input_modalities: tuple[str, ...] = ("video",)

    def __init__(
        self,
        encoder: TokenEncoder,
        *,
        decoder_embed_dim: int = 384,
        decoder_depth: int = 4,
        decoder_num_heads: int = 6,
        block: BlockSettings = BlockSettings(),
        decoder_pos_order: DecoderPosOrder = "raster",
    ) -> None:
        super().__init__()
        if decoder_pos_order not in ("raster", "official"):
            raise ValueError(f"decoder_pos_order must be 'raster' or 'official', got {decoder_pos_order!r}")
        if encoder.global_pool != "" or encoder.num_classes:
            raise ValueError("the MAE encoder must be built with global_pool='' and num_classes=0")
        self.decoder_pos_order = decoder_pos_order
        patch = encoder.patch_embed
        self.patch_size = patch.patch_size
        self.tubelet_size = patch.tubelet_size
        in_chans = patch.proj.in_channels
        self.encoder = encoder
        self.decoder = MAEDecoder(
            embed_dim=decoder_embed_dim,
            depth=decoder_depth,
            num_heads=decoder_num_heads,
            out_dim=in_chans * patch.tubelet_size * patch.patch_size**2,
            block=block,
        )
        self.encoder_to_decoder = nn.Linear(encoder.embed_dim, decoder_embed_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.register_buffer(
            "decoder_pos_table", sinusoid_table_1d(patch.num_patches, decoder_embed_dim), persistent=False
        )
        # Linear layers of encoder and decoder get Xavier init; encoder_to_decoder and convs keep PyTorch defaults.
        self.encoder.apply(init_weights_xavier)
        self.decoder.apply(init_weights_xavier)
        for name, param in self.named_parameters():
            if name == "mask_token" or name.endswith("lg_region_tokens"):
                nn.init.trunc_normal_(param, std=0.02, a=-0.02, b=0.02)

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """Token grid ``(T', H', W')`` of the encoder."""
        return self.encoder.grid_size

    def no_weight_decay(self) -> set[str]:
        """Exact parameter names without weight decay (the official pre-training set; region tokens are decayed)."""
        return {"mask_token"}

    def decoder_positions(self, encoded: EncoderOutput, mask: torch.Tensor) -> torch.Tensor:
        """Raster index whose decoder position each visible encoder token gets, ``(B, N_visible)``."""
        if self.decoder_pos_order == "raster":
            return encoded.positions
        return visible_first_order(mask)[:, : encoded.positions.shape[1]]

    def forward_decoder(self, encoded: EncoderOutput, mask: torch.Tensor) -> torch.Tensor:
        """Predict the masked tokens from the encoder output.

        Args:
            encoded: Encoder output for the visible tokens (any order, with positions).
            mask: ``(B, N)`` bool, ``True`` = masked.

        Returns:
            ``(B, N_masked, out_dim)`` predictions in raster order of the masked tokens.
        """
        return decode_masked_tokens(
            self.decoder,
            self.encoder_to_decoder,
            self.mask_token,
            self.decoder_pos_table,
            encoded.tokens,
            self.decoder_positions(encoded, mask),
            mask,
        )

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruct the masked tokens of a clip.

        Args:
            video: ``(B, 3, T, H, W)`` normalised clip.
            mask: ``(B, N)`` bool, ``True`` = masked; every sample masks the same number of tokens.

        Returns:
            ``(B, N_masked, in_chans * tubelet * patch ** 2)`` in raster order of the masked tokens.
        """
        mask = mask.to(torch.bool)
        return self.forward_decoder(self.encoder.forward_encoder(video, mask), mask)
