#!/usr/bin/env python
"""GPU check: the paper models and the pre-training systems on one device, in one command, with a JSON report.

Same as ``maedfer gpu-check``; the code is :mod:`maedfer.apps.gpu_check`.
"""

from maedfer.apps.gpu_check import main

if __name__ == "__main__":
    raise SystemExit(main())
