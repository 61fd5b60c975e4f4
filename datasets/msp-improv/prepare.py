#!/usr/bin/env python
"""Prepare MSP-IMPROV: 4 classes, 6 leave-one-session-out folds -> <out>/split0{1..6}/{train,val,test}.csv.

Reads the consensus label of every utterance from <root>/Evaluation.txt (A 0, H 1, N 2, S 3; O and X are left
out) and scans <video-dir> (default <root>) for MSP-IMPROV-S<nn><E>-<F|M><nn>-<scenario>-<turn>.avi; the speaker
number is the session, and fold k tests session k. Frame folders (and wavs with --audio-root) mirror the video
tree below <video-dir>. val.csv is a copy of test.csv (byte-identical in HiCMAE). See datasets/msp-improv/README.md.

Example:
    python datasets/msp-improv/prepare.py --root /data/MSP-IMPROV --audio-root /data/MSP-IMPROV/audio_16k \\
        --out data/msp-improv
"""

from __future__ import annotations

import sys
from pathlib import Path

from maedfer.preprocess import prepare


def main(argv: list[str] | None = None) -> int:
    parser = prepare.build_parser(
        "MSP-IMPROV",
        __doc__,
        frames_help="face-frame folders mirroring the video tree (default <root>/face_aligned)",
        audio_help="16 kHz wav folder mirroring the video tree (default: video only)",
    )
    parser.add_argument("--labels", type=Path, default=None, help="override of <root>/Evaluation.txt")
    parser.add_argument("--video-dir", type=Path, default=None, help="where the .avi files are (default <root>)")
    args = parser.parse_args(argv)
    return prepare.run_cli(
        args,
        lambda: prepare.prepare_msp_improv(
            args.root,
            frames_root=args.frames_root,
            audio_root=args.audio_root,
            labels_file=args.labels,
            video_dir=args.video_dir,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
