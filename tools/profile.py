#!/usr/bin/env python
"""Profile maedfer models: parameters, GMACs/GFLOPs (fused attention counted), throughput, latency, memory, MFU.

Examples:
    python tools/profile.py --model mae_dfer_base
    python tools/profile.py --model hicmae_base --batch 8 --device cuda --precision bf16 --json hicmae.json
    python tools/profile.py --compare videomae_base_160 mae_dfer_base svfap_base hicmae_base
    python tools/profile.py --model svfap_base --official-style          # eager manual attention, fp32
    python tools/profile.py --paper-configs --views 4 --json paper.json  # the four paper models

GMACs follow the papers' (and fvcore's) convention: one multiply-add = 1; GFLOPs = 2 x GMACs. Both counters
(torch FlopCounterMode and fvcore, each with fused attention registered) are run; the tool says if they disagree.
"""

from __future__ import annotations

import os
import sys

# This file is called profile.py: keep its folder off sys.path so the standard library's `profile` stays importable.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402

import torch  # noqa: E402

import maedfer  # noqa: E402
from maedfer.apps.profiling import PAPER_CONFIGS, ProfileReport, profile_model  # noqa: E402


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(reports: list[ProfileReport]) -> None:
    """One row per model."""
    views = reports[0].views if reports else 1
    header = (
        f"{'model':<30} {'params':>12} {'GMACs':>8} {'GMACs x' + str(views):>10} {'GFLOPs':>8} {'agree':>5} "
        f"{'ms/clip':>8} {'clips/s':>8} {'train c/s':>9} {'peak MB':>8} {'MFU':>6}"
    )
    print(header)
    for r in reports:
        agree = "-" if r.counters_agree is None else ("yes" if r.counters_agree else "NO")
        print(
            f"{r.model:<30} {r.params:>12,} {r.gmacs:>8.2f} {r.gmacs_all_views:>10.2f} {r.gflops:>8.2f} {agree:>5} "
            f"{_fmt(r.inference.get('ms_per_clip'), '.1f'):>8} {_fmt(r.inference.get('clips_per_s'), '.2f'):>8} "
            f"{_fmt(r.training.get('train_clips_per_s'), '.2f'):>9} "
            f"{_fmt(r.inference.get('peak_memory_mb'), '.0f'):>8} {_fmt(r.mfu_inference, '.1%'):>6}"
        )
    for r in reports:
        for note in r.notes:
            print(f"note ({r.model}): {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="registered model name (see maedfer.list_models())")
    what.add_argument("--compare", nargs="+", metavar="MODEL", help="profile several models in one run")
    what.add_argument("--paper-configs", action="store_true", help="the four paper configurations")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default: the model's)")
    parser.add_argument("--img", type=int, default=None, help="frame size (default: the model's)")
    parser.add_argument("--audio-len", type=int, default=None, help="fbank frames for HiCMAE (default 256)")
    parser.add_argument("--mode", choices=("finetune", "pretrain"), default=None)
    parser.add_argument("--views", type=int, default=1, help="test views per video (official protocol: 4)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="fp32",
                        help="autocast precision (auto: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--compile", action="store_true", help="time the model under torch.compile")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--official-style", action="store_true", help="eager manual attention in fp32")
    parser.add_argument("--no-speed", action="store_true", help="only count parameters and MACs")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step timing")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="use each model's tiny test size (smoke tests)")
    parser.add_argument("--json", default=None, help="write the reports to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.paper_configs:
        jobs = list(PAPER_CONFIGS.items())
    else:
        jobs = [(None, name) for name in ([args.model] if args.model else args.compare)]
    reports = []
    for label, name in jobs:
        overrides = maedfer.model_entry(name).tiny_overrides if args.tiny else None
        report = profile_model(
            name,
            batch=args.batch,
            frames=args.frames,
            img=args.img,
            audio_len=args.audio_len,
            mode=args.mode,
            views=args.views,
            precision=args.precision,
            device=args.device,
            official_style=args.official_style,
            measure_speed=not args.no_speed,
            train_step=not args.no_train,
            warmup=args.warmup,
            repeats=args.repeats,
            overrides=overrides,
            compile=args.compile,
        )
        report.paper_config = label
        reports.append(report)
    print(f"# {reports[0].device}; batch {args.batch}; {reports[0].precision}; attention {reports[0].attention}")
    print_table(reports)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([r.as_dict() for r in reports], handle, indent=2)
        print(f"wrote {args.json}")
    return 1 if any(r.counters_agree is False for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
