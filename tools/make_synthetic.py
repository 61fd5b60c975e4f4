#!/usr/bin/env python
"""Write the synthetic face world: drawn talking faces, voice-like audio and official-format annotation files.

Same as ``maedfer make-synthetic``; the code is :mod:`maedfer.apps.make_synthetic`.
"""

from maedfer.apps.make_synthetic import main

if __name__ == "__main__":
    raise SystemExit(main())
