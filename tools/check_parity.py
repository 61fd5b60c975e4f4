#!/usr/bin/env python
"""Compare maedfer with golden outputs of the official code.

Same as ``maedfer check-parity``; the code is :mod:`maedfer.apps.check_parity`.
"""

from maedfer.apps.check_parity import main

if __name__ == "__main__":
    raise SystemExit(main())
