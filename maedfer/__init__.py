"""maedfer: self-supervised facial-affect learning (MAE-DFER, SVFAP, HiCMAE and VideoMAE) in one PyTorch toolkit."""

from .models import zoo as _zoo  # noqa: F401  (the zoo registers every model entry on import)
from .hub import create_model  # registry names and model card ids, pretrained=True downloads the card's weights
from .registry import is_model, list_models, model_entry, register_model
from .version import __version__

__all__ = [
    "__version__",
    "create_model",
    "from_pretrained",
    "is_model",
    "list_models",
    "load_checkpoint",
    "model_entry",
    "register_model",
    "resolve_checkpoint",
    "save_checkpoint",
    "save_pretrained",
]


def __getattr__(name: str):
    # Checkpoint helpers are imported lazily so `import maedfer` stays light.
    if name in ("load_checkpoint", "save_checkpoint", "save_safetensors", "read_checkpoint"):
        from . import checkpoint

        return getattr(checkpoint, name)
    if name in ("from_pretrained", "save_pretrained", "resolve_checkpoint"):
        from . import hub

        return getattr(hub, name)
    raise AttributeError(f"module 'maedfer' has no attribute {name!r}")
