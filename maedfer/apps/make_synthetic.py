"""Write the synthetic face world: drawn talking faces, voice-like audio and official-format annotation files.

Examples:
    # the default world: 12 identities (8/2/2), 8 clips per class and split, 32 frames of 112x112 at 25 fps
    maedfer make-synthetic --out data/synthetic

    # a tiny world without videos, in 4 processes
    maedfer make-synthetic --out /tmp/tiny --identities 3 --clips-per-class 2 --frames 16 --size 64 \
        --formats frames,wav --workers 4

See ``maedfer.synthetic`` for what is drawn and the layout that is written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from maedfer.synthetic import FORMATS, make_synthetic_world


def _formats(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"formats must be a comma-separated subset of {','.join(FORMATS)}, got {text!r}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (must be empty, see --overwrite)")
    parser.add_argument("--identities", type=int, default=12, help="number of identities, >= 3 (default 12: 8/2/2)")
    parser.add_argument("--clips-per-class", type=int, default=8, help="clips per class in every split (default 8)")
    parser.add_argument("--frames", type=int, default=32, help="frames per clip (default 32)")
    parser.add_argument("--size", type=int, default=112, help="frame height and width in pixels (default 112)")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate (default 25)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument(
        "--formats",
        type=_formats,
        default=FORMATS,
        help=f"comma-separated subset of {','.join(FORMATS)} (default: all)",
    )
    parser.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="worker processes (default: min(4, CPUs))"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a synthetic world already in --out")
    parser.add_argument("--no-preview", action="store_true", help="do not write preview.png")
    parser.add_argument("--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")

    try:
        world = make_synthetic_world(
            args.out,
            num_identities=args.identities,
            clips_per_class=args.clips_per_class,
            num_frames=args.frames,
            size=args.size,
            fps=args.fps,
            seed=args.seed,
            formats=args.formats,
            num_workers=args.workers,
            overwrite=args.overwrite,
            preview=not args.no_preview,
        )
    except (ValueError, FileExistsError, NotADirectoryError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    print(f"synthetic world in {world.root} ({world.seconds:.1f} s)")
    print(
        f"  {world.total_clips} clips: {world.num_frames} frames of {world.size}x{world.size} at {world.fps:g} fps, "
        f"audio {world.sample_rate} Hz mono; formats {','.join(world.formats)}"
    )
    for split in ("train", "val", "test"):
        identities = ",".join(str(i) for i in world.split_identities[split])
        print(f"  {split:5s}: {world.num_clips[split]:4d} clips, identities {identities}")
    print(f"  classes: {', '.join(f'{index} {name}' for index, name in enumerate(world.classes))}")
    for kind, files in world.annotation_files.items():
        for split, path in files.items():
            print(f"  {kind}/{split}: {path}")
    print(f"  info: {world.info_file}")
    if not args.no_preview:
        print(f"  preview: {world.preview_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
