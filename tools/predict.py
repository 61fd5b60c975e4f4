#!/usr/bin/env python
"""Predict the emotion (or valence / arousal) of raw videos over time, window by window.

Examples:
    python tools/predict.py clip.mp4 --checkpoint runs/demo_finetune/checkpoint-last.pth
    python tools/predict.py videos/*.mp4 --checkpoint dfew_fold1.safetensors --model mae_dfer_base \\
        --window 16 --stride 8 --out predictions/ --format csv png
    python tools/predict.py face_clips/*.mp4 --checkpoint ckpt.pth --no-face-detect --device cpu --quiet

The model is loaded once. Each video is decoded, its main face is cropped in every frame (unless
--no-face-detect), and windows of --window source frames (default: the span the model was trained on,
num_frames x sampling_rate) every --stride frames (default: half a window) are classified; a last window is added
so the whole video is covered. Audio-visual models (HiCMAE) also read each window's soundtrack. See
``maedfer.apps.predict`` for the exact rules.

Output, per video, in --out (default ``predictions/``): ``<stem>.csv`` (one row per window: window, start_frame,
end_frame, start_s, end_s, then label, score and prob_<class> for classification, or one column per target for
regression), ``<stem>.json`` (the same plus the video-level mean) and ``<stem>.png`` (a timeline). One summary
line per video is printed: the top class and its mean probability, or the mean of each target.

A video that cannot be read, shows no face, or has no audio track for an audio-visual model is reported as
``error: <file>: <reason>`` on stderr and skipped; the exit code is then 2 (0 when every video succeeded).
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
from maedfer.preprocess.faces import FaceDetector  # noqa: E402
from maedfer.engine.backends import resolve_precision  # noqa: E402
from maedfer.data.readers import ClipReadError  # noqa: E402
from maedfer.apps.inference import INPUT_ERRORS, NoAudioError, error_message, load_inference_model  # noqa: E402
from maedfer.apps.predict import OUTPUT_FORMATS, WindowedPrediction, predict_video, save_outputs  # noqa: E402

EXPECTED_ERRORS = (*INPUT_ERRORS, ImportError)  # a missing face-detection dependency says what to install


def one_line(error: BaseException) -> str:
    """The error's message on a single line, without the file name of a ClipReadError (the caller prints it)."""
    if isinstance(error, NoAudioError):
        return " ".join(error.description.split())
    if isinstance(error, ClipReadError):
        return " ".join(error.reason.split()) or type(error).__name__
    return error_message(error)


def summary_line(prediction: WindowedPrediction) -> str:
    """``<file>: <top class> p=<mean probability>`` or ``<file>: valence +0.12, arousal -0.30``, with window count."""
    summary = prediction.mean()
    if summary.label is not None:
        result = f"{summary.label} (mean p={summary.score:.3f})"
    else:
        result = ", ".join(f"{name} {value:+.3f}" for name, value in zip(prediction.label_names, summary.values))
    return f"{prediction.path}: {result} [{len(prediction.windows)} windows, {prediction.duration_s:.2f} s]"


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="+", type=Path, metavar="VIDEO", help="video files (or frame folders)")
    parser.add_argument("--checkpoint", type=Path, required=True, help="fine-tuned checkpoint (.pth / .safetensors)")
    parser.add_argument("--model", default=None, help="registry name or model card id (models/), for checkpoints that hold no maedfer config")
    parser.add_argument("--dataset", default=None, help="dataset whose class names to use (default: the config's)")
    parser.add_argument("--window", type=int, default=None,
                        help="window length in source frames (default: num_frames x sampling_rate of the model)")
    parser.add_argument("--stride", type=int, default=None, help="step between windows in frames (default: window/2)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="precision (auto: bf16 on CUDA, fp32 on CPU); bf16/fp16 cast the weights once and run under autocast")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (slow first batch; worth it for many or long videos)")
    parser.add_argument("--no-face-detect", action="store_true",
                        help="use the frames as they are (videos that are already face crops)")
    parser.add_argument("--detector", choices=("auto", "yunet", "haar"), default="auto", help="face detector")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder (default predictions/)")
    parser.add_argument("--format", nargs="+", choices=OUTPUT_FORMATS, default=list(OUTPUT_FORMATS),
                        dest="formats", help="files to write per video (default: csv json png)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log messages, only the summaries")
    args = parser.parse_args(argv)
    for name in ("window", "stride", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    stems: dict[str, Path] = {}
    for video in args.videos:
        stem = video.name if video.is_dir() else video.stem
        if stem in stems and stems[stem] != video:
            parser.error(f"{stems[stem]} and {video} would both be written to {args.out / stem}.*")
        stems[stem] = video
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")

    device = resolve_device(args.device)
    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    try:
        loaded = load_inference_model(args.checkpoint, model_name=args.model, dataset=args.dataset, device=device)
        # bf16 / fp16: half-precision weights (cast once); --compile: compiled with frozen weights.
        optimize_for_inference(loaded.model, resolve_precision(args.precision, loaded.device), compile=args.compile)
        detector = None if args.no_face_detect or loaded.modality == "audio" else FaceDetector(backend=args.detector)
    except EXPECTED_ERRORS as error:
        print(f"error: {args.checkpoint}: {one_line(error)}", file=sys.stderr)
        return 2

    failed = 0
    for video in args.videos:
        try:
            prediction = predict_video(
                loaded, video, window=args.window, stride=args.stride, batch_size=args.batch_size,
                detect_faces=not args.no_face_detect, detector=detector, precision=args.precision,
                progress=not args.quiet,
            )
            written = save_outputs(prediction, args.out, formats=args.formats)
        except EXPECTED_ERRORS as error:
            failed += 1
            print(f"error: {video}: {one_line(error)}", file=sys.stderr)
            continue
        print(f"{summary_line(prediction)} -> {', '.join(str(path) for path in written.values())}")
    if failed:
        print(f"{failed} of {len(args.videos)} videos failed")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
