"""Tubelet (video) patch embedding."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TubeletEmbed"]


class TubeletEmbed(nn.Module):
    """Cut a clip into non-overlapping ``tubelet x patch x patch`` cubes and project each to a token.

    Tokens come out in raster order over the token grid ``(T', H', W')``: index ``n = (t * H' + h) * W' + w``.

    Args:
        img_size: Input height and width (square frames).
        patch_size: Spatial patch size p.
        num_frames: Input frames T.
        tubelet_size: Frames per token.
        in_chans: Input channels.
        embed_dim: Token width C.
    """

    def __init__(
        self,
        *,
        img_size: int = 160,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
    ) -> None:
        super().__init__()
        if img_size % patch_size or num_frames % tubelet_size:
            raise ValueError(
                f"img_size={img_size} must be divisible by patch_size={patch_size} and num_frames={num_frames} "
                f"by tubelet_size={tubelet_size}"
            )
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.grid_size = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1] * self.grid_size[2]
        self.proj = nn.Conv3d(
            in_chans,
            embed_dim,
            kernel_size=(tubelet_size, patch_size, patch_size),
            stride=(tubelet_size, patch_size, patch_size),
        )

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Embed a clip.

        Args:
            video: ``(B, in_chans, T, H, W)``.

        Returns:
            Tokens ``(B, T' * H' * W', C)`` in raster order.
        """
        _, _, frames, height, width = video.shape
        if (frames, height, width) != (self.num_frames, self.img_size, self.img_size):
            raise ValueError(
                f"input clip is {frames}x{height}x{width} (T x H x W) but the model was built for "
                f"{self.num_frames}x{self.img_size}x{self.img_size}"
            )
        return self.proj(video).flatten(2).transpose(1, 2)
