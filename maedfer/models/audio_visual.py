"""HiCMAE: audio and video encoders, cross-modal fusion, hierarchical skip decoders, and the audio-visual classifier.

Details: ``docs/modules.md``, section ``maedfer/models/audio_visual.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import BlockSettings, CrossSelfBlock, SpectrogramEmbed, sinusoid_table_1d
from .decoder import MAEDecoder, decode_masked_tokens
from .contract import bind_inputs
from .encoder import HEAD_ACTIVATIONS, Intermediates, TokenEncoder, VideoViT, init_head, raster_order
from .mae import init_weights_xavier

__all__ = [
    "AudioViT",
    "AudioVisualClassifier",
    "AudioVisualMaskedAutoencoder",
    "AudioVisualPretrainOutput",
    "CrossModalFusion",
    "rows_on_output_grid",
]

Modality = Literal["audio_visual", "video", "audio"]


class AudioViT(VideoViT):
    """Plain ViT on a spectrogram ``(B, 1, T, F)``: 16x16 patches, time-major tokens, fixed 1-D sinusoid positions.

    Args:
        input_size: ``(time frames, mel bins)``, ``(256, 128)`` for HiCMAE (2.56 s at a 10 ms shift).
        patch_size: Square patch size.
        in_chans: Input channels (1).
        **kwargs: :class:`~maedfer.models.VideoViT` / :class:`~maedfer.models.encoder.TokenEncoder` arguments.
    """

    input_modalities = ("audio",)

    def __init__(
        self, *, input_size: tuple[int, int] = (256, 128), patch_size: int = 16, in_chans: int = 1, **kwargs
    ) -> None:
        embed_dim = kwargs.get("embed_dim", 768)
        patch_embed = SpectrogramEmbed(
            input_size=tuple(input_size), patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim
        )
        super().__init__(patch_embed=patch_embed, **kwargs)


class CrossModalFusion(nn.Module):
    """Two parallel stacks of cross/self blocks exchanging information between the video and audio tokens.

    At each layer ``v' = blocks[i](v, context=a)`` and ``a' = blocks_audio[i](a, context=v)`` (both from the previous
    layer's values), then ``norm(v)`` and ``norm_audio(a)``.

    Args:
        embed_dim: Video token width.
        embed_dim_audio: Audio token width.
        depth: Number of fusion layers.
        num_heads: Heads of every attention.
        block: Block settings (:class:`~maedfer.layers.BlockSettings`); ``block.drop_path`` is the final
            stochastic-depth rate (linear ramp over the layers).
    """

    def __init__(
        self,
        *,
        embed_dim: int = 512,
        embed_dim_audio: int = 512,
        depth: int = 2,
        num_heads: int = 8,
        block: BlockSettings = BlockSettings(),
    ) -> None:
        super().__init__()
        stack = block.ramp(depth)
        self.blocks = nn.ModuleList(CrossSelfBlock(embed_dim, num_heads, s, context_dim=embed_dim_audio) for s in stack)
        self.norm = nn.LayerNorm(embed_dim, eps=block.norm_eps)
        self.blocks_audio = nn.ModuleList(
            CrossSelfBlock(embed_dim_audio, num_heads, s, context_dim=embed_dim) for s in stack
        )
        self.norm_audio = nn.LayerNorm(embed_dim_audio, eps=block.norm_eps)
        self.apply(init_weights_xavier)

    def forward(self, video_tokens: torch.Tensor, audio_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse ``(B, Nv, Cv)`` video and ``(B, Na, Ca)`` audio tokens; returns both, normalised, same shapes."""
        for block, block_audio in zip(self.blocks, self.blocks_audio):
            video_tokens, audio_tokens = block(video_tokens, audio_tokens), block_audio(audio_tokens, video_tokens)
        return self.norm(video_tokens), self.norm_audio(audio_tokens)


def rows_on_output_grid(
    intermediates: Intermediates, input_grid: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """An encoder's output and tapped layers as rows of the same visible input positions, in raster order.

    The hierarchical skips and contrastive taps of HiCMAE need every tapped layer on the rows the decoder reads.
    A joint-attention or LGI-Former layer already lives on the input grid (its rows are the visible tokens in
    raster order); a later TPSBT stage lives on a temporally down-sampled grid ``(T'_s, H', W')``, so each visible
    input token takes the row of the stage token covering it (the same repeat as the TPSBT's multiscale output).
    Summary tokens (LGI messengers, TPSBT bottleneck tokens) have no input position and take no part.

    Args:
        intermediates: :meth:`TokenEncoder.forward_intermediates` of the visible tokens.
        input_grid: The encoder's input token grid ``(T', H', W')`` (or ``(T', F')``).

    Returns:
        ``(tokens (B, N, C), positions (B, N), layers [(B, N, C)])`` with ascending raster ``positions``.
    """
    tokens, positions = raster_order(intermediates.output.tokens, intermediates.output.positions)
    per_frame = 1
    for size in input_grid[1:]:
        per_frame *= size
    layers = []
    for layer, layer_positions, grid in zip(intermediates.tokens, intermediates.positions, intermediates.grids):
        if tuple(grid) == tuple(input_grid):
            layers.append(layer)
            continue
        if tuple(grid[1:]) != tuple(input_grid[1:]) or input_grid[0] % grid[0]:
            raise ValueError(f"cannot place a layer on grid {tuple(grid)} onto the input grid {tuple(input_grid)}")
        stride = input_grid[0] // grid[0]
        covering = positions // per_frame // stride * per_frame + positions % per_frame
        rows = torch.searchsorted(layer_positions, covering)
        layers.append(layer.gather(1, rows[..., None].expand(-1, -1, layer.shape[-1])))
    return tokens, positions, layers


def _pooled_unit(tokens: torch.Tensor) -> torch.Tensor:
    """Token mean, L2-normalised: ``(B, N, C)`` -> ``(B, C)``."""
    pooled = tokens.mean(1)
    return pooled / pooled.norm(dim=-1, keepdim=True)


@dataclass
class AudioVisualPretrainOutput:
    """What :class:`AudioVisualMaskedAutoencoder` returns.

    Attributes:
        pred_video: ``(B, Nv_masked, 3 * tubelet * p ** 2)`` predictions of the masked video tokens (raster order).
        pred_audio: ``(B, Na_masked, p ** 2)`` predictions of the masked spectrogram patches.
        video_embeddings: Per tapped layer, the L2-normalised mean of the visible video tokens ``(B, C)``.
        audio_embeddings: The same for audio.
        temperature: Contrastive temperature.
    """

    pred_video: torch.Tensor
    pred_audio: torch.Tensor
    video_embeddings: list[torch.Tensor]
    audio_embeddings: list[torch.Tensor]
    temperature: float

    @property
    def logits_per_video(self) -> list[torch.Tensor]:
        """Per level ``v @ a^T / temperature`` ``(B, B)`` (local batch)."""
        return [v @ a.t() / self.temperature for v, a in zip(self.video_embeddings, self.audio_embeddings)]

    @property
    def logits_per_audio(self) -> list[torch.Tensor]:
        """Transposes of :attr:`logits_per_video`."""
        return [logits.t() for logits in self.logits_per_video]


class AudioVisualMaskedAutoencoder(nn.Module):
    """HiCMAE pre-training model.

    Args:
        encoder: Video encoder, ``global_pool=""``: :class:`~maedfer.models.VideoViT` as released, or any token
            encoder (LGI-Former, TPSBT); its patch tokens feed fusion, skips and taps (:func:`rows_on_output_grid`).
        encoder_audio: Audio encoder (:class:`AudioViT`, ``global_pool=""``).
        fusion: :class:`CrossModalFusion` over the visible tokens.
        decoder_embed_dim, decoder_num_heads: Video decoder size.
        decoder_embed_dim_audio, decoder_num_heads_audio: Audio decoder size.
        return_intermediate_features: Encoder blocks tapped for the contrastive loss and the skips (``(3, 6, 9)``);
            each decoder has ``len(taps) + 1`` blocks (the first plain, the others reading the taps deepest first).
        temperature: Contrastive temperature (0.07, fixed).
        block: Decoder block settings (:class:`~maedfer.layers.BlockSettings`).
    """

    #: The data it reads (its forward also takes masks; see :mod:`maedfer.models.contract`).
    input_modalities: tuple[str, ...] = ("video", "audio")

    def __init__(
        self,
        encoder: TokenEncoder,
        encoder_audio: TokenEncoder,
        fusion: CrossModalFusion,
        *,
        decoder_embed_dim: int = 384,
        decoder_num_heads: int = 6,
        decoder_embed_dim_audio: int = 384,
        decoder_num_heads_audio: int = 6,
        return_intermediate_features: Sequence[int] = (3, 6, 9),
        temperature: float = 0.07,
        block: BlockSettings = BlockSettings(),
    ) -> None:
        super().__init__()
        taps = tuple(int(i) for i in return_intermediate_features)
        for name, module in (("encoder", encoder), ("encoder_audio", encoder_audio)):
            if module.global_pool != "" or module.num_classes:
                raise ValueError(f"{name} must be built with global_pool='' and num_classes=0")
            if any(not 0 <= i < len(module.blocks) for i in taps):
                raise ValueError(f"return_intermediate_features {taps} out of range for the {len(module.blocks)}-block {name}")
        if encoder.embed_dim != encoder_audio.embed_dim:
            raise ValueError("the contrastive loss needs equal video and audio encoder widths")
        self.return_intermediate_features = taps
        self.temperature = temperature
        decoder_settings = dict(
            block=block,
            depth=len(taps) + 1,
            num_skip_blocks=len(taps),
        )
        video_embed, audio_embed = encoder.patch_embed, encoder_audio.patch_embed
        # Registration order = the official state-dict order.
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.mask_token_audio = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim_audio))
        self.encoder = encoder
        self.decoder = MAEDecoder(
            embed_dim=decoder_embed_dim,
            num_heads=decoder_num_heads,
            out_dim=video_embed.proj.in_channels * video_embed.tubelet_size * video_embed.patch_size**2,
            **decoder_settings,
        )
        self.encoder_to_decoder = nn.Linear(encoder.embed_dim, decoder_embed_dim, bias=False)
        self.encoder_audio = encoder_audio
        self.decoder_audio = MAEDecoder(
            embed_dim=decoder_embed_dim_audio,
            num_heads=decoder_num_heads_audio,
            out_dim=audio_embed.proj.in_channels * audio_embed.patch_size**2,
            **decoder_settings,
        )
        self.encoder_to_decoder_audio = nn.Linear(encoder_audio.embed_dim, decoder_embed_dim_audio, bias=False)
        self.encoder_fusion = fusion
        self.register_buffer(
            "decoder_pos_table", sinusoid_table_1d(video_embed.num_patches, decoder_embed_dim), persistent=False
        )
        self.register_buffer(
            "decoder_pos_table_audio", sinusoid_table_1d(audio_embed.num_patches, decoder_embed_dim_audio), persistent=False
        )
        for module in (self.encoder, self.decoder, self.encoder_audio, self.decoder_audio, self.encoder_fusion):
            module.apply(init_weights_xavier)
        for token in (self.mask_token, self.mask_token_audio):
            nn.init.trunc_normal_(token, std=0.02, a=-0.02, b=0.02)
        for name, param in self.encoder.named_parameters():  # an LGI-Former tower: its messengers, as MAE-DFER
            if name == "lg_region_tokens":
                nn.init.trunc_normal_(param, std=0.02, a=-0.02, b=0.02)

    def no_weight_decay(self) -> set[str]:
        """Parameters without weight decay besides biases and 1-D tensors (maedfer excludes both mask tokens)."""
        return {"mask_token", "mask_token_audio"}

    def forward_encoders(
        self, video: torch.Tensor, mask: torch.Tensor, audio: torch.Tensor, mask_audio: torch.Tensor
    ) -> tuple[Intermediates, Intermediates]:
        """Both modality encoders on their visible tokens: the tapped layers (LayerNorm-ed, raster order of the
        visible tokens, which is also the order of ``output.tokens``) and the final output."""
        taps = self.return_intermediate_features
        return (
            self.encoder.forward_intermediates(video, mask, indices=taps),
            self.encoder_audio.forward_intermediates(audio, mask_audio, indices=taps),
        )

    def forward(
        self, video: torch.Tensor, mask: torch.Tensor, audio: torch.Tensor, mask_audio: torch.Tensor
    ) -> AudioVisualPretrainOutput:
        """Reconstruct both modalities and return the contrastive embeddings.

        Args:
            video: ``(B, 3, T, H, W)`` normalised clip.
            mask: ``(B, Nv)`` bool video mask (True = masked).
            audio: ``(B, 1, T_audio, F)`` normalised fbank.
            mask_audio: ``(B, Na)`` bool audio mask.

        Returns:
            :class:`AudioVisualPretrainOutput`.
        """
        mask, mask_audio = mask.to(torch.bool), mask_audio.to(torch.bool)
        video_out, audio_out = self.forward_encoders(video, mask, audio, mask_audio)
        video_tokens, video_positions, video_layers = rows_on_output_grid(video_out, self.encoder.grid_size)
        audio_tokens, audio_positions, audio_layers = rows_on_output_grid(audio_out, self.encoder_audio.grid_size)
        video_embeddings = [_pooled_unit(layer) for layer in video_layers]
        audio_embeddings = [_pooled_unit(layer) for layer in audio_layers]
        fused_video, fused_audio = self.encoder_fusion(video_tokens, audio_tokens)
        pred_video = decode_masked_tokens(
            self.decoder,
            self.encoder_to_decoder,
            self.mask_token,
            self.decoder_pos_table,
            fused_video,
            video_positions,
            mask,
            skips=video_layers,
        )
        pred_audio = decode_masked_tokens(
            self.decoder_audio,
            self.encoder_to_decoder_audio,
            self.mask_token_audio,
            self.decoder_pos_table_audio,
            fused_audio,
            audio_positions,
            mask_audio,
            skips=audio_layers,
        )
        return AudioVisualPretrainOutput(
            pred_video=pred_video,
            pred_audio=pred_audio,
            video_embeddings=video_embeddings,
            audio_embeddings=audio_embeddings,
            temperature=self.temperature,
        )


class AudioVisualClassifier(nn.Module):
    """HiCMAE fine-tuning model: hierarchical feature fusion of every encoder layer plus the cross-modal fusion.

    ``features = fc_norm(cat[video_feature, audio_feature, fused_video.mean, fused_audio.mean])`` where each unimodal
    feature is the ``softmax(*_layer_weights)``-weighted sum over layers of the token means of the LayerNorm-ed block
    outputs. With ``modality="video"`` (or ``"audio"``) only that encoder exists and ``features = fc_norm(feature)``;
    without a fusion encoder (``fusion_depth=0``) ``features = fc_norm(cat[video_feature, audio_feature])``.

    Args:
        encoder: Video encoder (``global_pool=""``; any token encoder, its patch tokens are read), or ``None`` for
            audio-only.
        encoder_audio: Audio encoder (``global_pool=""``), or ``None`` for video-only.
        fusion: :class:`CrossModalFusion` (audio-visual only; ``None`` for the no-fusion ablation).
        num_classes: Outputs K (classes, or regression targets).
        head_activation: ``None``, ``"sigmoid"``, ``"relu"`` or ``"tanh"``.
        head_init: ``"trunc_normal"``: truncated normal (std 0.02) times ``init_scale`` as the video models;
            ``"pytorch"``: PyTorch's default Linear init, which is what the official HiCMAE head keeps.
        init_scale: Head scale for ``head_init="trunc_normal"`` (0.001, the value the official scripts pass; the
            official head never applies it, see ``"pytorch"``). :meth:`reset_classifier` uses the same initialisation.
        norm_eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        encoder: TokenEncoder | None,
        encoder_audio: TokenEncoder | None,
        fusion: CrossModalFusion | None,
        *,
        num_classes: int = 6,
        head_activation: str | None = None,
        head_init: Literal["trunc_normal", "pytorch"] = "trunc_normal",
        init_scale: float = 0.001,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if encoder is None and encoder_audio is None:
            raise ValueError("AudioVisualClassifier needs at least one encoder")
        if fusion is not None and (encoder is None or encoder_audio is None):
            raise ValueError("the fusion encoder needs both modality encoders")
        if head_activation not in HEAD_ACTIVATIONS:
            raise ValueError(f"head_activation must be one of {sorted(map(str, HEAD_ACTIVATIONS))}, got {head_activation!r}")
        if head_init not in ("trunc_normal", "pytorch"):
            raise ValueError(f"head_init must be 'trunc_normal' or 'pytorch', got {head_init!r}")
        for name, module in (("encoder", encoder), ("encoder_audio", encoder_audio)):
            if module is not None and (module.global_pool != "" or module.num_classes):
                raise ValueError(f"{name} must be built with global_pool='' and num_classes=0")
        self.modality: Modality = (
            "audio_visual"
            if encoder is not None and encoder_audio is not None
            else ("video" if encoder is not None else "audio")
        )
        self.num_classes = num_classes
        if encoder is not None:
            self.video_layer_weights = nn.Parameter(torch.full((len(encoder.blocks),), 1.0 / len(encoder.blocks)))
        if encoder_audio is not None:
            self.audio_layer_weights = nn.Parameter(
                torch.full((len(encoder_audio.blocks),), 1.0 / len(encoder_audio.blocks))
            )
        self.encoder = encoder
        self.encoder_audio = encoder_audio
        self.encoder_fusion = fusion
        width = (encoder.embed_dim if encoder is not None else 0) + (
            encoder_audio.embed_dim if encoder_audio is not None else 0
        )
        self.num_features = 2 * width if fusion is not None else width
        self.fc_norm = nn.LayerNorm(self.num_features, eps=norm_eps)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.head_activation = HEAD_ACTIVATIONS[head_activation]()
        self.head_init = head_init
        self.init_scale = init_scale
        if head_init == "trunc_normal":
            init_head(self.head, init_scale)

    @property
    def input_modalities(self) -> tuple[str, ...]:
        """``("video", "audio")``, ``("video",)`` or ``("audio",)``: the encoders this model has."""
        return tuple(m for m, e in (("video", self.encoder), ("audio", self.encoder_audio)) if e is not None)

    @property
    def num_layers(self) -> int:
        """Layer count for layer-wise LR decay: the deeper modality encoder plus the fusion layers."""
        depths = [len(e.blocks) for e in (self.encoder, self.encoder_audio) if e is not None]
        fusion = len(self.encoder_fusion.blocks) if self.encoder_fusion is not None else 0
        return max(depths) + fusion

    def layer_id(self, param_name: str) -> int:
        """Layer index of a parameter for layer-wise LR decay (HiCMAE convention).

        Patch embeddings -> 0; ``encoder*.blocks.{i}`` -> ``i + 1``; ``encoder_fusion.blocks*.{j}`` ->
        ``modality depth + j + 1``; everything else (norms, layer weights, head) -> ``num_layers + 1``.
        """
        parts = param_name.split(".")
        if parts[0] in ("encoder", "encoder_audio"):
            if parts[1] == "patch_embed":
                return 0
            if parts[1] == "blocks":
                return int(parts[2]) + 1
        if parts[0] == "encoder_fusion" and parts[1] in ("blocks", "blocks_audio"):
            depths = [len(e.blocks) for e in (self.encoder, self.encoder_audio) if e is not None]
            return max(depths) + int(parts[2]) + 1
        return self.num_layers + 1

    def no_weight_decay(self) -> set[str]:
        return set()

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with ``num_classes`` outputs, initialised as at construction (``head_init``,
        ``init_scale``)."""
        self.num_classes = num_classes
        head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if self.head_init == "trunc_normal":
            init_head(head, self.init_scale)
        self.head = head.to(self.fc_norm.weight.device)

    @staticmethod
    def _layer_weighted(layers: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        """``sum_l softmax(w)_l * mean_tokens(layer_l)``: L tensors ``(B, N, C)`` -> ``(B, C)``."""
        means = torch.stack([layer.mean(1) for layer in layers], dim=1)
        return (means * F.softmax(weights, dim=0).to(means.dtype)[None, :, None]).sum(1)

    def forward_features(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-head features.

        Args:
            video: ``(B, 3, T, H, W)`` (not for ``modality="audio"``).
            audio: ``(B, 1, T_audio, F)`` normalised fbank (not for ``modality="video"``).

        Returns:
            ``(B, num_features)``: ``2 * (C_video + C_audio)`` audio-visual, else the one encoder's width.
        """
        parts = []
        video_out = audio_out = None
        if self.encoder is not None:
            if video is None:
                raise ValueError(f"modality={self.modality!r} needs a video input")
            video_out = self.encoder.forward_intermediates(video)
            parts.append(self._layer_weighted(video_out.tokens, self.video_layer_weights))
        if self.encoder_audio is not None:
            if audio is None:
                raise ValueError(f"modality={self.modality!r} needs an audio input")
            audio_out = self.encoder_audio.forward_intermediates(audio)
            parts.append(self._layer_weighted(audio_out.tokens, self.audio_layer_weights))
        if self.encoder_fusion is not None:
            fused_video, fused_audio = self.encoder_fusion(video_out.output.tokens, audio_out.output.tokens)
            parts += [fused_video.mean(1), fused_audio.mean(1)]
        return self.fc_norm(torch.cat(parts, dim=-1))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, num_features)`` -> ``(B, K)``."""
        return self.head_activation(self.head(features))

    def forward(
        self, *inputs: torch.Tensor, video: torch.Tensor | None = None, audio: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Classify (or regress) a clip and/or its audio (:attr:`input_modalities`, positional in that order or by
        keyword): ``(B, 3, T, H, W)`` / ``(B, 1, T_audio, F)`` -> ``(B, K)``.

        Raises:
            TypeError / ValueError: On a modality the model lacks, or a missing one.
        """
        return self.forward_head(self.forward_features(**bind_inputs(self, inputs, video=video, audio=audio)))
