#!/usr/bin/env python
"""Draw what a model does with one video: masked-autoencoder reconstructions and attention maps.

Same as ``maedfer visualize``; the code is :mod:`maedfer.apps.visualize`.
"""

from maedfer.apps.visualize import main

if __name__ == "__main__":
    raise SystemExit(main())
