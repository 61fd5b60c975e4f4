"""Reading, adapting, loading and saving model checkpoints.

Details: ``docs/modules.md``, section ``maedfer/checkpoint.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn

from .utils import atomic_write, atomic_write_bytes, atomic_write_text

__all__ = [
    "CheckpointError",
    "CheckpointShapeError",
    "LoadReport",
    "adapt_state_dict",
    "atomic_write_bytes",
    "atomic_write_text",
    "checkpoint_encoder_width",
    "extract_state_dict",
    "load_checkpoint",
    "LABEL_NAMES_KEY",
    "load_safetensors",
    "read_checkpoint",
    "read_safetensors_metadata",
    "save_checkpoint",
    "save_safetensors",
    "stored_label_names",
]

logger = logging.getLogger(__name__)

#: Keys under which training checkpoints keep the model weights, in priority order.
DEFAULT_MODEL_KEYS: tuple[str, ...] = ("model", "module", "state_dict")

#: Prefixes that wrappers add to every key: DDP/DataParallel and ``torch.compile``.
_WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")

#: Prefixes removed from pre-training keys when the model does not use them.
_TRANSFER_PREFIXES: tuple[str, ...] = ("backbone.", "encoder.")

#: Classifier keys that are dropped when their shapes differ (other class count).
_HEAD_KEYS: tuple[str, ...] = ("head.weight", "head.bias")

_STATE_DICT_SOURCE = "<state_dict>"

#: Where the output names of a model are kept: a top-level key of maedfer checkpoints (a list of str) and a key of
#: the safetensors header metadata (a JSON list).
LABEL_NAMES_KEY = "label_names"
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class CheckpointError(RuntimeError):
    """A checkpoint could not be read, understood or loaded into a model."""


class CheckpointShapeError(CheckpointError):
    """Tensors in a checkpoint have shapes that differ from the model's.

    Attributes:
        mismatches: ``(key, checkpoint_shape, model_shape)`` for every offending key.
        source: The checkpoint file, or ``"<state_dict>"`` for in-memory dicts.
    """

    def __init__(
        self,
        mismatches: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]],
        source: str,
    ) -> None:
        """Builds the error message from the list of mismatches.

        Args:
            mismatches: ``(key, checkpoint_shape, model_shape)`` triples.
            source: The checkpoint file or ``"<state_dict>"``.
        """
        self.mismatches = list(mismatches)
        self.source = source
        lines = [
            f"Checkpoint {source} does not fit the model: {len(self.mismatches)} "
            "tensor(s) have a different shape in the checkpoint than in the model "
            "(key: checkpoint shape vs model shape):"
        ]
        width = self.encoder_widths()
        if width is not None:
            lines.insert(
                1,
                f"  The checkpoint's encoder is {width[0]} wide but the model's is {width[1]}. Build the model "
                f"with embed_dim={width[0]} (num_heads={max(width[0] // 64, 1)} at 64 channels per head), or pass "
                "width_from_checkpoint=True to maedfer.create_model.",
            )
        for key, ckpt_shape, model_shape in self.mismatches:
            lines.append(
                f"  {key}: checkpoint {_format_shape(ckpt_shape)} vs model "
                f"{_format_shape(model_shape)}"
            )
        lines.append(
            "Build the model with the configuration the checkpoint was trained with "
            "(embedding size, depth, patch/tubelet size, number of classes...)."
        )
        super().__init__("\n".join(lines))

    def encoder_widths(self) -> tuple[int, int] | None:
        """``(checkpoint width, model width)`` when the patch embeddings differ in width, else ``None``."""
        for key, ckpt_shape, model_shape in self.mismatches:
            if key.endswith("patch_embed.proj.weight") and ckpt_shape[:1] != model_shape[:1]:
                return int(ckpt_shape[0]), int(model_shape[0])
        return None


def checkpoint_encoder_width(state_dict: Mapping[str, Tensor]) -> int | None:
    """Width of the (video) encoder stored in a state dict: output channels of its ``patch_embed.proj.weight``.

    The first key ending in ``patch_embed.proj.weight`` is used, whatever its prefix (``encoder.`` in pre-training
    files); ``None`` if there is none.
    """
    for key, value in state_dict.items():
        if key.endswith("patch_embed.proj.weight") and not key.endswith("audio.patch_embed.proj.weight"):
            return int(value.shape[0])
    return None


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did.

    Attributes:
        missing_keys: Model keys that received no value from the checkpoint, in
            the model's order.
        unexpected_keys: Checkpoint keys (after adaptation) that the model does
            not have, in the checkpoint's order.
        removed_head_keys: Classifier keys dropped from the checkpoint because
            their shapes differ from the model's.
        model_key_used: The top-level key the weights were taken from
            (``"model"``, ``"module"``...), or ``None`` for a raw state dict.
        source: The checkpoint file, or ``"<state_dict>"`` for in-memory dicts.
        loaded_keys: Model keys that were copied from the checkpoint.
    """

    missing_keys: list[str]
    unexpected_keys: list[str]
    removed_head_keys: list[str]
    model_key_used: str | None
    source: str
    loaded_keys: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        """Returns a readable multi-line summary of the load (use :meth:`full` for every key)."""
        return self.full(max_keys=8)

    def full(self, max_keys: int | None = None) -> str:
        """The summary with at most ``max_keys`` keys listed per category (``None``: all)."""
        key_used = repr(self.model_key_used) if self.model_key_used else "none (raw state dict)"
        lines = [
            f"Loaded checkpoint {self.source}",
            f"  weights taken from key: {key_used}",
            f"  tensors loaded: {len(self.loaded_keys)}",
        ]
        for title, keys in (
            ("removed head keys", self.removed_head_keys),
            ("missing keys (not in checkpoint, left as initialised)", self.missing_keys),
            ("unexpected keys (in checkpoint, not used)", self.unexpected_keys),
        ):
            lines.append(f"  {title}: {len(keys)}")
            shown = keys if max_keys is None else keys[:max_keys]
            lines.extend(f"    {key}" for key in shown)
            if len(shown) < len(keys):
                lines.append(f"    ... and {len(keys) - len(shown)} more")
        return "\n".join(lines)


# --------------------------------------------------------------------------- reading


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Reads a checkpoint file without executing code from it.

    ``.safetensors`` files (recognised by suffix or by their header) are read
    with safetensors and give a flat state dict. Everything else goes through
    ``torch.load(..., map_location="cpu", weights_only=True)`` with
    :class:`argparse.Namespace` as the only extra allowed class, which is what
    the official training scripts store under ``args``.

    Args:
        path: The checkpoint file.

    Returns:
        The deserialised object, with all tensors on the CPU.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        CheckpointError: If the file is a directory, corrupt, truncated, not a
            checkpoint, or would need arbitrary code to be unpickled.
    """
    file = _existing_file(path)
    if file.suffix == ".safetensors" or _looks_like_safetensors(file):
        return _read_safetensors(file)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = _ANSI_ESCAPE.sub("", str(exc))
        refused = re.search(r"GLOBAL\s+([\w.]+)", message)
        if refused:
            raise CheckpointError(
                f"Refusing to load checkpoint {file}: it contains the pickled Python "
                f"object {refused.group(1)!r}, and unpickling it could run arbitrary "
                "code. maedfer refuses to run code from checkpoints: only tensors, "
                "plain containers, numbers, strings and argparse.Namespace are "
                "accepted. Re-save the weights as a plain state dict (or a "
                ".safetensors file) from a trusted environment."
            ) from exc
        raise CheckpointError(
            f"Cannot read checkpoint {file}: the file is corrupt, truncated or not a "
            f"PyTorch checkpoint ({_unpickling_detail(message)})."
        ) from exc
    except Exception as exc:
        if isinstance(exc, EOFError):
            reason = "unexpected end of file"
        else:
            detail = _ANSI_ESCAPE.sub("", str(exc)).strip().splitlines()
            reason = f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
        raise CheckpointError(
            f"Cannot read checkpoint {file}: the file is corrupt, truncated or not a "
            f"PyTorch checkpoint ({reason})."
        ) from exc
    logger.debug("Read checkpoint %s (%s).", file, type(obj).__name__)
    return obj


def load_safetensors(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Reads a ``.safetensors`` file into a state dict on the CPU.

    Args:
        path: The file to read (any suffix).

    Returns:
        A new dict mapping each stored name to its tensor.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        CheckpointError: If the file is not a valid safetensors file.
    """
    return _read_safetensors(_existing_file(path))


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string-to-string metadata of a ``.safetensors`` header (empty when there is none); no tensor is read.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        CheckpointError: If the file is not a valid safetensors file.
    """
    file = _existing_file(path)
    try:
        with safetensors.safe_open(os.fspath(file), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # SafetensorError, OSError...
        raise CheckpointError(f"Cannot read safetensors checkpoint {file}: {type(exc).__name__}: {exc}") from exc


def stored_label_names(checkpoint: Any, path: str | os.PathLike[str] | None = None) -> list[str] | None:
    """The output names a checkpoint carries, or ``None``.

    Looked up, in order: the top-level ``label_names`` of a maedfer checkpoint, the ``data.label_names`` of its stored
    config, and the ``label_names`` entry of a safetensors header (read from ``path``, since
    :func:`read_checkpoint` returns only the tensors of a safetensors file).

    Args:
        checkpoint: What :func:`read_checkpoint` returned.
        path: The file it was read from (needed for safetensors metadata).

    Raises:
        CheckpointError: If a stored entry is not a list of strings (the message names ``path``).
    """
    where = os.fspath(path) if path is not None else _STATE_DICT_SOURCE
    found: Any = None
    if isinstance(checkpoint, Mapping):
        found = checkpoint.get(LABEL_NAMES_KEY)
        config = checkpoint.get("config")
        if found is None and isinstance(config, Mapping) and isinstance(config.get("data"), Mapping):
            found = config["data"].get("label_names")
    if found is None and path is not None and (Path(path).suffix == ".safetensors" or _looks_like_safetensors(Path(path))):
        text = read_safetensors_metadata(path).get(LABEL_NAMES_KEY)
        if text is not None:
            try:
                found = json.loads(text)
            except ValueError as exc:
                raise CheckpointError(f"{where}: the {LABEL_NAMES_KEY} metadata is not JSON: {exc}") from exc
    if found is None:
        return None
    if isinstance(found, (str, bytes)) or not isinstance(found, Sequence) or not all(isinstance(n, str) for n in found):
        raise CheckpointError(f"{where}: {LABEL_NAMES_KEY} must be a list of strings, got {found!r}")
    return list(found)


def _existing_file(path: str | os.PathLike[str]) -> Path:
    """Checks that ``path`` names an existing regular file.

    Args:
        path: The path to check.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileNotFoundError: If nothing exists at ``path``.
        CheckpointError: If ``path`` exists but is not a regular file.
    """
    file = Path(os.fspath(path))
    if not file.exists():
        raise FileNotFoundError(2, f"Checkpoint file not found: {file}", str(file))
    if not file.is_file():
        raise CheckpointError(f"Cannot read checkpoint {file}: it is not a regular file.")
    return file


def _looks_like_safetensors(file: Path) -> bool:
    """Tells whether a file starts like a safetensors file.

    A safetensors file begins with the little-endian 64-bit length of its JSON
    header, followed by the header, which starts with ``{``.

    Args:
        file: An existing file.

    Returns:
        ``True`` if the first bytes match the safetensors layout.
    """
    try:
        with open(file, "rb") as handle:
            start = handle.read(9)
            size = file.stat().st_size
    except OSError:
        return False
    if len(start) < 9 or start[8:9] != b"{":
        return False
    header_len = int.from_bytes(start[:8], "little")
    return 0 < header_len <= size - 8


def _read_safetensors(file: Path) -> dict[str, Tensor]:
    """Reads a safetensors file, turning library errors into :class:`CheckpointError`.

    Args:
        file: An existing file.

    Returns:
        The stored tensors on the CPU.

    Raises:
        CheckpointError: If safetensors cannot parse the file.
    """
    try:
        tensors = safetensors.torch.load_file(os.fspath(file), device="cpu")
    except Exception as exc:  # SafetensorError, OSError, ValueError...
        raise CheckpointError(
            f"Cannot read safetensors checkpoint {file}: {type(exc).__name__}: {exc}"
        ) from exc
    logger.debug("Read %d tensors from %s.", len(tensors), file)
    return dict(tensors)


def _unpickling_detail(message: str) -> str:
    """Picks the informative part of a ``weights_only`` unpickling error.

    Args:
        message: The text of the :class:`pickle.UnpicklingError`.

    Returns:
        A short one-line description.
    """
    operand = re.search(r"Unsupported operand \d+", message)
    if operand:
        return f"unpickler error: {operand.group(0)}"
    for line in message.splitlines():
        line = line.strip()
        if line.startswith("WeightsUnpickler error:") and line != "WeightsUnpickler error:":
            return line
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else "unpickling failed"


# ------------------------------------------------------------------------ extracting


def extract_state_dict(
    obj: Any,
    model_keys: Sequence[str] = DEFAULT_MODEL_KEYS,
    *,
    source: str = _STATE_DICT_SOURCE,
) -> tuple[dict[str, Tensor], str | None]:
    """Finds the model weights inside a deserialised checkpoint.

    The first of ``model_keys`` that is present and holds a mapping is used.
    Otherwise ``obj`` itself is used if it is a non-empty mapping of tensors.
    When every key then starts with ``module.`` (DDP, DataParallel) or
    ``_orig_mod.`` (``torch.compile``), that prefix is removed; repeatedly, so
    ``module._orig_mod.`` is handled too.

    Args:
        obj: What :func:`read_checkpoint` returned, or an in-memory dict.
        model_keys: Top-level keys to look for, in priority order.
        source: Name of the checkpoint for error messages.

    Returns:
        A new state dict and the key it was taken from (``None`` if ``obj`` was
        the state dict itself).

    Raises:
        CheckpointError: If no state dict can be found, or its keys are not strings.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"Checkpoint {source} holds a {type(obj).__name__}, not a dict: cannot find "
            "model weights in it."
        )
    key_used: str | None = None
    state: Mapping[Any, Any] | None = None
    for key in model_keys:
        value = obj.get(key)
        if isinstance(value, Mapping):
            key_used, state = key, value
            break
    if state is None:
        if obj and all(isinstance(value, Tensor) for value in obj.values()):
            state = obj
        else:
            top = ", ".join(repr(k) for k in list(obj)[:20]) or "nothing"
            raise CheckpointError(
                f"Checkpoint {source} has no model weights: none of the keys "
                f"{list(model_keys)} holds a dict and the checkpoint itself is not a "
                f"dict of tensors. Its top-level keys are: {top}."
            )
    bad = [k for k in state if not isinstance(k, str)]
    if bad:
        raise CheckpointError(
            f"Checkpoint {source}: state dict keys must be strings, found {bad[:5]!r}."
        )
    result: dict[str, Tensor] = dict(state)
    while result:
        prefix = next(
            (p for p in _WRAPPER_PREFIXES if all(k.startswith(p) for k in result)), None
        )
        if prefix is None:
            break
        logger.debug("Removing the %r prefix from every key of %s.", prefix, source)
        result = {k[len(prefix):]: v for k, v in result.items()}
    return result, key_used


# -------------------------------------------------------------------------- adapting


def adapt_state_dict(
    state_dict: Mapping[str, Tensor],
    model: nn.Module,
    *,
    drop_mismatched_head: bool = True,
) -> tuple[dict[str, Tensor], list[str]]:
    """Adapts a checkpoint's state dict to a model (pre-training -> fine-tuning).

    Steps, in order:

    1. If the model defines ``checkpoint_filter_fn(state_dict) -> state_dict``,
       it is applied first (model-specific conversions).
    2. Each leading ``backbone.`` or ``encoder.`` is removed from checkpoint keys,
       but only for a prefix that no key of the model itself starts with and
       whose removal makes at least one key match the model. This turns
       ``encoder.blocks.0...`` into ``blocks.0...`` for MAE-DFER / SVFAP
       fine-tuning models, and leaves HiCMAE's ``encoder.*`` keys alone because
       the HiCMAE fine-tuning model has ``encoder.*`` keys too (or, audio-only,
       has no use for them).
    3. If ``drop_mismatched_head``, ``head.weight`` / ``head.bias`` are removed
       when the model has them with a different shape (another class count).
       This is done after step 2, so a prefixed head is recognised as well.

    Args:
        state_dict: Checkpoint weights (not modified).
        model: The model the weights are meant for.
        drop_mismatched_head: Whether to drop a classifier head of another size.

    Returns:
        The adapted state dict (a new dict) and the removed head keys.

    Raises:
        CheckpointError: If ``checkpoint_filter_fn`` does not return a mapping.
    """
    state: Mapping[str, Tensor] = state_dict
    filter_fn: Callable[[dict[str, Tensor]], Any] | None = getattr(
        model, "checkpoint_filter_fn", None
    )
    if callable(filter_fn):
        filtered = filter_fn(dict(state))
        if not isinstance(filtered, Mapping):
            raise CheckpointError(
                f"{type(model).__name__}.checkpoint_filter_fn returned a "
                f"{type(filtered).__name__}, expected a state dict."
            )
        state = filtered
        logger.debug("Applied %s.checkpoint_filter_fn.", type(model).__name__)

    model_state = model.state_dict()
    strip = [
        p
        for p in _TRANSFER_PREFIXES
        if not any(k.startswith(p) for k in model_state)
        and any(k.startswith(p) and k[len(p):] in model_state for k in state)
    ]
    adapted: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    stripped = 0
    for key, value in state.items():
        new_key = key
        for prefix in _TRANSFER_PREFIXES:
            if key.startswith(prefix):
                if prefix in strip:
                    new_key = key[len(prefix):]
                    stripped += 1
                break
        if new_key in adapted:
            logger.warning(
                "Checkpoint keys %r and %r both map to %r; the later one (%r) is used.",
                origin[new_key], key, new_key, key,
            )
        adapted[new_key] = value
        origin[new_key] = key
    if stripped:
        logger.debug("Removed a %s prefix from %d checkpoint keys.", " / ".join(strip), stripped)

    removed: list[str] = []
    if drop_mismatched_head:
        for key in _HEAD_KEYS:
            if key in adapted and key in model_state:
                ckpt_shape = _shape_of(adapted[key])
                model_shape = _shape_of(model_state[key])
                if ckpt_shape is not None and model_shape is not None and ckpt_shape != model_shape:
                    logger.info(
                        "Removing key %s from the checkpoint: shape %s differs from the "
                        "model's %s.",
                        key, _format_shape(ckpt_shape), _format_shape(model_shape),
                    )
                    del adapted[key]
                    removed.append(key)
    return adapted, removed


# --------------------------------------------------------------------------- loading


def load_checkpoint(
    model: nn.Module,
    checkpoint: str | os.PathLike[str] | Mapping[str, Any],
    *,
    model_keys: Sequence[str] = DEFAULT_MODEL_KEYS,
    strict: bool = False,
    drop_mismatched_head: bool = True,
    source: str | None = None,
) -> LoadReport:
    """Loads a checkpoint into a model, following the official transfer rules.

    The checkpoint is read (if it is a path), its weights are found with
    :func:`extract_state_dict` and adapted with :func:`adapt_state_dict`. Any key
    present in both the checkpoint and the model with different shapes raises
    :class:`CheckpointShapeError`. The rest is loaded non-strictly. A model key
    that shares its tensor with a loaded key (parameter sharing) counts as loaded.

    Args:
        model: The model to fill in place. DDP/DataParallel and ``torch.compile``
            wrappers are unwrapped.
        checkpoint: A checkpoint file or an already deserialised object.
        model_keys: Top-level keys that may hold the weights, in priority order.
        strict: Raise if any key is missing or unexpected after adaptation.
        drop_mismatched_head: Drop ``head.weight``/``head.bias`` of another size.
        source: Name of the checkpoint in the report and in errors when ``checkpoint`` is an already read object
            (for example the file it came from); default ``"<state_dict>"``.

    Returns:
        A :class:`LoadReport` of what was loaded.

    Raises:
        FileNotFoundError: If the checkpoint file does not exist.
        CheckpointShapeError: If shapes differ between checkpoint and model.
        CheckpointError: If the checkpoint cannot be read or understood, or if
            ``strict`` and keys are missing or unexpected.
    """
    if isinstance(checkpoint, Mapping):
        source = source or _STATE_DICT_SOURCE
        obj: Any = checkpoint
    else:
        source = os.fspath(checkpoint)
        obj = read_checkpoint(checkpoint)
    from .models.utils import unwrap_model

    target = unwrap_model(model)

    raw_state, key_used = extract_state_dict(obj, model_keys, source=source)
    state, removed = adapt_state_dict(raw_state, target, drop_mismatched_head=drop_mismatched_head)

    model_state = target.state_dict()
    mismatches = [
        (key, ckpt_shape, model_shape)
        for key, value in state.items()
        if key in model_state
        and (ckpt_shape := _shape_of(value)) is not None
        and (model_shape := _shape_of(model_state[key])) is not None
        and ckpt_shape != model_shape
    ]
    if mismatches:
        raise CheckpointShapeError(mismatches, source)

    try:
        result = target.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"Cannot load checkpoint {source} into the model: {exc}") from exc

    # Computed here rather than taken from ``load_state_dict``, whose order depends
    # on the module tree: unexpected keys follow the checkpoint's order (as the
    # official logs), missing keys follow the model's ``state_dict()`` order.
    unexpected = [key for key in state if key not in model_state]
    loaded = [key for key in model_state if key in state]
    missing = [key for key in model_state if key not in state]
    if set(missing) != set(result.missing_keys) or set(unexpected) != set(result.unexpected_keys):
        logger.debug(
            "load_state_dict reported missing=%s unexpected=%s.",
            result.missing_keys, result.unexpected_keys,
        )
    missing = _resolve_aliases(target, model_state, missing, set(loaded), state)

    report = LoadReport(
        missing_keys=missing,
        unexpected_keys=unexpected,
        removed_head_keys=removed,
        model_key_used=key_used,
        source=source,
        loaded_keys=loaded,
    )
    logger.info("%s", report)
    if strict and (missing or unexpected):
        lines = [f"Strict loading of checkpoint {source} failed."]
        if missing:
            lines.append(f"Missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"Unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        raise CheckpointError("\n".join(lines))
    return report


def _resolve_aliases(
    model: nn.Module,
    model_state: Mapping[str, Any],
    missing: list[str],
    loaded: set[str],
    state: Mapping[str, Any],
) -> list[str]:
    """Drops missing keys whose tensor is shared with a loaded key.

    With parameter sharing one tensor is registered under several names and
    ``state_dict()`` lists all of them; loading any one name fills the others.

    Args:
        model: The (unwrapped) model.
        model_state: ``model.state_dict()``.
        missing: Missing keys reported by ``load_state_dict``.
        loaded: Model keys that were present in the checkpoint.
        state: The adapted checkpoint state dict.

    Returns:
        The missing keys that are really left without a value.
    """
    groups: dict[int, list[str]] = {}
    for name, tensor in [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]:
        if name in model_state:
            groups.setdefault(id(tensor), []).append(name)
    alias_of: dict[str, list[str]] = {
        name: names for names in groups.values() if len(names) > 1 for name in names
    }
    for names in groups.values():
        present = [n for n in names if n in loaded]
        if len(present) > 1:
            first = state[present[0]]
            for other in present[1:]:
                value = state[other]
                if isinstance(first, Tensor) and isinstance(value, Tensor) and not torch.equal(
                    first, value
                ):
                    logger.warning(
                        "Keys %s share one tensor in the model but have different values "
                        "in the checkpoint; the model keeps only one of them.",
                        ", ".join(present),
                    )
                    break
    really_missing: list[str] = []
    for key in missing:
        if any(alias in loaded for alias in alias_of.get(key, ())):
            logger.debug("%s is shared with a loaded key; not reported missing.", key)
            continue
        really_missing.append(key)
    return really_missing


def _shape_of(value: Any) -> tuple[int, ...] | None:
    """Returns the shape of a tensor, or ``None`` for other values."""
    return tuple(value.shape) if isinstance(value, Tensor) else None


def _format_shape(shape: Sequence[int]) -> str:
    """Formats a shape as ``(a, b, c)``."""
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


# ---------------------------------------------------------------------------- saving


def save_checkpoint(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Saves ``obj`` with :func:`torch.save`, atomically.

    The data are written to a temporary file next to ``path``, flushed and
    ``fsync``-ed, then renamed onto ``path``. Parent folders are created. If
    anything fails, the temporary file is removed and an existing file at
    ``path`` is left untouched.

    Args:
        obj: What to save (keep it to tensors, containers and plain values so
            that :func:`read_checkpoint` can read it back).
        path: The target file.

    Returns:
        The target path.
    """
    target = Path(os.fspath(path))

    def write(handle: IO[bytes], _tmp: Path) -> None:
        torch.save(obj, handle)

    atomic_write(target, write)
    logger.info("Saved checkpoint %s.", target)
    return target


def save_safetensors(
    model_or_state_dict: nn.Module | Mapping[str, Tensor],
    path: str | os.PathLike[str],
    metadata: dict[str, str] | None = None,
    *,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Saves a model's weights (or a state dict) as a ``.safetensors`` file, atomically.

    Every key is stored under its own name as an independent, contiguous CPU
    copy, so parameters shared between modules, views and non-contiguous
    tensors are all accepted.

    Args:
        model_or_state_dict: A module (its ``state_dict()`` is saved) or a
            mapping of names to tensors.
        path: The target file.
        metadata: Optional string-to-string metadata stored in the header.
        label_names: The model's output names in output order, stored in the
            header as the JSON list ``label_names`` (see :func:`stored_label_names`).

    Returns:
        The target path.

    Raises:
        TypeError: If a value is not a tensor, or metadata is not ``str -> str``.
        CheckpointError: If safetensors cannot serialise the tensors.
    """
    target = Path(os.fspath(path))
    if isinstance(model_or_state_dict, nn.Module):
        source: Mapping[str, Any] = model_or_state_dict.state_dict()
    else:
        source = model_or_state_dict
    if metadata is not None:
        bad_meta = [k for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))]
        if bad_meta:
            raise TypeError(
                f"save_safetensors({target}): metadata must map str to str; bad entries "
                f"for keys {bad_meta!r}."
            )
    if label_names is not None:
        names = list(label_names)
        if not all(isinstance(name, str) for name in names):
            raise TypeError(f"save_safetensors({target}): label_names must be strings, got {names!r}.")
        metadata = {**(metadata or {}), LABEL_NAMES_KEY: json.dumps(names)}
    tensors: dict[str, Tensor] = {}
    for key, value in source.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise TypeError(
                f"save_safetensors({target}): only str -> Tensor entries can be saved, got "
                f"{key!r}: {type(value).__name__}."
            )
        tensors[key] = value.detach().to(
            device="cpu", copy=True, memory_format=torch.contiguous_format
        )

    def write(_handle: IO[bytes], tmp: Path) -> None:
        try:
            safetensors.torch.save_file(tensors, os.fspath(tmp), metadata=metadata)
        except Exception as exc:
            raise CheckpointError(
                f"Cannot save safetensors file {target}: {type(exc).__name__}: {exc}"
            ) from exc

    atomic_write(target, write)
    logger.info("Saved %d tensors to %s.", len(tensors), target)
    return target
