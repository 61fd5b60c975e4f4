"""Small utilities shared by the whole package: atomic file writes, file hashes and argument checks.

Atomic writes go through a temporary file in the target folder, are flushed to disk and renamed
onto the target, so an interrupted write never leaves a truncated file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "check_int", "sha256_file"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes], Path], object]) -> Path:
    """Write a file through a temporary sibling, fsync and an atomic rename; parent folders are created.

    Args:
        path: The final path.
        write: Called with an open binary handle on the temporary file and the temporary file's path;
            it may write through either.

    Returns:
        The path written. On error the temporary file is removed and the previous file, if any, is unchanged.
    """
    target = Path(os.fspath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle, tmp)
            handle.flush()
            os.fsync(handle.fileno())
        # The data may have been written through the path rather than the handle.
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if hasattr(exc, "add_note"):  # Python >= 3.11
            exc.add_note(f"while writing {target} (the previous file, if any, is unchanged)")
        raise
    _fsync_directory(target.parent)
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); returns the path."""
    return atomic_write(path, lambda handle, _tmp: handle.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (newlines kept as given); returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _default_file_mode() -> int:
    """The mode a newly created file would get (``0o666`` minus the umask)."""
    umask = 0o022
    with contextlib.suppress(OSError, ValueError):
        for line in _read_lines("/proc/self/status"):
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
                break
    return 0o666 & ~umask


def _read_lines(path: str) -> Iterator[str]:
    """The lines of a small text file."""
    with open(path, encoding="ascii", errors="replace") as handle:
        yield from handle


def _fsync_directory(folder: Path) -> None:
    """Flush a directory entry to disk where the platform allows it."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_int(value: object, name: str, minimum: int = 1) -> int:
    """Return ``value`` as ``int`` if it is an integer (Python or numpy, not ``bool``) ``>= minimum``.

    Args:
        value: Value to check.
        name: Argument name used in the message.
        minimum: Smallest allowed value (1: a positive integer, 0: a non-negative one).

    Raises:
        ValueError: Otherwise; the message names the argument.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        wanted = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return int(value)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(os.fspath(path), "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
