#!/usr/bin/env python
"""Prepare FERV39k: the official All-scenes split -> <out>/all_scenes/{train,val,test}.csv.

Reads <root>/4_setups/All_scenes/{train,test}_All.csv ("<Scene>/<Emotion>/<clip> <Emotion>" lines) and writes
"<frames-root>/<Scene>/<Emotion>/<clip> <label>" lines with the label order Happy 0, Sad 1, Neutral 2, Angry 3,
Surprise 4, Disgust 5, Fear 6. val.csv is a copy of test.csv. See datasets/ferv39k/README.md.

Example:
    python datasets/ferv39k/prepare.py --root /data/FERV39k --out data/ferv39k
"""

from __future__ import annotations

import sys

from maedfer.preprocess import prepare


def main(argv: list[str] | None = None) -> int:
    parser = prepare.build_parser(
        "FERV39k",
        __doc__,
        frames_help="face-frame folders <frames-root>/<Scene>/<Emotion>/<clip>/ (default <root>/2_ClipsforFaceCrop)",
        audio_help=None,
    )
    args = parser.parse_args(argv)
    return prepare.run_cli(args, lambda: prepare.prepare_ferv39k(args.root, frames_root=args.frames_root))


if __name__ == "__main__":
    sys.exit(main())
