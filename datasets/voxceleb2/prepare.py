#!/usr/bin/env python
"""Prepare VoxCeleb2 (dev) for pre-training -> <out>/dev/train.csv ("<video.mp4> 0" lines).

Lists <root>/dev/mp4/id<nnnnn>/<youtube id>/<nnnnn>.mp4 (or --video-dir). --check-decodable opens every video
and leaves out the ones that fail (the official list builder found 283 of 1,092,009); --exclude-list drops a
known list instead (ids "id/youtube/nnnnn" or paths). With --audio-root and --skip-missing, clips without
<audio-root>/id/youtube/nnnnn.wav are dropped too. See datasets/voxceleb2/README.md.

Example:
    python datasets/voxceleb2/prepare.py --root /data/VoxCeleb2 --check-decodable --workers 16 --out data/voxceleb2
"""

from __future__ import annotations

import sys
from pathlib import Path

from maedfer.preprocess import prepare


def main(argv: list[str] | None = None) -> int:
    parser = prepare.build_parser(
        "VoxCeleb2",
        __doc__,
        frames_help=None,
        audio_help="16 kHz wav folder mirroring the mp4 tree (only checked with --skip-missing)",
    )
    parser.add_argument("--video-dir", type=Path, default=None, help="the mp4 folder (default <root>/dev/mp4)")
    parser.add_argument("--check-decodable", action="store_true", help="open every video; leave out broken ones")
    parser.add_argument("--workers", type=int, default=1, help="processes for --check-decodable (default 1)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    return prepare.run_cli(
        args,
        lambda: prepare.prepare_voxceleb2(
            args.root,
            video_dir=args.video_dir,
            audio_root=args.audio_root,
            check_decodable=args.check_decodable,
            workers=args.workers,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
