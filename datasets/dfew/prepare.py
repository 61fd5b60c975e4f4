#!/usr/bin/env python
"""Prepare DFEW: the 5 official single-label folds -> <out>/split0{1..5}/{train,val,test}.csv.

Reads <root>/EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv (video_name,label; labels 1-7)
and writes "<frames-root>/<5-digit id> <label - 1>" lines. val.csv is a copy of test.csv (official protocol).
See datasets/dfew/README.md.

Example:
    python datasets/dfew/prepare.py --root /data/DFEW --out data/dfew
"""

from __future__ import annotations

import sys

from maedfer.preprocess import prepare


def main(argv: list[str] | None = None) -> int:
    parser = prepare.build_parser(
        "DFEW",
        __doc__,
        frames_help="face-frame folders <frames-root>/<5-digit id>/ (default <root>/Clip/clip_224x224)",
        audio_help=None,
    )
    args = parser.parse_args(argv)
    return prepare.run_cli(args, lambda: prepare.prepare_dfew(args.root, frames_root=args.frames_root))


if __name__ == "__main__":
    sys.exit(main())
