#!/usr/bin/env python
"""Extract 16 kHz mono int16 wav files from videos (the HiCMAE audio preprocessing), resumably.

Same as ``maedfer extract-audio``; the code is :mod:`maedfer.apps.extract_audio`.
"""

from maedfer.apps.extract_audio import main

if __name__ == "__main__":
    raise SystemExit(main())
