#!/usr/bin/env python
"""Prepare MAFW: the 5 official folds -> <out>/split0{1..5}/{train,val,test}.csv.

Reads "<root>/Train & Test Set/single/no_caption/set_{1..5}/{train,test}.txt" ("<clip>.mp4 <label>" lines;
a "split/" folder is accepted instead of "Train & Test Set/") and writes "<frames-root>/<clip> <label>" lines
(11 classes: anger 0, disgust 1, fear 2, happiness 3, neutral 4, sadness 5, surprise 6, contempt 7, anxiety 8,
helplessness 9, disappointment 10). With --audio-root the lines are "<frames> <audio-root>/<clip>.wav <label>"
(HiCMAE; add --skip-missing to drop the clips without audio). --label-set 43 reads the compound set instead.
val.csv is a copy of test.csv. See datasets/mafw/README.md.

Example:
    python datasets/mafw/prepare.py --root /data/MAFW --out data/mafw
    python datasets/mafw/prepare.py --root /data/MAFW --audio-root /data/MAFW/data/audio_16k --skip-missing \\
        --out data/mafw_av
"""

from __future__ import annotations

import sys
from pathlib import Path

from maedfer.preprocess import prepare


def main(argv: list[str] | None = None) -> int:
    parser = prepare.build_parser(
        "MAFW",
        __doc__,
        frames_help="face-frame folders <frames-root>/<clip>/ with *.png frames (default <root>/data/frames)",
        audio_help="16 kHz wav folder <audio-root>/<clip>.wav; writes audio-visual files (default: video only)",
    )
    parser.add_argument("--label-set", type=int, choices=(11, 43), default=11, help="11 single or 43 compound classes")
    parser.add_argument("--split-dir", type=Path, default=None, help='override of "<root>/Train & Test Set"')
    args = parser.parse_args(argv)
    return prepare.run_cli(
        args,
        lambda: prepare.prepare_mafw(
            args.root,
            frames_root=args.frames_root,
            audio_root=args.audio_root,
            label_set=args.label_set,
            split_dir=args.split_dir,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
