#!/usr/bin/env python
"""Prepare CREMA-D: 5 actor-independent folds -> <out>/split0{1..5}/{train,val,test}.csv.

Scans <root>/VideoFlash/<actor>_<sentence>_<EMO>_<level>.flv; the emotion code gives the label (ANG 0, DIS 1,
FEA 2, HAP 3, NEU 4, SAD 5); fold k tests actors 1001-1018, 1019-1036, 1037-1054, 1055-1072, 1073-1091. Writes
"<frames-root>/<name> <label>" lines, or "<frames> <audio-root>/<name>.wav <label>" with --audio-root.
--exclude-broken leaves out the 4 clips the maintainers list as broken (HiCMAE protocol). val.csv is a copy of
test.csv. See datasets/crema-d/README.md.

Example:
    python datasets/crema-d/prepare.py --root /data/CREMA-D --out data/crema-d
    python datasets/crema-d/prepare.py --root /data/CREMA-D --audio-root /data/CREMA-D/AudioWAV --exclude-broken \\
        --out data/crema-d_av
"""

from __future__ import annotations

import sys
from pathlib import Path

from maedfer.preprocess import prepare


def main(argv: list[str] | None = None) -> int:
    parser = prepare.build_parser(
        "CREMA-D",
        __doc__,
        frames_help="face-frame folders <frames-root>/<name>/ (default <root>/face_aligned)",
        audio_help="16 kHz wav folder <audio-root>/<name>.wav, e.g. <root>/AudioWAV (default: video only)",
    )
    parser.add_argument("--video-dir", type=Path, default=None, help="override of <root>/VideoFlash")
    parser.add_argument(
        "--exclude-broken",
        action="store_true",
        help=f"leave out the known broken clips {', '.join(prepare.CREMA_D_BROKEN_CLIPS)}",
    )
    args = parser.parse_args(argv)
    return prepare.run_cli(
        args,
        lambda: prepare.prepare_crema_d(
            args.root, frames_root=args.frames_root, audio_root=args.audio_root, video_dir=args.video_dir
        ),
        extra_exclude=prepare.CREMA_D_BROKEN_CLIPS if args.exclude_broken else (),
    )


if __name__ == "__main__":
    sys.exit(main())
