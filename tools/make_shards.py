#!/usr/bin/env python
"""Write a clip collection into tar shards (WebDataset layout) with a verified index.

Same as ``maedfer make-shards``; the code is :mod:`maedfer.apps.shards`.
"""

from maedfer.apps.shards import main

if __name__ == "__main__":
    raise SystemExit(main())
