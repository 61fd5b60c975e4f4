"""Streaming training data from tar shards in the WebDataset layout (written by ``maedfer make-shards``).

A shard holds consecutive clips of a collection; each clip is a group of tar members ``<key>.json`` (its index in the
collection, original path, label), ``<key>.video.<ext>`` (the video file's bytes as they were) or
``<key>.frame.<position>.<ext>`` (the frames of a frame folder), and optionally ``<key>.audio.<ext>``. An index JSON
next to the shards lists every shard with its clip range, clip count, size and sha256.

:class:`ShardClipDataset` streams the shards: every epoch the shards are shuffled with ``(seed, epoch)`` and dealt
to *streams*, one per (rank, DataLoader worker), balancing clip counts over ranks, then workers; a stream reads its
shards one after the other, shuffles the clips through a buffer seeded with ``(seed, epoch, stream)`` and decodes them with the per-file
datasets' own code (:class:`~maedfer.data.pretrain_datasets.PretrainClipDataset`,
:class:`~maedfer.data.video_datasets.VideoClipDataset`), with the same per-clip draws ``(seed, epoch, clip index)``.
So every clip is read exactly once per epoch across all ranks and workers, and the order is a pure function of
``(seed, epoch, world size, workers, batch size)``.

:class:`ShardLoader` wraps the DataLoader. The DataLoader hands out the workers' batches round-robin (skipping
exhausted workers), so the number of batches consumed in an epoch determines how many clips every stream has
consumed; a resumed run skips exactly those (without decoding them) and rotates the workers so that the batches
come in the original order. The training checkpoint stores the layout, which must match on resume.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .allocator import worker_init_for
from .annotations import AnnotationRow
from .readers import ClipReadError
from .video_datasets import BAD_SAMPLE_ERRORS, SkippedSample

__all__ = [
    "INDEX_FORMAT",
    "ShardClipDataset",
    "ShardInfo",
    "ShardLoader",
    "assign_shards",
    "batches_per_stream",
    "consumed_per_stream",
    "import_webdataset",
    "open_url",
    "read_shard_index",
    "resolve_shards",
    "shard_steps_per_epoch",
    "shuffle_records",
]

logger = logging.getLogger(__name__)

#: ``format`` value of the index files written by ``maedfer make-shards``.
INDEX_FORMAT = "maedfer-shards"
#: Bytes read at a time when a shard is copied and hashed.
_CHUNK = 1 << 20


def import_webdataset() -> Any:
    """The ``webdataset`` module, or an ImportError naming the pip extra."""
    try:
        import webdataset
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "sharded data needs the webdataset package: pip install 'maedfer[shards]' (or pip install webdataset)"
        ) from exc
    return webdataset


def _is_url(location: str) -> bool:
    scheme = urlparse(location).scheme
    return len(scheme) > 1 and scheme != "file"


def open_url(location: str) -> Any:
    """Open a local path, ``file:`` URL or remote URL (http(s), ``pipe:``...; WebDataset's ``gopen``) for reading."""
    if not _is_url(location):
        path = location[len("file://"):] if location.startswith("file://") else location
        return open(path, "rb")
    return import_webdataset().gopen(location, "rb")


# ---------------------------------------------------------------------------------------------- the index


@dataclass(frozen=True)
class ShardInfo:
    """One shard of an index.

    Attributes:
        url: Where to read it (path or URL).
        start: First collection index of its clip range.
        stop: One past the last.
        count: Clips it holds (``stop - start - len(missing)``).
        sha256: Hex digest of the tar file, or ``None`` when unknown.
        bytes: Size of the tar file.
        missing: Collection indices in the range that the writer could not read (not in the shard).
    """

    url: str
    start: int
    stop: int
    count: int
    sha256: str | None = None
    bytes: int | None = None
    missing: tuple[int, ...] = ()

    def expected_indices(self) -> list[int]:
        """The collection indices of the clips in the shard, in order."""
        missing = set(self.missing)
        return [i for i in range(self.start, self.stop) if i not in missing]


def read_shard_index(location: str) -> dict[str, Any]:
    """Read and check an index JSON (path or URL).

    Raises:
        ValueError: Not a complete maedfer shard index (the message names the file).
    """
    with contextlib.closing(open_url(location)) as handle:
        raw = handle.read()
    try:
        index = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{location}: not a JSON shard index ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or not isinstance(index.get("shards"), list):
        raise ValueError(f"{location}: not a shard index written by maedfer make-shards (format {INDEX_FORMAT!r})")
    if not index.get("complete", False):
        raise ValueError(f"{location}: the index is incomplete (make-shards was interrupted); run it again to finish")
    return index


def _shards_of(index: Mapping[str, Any], location: str) -> list[ShardInfo]:
    base = location if _is_url(location) else str(Path(location).resolve())
    shards = []
    for position, entry in enumerate(index["shards"]):
        try:
            name = str(entry["name"])
            url = urljoin(base, name) if _is_url(base) else str(Path(base).parent / name)
            shards.append(ShardInfo(
                url=url, start=int(entry["start"]), stop=int(entry["stop"]), count=int(entry["count"]),
                sha256=entry.get("sha256"), bytes=entry.get("bytes"),
                missing=tuple(int(i) for i in entry.get("missing", ())),
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{location}: shard entry {position} is malformed ({exc!r})") from None
    return shards


def resolve_shards(spec: str | Sequence[str]) -> tuple[list[ShardInfo], dict[str, Any]]:
    """The shards named by ``data.shards``: index files (``*.json``, paths or URLs) and/or shard patterns.

    A pattern (brace expansion, e.g. ``/data/vox2/train-{000000..000099}.tar``) selects shards of the index next to
    them (``train-index.json`` in the same folder or URL path); this picks a subset of a collection.

    Returns:
        ``(shards, first index)``; the shards ordered by clip range, each once.

    Raises:
        ValueError: Nothing named, a shard missing from its index, or overlapping clip ranges.
    """
    entries = [spec] if isinstance(spec, str) else list(spec)
    if not entries:
        raise ValueError("data.shards is empty: name a shard index (.json) or shard patterns")
    selected: dict[str, ShardInfo] = {}
    first_index: dict[str, Any] | None = None
    for entry in entries:
        entry = str(entry)
        if entry.endswith(".json"):
            index = read_shard_index(entry)
            first_index = first_index or index
            for shard in _shards_of(index, entry):
                selected[shard.url] = shard
            continue
        import braceexpand

        names = list(braceexpand.braceexpand(entry))
        index_location = _index_next_to(names[0])
        index = read_shard_index(index_location)
        first_index = first_index or index
        by_url = {shard.url: shard for shard in _shards_of(index, index_location)}
        for name in names:
            key = name if _is_url(name) else str(Path(name).resolve())
            if key not in by_url:
                raise ValueError(f"shard {name} is not listed in {index_location}")
            selected[key] = by_url[key]
    shards = sorted(selected.values(), key=lambda s: s.start)
    for before, after in zip(shards, shards[1:]):
        if after.start < before.stop:
            raise ValueError(f"shards {before.url} and {after.url} overlap (clips {after.start}..{before.stop - 1})")
    assert first_index is not None
    return shards, first_index


def _index_next_to(shard: str) -> str:
    """The index of a shard named ``<name>-NNNNNN.tar``: ``<name>-index.json`` in the same folder."""
    base = shard.rsplit("/", 1)[-1]
    match = re.fullmatch(r"(.+)-\d+\.tar", base)
    if match is None:
        raise ValueError(f"cannot find the index of {shard}: shard names look like <name>-NNNNNN.tar (make-shards); "
                         f"name the index (.json) in data.shards instead")
    name = f"{match.group(1)}-index.json"
    return urljoin(shard, name) if _is_url(shard) else str(Path(shard).resolve().parent / name)


# ---------------------------------------------------------------------------------------- the epoch plan


def assign_shards(counts: Sequence[int], epoch: int, seed: int, world_size: int, num_workers: int = 1,
                  shuffle: bool = True) -> list[list[int]]:
    """Deal the shards of one epoch to the ``world_size x workers`` streams (stream ``rank * workers + worker``).

    The shard order is a permutation drawn from ``(seed, epoch)`` (or the index order without ``shuffle``). Each
    shard in turn goes to the rank with the fewest clips so far (ties: the rank that comes first in a rotation by the
    epoch, so that the ranks left a shard short change from epoch to epoch), and within it to the worker with the
    fewest clips (ties: the lowest worker). With equal shards the ranks thus differ by at most one shard, and so do the
    workers of a rank.

    Args:
        counts: Clips per shard.
        epoch: Epoch number.
        seed: Run seed.
        world_size: Number of ranks.
        num_workers: DataLoader workers per rank (0 counts as 1: the main process reads).
        shuffle: Shuffle the shard order.

    Returns:
        For every stream, its shard numbers in reading order.
    """
    workers = max(num_workers, 1)
    order = (np.random.default_rng((seed, epoch, 0x5348)).permutation(len(counts)) if shuffle
             else np.arange(len(counts)))
    streams: list[list[int]] = [[] for _ in range(world_size * workers)]
    rank_loads = [0] * world_size
    stream_loads = [0] * (world_size * workers)
    for shard in order.tolist():
        rank = min(range(world_size), key=lambda r: (rank_loads[r], (r - epoch) % world_size))
        stream = min(range(rank * workers, (rank + 1) * workers), key=lambda s: (stream_loads[s], s))
        streams[stream].append(shard)
        rank_loads[rank] += int(counts[shard])
        stream_loads[stream] += int(counts[shard])
    return streams


def batches_per_stream(counts: Sequence[int], plan: Sequence[Sequence[int]], batch_size: int) -> list[int]:
    """Full batches every stream yields (each worker batches its own stream and drops its last partial batch)."""
    return [sum(int(counts[s]) for s in shards) // batch_size for shards in plan]


def shard_steps_per_epoch(counts: Sequence[int], *, world_size: int, num_workers: int, batch_size: int, seed: int,
                          epochs: int, shuffle: bool = True) -> int:
    """Batches every rank can take in every epoch: the minimum over ranks and epochs (ranks stay in lockstep).

    Raises:
        ValueError: A rank would get no full batch (too few or too small shards for the streams).
    """
    workers = max(num_workers, 1)
    best: int | None = None
    for epoch in range(max(epochs, 1)):
        per_stream = batches_per_stream(counts, assign_shards(counts, epoch, seed, world_size, workers, shuffle),
                                        batch_size)
        for rank in range(world_size):
            batches = sum(per_stream[rank * workers:(rank + 1) * workers])
            best = batches if best is None else min(best, batches)
    if not best:
        raise ValueError(
            f"{len(counts)} shards of {sum(counts)} clips give a rank no full batch of {batch_size} with "
            f"{world_size} rank(s) x {workers} worker stream(s): write more, smaller shards (make-shards "
            f"--clips-per-shard) or use fewer data.num_workers"
        )
    return best


def consumed_per_stream(batches: Sequence[int], batches_done: int) -> tuple[list[int], int]:
    """Batches taken from each stream after ``batches_done`` batches of an epoch, and the stream that comes next
    (the first stream in cyclic order that still has a batch; 0-based within the rank).

    The DataLoader takes the workers' batches round-robin, skipping a worker once it is exhausted.

    Raises:
        ValueError: ``batches_done`` exceeds the batches of all streams.
    """
    consumed = [0] * len(batches)
    position = 0
    done = 0
    while done < batches_done:
        if all(c >= b for c, b in zip(consumed, batches)):
            raise ValueError(f"{batches_done} batches consumed, but the streams hold only {sum(batches)}")
        if consumed[position] < batches[position]:
            consumed[position] += 1
            done += 1
        position = (position + 1) % len(batches)
    if any(c < b for c, b in zip(consumed, batches)):
        while consumed[position] >= batches[position]:  # the loader skips exhausted workers
            position = (position + 1) % len(batches)
    return consumed, position


# ------------------------------------------------------------------------------------------------ reading


def shuffle_records(records: Iterator[Any], buffer_size: int, rng: np.random.Generator) -> Iterator[Any]:
    """Shuffle a stream through a buffer: fill ``buffer_size`` records, then emit a random one per new record.

    ``buffer_size <= 1`` keeps the order.
    """
    if buffer_size <= 1:
        yield from records
        return
    buffer: list[Any] = []
    for record in records:
        if len(buffer) < buffer_size:
            buffer.append(record)
            continue
        slot = int(rng.integers(0, buffer_size))
        yield buffer[slot]
        buffer[slot] = record
    for slot in rng.permutation(len(buffer)).tolist():
        yield buffer[slot]


def _scratch_root() -> str:
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return shm
    return tempfile.gettempdir()


def _label_of(value: Any) -> int | float | tuple[float, ...] | None:
    if isinstance(value, list):
        return tuple(float(v) for v in value)
    return value


def materialize_clip(record: Mapping[str, Any], folder: Path) -> AnnotationRow:
    """Write the members of one clip record into ``folder`` so that the per-file readers can open them.

    Returns:
        The row: ``path`` is ``folder/video.<ext>`` or the frame folder ``folder/frames``; ``audio_path`` is
        ``folder/audio.<ext>`` when the clip has audio; ``label`` from the clip's JSON.

    Raises:
        ValueError: No video member, or a malformed JSON member.
    """
    meta = json.loads(record["json"].decode("utf-8")) if "json" in record else {}
    if not isinstance(meta, dict):
        raise ValueError("the json member is not an object")
    folder.mkdir(parents=True, exist_ok=True)
    video = audio = None
    frames = folder / "frames"
    for field, data in record.items():
        if field.startswith("__") or field == "json":
            continue
        if field.startswith("video."):
            video = folder / field
            video.write_bytes(data)
        elif field.startswith("audio."):
            audio = folder / field
            audio.write_bytes(data)
        elif field.startswith("frame."):
            frames.mkdir(exist_ok=True)
            (frames / field[len("frame."):]).write_bytes(data)
    if video is None and not frames.is_dir():
        raise ValueError(f"no video or frame member (members: {sorted(k for k in record if not k.startswith('__'))})")
    return AnnotationRow(path=str(video if video is not None else frames), label=_label_of(meta.get("label")),
                         audio_path=str(audio) if audio is not None else None)


class ShardClipDataset(IterableDataset):
    """Clips streamed from tar shards and decoded by a per-file dataset (see the module docstring).

    Items are those of ``decoder`` (``"index"`` is the clip's collection index) or
    :class:`~maedfer.data.video_datasets.SkippedSample` records for clips that cannot be read (a broken member, a
    truncated or unreachable shard, a hash mismatch); they keep their place in the stream, so positions stay exact.

    Args:
        shards: The shards (:func:`resolve_shards`).
        decoder: A :class:`PretrainClipDataset` or a training :class:`VideoClipDataset`; its ``rows`` are replaced
            by one row per decoded clip (inside the worker's copy).
        rank: This process's rank.
        world_size: Number of processes.
        seed: Run seed (shard order, shuffle buffer and per-clip draws).
        shuffle_buffer: Clips held in each stream's shuffle buffer (1: no shuffling within the stream).
        shuffle_shards: Shuffle the shard order every epoch.
        verify: Check every shard's sha256 before its clips are used (the shard is copied to a local spool file).
    """

    def __init__(self, shards: Sequence[ShardInfo], decoder: Any, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle_buffer: int = 1000, shuffle_shards: bool = True, verify: bool = True) -> None:
        super().__init__()
        if not shards:
            raise ValueError("no shards to read")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        import_webdataset()
        self.shards = list(shards)
        self.decoder = decoder
        self.rank = rank
        self.world_size = world_size
        self.seed = int(seed)
        self.shuffle_buffer = int(shuffle_buffer)
        self.shuffle_shards = bool(shuffle_shards)
        self.verify = bool(verify)
        self.epoch = 0
        #: Clips of each of this rank's streams to pass over without decoding (set by :class:`ShardLoader`).
        self.start_positions: dict[int, int] = {}
        #: Worker ``w`` reads stream ``(w + stream_offset) % workers`` of this rank (set by :class:`ShardLoader`).
        self.stream_offset = 0

    @property
    def counts(self) -> list[int]:
        """Clips per shard."""
        return [shard.count for shard in self.shards]

    def __len__(self) -> int:
        """Clips in the whole collection (all ranks)."""
        return sum(self.counts)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (shard order, shuffle and per-clip draws)."""
        self.epoch = int(epoch)

    def stream_of_worker(self, worker: int, num_workers: int) -> int:
        """Global stream number read by DataLoader worker ``worker`` of this rank."""
        workers = max(num_workers, 1)
        return self.rank * workers + (worker + self.stream_offset) % workers

    def stream_shards(self, stream: int, num_workers: int) -> list[ShardInfo]:
        """The shards of global stream ``stream`` in this epoch, in reading order."""
        plan = assign_shards(self.counts, self.epoch, self.seed, self.world_size, num_workers, self.shuffle_shards)
        return [self.shards[i] for i in plan[stream]]

    def __iter__(self) -> Iterator[dict[str, Any] | SkippedSample]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        stream = self.stream_of_worker(worker, num_workers)
        skip = self.start_positions.get(stream, 0)
        rng = np.random.default_rng((self.seed, self.epoch, stream, 0x5342))
        records = shuffle_records(self._records(self.stream_shards(stream, num_workers)), self.shuffle_buffer, rng)
        scratch = Path(tempfile.mkdtemp(prefix=f"maedfer-shards-{os.getpid()}-", dir=_scratch_root()))
        try:
            for position, record in enumerate(records):
                if position < skip:
                    continue
                yield self._decode(record, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # -------------------------------------------------------------------------------------------- internals
    def _records(self, shards: Sequence[ShardInfo]) -> Iterator[dict[str, Any]]:
        """Raw clip records of the shards in order: exactly ``shard.count`` per shard (missing ones as markers)."""
        for shard in shards:
            expected = shard.expected_indices()
            wanted = set(expected)
            seen: set[int] = set()
            failure = None
            try:
                for record in self._read_shard(shard):
                    index = record["index"]
                    if index not in wanted or index in seen:
                        logger.warning("%s: clip %s is not expected there (or repeated); ignored", shard.url, index)
                        continue
                    seen.add(index)
                    yield record
            except Exception as exc:  # unreachable URL, truncated tar, hash mismatch: the rest of the shard is lost
                failure = f"{type(exc).__name__}: {exc}"
                logger.warning("shard %s could not be read completely (%s); its remaining clips are skipped",
                               shard.url, failure)
            for index in expected:
                if index not in seen:
                    yield {"index": index, "__missing__": failure or "the clip is not in the shard",
                           "__url__": shard.url}

    def _read_shard(self, shard: ShardInfo) -> Iterator[dict[str, Any]]:
        wds = import_webdataset()
        from webdataset.tariterators import group_by_keys, tar_file_iterator

        with contextlib.ExitStack() as stack:
            source = stack.enter_context(contextlib.closing(open_url(shard.url)))
            if self.verify and shard.sha256:
                spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=64 << 20, dir=_scratch_root()))
                digest = hashlib.sha256()
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    spool.write(chunk)
                if digest.hexdigest() != shard.sha256:
                    raise ValueError(f"sha256 {digest.hexdigest()} differs from the index ({shard.sha256})")
                spool.seek(0)
                source = spool
            files = ({**member, "__url__": shard.url} for member in
                     tar_file_iterator(source, handler=wds.reraise_exception))
            for sample in group_by_keys(files, handler=wds.reraise_exception):
                yield {**sample, "index": _clip_index(sample), "__url__": shard.url}

    def _decode(self, record: Mapping[str, Any], scratch: Path) -> dict[str, Any] | SkippedSample:
        index = int(record["index"])
        where = f"{record.get('__url__')}#{record.get('__key__', index)}"
        if "__missing__" in record:
            return SkippedSample(index, str(record.get("__url__")), str(record["__missing__"]))
        folder = scratch / str(record.get("__key__", index))
        rng = np.random.default_rng((self.seed, self.epoch, index))
        try:
            try:
                row = materialize_clip(record, folder)
            except (ValueError, UnicodeDecodeError) as error:  # a malformed json member, no video member
                raise ClipReadError(where, str(error)) from error
            if getattr(self.decoder, "audio", None) is not None and row.audio_path is None:
                raise ClipReadError(where, "the clip has no audio member, but the model takes audio")
            self.decoder.rows = [row]
            loaded = self.decoder.load(0, rng=rng)
            item = loaded[0] if isinstance(loaded, tuple) else loaded
        except BAD_SAMPLE_ERRORS as error:
            reason = getattr(error, "reason", None) or f"{type(error).__name__}: {error}"
            logger.warning("skipping clip %d (%s): %s", index, where, reason)
            return SkippedSample(index, where, str(reason))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        item["index"] = index
        if "path" in item:
            item["path"] = where
        return item

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(shards={len(self.shards)}, clips={len(self)}, rank={self.rank}/"
                f"{self.world_size}, shuffle_buffer={self.shuffle_buffer}, verify={self.verify})")


def _clip_index(sample: Mapping[str, Any]) -> int:
    """A clip's collection index: from its JSON member, else its numeric key."""
    if "json" in sample:
        with contextlib.suppress(ValueError, TypeError, KeyError, UnicodeDecodeError):
            return int(json.loads(sample["json"].decode("utf-8"))["index"])
    return int(Path(str(sample["__key__"])).name)


# ------------------------------------------------------------------------------------------------- loader


class _TagStream:
    """``collate_fn`` wrapper that records which stream made the batch (it runs inside the worker)."""

    def __init__(self, collate: Callable[[list[Any]], dict[str, Any]], *, rank: int, num_workers: int,
                 offset: int) -> None:
        self.collate = collate
        self.rank = rank
        self.workers = max(num_workers, 1)
        self.offset = offset

    def __call__(self, items: list[Any]) -> dict[str, Any]:
        batch = self.collate(items)
        info = get_worker_info()
        worker = info.id if info is not None else 0
        batch["stream"] = self.rank * self.workers + (worker + self.offset) % self.workers
        return batch


class ShardLoader:
    """The training loader over a :class:`ShardClipDataset`: batches of ``batch_size`` clips, ``len`` batches per
    epoch, resumable mid-epoch from the number of batches consumed (``start_index`` clips, set by the trainer).

    It stands in for both the loader and the sampler of the per-file path (``set_epoch``, ``start_index``), and its
    :meth:`state_dict` (saved in training checkpoints) records the layout that a resumed run must match.

    Args:
        dataset: The streaming dataset.
        batch_size: Clips per batch (per rank).
        collate: The per-file datasets' ``collate_fn``.
        num_workers: DataLoader workers (each reads its own stream).
        batches_per_epoch: Batches taken per epoch (the same on every rank; :func:`shard_steps_per_epoch`).
        pin_memory: Pin host memory (with CUDA).
        prefetch_factor: Batches prefetched per worker.
        retain_freed_memory: :func:`maedfer.data.allocator.retain_freed_memory` in the loading processes.
    """

    def __init__(self, dataset: ShardClipDataset, *, batch_size: int, collate: Callable[[list[Any]], dict[str, Any]],
                 num_workers: int, batches_per_epoch: int, pin_memory: bool = False, prefetch_factor: int = 2,
                 retain_freed_memory: bool = True) -> None:
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.collate = collate
        self.num_workers = int(num_workers)
        self.batches_per_epoch = int(batches_per_epoch)
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.prefetch_factor = prefetch_factor
        self.retain_freed_memory = retain_freed_memory
        self.epoch = 0
        #: Clips of this epoch already consumed on this rank (a multiple of ``batch_size``); used once, then 0.
        self.start_index = 0
        self._warned_order = False

    def __len__(self) -> int:
        return self.batches_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next iteration."""
        self.epoch = int(epoch)
        self.dataset.set_epoch(epoch)

    def stream_batches(self) -> list[int]:
        """Full batches of each of this rank's streams in the current epoch."""
        workers = max(self.num_workers, 1)
        plan = assign_shards(self.dataset.counts, self.epoch, self.dataset.seed, self.dataset.world_size, workers,
                             self.dataset.shuffle_shards)
        per_stream = batches_per_stream(self.dataset.counts, plan, self.batch_size)
        rank = self.dataset.rank
        return per_stream[rank * workers:(rank + 1) * workers]

    def state_dict(self) -> dict[str, Any]:
        """The layout the stream positions depend on (saved in training checkpoints)."""
        return {"format": "shards", "world_size": self.dataset.world_size, "num_workers": max(self.num_workers, 1),
                "batch_size": self.batch_size, "seed": self.dataset.seed, "shards": len(self.dataset.shards),
                "clips": len(self.dataset), "shuffle_buffer": self.dataset.shuffle_buffer}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Check that a checkpoint's layout matches this run (positions are only exact then).

        Raises:
            ValueError: A different world size, worker count, batch size, seed or collection.
        """
        mine = self.state_dict()
        different = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if different:
            listed = ", ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in different.items())
            raise ValueError(
                f"cannot resume sharded data mid-epoch with another layout ({listed}); resume with the same "
                f"settings, or start the run anew"
            )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        start, self.start_index = self.start_index, 0
        if start % self.batch_size:
            raise ValueError(f"start_index {start} is not a multiple of the batch size {self.batch_size}")
        stream_batches = self.stream_batches()
        workers = len(stream_batches)
        consumed, next_local = consumed_per_stream(stream_batches, start // self.batch_size)
        base = self.dataset.rank * workers
        self.dataset.start_positions = {base + s: c * self.batch_size for s, c in enumerate(consumed)}
        self.dataset.stream_offset = next_local
        loader = DataLoader(
            self.dataset, batch_size=self.batch_size, num_workers=self.num_workers, drop_last=True,
            collate_fn=_TagStream(self.collate, rank=self.dataset.rank, num_workers=self.num_workers,
                                 offset=next_local), pin_memory=self.pin_memory,
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
            # Its own generator: starting an epoch must not draw from the global torch RNG (exact resume).
            generator=torch.Generator().manual_seed(self.dataset.seed),
            worker_init_fn=worker_init_for(self.retain_freed_memory, self.num_workers),
        )
        position = next_local
        for batch in loader:
            stream = int(batch.pop("stream"))
            for _ in range(workers):  # the next stream that still has a batch
                if consumed[position] < stream_batches[position]:
                    break
                position = (position + 1) % workers
            if stream != base + position and not self._warned_order:
                self._warned_order = True
                logger.warning("batch from stream %d where stream %d was expected: a resumed run may not continue "
                               "exactly where this one stopped", stream, base + position)
            consumed[stream - base] += 1
            position = (stream - base + 1) % workers
            yield batch
