#!/usr/bin/env python
"""Prepare Werewolf-XL: 3-target regression, 5 game-independent folds -> <out>/split0{1..5}/{train,val,test}.csv.

Reads a label table (--labels; header row, comma- or tab-separated) with a clip-name column and the target
columns (--target-columns, default pleasure,arousal,dominance) and writes
"<frames-root>/<clip> <audio-root>/<clip>.wav <t1> <t2> <t3>" lines. The game id (first "_" field of the clip
name, 01-30) picks the fold: fold k tests games 6k-5..6k. val.csv is a copy of test.csv.
See datasets/werewolf-xl/README.md.

Example:
    python datasets/werewolf-xl/prepare.py --root /data/Werewolf-XL --labels /data/Werewolf-XL/speakers.csv \\
        --out data/werewolf-xl
"""

from __future__ import annotations

import sys
from pathlib import Path

from maedfer.preprocess import prepare


def main(argv: list[str] | None = None) -> int:
    parser = prepare.build_parser(
        "Werewolf-XL",
        __doc__,
        frames_help="face-frame folders <frames-root>/<clip>/ (default <root>/face_aligned)",
        audio_help="16 kHz wav folder <audio-root>/<clip>.wav (default <root>/audio_16k)",
    )
    parser.add_argument("--labels", type=Path, required=True, help="the label table (CSV/TSV with a header row)")
    parser.add_argument("--clip-column", default=None, help="name of the clip-name column (default: auto)")
    parser.add_argument(
        "--target-columns",
        default="pleasure,arousal,dominance",
        help="comma-separated target columns, in output order (default pleasure,arousal,dominance)",
    )
    args = parser.parse_args(argv)
    targets = [name.strip() for name in args.target_columns.split(",") if name.strip()]
    if not targets:
        parser.error("--target-columns names no column")
    return prepare.run_cli(
        args,
        lambda: prepare.prepare_werewolf_xl(
            args.root,
            args.labels,
            frames_root=args.frames_root,
            audio_root=args.audio_root,
            clip_column=args.clip_column,
            target_columns=targets,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
