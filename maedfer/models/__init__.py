"""Encoders, decoders and registered model configurations."""

from .decoder import MAEDecoder
from .encoder import EncoderOutput, VideoEncoder, VideoViT
from .lgi_former import LGIBlock, LGIFormer
from .mae import MaskedVideoAutoencoder
from .tpsbt import TPSBT, SpatialAttentionPool

__all__ = ["EncoderOutput", "LGIBlock", "LGIFormer", "MAEDecoder", "MaskedVideoAutoencoder", "SpatialAttentionPool", "TPSBT", "VideoEncoder", "VideoViT"]
