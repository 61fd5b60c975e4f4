"""Keep freed memory in a loader process instead of handing it back to the kernel after every clip.

A clip item allocates and frees several arrays of 1-5 MiB (decoded frames, the float clip). glibc serves such
sizes with fresh ``mmap`` pages, so every item pays thousands of page faults (about 4,400 per fast DFEW training
item, nearly half its time on a 2-core AMD EPYC). :func:`retain_freed_memory` raises glibc's mmap and trim
thresholds once per process, so freed blocks are reused; the process keeps its peak heap instead.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "loader_worker_init", "retain_freed_memory", "worker_init_for"]

logger = logging.getLogger(__name__)

#: Blocks up to this size come from the heap (glibc's largest allowed mmap threshold on 64-bit systems).
MMAP_THRESHOLD = 32 << 20
#: Free heap memory kept before glibc trims the top of the heap.
TRIM_THRESHOLD = 1 << 30

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _find_mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt`` from the C library already in this process; ``None`` elsewhere.

    Looked up once, at import, in the parent: a ``dlopen`` inside a forked loader worker can deadlock on a loader
    lock another parent thread held at the fork (and ``ctypes.util.find_library`` would start subprocesses).
    """
    try:
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    except (OSError, TypeError):
        return None
    if mallopt is not None:
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


_MALLOPT = _find_mallopt()
_APPLIED: bool | None = None  # None: not tried in this process yet


def retain_freed_memory() -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` for this process (once; later calls are free).

    Returns:
        Whether the thresholds are set: ``False`` where the C library is not glibc (macOS, musl, Windows).
    """
    global _APPLIED
    if _APPLIED is None:
        if _MALLOPT is None:
            logger.debug("no glibc mallopt here; freed loader memory goes back to the system")
            _APPLIED = False
        else:
            _APPLIED = bool(_MALLOPT(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                _MALLOPT(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _APPLIED


def loader_worker_init(worker_id: int) -> None:
    """``worker_init_fn`` of maedfer's DataLoaders: :func:`retain_freed_memory` in each worker process."""
    retain_freed_memory()


def worker_init_for(retain: bool, num_workers: int) -> Callable[[int], None] | None:
    """The ``worker_init_fn`` of a maedfer DataLoader with ``num_workers`` workers.

    With ``retain`` and workers: :func:`loader_worker_init`; with ``retain`` and no worker, the items are loaded in
    this process, so :func:`retain_freed_memory` is applied here at once and ``None`` returned; without ``retain``:
    ``None``.
    """
    if not retain:
        return None
    if num_workers > 0:
        return loader_worker_init
    retain_freed_memory()
    return None
