"""Annotation files of the official MAE-DFER / SVFAP / HiCMAE recipes: reading, path remapping, writing.

Details: ``docs/modules.md``, section ``maedfer/data/annotations.py``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union

from ..utils import atomic_write_text

__all__ = [
    "ANNOTATION_KINDS",
    "AnnotationError",
    "AnnotationKind",
    "AnnotationRow",
    "read_annotations",
    "remap_path",
    "write_annotations",
]

PathLike = Union[str, "os.PathLike[str]"]
AnnotationKind = Literal["classification", "audio_visual", "regression", "pretrain"]
#: The accepted values of ``kind``.
ANNOTATION_KINDS: tuple[str, ...] = ("classification", "audio_visual", "regression", "pretrain")


class AnnotationError(ValueError):
    """A malformed annotation line.

    Attributes:
        file: the annotation file (as a string).
        line: 1-based line number (0 when the problem is not tied to one line).
        reason: what is wrong.
    """

    def __init__(self, file: PathLike, line: int, reason: str) -> None:
        self.file = str(file)
        self.line = line
        self.reason = reason
        where = f"{self.file}:{line}" if line > 0 else self.file
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type[AnnotationError], tuple[str, int, str]]:
        return (type(self), (self.file, self.line, self.reason))


@dataclass
class AnnotationRow:
    """One sample of an annotation file.

    Attributes:
        path: clip path (frame folder, image or video), after path remapping.
        label: ``int`` class index (classification, audio_visual), ``tuple[float, ...]`` targets (regression) or
            ``None`` (pretrain).
        audio_path: wav path for audio-visual / regression files, else ``None``.
        line: 1-based line number in the source file (0 for rows made in code).
    """

    path: str
    label: int | float | tuple[float, ...] | None
    audio_path: str | None = None
    line: int = 0


def _check_kind(kind: str) -> None:
    if kind not in ANNOTATION_KINDS:
        raise ValueError(f"unknown annotation kind {kind!r}; use one of {', '.join(ANNOTATION_KINDS)}")


def remap_path(path: str, path_map: Mapping[str, str] | None) -> str:
    """Replace a path prefix, e.g. the authors' data root with a local one.

    A prefix matches only at a path-component boundary: ``/data/DFEW`` matches ``/data/DFEW`` and
    ``/data/DFEW/Clip/00001`` but not ``/data/DFEW2/...``. A trailing ``/`` on keys or values is ignored. When
    several prefixes match, the longest wins. Paths that match no prefix are returned unchanged.

    Args:
        path: the path as written in the file.
        path_map: ``{old_prefix: new_prefix}``; None or empty means no change.

    Returns:
        The remapped path.

    Raises:
        ValueError: an empty key.
    """
    if not path_map:
        return path
    best: tuple[str, str] | None = None  # (old prefix without trailing '/', new prefix)
    for old, new in path_map.items():
        if not old:
            raise ValueError("path_map keys must be non-empty path prefixes")
        stripped = old.rstrip("/")  # "" for the root "/"
        matched = path.startswith("/") if not stripped else path == stripped or path.startswith(stripped + "/")
        if matched and (best is None or len(stripped) > len(best[0])):
            best = (stripped, new)
    if best is None:
        return path
    stripped, new = best
    rest = path[len(stripped) :]  # "" or "/..."
    base = new.rstrip("/")
    if not rest:
        return base or new
    if base:
        return base + rest
    return rest if new.startswith("/") else rest.lstrip("/")  # new "" makes the path relative


def _parse_int(text: str, file: PathLike, line: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise AnnotationError(file, line, f"{what} must be an integer, got {text!r}") from None


def _parse_float(text: str, file: PathLike, line: int, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(file, line, f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise AnnotationError(file, line, f"{what} must be finite, got {text!r}")
    return value


def _with_default_suffix(path: str, default_suffix: str | None) -> str:
    if default_suffix and "." not in path.rstrip("/").rsplit("/", 1)[-1]:
        return path + default_suffix
    return path


def read_annotations(
    file: PathLike,
    *,
    kind: AnnotationKind = "classification",
    path_map: Mapping[str, str] | None = None,
    num_targets: int | None = None,
    default_suffix: str | None = ".mp4",
) -> list[AnnotationRow]:
    """Read an official-format annotation file.

    Args:
        file: the text file.
        kind: ``"classification"``, ``"audio_visual"``, ``"regression"`` or ``"pretrain"`` (see the module
            docstring for the line layouts).
        path_map: prefix rewrites applied to clip and audio paths (see :func:`remap_path`).
        num_targets: regression only: the required number of targets per line. When None, every line must have
            the same number as the first one.
        default_suffix: pretrain only: appended to a path whose last component contains no ``.`` (the official
            VoxCeleb2 loader appends ``.mp4``); None disables it.

    Returns:
        The rows in file order, each with its 1-based ``line`` number.

    Raises:
        FileNotFoundError: the file does not exist.
        AnnotationError: a malformed line; the message is ``<file>:<line>: <reason>``.
        ValueError: an unknown ``kind``.
    """
    _check_kind(kind)
    file_path = Path(file)
    if not file_path.is_file():
        raise FileNotFoundError(f"annotation file not found: {file_path}")
    if num_targets is not None and (kind != "regression" or num_targets < 1):
        raise ValueError(f"num_targets ({num_targets}) only applies to kind='regression' and must be >= 1")
    expected_fields = {"classification": 2, "audio_visual": 3}
    rows: list[AnnotationRow] = []
    with open(file_path, encoding="utf-8-sig") as handle:
        for line_number, text in enumerate(handle, start=1):
            fields = text.split()
            if not fields or fields[0].startswith("#"):
                continue
            if kind in expected_fields:
                if len(fields) != expected_fields[kind]:
                    layout = "<clip> <label>" if kind == "classification" else "<clip> <audio> <label>"
                    raise AnnotationError(
                        file_path,
                        line_number,
                        f"expected {expected_fields[kind]} space-separated fields ({layout}), got {len(fields)}"
                        + ("; paths cannot contain spaces" if len(fields) > expected_fields[kind] else ""),
                    )
                label = _parse_int(fields[-1], file_path, line_number, "the class label")
                audio = fields[1] if kind == "audio_visual" else None
                rows.append(
                    AnnotationRow(
                        path=remap_path(fields[0], path_map),
                        label=label,
                        audio_path=remap_path(audio, path_map) if audio is not None else None,
                        line=line_number,
                    )
                )
            elif kind == "regression":
                if len(fields) < 3:
                    raise AnnotationError(
                        file_path,
                        line_number,
                        f"expected <clip> <audio> <target> [<target> ...], got {len(fields)} fields",
                    )
                targets = tuple(
                    _parse_float(value, file_path, line_number, f"target {k + 1}") for k, value in enumerate(fields[2:])
                )
                if num_targets is None:
                    num_targets_seen = len(rows[0].label) if rows else len(targets)  # type: ignore[arg-type]
                    if len(targets) != num_targets_seen:
                        raise AnnotationError(
                            file_path,
                            line_number,
                            f"{len(targets)} targets, but line {rows[0].line} has {num_targets_seen}",
                        )
                elif len(targets) != num_targets:
                    raise AnnotationError(
                        file_path, line_number, f"expected {num_targets} targets, got {len(targets)}"
                    )
                rows.append(
                    AnnotationRow(
                        path=remap_path(fields[0], path_map),
                        label=targets,
                        audio_path=remap_path(fields[1], path_map),
                        line=line_number,
                    )
                )
            else:  # pretrain
                if len(fields) > 2:
                    raise AnnotationError(
                        file_path,
                        line_number,
                        f"expected <video> or <video> <int>, got {len(fields)} fields; paths cannot contain spaces",
                    )
                if len(fields) == 2:
                    _parse_int(fields[1], file_path, line_number, "the second (dummy label) field")
                path = _with_default_suffix(fields[0], default_suffix)
                rows.append(AnnotationRow(path=remap_path(path, path_map), label=None, line=line_number))
    return rows


def _check_field(value: str | None, what: str, index: int) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"row {index}: {what} must be a non-empty string, got {value!r}")
    if any(character.isspace() for character in value):
        raise ValueError(
            f"row {index}: {what} {value!r} contains whitespace, which the space-separated annotation format cannot "
            "represent; rename or symlink the file"
        )
    return value


def _format_row(row: AnnotationRow, kind: str, index: int) -> str:
    path = _check_field(row.path, "path", index)
    if kind == "pretrain":
        return f"{path} 0"
    label = row.label
    if kind in ("classification", "audio_visual"):
        if isinstance(label, bool) or not isinstance(label, int):
            if isinstance(label, float) and label.is_integer():
                label = int(label)
            else:
                raise ValueError(f"row {index}: a {kind} label must be an integer, got {row.label!r}")
        if kind == "classification":
            return f"{path} {label}"
        return f"{path} {_check_field(row.audio_path, 'audio_path', index)} {label}"
    # regression
    targets = (label,) if isinstance(label, (int, float)) and not isinstance(label, bool) else label
    if not isinstance(targets, (tuple, list)) or not targets:
        raise ValueError(f"row {index}: regression targets must be a number or a non-empty tuple, got {label!r}")
    values = []
    for value in targets:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"row {index}: regression target {value!r} is not finite")
        values.append(repr(number))  # shortest text that parses back to the same float
    return f"{path} {_check_field(row.audio_path, 'audio_path', index)} {' '.join(values)}"


def write_annotations(
    file: PathLike, rows: Iterable[AnnotationRow], *, kind: AnnotationKind = "classification"
) -> None:
    """Write rows in the official space-separated format, atomically.

    Layouts as in :func:`read_annotations`; pre-training rows are written as ``<video> 0``, regression targets
    with the shortest text that reads back to the same float. The text goes to a temporary file in the same
    folder, which is then renamed over ``file``; parent folders are created.

    Args:
        file: output path.
        rows: the samples.
        kind: the layout.

    Raises:
        ValueError: an unknown ``kind``, a path containing whitespace, a missing audio path, or a label of the
            wrong type for ``kind``. Nothing is written then.
    """
    _check_kind(kind)
    lines = [_format_row(row, kind, index) + "\n" for index, row in enumerate(rows)]
    atomic_write_text(file, "".join(lines))
