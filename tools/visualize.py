#!/usr/bin/env python
"""Draw what a model does with one video: masked-autoencoder reconstructions and attention maps.

Examples:
    python tools/visualize.py reconstruct clip.mp4 --checkpoint runs/demo_pretrain/checkpoint-last.pth --out figs
    python tools/visualize.py reconstruct clip.mp4 --checkpoint mae_dfer_pretrain.pth --model mae_dfer_pretrain_base \\
        --frame-diff --mask-ratio 0.75 --seed 3
    python tools/visualize.py attention clip.mp4 --checkpoint runs/demo_finetune/checkpoint-last.pth --layer -1

Both commands read the video (by default cropping its main face, ``--no-face-detect`` for videos that already are
face crops), take the clip in the middle of it (``num_frames`` frames every ``sampling_rate``-th frame of the
checkpoint's training config) and preprocess it as the model's test transform does.

``reconstruct`` needs a pre-training checkpoint (a masked autoencoder) and writes ``<out>/<stem>_reconstruction.png``:
rows original / masked / reconstruction, plus target and predicted frame differences for frame-difference targets
(MAE-DFER, HiCMAE). The mask is the model's training mask (part-window for MAE-DFER, tube otherwise) drawn with
``--seed``. Target settings come from the checkpoint's training config (``train.frame_diff_group_size``,
``train.normalize_target``, ``data.mask_ratio``); the flags override them, and are needed for checkpoints without a
config (official releases). HiCMAE models also read the clip's audio (the evaluation's cut of the soundtrack); a
video without an audio track is an error (exit 2): the model fed silence would reconstruct nothing meaningful.

``attention`` works with any checkpoint holding a video encoder and writes ``<out>/<stem>_attention.png``: for the
LGI-Former (MAE-DFER) the messenger-token attention over each region's tokens in block ``--layer``, for other
encoders the mean attention each token receives in that block's self-attention.

Exit codes: 0 on success, 2 on bad input (missing file, unreadable video, no face, no audio track for a HiCMAE
model, wrong kind of checkpoint).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from maedfer.apps.inference import (
    INPUT_ERRORS,
    InferenceModel,
    clip_to_input,
    error_message,
    load_inference_model,
    read_video_frames,
)
from maedfer.apps.visualize import (
    attention_maps,
    attention_overlay,
    centre_clip_audio,
    centre_clip_indices,
    default_video_mask,
    input_to_frames,
    reconstruction_figure,
    save_png,
)



def load_model(args: argparse.Namespace) -> InferenceModel:
    """The checkpoint's model; audio-only models are refused (nothing to draw on frames)."""
    loaded = load_inference_model(args.checkpoint, model_name=args.model, device=args.device)
    if loaded.modality == "audio":
        raise ValueError(f"{args.checkpoint} holds an audio-only model ({loaded.name}); there are no frames to draw")
    return loaded


def read_clip(args: argparse.Namespace, loaded: InferenceModel) -> tuple[torch.Tensor, int]:
    """The centre clip of the video as model input ``(1, 3, T, S, S)`` and the video's frame count."""
    video = read_video_frames(args.video, detect_faces=not args.no_face_detect, video_backend=args.video_backend)
    indices = centre_clip_indices(len(video), loaded.num_frames, loaded.sampling_rate)
    clip = clip_to_input(video.frames[indices], loaded)[None]
    return clip, len(video)


def run_reconstruct(args: argparse.Namespace) -> Path:
    """Draw the reconstruction figure of the ``reconstruct`` command; returns the PNG written."""
    loaded = load_model(args)
    if loaded.kind != "pretrain":
        raise ValueError(
            f"{args.checkpoint} holds a fine-tuned {loaded.name} ({loaded.task}); reconstruction needs a pre-training "
            "checkpoint (a masked autoencoder)"
        )
    cfg = loaded.config
    tubelet = int(loaded.model.encoder.patch_embed.tubelet_size)
    frame_diff = args.frame_diff if args.frame_diff is not None else (
        cfg is not None and cfg.train.frame_diff_group_size is not None
    )
    if frame_diff and cfg is not None and cfg.train.frame_diff_group_size not in (None, tubelet):
        raise ValueError(
            f"the training config's frame_diff_group_size={cfg.train.frame_diff_group_size} differs from the "
            f"tubelet size {tubelet}; such targets cannot be drawn"
        )
    normalize = args.normalize_target if args.normalize_target is not None else (
        cfg.train.normalize_target if cfg is not None else True
    )
    mask_ratio = args.mask_ratio if args.mask_ratio is not None else (cfg.data.mask_ratio if cfg is not None else 0.9)
    audio_mask_ratio = cfg.data.audio_mask_ratio if cfg is not None else 0.8
    clip, num_frames_total = read_clip(args, loaded)
    audio = None
    if loaded.needs_audio:  # HiCMAE: no soundtrack raises NoAudioError (a ClipReadError) -> exit 2
        if loaded.fbank is None:
            raise ValueError(f"{loaded.name} is {loaded.modality} but states no filter-bank settings")
        audio = centre_clip_audio(
            args.video, num_frames_total, loaded.num_frames, loaded.sampling_rate, loaded.fbank,
            modality=loaded.modality,
        )
    mask = default_video_mask(
        loaded.model, mask_ratio=mask_ratio, mask_kind=cfg.data.mask_type if cfg is not None else None, seed=args.seed
    )
    image = reconstruction_figure(
        loaded.model, clip, mask=mask, frame_diff_group_size=tubelet if frame_diff else None,
        normalize_target=normalize, max_frames=args.max_frames, seed=args.seed, audio=audio,
        audio_mask_ratio=audio_mask_ratio, diff_gain=args.diff_gain,
    )
    print(f"{loaded.name}: mask ratio {mask_ratio:g}, frame-difference target {'on' if frame_diff else 'off'}, "
          f"normalised target {'on' if normalize else 'off'}")
    return save_png(image, Path(args.out) / f"{Path(args.video).stem}_reconstruction.png")


def run_attention(args: argparse.Namespace) -> Path:
    """Draw the attention overlay of the ``attention`` command; returns the PNG written."""
    loaded = load_model(args)
    clip, _ = read_clip(args, loaded)
    maps = attention_maps(loaded.model, clip, layer=args.layer)
    if maps["kind"] == "messenger":
        print(f"{loaded.name}: messenger-token attention of block {maps['layer']} (regions {maps['region_size']})")
    else:
        print(f"{loaded.name} is not an LGI-Former: mean attention received per token in block {maps['layer']}")
    image = attention_overlay(
        input_to_frames(clip), maps["map"], maps["tubelet_size"], alpha=args.alpha, max_frames=args.max_frames
    )
    return save_png(image, Path(args.out) / f"{Path(args.video).stem}_attention.png")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with the ``reconstruct`` and ``attention`` subcommands."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def add_common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("video", help="video file (or frame folder)")
        sub.add_argument("--checkpoint", required=True,
                         help="maedfer training checkpoint, official .pth or safetensors file")
        sub.add_argument("--model", default=None, help="registry name or model card id (needed for checkpoints without a config)")
        sub.add_argument("--out", default=".", help="output folder (default: the current folder)")
        sub.add_argument("--max-frames", type=int, default=8, help="frames shown per row (default 8)")
        sub.add_argument("--no-face-detect", action="store_true", help="use the frames as they are (face crops)")
        sub.add_argument("--video-backend", choices=("auto", "decord", "pyav"), default="auto", help="video decoder")
        sub.add_argument("--device", default="cpu", help="torch device (default cpu)")

    reconstruct = commands.add_parser("reconstruct", help="masked-autoencoder reconstruction of the centre clip")
    add_common(reconstruct)
    reconstruct.add_argument("--mask-ratio", type=float, default=None,
                             help="masking ratio (default: the training config's, else 0.9)")
    reconstruct.add_argument("--seed", type=int, default=0, help="seed of the mask (default 0)")
    reconstruct.add_argument("--frame-diff", action=argparse.BooleanOptionalAction, default=None,
                             help="the model predicts frame-difference targets (default: from the training config)")
    reconstruct.add_argument("--normalize-target", action=argparse.BooleanOptionalAction, default=None,
                             help="the targets were per-patch normalised (default: from the training config, else on)")
    reconstruct.add_argument("--diff-gain", type=float, default=1.0, help="contrast of the difference rows")

    attention = commands.add_parser("attention", help="attention map of one encoder block over the centre clip")
    add_common(attention)
    attention.add_argument("--layer", type=int, default=-1, help="encoder block (default -1, the last)")
    attention.add_argument("--alpha", type=float, default=0.5, help="opacity of the colour map (default 0.5)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns the exit code (0 success, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.max_frames < 1:
        parser.error("--max-frames must be >= 1")
    run = run_reconstruct if args.command == "reconstruct" else run_attention
    try:
        path = run(args)
    except INPUT_ERRORS as error:
        print(f"error: {error_message(error)}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
