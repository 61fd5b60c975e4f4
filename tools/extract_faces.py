#!/usr/bin/env python
"""Crop the main face of every frame of videos / frame folders into face-frame folders, resumably.

Same as ``maedfer extract-faces``; the code is :mod:`maedfer.apps.extract_faces`.
"""

from maedfer.apps.extract_faces import main

if __name__ == "__main__":
    raise SystemExit(main())
