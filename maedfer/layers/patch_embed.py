"""Patch embeddings: tubelets of a video clip, patches of a spectrogram."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SpectrogramEmbed", "TubeletEmbed"]


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


class SpectrogramEmbed(nn.Module):
    """Cut a spectrogram into non-overlapping ``patch x patch`` squares and project each to a token (AudioMAE style).

    Tokens come out time-major over the grid ``(T', F')``: index ``n = t * F' + f``.

    Args:
        input_size: ``(time frames, mel bins)`` of the input, e.g. ``(256, 128)``.
        patch_size: Square patch size p.
        in_chans: Input channels (1 for a log-mel fbank).
        embed_dim: Token width C.
    """

    def __init__(
        self,
        *,
        input_size: tuple[int, int] = (256, 128),
        patch_size: int = 16,
        in_chans: int = 1,
        embed_dim: int = 768,
    ) -> None:
        super().__init__()
        input_size = (int(input_size[0]), int(input_size[1]))
        if input_size[0] % patch_size or input_size[1] % patch_size:
            raise ValueError(f"spectrogram size {input_size} is not divisible by patch_size={patch_size}")
        self.input_size = input_size
        self.patch_size = patch_size
        self.grid_size = (input_size[0] // patch_size, input_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """Embed a spectrogram.

        Args:
            spectrogram: ``(B, in_chans, T, F)``.

        Returns:
            Tokens ``(B, T' * F', C)``, time-major.
        """
        if tuple(spectrogram.shape[-2:]) != self.input_size:
            raise ValueError(
                f"input spectrogram is {tuple(spectrogram.shape[-2:])} (time x mel) but the model was built for "
                f"{self.input_size}"
            )
        return self.proj(spectrogram).flatten(2).transpose(1, 2)
