#!/usr/bin/env python
"""Data-loader throughput per item: the official dataset code vs maedfer's exact and fast pipelines, side by side.

Same as ``maedfer benchmark-loader``; the code is :mod:`maedfer.apps.benchmark_loader`.
"""

from maedfer.apps.benchmark_loader import main

if __name__ == "__main__":
    raise SystemExit(main())
