#!/usr/bin/env python
"""maedfer against the official model files, side by side: same weights, same inputs, one process, timed alternately.

Same as ``maedfer benchmark-official``; the code is :mod:`maedfer.apps.benchmark_official`.
"""

from maedfer.apps.benchmark_official import main

if __name__ == "__main__":
    raise SystemExit(main())
