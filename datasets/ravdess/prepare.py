#!/usr/bin/env python
"""Prepare RAVDESS: 6 actor-independent folds -> <out>/split0{1..6}/{train,val,test}.csv.

Scans <root> for the speech videos MM-01-EE-II-SS-RR-AA.mp4 (MM = 02, video-only, by default); the emotion
code EE 01-08 gives the label 0-7 (neutral, calm, happy, sad, angry, fearful, disgust, surprised); fold k tests
actors 4k-3..4k. Frame folders mirror the video tree below <root>; with --audio-root each clip's audio is the
audio-only speech file <audio-root>/Actor_AA/03-01-EE-II-SS-RR-AA.wav. val.csv is a copy of test.csv.
See datasets/ravdess/README.md.

Example:
    python datasets/ravdess/prepare.py --root /data/RAVDESS --out data/ravdess
"""

from __future__ import annotations

import sys

from maedfer.preprocess import prepare


def main(argv: list[str] | None = None) -> int:
    parser = prepare.build_parser(
        "RAVDESS",
        __doc__,
        frames_help="face-frame folders mirroring the video tree, e.g. <frames-root>/Actor_01/02-01-01-01-01-01-01/ "
        "(default <root>/face_aligned)",
        audio_help="16 kHz wav folder <audio-root>/Actor_XX/03-01-*.wav (default: video only)",
    )
    parser.add_argument(
        "--video-modality", choices=("01", "02"), default="02", help="02 video-only (official) or 01 audio-video"
    )
    args = parser.parse_args(argv)
    return prepare.run_cli(
        args,
        lambda: prepare.prepare_ravdess(
            args.root, frames_root=args.frames_root, audio_root=args.audio_root, video_modality=args.video_modality
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
