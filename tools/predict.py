#!/usr/bin/env python
"""Predict the emotion (or valence / arousal) of raw videos over time, window by window.

Same as ``maedfer predict``; the code is :mod:`maedfer.apps.predict`.
"""

from maedfer.apps.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
