#!/usr/bin/env python
"""Convert an official (or maedfer) ``.pth`` checkpoint to a safetensors weights file.

Same as ``maedfer convert-checkpoint``; the code is :mod:`maedfer.apps.convert_checkpoint`.
"""

from maedfer.apps.convert_checkpoint import main

if __name__ == "__main__":
    raise SystemExit(main())
