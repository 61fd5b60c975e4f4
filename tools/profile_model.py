#!/usr/bin/env python
"""Profile maedfer models: parameters, GMACs/GFLOPs (fused attention counted), throughput, latency, memory, MFU.

Same as ``maedfer profile``; the code is :mod:`maedfer.apps.profiling`.
"""

from maedfer.apps.profiling import main

if __name__ == "__main__":
    raise SystemExit(main())
