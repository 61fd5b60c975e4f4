"""Building blocks shared by every maedfer encoder and decoder."""

from .attention import Attention, fused_attention_enabled, set_fused_attention, use_fused_attention
from .block import Block, CrossSelfBlock, residual
from .drop import DropPath, drop_path, drop_path_rates, layer_scale_parameter
from .mlp import Mlp
from .patch_embed import SpectrogramEmbed, TubeletEmbed
from .pos_embed import sinusoid_table_1d
from .settings import FLAT_BLOCK_NAMES, BlockSettings

__all__ = [
    "Attention",
    "Block",
    "BlockSettings",
    "CrossSelfBlock",
    "DropPath",
    "FLAT_BLOCK_NAMES",
    "Mlp",
    "SpectrogramEmbed",
    "TubeletEmbed",
    "drop_path",
    "drop_path_rates",
    "fused_attention_enabled",
    "layer_scale_parameter",
    "residual",
    "set_fused_attention",
    "sinusoid_table_1d",
    "use_fused_attention",
]
