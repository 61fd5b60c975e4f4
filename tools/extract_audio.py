#!/usr/bin/env python
"""Extract 16 kHz mono int16 wav files from videos (the HiCMAE audio preprocessing), resumably.

Equivalent to running ``ffmpeg -i <video> -vn -acodec pcm_s16le -ac 1 -ar 16000 <wav>`` on every video, but
through PyAV (no ffmpeg binary needed), in parallel, and safe to interrupt and rerun.

Examples:
    python tools/extract_audio.py --folder /data/MAFW/data/clips --out /data/MAFW/data/audio --workers 8
    python tools/extract_audio.py --list videos.txt --root /data/MAFW/data/clips --out /data/MAFW/data/audio
    python tools/extract_audio.py --annotations info_clean.csv --kind pretrain \\
        --path-map /data/ycs/AC/Dataset/VoxCeleb2=/data/vox2 --out /data/vox2/audio

Inputs (exactly one):
    --folder DIR         every *.mp4 / *.avi / *.mkv below DIR (recursive; suffix case ignored)
    --list FILE          one video path per line (blank lines and lines starting with '#' are ignored)
    --annotations FILE   the clip paths of an official annotation file (``--kind``, ``--path-map``)

Output: ``<out>/<video path relative to the root, with the suffix replaced by .wav>``. The root is --folder, or
--root, or else the deepest folder that contains all listed videos. Relative paths in --list are taken relative
to --root when given, else to the current directory.

Resuming: an existing non-empty output is skipped (``--overwrite`` redoes it). Each wav is written to a hidden
temporary file and renamed, so an interrupted run leaves no partial wav. A video that fails (no audio track,
broken file) does not stop the run; the summary lists the failures and the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from maedfer.data.annotations import ANNOTATION_KINDS, read_annotations
from maedfer.data.readers import extract_audio_file

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv")


def find_videos(folder: Path) -> list[Path]:
    """All files below ``folder`` whose suffix (any case) is in VIDEO_SUFFIXES, sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def read_video_list(list_file: Path, root: Path | None) -> list[Path]:
    """Paths of a plain list file, one per line; relative ones are joined to ``root`` (or the cwd)."""
    videos = []
    with open(list_file, encoding="utf-8-sig") as handle:
        for text in handle:
            entry = text.strip()
            if not entry or entry.startswith("#"):
                continue
            path = Path(entry)
            videos.append(path if path.is_absolute() or root is None else root / path)
    return videos


def parse_path_map(items: Iterable[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    mapping = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old:
            parser.error(f"--path-map expects OLD=NEW, got {item!r}")
        mapping[old] = new
    return mapping


def unique(paths: Iterable[Path]) -> list[Path]:
    seen: dict[Path, None] = {}
    for path in paths:
        seen.setdefault(path, None)
    return list(seen)


def output_path(video: Path, root: Path, out: Path) -> Path:
    """``out / (video relative to root)`` with the suffix replaced by ``.wav``."""
    return (out / video.relative_to(root)).with_suffix(".wav")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", type=Path, help="search this folder recursively for *.mp4 / *.avi / *.mkv")
    source.add_argument("--list", type=Path, help="text file with one video path per line")
    source.add_argument("--annotations", type=Path, help="official annotation file; its clip paths are the videos")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the wav files")
    parser.add_argument("--root", type=Path, default=None, help="folder the output layout is relative to")
    parser.add_argument("--kind", choices=ANNOTATION_KINDS, default="pretrain", help="layout of --annotations")
    parser.add_argument("--path-map", action="append", default=[], metavar="OLD=NEW",
                        help="rewrite a path prefix of --annotations (repeatable)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="output sample rate in Hz (default 16000)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    parser.add_argument("--failed-list", type=Path, default=None, help="also write the failed videos to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")

    if args.folder is not None:
        if not args.folder.is_dir():
            parser.error(f"--folder is not a directory: {args.folder}")
        videos = find_videos(args.folder)
        root = args.folder
    else:
        if args.list is not None:
            if not args.list.is_file():
                parser.error(f"--list file not found: {args.list}")
            videos = read_video_list(args.list, args.root)
        else:
            rows = read_annotations(args.annotations, kind=args.kind, path_map=parse_path_map(args.path_map, parser))
            videos = [Path(row.path) for row in rows]
        videos = unique(p if p.is_absolute() else Path.cwd() / p for p in videos)
        if args.root is not None:
            root = args.root if args.root.is_absolute() else Path.cwd() / args.root
        elif videos:
            root = Path(os.path.commonpath([str(p.parent) for p in videos]))
        else:
            root = Path.cwd()
    outside = [v for v in videos if not v.is_relative_to(root)]
    if outside:
        parser.error(f"{len(outside)} videos are not below the root {root}, e.g. {outside[0]}; pass --root")

    jobs = [(video, output_path(video, root, args.out)) for video in videos]
    todo = [(v, w) for v, w in jobs if args.overwrite or not (w.is_file() and w.stat().st_size > 0)]
    skipped = len(jobs) - len(todo)
    failures: list[tuple[Path, str]] = []
    done = 0
    print(f"{len(jobs)} videos, {skipped} already extracted, {len(todo)} to do -> {args.out}")

    progress = tqdm(total=len(todo), unit="video", disable=args.no_progress, file=sys.stderr)
    if args.workers == 1 or len(todo) <= 1:
        for video, wav in todo:
            try:
                extract_audio_file(video, wav, args.sample_rate)
                done += 1
            except Exception as exc:  # one failing video must not stop the run
                failures.append((video, f"{type(exc).__name__}: {exc}"))
            progress.update()
    else:
        context = multiprocessing.get_context("spawn")  # FFmpeg / torch threads make fork unsafe
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=context) as pool:
            futures = {pool.submit(extract_audio_file, video, wav, args.sample_rate): video for video, wav in todo}
            for future in as_completed(futures):
                try:
                    future.result()
                    done += 1
                except Exception as exc:
                    failures.append((futures[future], f"{type(exc).__name__}: {exc}"))
                progress.update()
    progress.close()

    print(f"done: {done}, skipped: {skipped}, failed: {len(failures)}")
    if failures:
        failures.sort()
        print("failed videos:")
        for video, reason in failures:
            print(f"  {video}: {reason}")
        if args.failed_list is not None:
            args.failed_list.parent.mkdir(parents=True, exist_ok=True)
            args.failed_list.write_text("".join(f"{video}\n" for video, _ in failures), encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
