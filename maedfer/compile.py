"""``torch.compile`` for maedfer models: the dynamo settings they need and one entry point.

Details: ``docs/modules.md``, section ``maedfer/compile.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

__all__ = [
    "DYNAMO_CONFIG",
    "assume_at_least_two",
    "check_size",
    "compile_blocks",
    "compile_model",
    "is_compiled",
    "optimize_for_inference",
]

logger = logging.getLogger(__name__)

#: ``torch._dynamo.config`` values under which every maedfer model's forward has no graph break.
DYNAMO_CONFIG: dict[str, Any] = {"capture_scalar_outputs": True}


def compile_model(model: nn.Module, **compile_kwargs: Any) -> nn.Module:
    """Compile ``model`` in place with ``torch.compile`` and apply :data:`DYNAMO_CONFIG` (process-wide).

    Compilation is lazy: it happens on the first call (and again on each new input shape / mode). Call this after
    moving the model to its device and before wrapping it in DDP / DeepSpeed.

    Args:
        model: Any maedfer model (or other module).
        **compile_kwargs: ``torch.compile`` arguments (``mode``, ``backend``, ``dynamic`` ...).

    Returns:
        ``model`` itself.
    """
    for key, value in DYNAMO_CONFIG.items():
        if getattr(torch._dynamo.config, key) != value:
            logger.info("torch.compile: setting torch._dynamo.config.%s = %r", key, value)
            setattr(torch._dynamo.config, key, value)
    model.compile(**compile_kwargs)
    return model


def optimize_for_inference(
    model: nn.Module, precision: str = "fp32", *, compile: bool = False, blocks_only: bool = False
) -> nn.Module:
    """maedfer's fastest evaluation setting, in place: eval mode, half-precision weights, compiled with freezing.

    * ``precision`` ``"bf16"`` / ``"fp16"``: the weights are cast once, so no call re-casts them (autocast casts every
      Linear weight on every call); run the model under :func:`~maedfer.engine.backends.autocast_context` so inputs
      are cast too, and read outputs with ``.float()``. LayerNorm statistics are still accumulated in fp32.
    * ``compile``: ``torch.compile`` with inductor's ``freezing`` (weights become constants: folded casts and
      pre-packed matrix layouts; measured 1.26x over eager bf16 for the LGI-Former on 2 CPU threads). The first call
      compiles (about a minute for a full-size model on 2 CPU cores).
    * ``blocks_only``: compile the transformer blocks instead of ``model.__call__`` (for code that calls model
      methods, e.g. feature extraction).

    Args:
        model: Any maedfer model, already on its device.
        precision: A resolved precision (``"fp32"``, ``"bf16"`` or ``"fp16"``).

    Returns:
        ``model`` itself.
    """
    model.eval()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is not None:
        model.to(dtype)
    if compile:
        options = {"options": {"freezing": True}}
        if blocks_only:
            compile_blocks(model, **options)
        else:
            compile_model(model, **options)
    return model


def compile_blocks(model: nn.Module, **compile_kwargs: Any) -> int:
    """Compile every transformer block of ``model`` in place (for code that calls model methods, not ``model()``).

    Feature extraction runs ``forward_encoder`` and friends rather than ``model(...)``, which :func:`compile_model`
    compiles; compiling the blocks (the bulk of the compute; identical blocks share their compiled code) speeds
    those paths up too.

    Returns:
        The number of blocks compiled.
    """
    blocks = [block for name, child in model.named_modules() if name.split(".")[-1].startswith("blocks")
              and isinstance(child, nn.ModuleList) for block in child]
    for block in blocks:
        compile_model(block, **compile_kwargs)
    return len(blocks)


def is_compiled(model: nn.Module) -> bool:
    """Whether ``model`` was compiled in place (``nn.Module.compile``) or is a ``torch.compile`` wrapper."""
    return getattr(model, "_compiled_call_impl", None) is not None or hasattr(model, "_orig_mod")


def assume_at_least_two(size: Any) -> None:
    """Under ``torch.compile``, record that a data-dependent size is at least 2; eager: nothing.

    Inductor lowers a matrix product differently when one of its sizes is 1 and asks; for an unbacked size (the
    visible-token count of a mask) nothing can answer, and compilation fails ("Could not guard on data-dependent
    expression Eq(u0, 1)"). A compiled model therefore needs at least two such tokens (eager takes one).
    """
    if torch.compiler.is_compiling():
        torch._check(size >= 2)


def check_size(condition: Any, message: str) -> bool:
    """A size check that holds under ``torch.compile`` too: ``torch._check`` there, ``ValueError`` in eager mode.

    Args:
        condition: A bool (eager) or a symbolic bool on sizes (compiling).
        message: The error message.

    Returns:
        ``True`` (so that it can be used in expressions); raises otherwise.
    """
    if torch.compiler.is_compiling():
        torch._check(condition)  # (a message closure over symbolic sizes would itself break the graph)
    elif not condition:
        raise ValueError(message)
    return True
