#!/usr/bin/env python
"""Extract clip features of videos with a trained (or pre-trained) maedfer model, resumably.

Examples:
    python tools/extract_features.py clip1.mp4 clip2.mp4 --checkpoint runs/demo_finetune/checkpoint-last.pth \\
        --out features/
    python tools/extract_features.py --list test.csv --checkpoint hicmae.pth --model hicmae_base --out feats \\
        --level layers --layers 3 7 11 --format safetensors --num-clips 2 --no-face-detect

Inputs: videos (or frame folders) on the command line, or ``--list FILE``: one path per line, or an official
annotation file (``<clip> <label>``, ``<clip> <audio> <label>``, ``<clip> <audio> <targets...>``; the layout is
detected, and its audio column is the audio of audio-visual models). Relative paths are relative to the current
directory.

Levels (see ``maedfer.apps.features`` for every key and shape): ``pooled`` (the head input, one vector per clip),
``tokens`` (final token features in raster order, plus the grid shape) and ``layers`` (intermediate blocks; HiCMAE:
the tapped encoder layers and the fusion outputs).

Output per video, named after its stem (``<parent>__<stem>`` when stems clash): ``--format npy`` writes
``<name>.<key>.npy`` per key and ``<name>.json`` last; ``--format safetensors`` writes ``<name>.safetensors`` with
metadata. ``<out>/manifest.jsonl`` lists every video with its files and shapes. Videos whose outputs are complete
(same model and settings) are skipped unless ``--no-resume``.

Exit codes: 0 when every video was processed (or skipped), 2 when any video failed (unreadable, no face, no audio)
or the arguments / checkpoint are bad.
"""

from __future__ import annotations

import os
import sys

# torch.compile imports cProfile -> profile: keep this folder (and its profile.py) off sys.path.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from maedfer.compile import optimize_for_inference  # noqa: E402
from maedfer.engine.backends import autocast_context, resolve_precision  # noqa: E402
from maedfer.apps.features import FEATURE_LEVELS, OUTPUT_FORMATS, extract_features_to_folder, read_video_list  # noqa: E402
from maedfer.apps.inference import INPUT_ERRORS, error_message, load_inference_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="*", type=Path, help="video files or frame folders")
    parser.add_argument("--list", type=Path, default=None, help="list file or annotation file of the inputs")
    parser.add_argument("--checkpoint", type=Path, required=True, help="model checkpoint (.pth or .safetensors)")
    parser.add_argument("--model", default=None, help="registry name or model card id (needed when the checkpoint has no config)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--level", choices=FEATURE_LEVELS, default="pooled", help="feature level (default pooled)")
    parser.add_argument("--layers", type=int, nargs="+", default=None,
                        help="--level layers: block indices (default: all blocks / the HiCMAE taps)")
    parser.add_argument("--format", choices=OUTPUT_FORMATS, default="npy", help="output format (default npy)")
    parser.add_argument("--num-clips", type=int, default=1, help="evenly spaced clips per video (default 1, centred)")
    parser.add_argument("--no-face-detect", action="store_true", help="the videos are face crops already")
    parser.add_argument("--face-backend", choices=("auto", "yunet", "haar"), default="auto", help="face detector")
    parser.add_argument("--video-backend", choices=("auto", "decord", "pyav"), default="auto", help="video decoder")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="fp32",
                        help="autocast precision (auto: bf16 on CUDA, fp32 on CPU; features are saved as float32)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model's transformer blocks")
    parser.add_argument("--no-resume", action="store_true", help="recompute videos whose outputs exist")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if bool(args.videos) == (args.list is not None):
        parser.error("give either videos or --list FILE")
    if args.layers is not None and args.level != "layers":
        parser.error("--layers needs --level layers")
    if args.num_clips < 1:
        parser.error("--num-clips must be >= 1")

    try:
        if args.list is not None:
            videos, audio_paths = read_video_list(args.list)
        else:
            videos, audio_paths = list(args.videos), [None] * len(args.videos)
        loaded = load_inference_model(args.checkpoint, model_name=args.model, device=args.device)
        print(f"{len(videos)} videos, model {loaded.name} ({loaded.kind}), level {args.level} -> {args.out}")
        precision = resolve_precision(args.precision, torch.device(args.device))
        optimize_for_inference(loaded.model, precision, compile=args.compile, blocks_only=True)
        with autocast_context(torch.device(args.device), precision):
            summary = extract_features_to_folder(
                loaded, videos, args.out, format=args.format, level=args.level, layers=args.layers,
                num_clips=args.num_clips, detect_faces=not args.no_face_detect, audio_paths=audio_paths,
                detector_backend=args.face_backend, video_backend=args.video_backend, resume=not args.no_resume,
                progress=not args.no_progress,
            )
    except INPUT_ERRORS as error:
        print(f"error: {error_message(error)}", file=sys.stderr)
        return 2

    print(f"done: {summary.done}, skipped (existing): {summary.skipped_existing}, failed: {len(summary.failed)}")
    print(f"manifest: {summary.manifest}")
    if summary.failed:
        print("failed videos:")
        for video, reason in summary.failed:
            print(f"  {video}: {reason}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
