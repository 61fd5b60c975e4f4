#!/usr/bin/env python
"""Prepare eNTERFACE'05: 5 subject-independent folds -> <out>/split0{1..5}/{train,val,test}.csv.

Scans <root>/subject N/<emotion>/sentence M/*.avi; the emotion folder gives the label (anger 0, disgust 1,
fear 2, happiness 3, sadness 4, surprise 5). Subjects sorted by number are cut into 5 consecutive test groups
of ceil(subjects / 5). Frame folders (and wavs with --audio-root) mirror the video tree with spaces replaced
by "_": <frames-root>/subject_1/anger/sentence_1/s1_an_1/. val.csv is a copy of test.csv.
See datasets/enterface05/README.md.

Example:
    python datasets/enterface05/prepare.py --root /data/enterface05 --out data/enterface05
"""

from __future__ import annotations

import sys

from maedfer.preprocess import prepare


def main(argv: list[str] | None = None) -> int:
    parser = prepare.build_parser(
        "eNTERFACE05",
        __doc__,
        frames_help="face-frame folders mirroring the video tree, spaces replaced by '_' (default <root>/face_aligned)",
        audio_help="16 kHz wav folder mirroring the video tree (default: video only)",
    )
    parser.add_argument(
        "--exclude-subjects", type=int, nargs="*", default=[], metavar="N", help="subject numbers to leave out"
    )
    args = parser.parse_args(argv)
    return prepare.run_cli(
        args,
        lambda: prepare.prepare_enterface(
            args.root,
            frames_root=args.frames_root,
            audio_root=args.audio_root,
            exclude_subjects=args.exclude_subjects,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
