"""Extract 16 kHz mono int16 wav files from videos (the HiCMAE audio preprocessing), resumably.

Equivalent to running ``ffmpeg -i <video> -vn -acodec pcm_s16le -ac 1 -ar 16000 <wav>`` on every video, but
through PyAV (no ffmpeg binary needed), in parallel, and safe to interrupt and rerun.

Examples:
    maedfer extract-audio --folder /data/MAFW/data/clips --out /data/MAFW/data/audio --workers 8
    maedfer extract-audio --list videos.txt --root /data/MAFW/data/clips --out /data/MAFW/data/audio
    maedfer extract-audio --annotations info_clean.csv --kind pretrain \\
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
import sys
from pathlib import Path

from maedfer.preprocess.batch import add_input_arguments, extract_audio_job, resolve_inputs, run_jobs

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv")


def find_videos(folder: Path) -> list[Path]:
    """All files below ``folder`` whose suffix (any case) is in VIDEO_SUFFIXES, sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def output_path(video: Path, root: Path, out: Path) -> Path:
    """``out / (video relative to root)`` with the suffix replaced by ``.wav``."""
    return (out / video.relative_to(root)).with_suffix(".wav")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(parser, "videos")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the wav files")
    parser.add_argument("--sample-rate", type=int, default=16000, help="output sample rate in Hz (default 16000)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    videos, root = resolve_inputs(args, parser, find_videos)

    jobs = [(video, output_path(video, root, args.out), args.sample_rate) for video in videos]
    todo = [job for job in jobs if args.overwrite or not (job[1].is_file() and job[1].stat().st_size > 0)]
    skipped = len(jobs) - len(todo)
    print(f"{len(jobs)} videos, {skipped} already extracted, {len(todo)} to do -> {args.out}")
    results = run_jobs(extract_audio_job, todo, workers=args.workers, unit="video", progress=not args.no_progress)
    failures = sorted((video, error) for video, error in results if error is not None)

    print(f"done: {len(results) - len(failures)}, skipped: {skipped}, failed: {len(failures)}")
    if failures:
        print("failed videos:")
        for video, reason in failures:
            print(f"  {video}: {reason}")
        if args.failed_list is not None:
            args.failed_list.parent.mkdir(parents=True, exist_ok=True)
            args.failed_list.write_text("".join(f"{video}\n" for video, _ in failures), encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
