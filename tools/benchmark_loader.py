#!/usr/bin/env python
"""Data-loader throughput: clips per second per worker for frame folders, decord and PyAV.

    python tools/benchmark_loader.py                 # generates a small 160-px synthetic world under /tmp first
    python tools/benchmark_loader.py --world DIR --items 40

Each item is what fine-tuning training reads: 16 frames at stride 4 (linspace window), decoded, resized to 160x160,
normalised (no augmentation), measured in one process (= one DataLoader worker) with one torch thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from maedfer.data.annotations import read_annotations
from maedfer.data.synthetic import make_synthetic_world
from maedfer.data.video_datasets import VideoClipDataset


def measure(dataset: VideoClipDataset, items: int, repeats: int) -> float:
    """Median clips/s over ``repeats`` passes of ``items`` items."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(items):
            dataset[index % len(dataset)]
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, default=None, help="an existing synthetic world (>= 64 frames, 160 px)")
    parser.add_argument("--items", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    world = args.world
    if world is None:
        world = Path(tempfile.mkdtemp(prefix="maedfer_loader_")) / "world"
        print(f"generating a 160-px, 80-frame synthetic world in {world} ...")
        make_synthetic_world(world, num_identities=3, clips_per_class=2, num_frames=80, size=160, preview=False)
    rows = read_annotations(world / "classification" / "train.csv", kind="classification")
    videos = [type(r)(path=str(world / "videos" / f"{Path(r.path).name}.mp4"), label=r.label) for r in rows]
    common = dict(num_frames=16, sampling_rate=4, input_size=160, short_side_size=160)
    variants = {
        "frame folders (JPEG, PIL)": VideoClipDataset(rows, "validation", **common),
        "mp4 via decord": VideoClipDataset(videos, "validation", video_backend="decord", **common),
        "mp4 via PyAV": VideoClipDataset(videos, "validation", video_backend="pyav", **common),
    }
    print(f"# 16 frames at stride 4 -> 160x160, {args.items} items x {args.repeats}, 1 process, 1 torch thread")
    print(f"{'reader':<28} {'clips/s per worker':>18} {'ms/clip':>8}")
    for name, dataset in variants.items():
        dataset[0]  # warm-up (imports, first open)
        rate = measure(dataset, args.items, args.repeats)
        print(f"{name:<28} {rate:>18.1f} {1000 / rate:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
