"""Shared helpers of the data parity checks: hashes, stored bytes and PNGs, and writing a fixture's input files."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["write_fixture_inputs"]


def _sha256(array: np.ndarray | torch.Tensor) -> str:
    """sha256 of the C-contiguous bytes of an array or tensor."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().contiguous().numpy()
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _bytes(tensor: torch.Tensor) -> bytes:
    """Bytes stored as a 1-D uint8 tensor."""
    return tensor.numpy().tobytes()


def _decode_png(tensor: torch.Tensor) -> np.ndarray:
    """Decode a stored PNG to ``uint8 (H, W, 3)``."""
    from PIL import Image

    with Image.open(io.BytesIO(_bytes(tensor))) as image:
        return np.array(image.convert("RGB"))


def write_fixture_inputs(inputs: Mapping[str, Any], root: Path) -> None:
    """Write every file of ``inputs.pt`` under ``root``.

    Args:
        inputs: The loaded ``inputs.pt`` dict (``files[]`` with ``path`` and ``data``).
        root: Target directory; its path must not contain spaces (the annotation format is space-separated).

    Raises:
        ValueError: If ``root`` contains whitespace or a stored path escapes ``root``.
    """
    if any(character.isspace() for character in str(root)):
        raise ValueError(f"the fixture root must not contain spaces: {root!r}")
    resolved_root = root.resolve()
    for entry in inputs["files"]:
        target = (root / entry["path"]).resolve()
        if resolved_root not in target.parents:
            raise ValueError(f"fixture file path escapes the root: {entry['path']!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_bytes(entry["data"]))
