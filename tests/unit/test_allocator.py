"""Loader processes keep freed memory: a clip-sized allocation after the first one costs no page faults."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from maedfer.data import allocator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc thresholds (Linux)")

# 30 "items" in a fresh process, each holding five 4.9 MiB float clips at once (decoded, warped, normalised...)
# and freeing them; prints the page faults taken after the first item.
_PROBE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from maedfer.data.allocator import retain_freed_memory
    if sys.argv[1] == "retain":
        assert retain_freed_memory()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    def item():
        arrays = [np.empty((3, 16, 160, 160), np.float32) for _ in range(5)]
        for array in arrays:
            array.fill(1.0)
    item()
    start = faults()
    for _ in range(30):
        item()
    print(faults() - start)
""")


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_retained_memory_is_reused_without_page_faults() -> None:
    default, retained = _faults("default"), _faults("retain")
    assert default > 30 * 1000  # glibc hands the blocks back: ~1,200 fresh pages for each 4.9 MiB clip
    assert retained < 100


def test_loaders_set_it_in_their_workers_or_in_the_process() -> None:
    import torch

    from maedfer.data.build import _loader

    dataset = list(range(4))
    with_workers = _loader(dataset, 2, sampler=None, num_workers=1, pin_memory=False, drop_last=False, collate=None)
    assert with_workers.worker_init_fn is allocator.loader_worker_init
    off = _loader(dataset, 2, sampler=None, num_workers=1, pin_memory=False, drop_last=False, collate=None,
                  retain_freed_memory=False)
    assert off.worker_init_fn is None
    # no worker: the items load in this process, which keeps freed memory from then on
    assert allocator.worker_init_for(True, 0) is None and allocator.retain_freed_memory() is True
    assert [b.tolist() for b in with_workers] == [[0, 1], [2, 3]]
    assert torch.utils.data.get_worker_info() is None
