"""``maedfer make-shards``: write a clip collection into tar shards (WebDataset layout) with a verified index.

The collection is an annotation file (official layouts), the training split of an experiment config, or a folder of
videos / frame folders (unlabelled). Clip ``i`` of the collection becomes the members ``<i:09d>.json`` (index,
original path, label), ``<i:09d>.video.<ext>`` (the file's bytes as they are) or ``<i:09d>.frame.<n:06d>.<ext>``
(a frame folder's images in the readers' order) and, with audio, ``<i:09d>.audio.<ext>``. Shards hold consecutive
clips (``--clips-per-shard``) and are written in parallel processes, each atomically; ``<name>-index.json`` is
rewritten (atomically) after every finished shard. Running the command again resumes: the shards already listed
in the index whose size and sha256 still match are kept, the rest are written. The format is described in
``maedfer/data/shards.py``.

Usage::

    maedfer make-shards --annotations vox2/train.csv --kind pretrain --out /data/vox2_shards --workers 16
    maedfer make-shards --config pretrain/configs/hicmae_voxceleb2.yaml --out /data/vox2_shards --with-audio
    maedfer make-shards --folder clips/ --out shards/
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.annotations import ANNOTATION_KINDS, AnnotationRow, read_annotations
from ..data.readers import IMAGE_SUFFIXES, list_frames
from ..utils import atomic_write, atomic_write_text, sha256_file

__all__ = ["ShardJob", "build_parser", "collection_rows", "fingerprint", "main", "write_shard", "write_shards"]

logger = logging.getLogger(__name__)

#: Suffixes treated as video files in ``--folder`` mode.
VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".flv", ".m4v", ".mpg"})
INDEX_FORMAT = "maedfer-shards"
INDEX_VERSION = 1


@dataclass(frozen=True)
class ShardJob:
    """What one worker writes: shard ``number`` with the clips ``rows`` (collection indices ``start``...)."""

    number: int
    start: int
    rows: tuple[AnnotationRow, ...]
    path: str
    frame_ext: str


def _label_json(label: Any) -> Any:
    return list(label) if isinstance(label, tuple) else label


def _clip_members(row: AnnotationRow, frame_ext: str) -> dict[str, bytes]:
    """The members of one clip besides its JSON (raises FileNotFoundError / ValueError for an unusable clip)."""
    path = Path(row.path)
    members: dict[str, bytes] = {}
    if path.is_dir():
        frames = list_frames(path, frame_ext)
        if not frames:
            raise ValueError(f"{path}: no '*.{frame_ext}' frame")
        for position, frame in enumerate(frames):
            members[f"frame.{position:06d}.{frame_ext}"] = frame.read_bytes()
    elif path.is_file():
        suffix = path.suffix.lower().lstrip(".") or "bin"
        if f".{suffix}" in IMAGE_SUFFIXES:
            members[f"frame.000000.{suffix}"] = path.read_bytes()
        else:
            members[f"video.{suffix}"] = path.read_bytes()
    else:
        raise FileNotFoundError(f"clip not found: {path}")
    if row.audio_path:
        audio = Path(row.audio_path)
        if not audio.is_file():
            raise FileNotFoundError(f"audio file not found: {audio}")
        members[f"audio.{audio.suffix.lower().lstrip('.') or 'bin'}"] = audio.read_bytes()
    return members


def write_shard(job: ShardJob) -> dict[str, Any]:
    """Write one shard atomically; returns its index entry (``name``, range, ``count``, ``bytes``, ``sha256``,
    ``missing``). Clips whose files are missing or empty are left out and listed in ``missing``."""
    import webdataset

    missing: list[int] = []
    samples = []
    for offset, row in enumerate(job.rows):
        index = job.start + offset
        try:
            members = _clip_members(row, job.frame_ext)
        except (OSError, ValueError) as exc:
            logger.warning("clip %d (%s) left out: %s", index, row.path, exc)
            missing.append(index)
            continue
        meta = {"index": index, "path": row.path, "label": _label_json(row.label),
                "audio_path": row.audio_path, "line": row.line}
        samples.append({"__key__": f"{index:09d}", "json": json.dumps(meta).encode("utf-8"), **members})

    def write(handle: Any, _temporary: Path) -> None:
        with webdataset.TarWriter(handle, encoder=False, mtime=0.0) as writer:
            for sample in samples:
                writer.write(sample)

    path = atomic_write(job.path, write)
    return {"name": path.name, "start": job.start, "stop": job.start + len(job.rows), "count": len(samples),
            "bytes": path.stat().st_size, "sha256": sha256_file(path), "missing": missing}


def fingerprint(rows: Sequence[AnnotationRow], clips_per_shard: int, frame_ext: str) -> str:
    """sha256 of what decides the shard contents (paths, labels, audio paths, shard size, frame extension)."""
    digest = hashlib.sha256(f"{clips_per_shard}|{frame_ext}".encode())
    for row in rows:
        digest.update(json.dumps([row.path, _label_json(row.label), row.audio_path]).encode("utf-8"))
    return digest.hexdigest()


def _write_index(path: Path, meta: Mapping[str, Any], entries: Mapping[int, dict[str, Any]], complete: bool) -> None:
    shards = [entries[n] for n in sorted(entries)]
    index = {**meta, "complete": complete, "num_shards": len(shards), "total": sum(s["count"] for s in shards),
             "shards": shards}
    atomic_write_text(path, json.dumps(index, indent=1) + "\n")


def _kept_shards(index_path: Path, out: Path, expected: str, overwrite: bool) -> dict[int, dict[str, Any]]:
    """Shards of an earlier (possibly interrupted) run that are still intact."""
    if overwrite or not index_path.is_file():
        return {}
    try:
        old = json.loads(index_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{index_path}: unreadable shard index ({exc}); remove it or pass --overwrite") from None
    if old.get("fingerprint") != expected:
        raise ValueError(
            f"{index_path} belongs to another collection or shard size (fingerprint differs); pass --overwrite "
            f"to replace it, or write to another --out / --name"
        )
    kept = {}
    for entry in old.get("shards", []):
        shard = out / entry["name"]
        if shard.is_file() and shard.stat().st_size == entry.get("bytes") and sha256_file(shard) == entry.get("sha256"):
            kept[int(entry["number"])] = entry
        else:
            logger.warning("%s is missing or differs from the index; writing it again", shard)
    return kept


def write_shards(rows: Sequence[AnnotationRow], out: str | os.PathLike[str], *, name: str = "train",
                 clips_per_shard: int = 256, workers: int = 1, frame_ext: str = "jpg", overwrite: bool = False,
                 source: str = "") -> Path:
    """Write ``rows`` into shards ``out/<name>-NNNNNN.tar`` and the index ``out/<name>-index.json``.

    Returns:
        The index path.

    Raises:
        ValueError: No clips, a bad shard size, or an index of another collection in the way (without
            ``overwrite``).
    """
    if not rows:
        raise ValueError("the collection is empty")
    if clips_per_shard < 1:
        raise ValueError(f"--clips-per-shard must be >= 1, got {clips_per_shard}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    index_path = out_dir / f"{name}-index.json"
    frame_ext = frame_ext.lstrip(".")
    key = fingerprint(rows, clips_per_shard, frame_ext)
    meta = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "fingerprint": key, "source": source,
            "clips_per_shard": clips_per_shard, "frame_ext": frame_ext, "rows": len(rows),
            "has_audio": any(row.audio_path for row in rows),
            "labels": "none" if all(row.label is None for row in rows) else "yes"}
    entries = _kept_shards(index_path, out_dir, key, overwrite)
    jobs = []
    for number, start in enumerate(range(0, len(rows), clips_per_shard)):
        if number in entries:
            continue
        jobs.append(ShardJob(number, start, tuple(rows[start:start + clips_per_shard]),
                             str(out_dir / f"{name}-{number:06d}.tar"), frame_ext))
    total_shards = -(-len(rows) // clips_per_shard)
    logger.info("%d clips -> %d shards in %s (%d kept from an earlier run, %d to write, %d workers)", len(rows),
                total_shards, out_dir, len(entries), len(jobs), workers)

    def finished(job: ShardJob, entry: dict[str, Any]) -> None:
        entries[job.number] = {"number": job.number, **entry}
        _write_index(index_path, meta, entries, complete=False)
        logger.info("shard %d/%d written: %s (%d clips, %d left out)", len(entries), total_shards, entry["name"],
                    entry["count"], len(entry["missing"]))

    if workers <= 1:
        for job in jobs:
            finished(job, write_shard(job))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(write_shard, job): job for job in jobs}
            for future in as_completed(futures):
                finished(futures[future], future.result())
    missing = sum(len(e["missing"]) for e in entries.values())
    if missing == len(rows):
        raise ValueError(f"none of the {len(rows)} clips could be read (see the warnings: missing video or audio "
                         f"files?); {index_path} stays incomplete")
    _write_index(index_path, meta, entries, complete=True)
    logger.info("index %s: %d clips in %d shards (%d left out)", index_path, len(rows) - missing, len(entries),
                missing)
    return index_path


# --------------------------------------------------------------------------------------------- collections


def collection_rows(args: argparse.Namespace) -> tuple[list[AnnotationRow], str]:
    """The clips named on the command line, and a description of where they came from."""
    replacements = [tuple(pair) for pair in (args.audio_replace or [])]
    if args.folder:
        rows = _folder_rows(Path(args.folder), args.frame_ext)
        source = f"folder {args.folder}"
    elif args.annotations:
        path_map = dict(item.split("=", 1) for item in (args.path_map or []))
        rows = read_annotations(args.annotations, kind=args.kind, path_map=path_map or None)
        source = f"annotations {args.annotations} ({args.kind})"
    else:
        rows, source, config_replacements = _config_rows(args)
        if args.with_audio and not replacements:
            replacements = config_replacements
    if args.with_audio or replacements:
        rows = [_with_audio(row, replacements) for row in rows]
    return rows, source


def _with_audio(row: AnnotationRow, replacements: Sequence[tuple[str, str]]) -> AnnotationRow:
    if row.audio_path:
        return row
    path = row.path
    for old, new in replacements:
        path = path.replace(old, new)
    if path == row.path:
        where = f"line {row.line}: " if row.line else ""
        raise ValueError(f"{where}cannot derive an audio path from {row.path!r} with --audio-replace {replacements}")
    return AnnotationRow(path=row.path, label=row.label, audio_path=path, line=row.line)


def _folder_rows(folder: Path, frame_ext: str) -> list[AnnotationRow]:
    if not folder.is_dir():
        raise FileNotFoundError(f"--folder {folder} is not a folder")
    rows = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            rows.append(AnnotationRow(path=str(entry), label=None))
        elif entry.is_dir() and list_frames(entry, frame_ext):
            rows.append(AnnotationRow(path=str(entry), label=None))
    if not rows:
        raise ValueError(f"{folder} holds no video file ({', '.join(sorted(VIDEO_SUFFIXES))}) and no frame folder")
    return rows


def _config_rows(args: argparse.Namespace) -> tuple[list[AnnotationRow], str, list[tuple[str, str]]]:
    from ..config import load_config

    cfg = load_config(args.config, list(args.overrides))
    file = getattr(cfg.data, f"{args.split}_file")
    if not file:
        raise ValueError(f"{args.config}: data.{args.split}_file is not set (give it as an override, e.g. "
                         f"data.{args.split}_file=/data/list.csv)")
    task = cfg.train.task
    kind = args.kind if args.kind_given else ("pretrain" if task == "pretrain" else
                                               "regression" if task == "regression" else "classification")
    rows = read_annotations(file, kind=kind, path_map=cfg.data.path_map or None)
    replacements = [tuple(p) for p in (cfg.data.audio_path_replacements or
                                       [["video/file~/dev/mp4", "audio/file~/dev/aac"], [".mp4", ".wav"]])]
    return rows, f"config {args.config} data.{args.split}_file {file} ({kind})", replacements


# ---------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maedfer make-shards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--annotations", help="annotation file in an official layout")
    source.add_argument("--config", help="experiment YAML: its data.<split>_file (dotted overrides may follow)")
    source.add_argument("--folder", help="folder of video files and frame folders (unlabelled)")
    parser.add_argument("--kind", choices=ANNOTATION_KINDS, default=None,
                        help="layout of --annotations (default pretrain); with --config default from train.task")
    parser.add_argument("--split", choices=("train", "val", "test"), default="train", help="split of --config")
    parser.add_argument("--path-map", action="append", metavar="OLD=NEW", help="path prefix rewrite (repeatable)")
    parser.add_argument("--with-audio", action="store_true",
                        help="pack each clip's audio (rows without an audio path derive it with --audio-replace; "
                             "with --config: data.audio_path_replacements or the VoxCeleb2 layout)")
    parser.add_argument("--audio-replace", nargs=2, action="append", metavar=("OLD", "NEW"),
                        help="substring replacement from a video path to its audio path (repeatable)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--name", default="train", help="shard name prefix (default: train)")
    parser.add_argument("--clips-per-shard", type=int, default=256, help="clips per shard (default: 256)")
    parser.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)),
                        help="writer processes (default: min(8, CPUs))")
    parser.add_argument("--frame-ext", default="jpg", help="frame extension of frame folders (default: jpg)")
    parser.add_argument("--overwrite", action="store_true", help="replace an index of another collection")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides (with --config)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``maedfer make-shards``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    if args.overrides and not args.config:
        parser.error(f"overrides {args.overrides} need --config")
    args.kind_given = args.kind is not None
    args.kind = args.kind or "pretrain"
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if importlib.util.find_spec("webdataset") is None:
        print("make-shards: error: the webdataset package is missing: pip install 'maedfer[shards]'", file=sys.stderr)
        return 2
    try:
        rows, source = collection_rows(args)
        index = write_shards(rows, args.out, name=args.name, clips_per_shard=args.clips_per_shard,
                             workers=args.workers, frame_ext=args.frame_ext, overwrite=args.overwrite, source=source)
    except (OSError, ValueError) as exc:
        print(f"make-shards: error: {exc}", file=sys.stderr)
        return 2
    print(index)
    return 0
