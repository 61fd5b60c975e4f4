"""Data-loading throughput of the same clips read per file vs streamed from tar shards (``maedfer make-shards``).

    python tools/benchmark_shards.py                       # generated VoxCeleb2-like mp4s, 1 and 2 workers
    python tools/benchmark_shards.py --world DIR --workers 1 2 4

Both paths decode with the same :class:`~maedfer.data.pretrain_datasets.PretrainClipDataset` (the VoxCeleb2
pre-training recipe: mp4, 16 frames at stride 4, multi-scale crop to 160, tube mask 0.9), in DataLoaders with the same
workers and batch size; a pass is one whole epoch, worker start-up included (neither keeps persistent workers). The
passes alternate between the two paths (which goes first alternates too) and the median of ``--repeats`` passes is
reported: items/s (wall clock, also per worker) and items per CPU-second of the workers (their user + system time,
collected when the DataLoader joins them), which a machine shared with other jobs disturbs far less than the wall
clock. The shards are read with their sha256 checked (the default).
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler

from ..data.annotations import AnnotationRow, read_annotations
from ..data.pretrain_datasets import MaskSpec, PretrainClipDataset, collate_pretrain
from ..data.shards import ShardClipDataset, ShardLoader, resolve_shards

__all__ = ["main", "measure"]

logger = logging.getLogger(__name__)


def _decoder(rows: Sequence[AnnotationRow], pipeline: str) -> PretrainClipDataset:
    return PretrainClipDataset(rows, num_frames=16, sampling_rate=4, input_size=160,
                               mask=MaskSpec(kind="tube", ratio=0.9, patch_size=16), pipeline=pipeline)


def _cpu_seconds() -> float:
    """User + system time of this process and its finished (joined) children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(loader: Any) -> tuple[int, float, float]:
    """Items of one pass, its wall seconds and the CPU seconds it used (all processes)."""
    start, cpu = time.perf_counter(), _cpu_seconds()
    items = 0
    for batch in loader:
        items += int(batch["video"].shape[0]) if "video" in batch else 0
    return items, time.perf_counter() - start, _cpu_seconds() - cpu


def measure(annotations: Path, index: Path, *, workers: int, batch_size: int, repeats: int,
            pipeline: str = "fast") -> dict[str, float]:
    """Median items/s of whole epochs read per file and from shards, alternating; returns both and their ratio."""
    rows = read_annotations(annotations, kind="pretrain")
    per_file = _decoder(rows, pipeline)
    file_loader = DataLoader(per_file, batch_size=batch_size, num_workers=workers, drop_last=True,
                             sampler=RandomSampler(per_file, generator=torch.Generator().manual_seed(0)),
                             collate_fn=collate_pretrain)
    shards, _ = resolve_shards(str(index))
    stream = ShardClipDataset(shards, _decoder(rows[:1], pipeline), shuffle_buffer=100)
    # one worker's stream per worker: every worker reads shards (the batches per epoch do not matter here)
    shard_loader = ShardLoader(stream, batch_size=batch_size, collate=collate_pretrain, num_workers=workers,
                               batches_per_epoch=len(stream) // batch_size)
    rates: dict[str, list[float]] = {"files": [], "shards": []}
    per_cpu: dict[str, list[float]] = {"files": [], "shards": []}
    for repeat in range(repeats):
        shard_loader.set_epoch(repeat)
        order = [("files", file_loader), ("shards", shard_loader)]
        for name, loader in order if repeat % 2 == 0 else order[::-1]:
            items, seconds, cpu = _timed(loader)
            rates[name].append(items / seconds)
            per_cpu[name].append(items / cpu)
            logger.info("pass %d %s: %d items in %.2f s, %.2f CPU-s", repeat, name, items, seconds, cpu)
    files, sharded = statistics.median(rates["files"]), statistics.median(rates["shards"])
    files_cpu, sharded_cpu = statistics.median(per_cpu["files"]), statistics.median(per_cpu["shards"])
    return {"workers": workers, "files_items_per_s": files, "shards_items_per_s": sharded,
            "files_per_worker": files / max(workers, 1), "shards_per_worker": sharded / max(workers, 1),
            "ratio": sharded / files, "files_per_cpu_s": files_cpu, "shards_per_cpu_s": sharded_cpu,
            "cpu_ratio": sharded_cpu / files_cpu}


def _prepare(world: Path, clips_per_class: int, clips_per_shard: int) -> tuple[Path, Path]:
    from ..synthetic import make_synthetic_world
    from .shards import main as make_shards

    annotations = world / "pretrain" / "train.csv"
    if not annotations.is_file():
        counts = {"train": clips_per_class, "val": 1, "test": 1}
        make_synthetic_world(world, num_identities=3, clips_per_class=counts, num_frames=80, size=224,
                             formats="mp4", preview=False)
    index = world / f"shards_{clips_per_shard}" / "train-index.json"
    if make_shards(["--annotations", str(annotations), "--out", str(index.parent), "--clips-per-shard",
                    str(clips_per_shard), "--workers", "2"]) != 0:
        raise SystemExit("make-shards failed")
    return annotations, index


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, default=Path("runs/benchmark_shards_world"),
                        help="folder for (or with) the generated clips and their shards")
    parser.add_argument("--clips-per-class", type=int, default=8, help="generated training clips per class (x 7)")
    parser.add_argument("--clips-per-shard", type=int, default=7,
                        help="clips per shard (default 7: the 56 default clips make 8 shards, so 1, 2, 4 or 8 "
                             "workers get equal streams; with unequal streams an epoch waits for the longest)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pipeline", choices=("fast", "official"), default="fast")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(1)
    annotations, index = _prepare(args.world, args.clips_per_class, args.clips_per_shard)
    results = [measure(annotations, index, workers=w, batch_size=args.batch_size, repeats=args.repeats,
                       pipeline=args.pipeline) for w in args.workers]
    print("| workers | per file: items/s (per worker) | shards: items/s (per worker) | shards / per file | "
          "per file: items per CPU-s | shards: items per CPU-s | shards / per file |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['workers']} | {r['files_items_per_s']:.1f} ({r['files_per_worker']:.1f}) | "
              f"{r['shards_items_per_s']:.1f} ({r['shards_per_worker']:.1f}) | {r['ratio']:.2f} | "
              f"{r['files_per_cpu_s']:.1f} | {r['shards_per_cpu_s']:.1f} | {r['cpu_ratio']:.2f} |")
    return 0
