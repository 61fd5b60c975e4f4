"""Encoders, decoders and registered model configurations."""

from .audio_visual import (
    AudioViT,
    AudioVisualClassifier,
    AudioVisualMaskedAutoencoder,
    AudioVisualPretrainOutput,
    CrossModalFusion,
)
from .decoder import MAEDecoder, decode_masked_tokens
from .encoder import EncoderOutput, TokenEncoder, VideoViT
from .inputs import example_inputs
from .lgi_former import LGIBlock, LGIFormer
from .mae import MaskedVideoAutoencoder
from .tpsbt import TPSBT, SpatialAttentionPool

__all__ = [
    "AudioViT",
    "AudioVisualClassifier",
    "AudioVisualMaskedAutoencoder",
    "AudioVisualPretrainOutput",
    "CrossModalFusion",
    "EncoderOutput",
    "LGIBlock",
    "LGIFormer",
    "MAEDecoder",
    "MaskedVideoAutoencoder",
    "SpatialAttentionPool",
    "TPSBT",
    "TokenEncoder",
    "VideoViT",
    "decode_masked_tokens",
    "example_inputs",
]
