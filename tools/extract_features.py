#!/usr/bin/env python
"""Extract clip features of videos with a trained (or pre-trained) maedfer model, resumably.

Same as ``maedfer extract-features``; the code is :mod:`maedfer.apps.features`.
"""

from maedfer.apps.features import main

if __name__ == "__main__":
    raise SystemExit(main())
