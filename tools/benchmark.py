#!/usr/bin/env python
"""Forward-pass latency of registered models, fused (SDPA) vs manual attention, eager vs torch.compile, in one process.

Same as ``maedfer benchmark``; the code is :mod:`maedfer.apps.benchmark`.
"""

from maedfer.apps.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
