"""Shared plumbing of the resumable per-clip preprocessing tools (``tools/extract_faces.py``,
``tools/extract_audio.py``): where the inputs come from, where the outputs go, and a process pool that never lets one
bad clip stop a run."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..data.annotations import ANNOTATION_KINDS, read_annotations

__all__ = [
    "add_input_arguments",
    "extract_audio_job",
    "parse_path_map",
    "read_path_list",
    "resolve_inputs",
    "run_jobs",
]

Job = TypeVar("Job")
Result = TypeVar("Result")


def add_input_arguments(parser: argparse.ArgumentParser, noun: str) -> None:
    """Add the input options (exactly one of ``--folder``, ``--list``, ``--annotations``; ``--root``, ``--kind``,
    ``--path-map``) and the run options (``--workers``, ``--overwrite``, ``--failed-list``, ``--no-progress``)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", type=Path, help=f"search this folder recursively for {noun}")
    source.add_argument("--list", type=Path, help=f"text file with one {noun[:-1]} path per line")
    source.add_argument("--annotations", type=Path, help="official annotation file; its clip paths are the inputs")
    parser.add_argument("--root", type=Path, default=None, help="folder the output layout is relative to")
    parser.add_argument("--kind", choices=ANNOTATION_KINDS, default="pretrain", help="layout of --annotations")
    parser.add_argument("--path-map", action="append", default=[], metavar="OLD=NEW",
                        help="rewrite a path prefix of --annotations (repeatable)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    parser.add_argument("--failed-list", type=Path, default=None, help="also write the failed inputs to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_path_map(items: Iterable[str]) -> dict[str, str]:
    """``["OLD=NEW", ...]`` -> ``{OLD: NEW}``.

    Raises:
        ValueError: For an item without ``=`` or with an empty OLD.
    """
    mapping = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old:
            raise ValueError(f"--path-map expects OLD=NEW, got {item!r}")
        mapping[old] = new
    return mapping


def read_path_list(list_file: Path, root: Path | None) -> list[Path]:
    """Paths of a list file: the first whitespace-separated field of each line (blank and ``#`` lines ignored);
    relative paths are joined to ``root`` when given."""
    paths = []
    with open(list_file, encoding="utf-8-sig") as handle:
        for text in handle:
            fields = text.split()
            if not fields or fields[0].startswith("#"):
                continue
            path = Path(fields[0])
            paths.append(path if path.is_absolute() or root is None else root / path)
    return paths


def resolve_inputs(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    find: Callable[[Path], list[Path]],
    *,
    default_suffix: str | None = ".mp4",
) -> tuple[list[Path], Path]:
    """The input paths (absolute, unique, in order) and the root the output layout is relative to.

    The root is ``--folder``, else ``--root``, else the deepest folder containing every input. Errors (missing
    folder or list, bad ``--path-map``, inputs outside the root) go through ``parser.error``.
    """
    if args.folder is not None:
        if not args.folder.is_dir():
            parser.error(f"--folder is not a directory: {args.folder}")
        return find(args.folder), args.folder
    if args.list is not None:
        if not args.list.is_file():
            parser.error(f"--list file not found: {args.list}")
        listed = read_path_list(args.list, args.root)
    else:
        try:
            path_map = parse_path_map(args.path_map)
        except ValueError as err:
            parser.error(str(err))
        rows = read_annotations(args.annotations, kind=args.kind, path_map=path_map, default_suffix=default_suffix)
        listed = [Path(row.path) for row in rows]
    paths = list(dict.fromkeys(p if p.is_absolute() else Path.cwd() / p for p in listed))
    if args.root is not None:
        root = args.root if args.root.is_absolute() else Path.cwd() / args.root
    elif paths:
        root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    else:
        root = Path.cwd()
    outside = [p for p in paths if not p.is_relative_to(root)]
    if outside:
        parser.error(f"{len(outside)} inputs are not below the root {root}, e.g. {outside[0]}; pass --root")
    return paths, root


def run_jobs(
    worker: Callable[[Job], Result],
    jobs: Sequence[Job],
    *,
    workers: int = 1,
    unit: str = "clip",
    progress: bool = True,
) -> list[Result]:
    """Run ``worker(job)`` for every job, in this process or in ``workers`` spawned processes, with a progress bar.

    ``worker`` must be a picklable top-level function that reports failures in its result instead of raising (so
    one bad input never stops the run). Results come back in job order.
    """
    from tqdm import tqdm

    results: list[Any] = []
    bar = tqdm(total=len(jobs), unit=unit, disable=not progress, file=sys.stderr)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(worker(job))
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")  # FFmpeg / OpenCV / torch threads make fork unsafe
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for result in pool.map(worker, jobs, chunksize=1):
                results.append(result)
                bar.update()
    bar.close()
    return results


def extract_audio_job(job: tuple[Path, Path, int]) -> tuple[Path, str | None]:
    """``(video, wav, sample_rate)`` -> ``(video, None)`` or ``(video, error message)``; never raises (a worker of
    :func:`run_jobs` for ``tools/extract_audio.py``)."""
    from ..data.readers import extract_audio_file

    video, wav, sample_rate = job
    try:
        extract_audio_file(video, wav, sample_rate)
    except Exception as exc:  # one failing video must not stop the run
        return video, f"{type(exc).__name__}: {exc}"
    return video, None
