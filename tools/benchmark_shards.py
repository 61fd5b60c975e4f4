#!/usr/bin/env python
"""Data-loading throughput of the same clips read per file vs streamed from tar shards.

The code is :mod:`maedfer.apps.benchmark_shards`.
"""

from maedfer.apps.benchmark_shards import main

if __name__ == "__main__":
    raise SystemExit(main())
