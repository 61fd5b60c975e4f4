"""Turn the native releases of the facial-affect datasets into maedfer annotation files.

Details: ``docs/modules.md``, section ``maedfer/preprocess/prepare.py``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from ..data.annotations import AnnotationError, AnnotationRow, write_annotations
from ..data.registry import DatasetInfo, dataset_info
from ..utils import atomic_write_text, sha256_file

__all__ = [
    "CREMA_D_BROKEN_CLIPS",
    "CREMA_D_TEST_ACTORS",
    "MSP_IMPROV_LETTERS",
    "WEREWOLF_TEST_GAMES",
    "Fold",
    "MissingReleaseFileError",
    "NativeReleaseError",
    "PrepareOptionError",
    "PrepareReport",
    "PreparedDataset",
    "Sample",
    "INPUT_ERRORS",
    "build_parser",
    "exclusions_from_args",
    "finalize",
    "join_path",
    "prepare_crema_d",
    "prepare_dfew",
    "prepare_enterface",
    "prepare_ferv39k",
    "prepare_mafw",
    "prepare_msp_improv",
    "prepare_ravdess",
    "prepare_voxceleb2",
    "prepare_werewolf_xl",
    "read_exclusion_list",
    "run_from_args",
    "sha256_file",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Label = Union[int, tuple[float, ...], None]

#: CREMA-D clips listed as broken by the dataset's maintainers (excluded by HiCMAE's fold builder).
CREMA_D_BROKEN_CLIPS: tuple[str, ...] = ("1076_MTI_NEU_XX", "1076_MTI_SAD_XX", "1064_TIE_SAD_XX", "1064_IEO_DIS_MD")

_VIDEO_SUFFIXES = (".mp4", ".avi", ".flv", ".mkv", ".mov")


# ----------------------------------------------------------------------------------------------------------------
# Errors and data types
# ----------------------------------------------------------------------------------------------------------------


class NativeReleaseError(AnnotationError):
    """Something wrong in a dataset's native release: a malformed line or file name, an unknown label, a duplicate.

    Same fields and message as :class:`~maedfer.data.annotations.AnnotationError` (``file``, 1-based ``line`` or 0
    when the problem is not tied to a line, ``reason``); ``file`` is the offending label file, or the media file whose
    name carries the label.
    """


class MissingReleaseFileError(FileNotFoundError):
    """A label file or folder that the native layout requires is missing.

    Attributes:
        path: the missing path.
        what: what it should have been (e.g. "DFEW train split of set 1").
    """

    def __init__(self, path: PathLike, what: str, hint: str = "") -> None:
        self.path = str(path)
        self.what = what
        message = f"{what} not found: {self.path}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[MissingReleaseFileError], tuple[str, str]]:
        return (type(self), (self.path, self.what))


class PrepareOptionError(ValueError):
    """An option that cannot work, e.g. a frames or audio root whose path contains whitespace."""


@dataclass(frozen=True)
class Sample:
    """One clip of a prepared dataset.

    Attributes:
        clip_id: the dataset's own id of the clip (e.g. DFEW ``"00001"``, CREMA-D ``"1001_DFA_ANG_XX"``); what
            ``--exclude`` matches.
        clip_path: frame folder (or video file for pre-training) as written to the annotation file.
        label: class index (``int``), regression targets (``tuple[float, ...]``) or ``None`` (pre-training).
        group: the identity unit the folds keep apart (actor, subject, session, game); ``""`` when the dataset's
            folds are fixed by the release's split files.
        audio_path: 16 kHz wav path, or ``None``.
        source: where the label came from (``file:line`` or the media file), for messages.
    """

    clip_id: str
    clip_path: str
    label: Label
    group: str = ""
    audio_path: str | None = None
    source: str = ""


@dataclass(frozen=True)
class Fold:
    """One fold: train and test samples; ``val`` is ``None`` when it is a copy of ``test``."""

    name: str
    train: tuple[Sample, ...]
    test: tuple[Sample, ...]
    val: tuple[Sample, ...] | None = None

    def splits(self) -> dict[str, tuple[Sample, ...]]:
        """``{"train": ..., "val": ..., "test": ...}`` with ``val`` resolved."""
        return {"train": self.train, "val": self.test if self.val is None else self.val, "test": self.test}


@dataclass(frozen=True)
class PreparedDataset:
    """The folds of a dataset, ready to be written.

    Attributes:
        dataset: canonical registry name.
        kind: annotation layout (``classification``, ``audio_visual``, ``regression`` or ``pretrain``).
        folds: the folds in protocol order.
        label_names: class (or regression target) names in index order; empty for pre-training.
        notes: human-readable remarks collected while reading the release (skipped entries, ...).
    """

    dataset: str
    kind: str
    folds: tuple[Fold, ...]
    label_names: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass
class PrepareReport:
    """What :func:`finalize` wrote.

    Attributes:
        dataset: canonical registry name.
        out_dir: the output folder.
        kind: annotation layout.
        counts: ``{fold: {"train": n, "val": n, "test": n}}``.
        official_sizes: ``{fold: (train, test)}`` from the registry (may be empty).
        checksums: ``{relative posix path: sha256 hex}`` of every written file except the checksum file.
        checksum_file: ``<out>/checksums.sha256``.
        excluded: clip ids dropped by the exclusion list.
        unmatched_exclusions: exclusion ids that matched no clip.
        missing_media: ``(clip_id, reason)`` of clips dropped because their media are missing.
        notes: remarks from reading the release.
    """

    dataset: str
    out_dir: Path
    kind: str
    counts: dict[str, dict[str, int]]
    official_sizes: dict[str, tuple[int, int]]
    checksums: dict[str, str]
    checksum_file: Path
    excluded: list[str] = field(default_factory=list)
    unmatched_exclusions: list[str] = field(default_factory=list)
    missing_media: list[tuple[str, str]] = field(default_factory=list)
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The report as text lines (summary, per-fold counts, drops, then ``<sha256>  <file>`` lines)."""
        out = [f"{self.dataset}: wrote {len(self.counts)} fold(s) to {self.out_dir} (annotation kind {self.kind})"]
        for fold, counts in self.counts.items():
            text = ", ".join(f"{split} {number}" for split, number in counts.items())
            official = self.official_sizes.get(fold)
            if official is not None:
                text += f" (official files: train {official[0]}, test {official[1]})"
            out.append(f"  {fold}: {text}")
        out.extend(f"  note: {note}" for note in self.notes)
        if self.excluded:
            out.append(f"  excluded {len(self.excluded)} clip(s) by request")
        if self.unmatched_exclusions:
            shown = ", ".join(self.unmatched_exclusions[:5])
            out.append(f"  warning: {len(self.unmatched_exclusions)} exclusion id(s) matched no clip, e.g. {shown}")
        if self.missing_media:
            shown = "; ".join(f"{clip} ({reason})" for clip, reason in self.missing_media[:5])
            out.append(f"  skipped {len(self.missing_media)} clip(s) with missing media, e.g. {shown}")
        out.append("sha256 of the produced files:")
        out.extend(f"{digest}  {name}" for name, digest in self.checksums.items())
        out.append(f"checksums written to {self.checksum_file}")
        return out

    def text(self) -> str:
        """:meth:`lines` joined with newlines."""
        return "\n".join(self.lines())


# ----------------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------------


def join_path(root: PathLike, *parts: str) -> str:
    """Join a root and relative parts with ``/``; whitespace runs inside the parts become ``_``.

    Args:
        root: a folder as given by the user (kept relative if relative).
        parts: relative path pieces (may contain ``/``).

    Returns:
        A posix path string, e.g. ``join_path("faces", "subject 1/anger")`` -> ``"faces/subject_1/anger"``.
    """
    base = Path(root).as_posix()
    pieces = [re.sub(r"\s+", "_", part.strip("/")) for part in parts if part.strip("/")]
    if not pieces:
        return base
    if base == ".":
        return "/".join(pieces)
    return base.rstrip("/") + "/" + "/".join(pieces)


def _require_file(path: Path, what: str, hint: str = "") -> Path:
    if not path.is_file():
        raise MissingReleaseFileError(path, what, hint)
    return path


def _require_dir(path: Path, what: str, hint: str = "") -> Path:
    if not path.is_dir():
        raise MissingReleaseFileError(path, what, hint)
    return path


def _read_lines(file: Path, *, errors: str = "strict") -> list[tuple[int, str]]:
    """Non-blank lines of a text file as ``(1-based line number, text without line end)``.

    ``errors="replace"`` tolerates bytes that are not UTF-8 (for files whose free-text parts may use another
    encoding); with ``"strict"`` they raise :class:`NativeReleaseError`.
    """
    try:
        with open(file, encoding="utf-8-sig", errors=errors, newline="") as handle:
            text = handle.read()
    except UnicodeDecodeError as error:
        raise NativeReleaseError(file, 0, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _split_csv_line(file: Path, number: int, line: str, delimiter: str) -> list[str]:
    try:
        fields = next(csv.reader([line], delimiter=delimiter, strict=True))
    except csv.Error as error:
        raise NativeReleaseError(file, number, f"malformed CSV line ({error})") from None
    return [value.strip() for value in fields]


def _parse_int(text: str, file: Path, number: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise NativeReleaseError(file, number, f"{what} must be an integer, got {text!r}") from None


def _video_files(folder: Path, skip: Iterable[PathLike | None] = ()) -> list[Path]:
    """Video files below ``folder`` (recursive, any suffix case), sorted.

    Hidden files and folders are skipped, and so are the folders in ``skip`` (e.g. a frames root inside the
    release folder, which can hold millions of frames).
    """
    skipped = {Path(p).resolve() for p in skip if p is not None}
    found = []
    for directory, subdirs, files in os.walk(folder):
        here = Path(directory)
        subdirs[:] = [d for d in subdirs if not d.startswith(".") and (here / d).resolve() not in skipped]
        found.extend(here / f for f in files if Path(f).suffix.lower() in _VIDEO_SUFFIXES and not f.startswith("."))
    return sorted(found)


def _strip_suffix(relative: str) -> str:
    stem, dot, suffix = relative.rpartition(".")
    return stem if dot and "/" not in suffix else relative


def _split_source(source: str, fallback: str) -> tuple[str, int]:
    """``"file:12"`` -> ``("file", 12)``; a source without a line number -> ``(source, 0)``."""
    file, colon, line = source.rpartition(":")
    if colon and line.isdigit() and file:
        return file, int(line)
    return (source or fallback), 0


def _check_unique(samples: Sequence[Sample], file_hint: str) -> None:
    seen: dict[str, Sample] = {}
    for sample in samples:
        if sample.clip_id in seen:
            file, line = _split_source(sample.source, file_hint)
            first = seen[sample.clip_id].source
            raise NativeReleaseError(file, line, f"clip {sample.clip_id!r} listed twice (also at {first})")
        seen[sample.clip_id] = sample


def _fold_by_groups(
    samples: Sequence[Sample], test_groups: Sequence[tuple[str, Iterable[str]]]
) -> tuple[Fold, ...]:
    """Folds whose test set is the samples of the listed groups and whose train set is every other sample.

    Args:
        samples: every sample, each with its ``group``.
        test_groups: ``(fold name, groups of its test set)`` per fold.
    """
    folds = []
    for name, groups in test_groups:
        test_set = set(groups)
        test = tuple(s for s in samples if s.group in test_set)
        train = tuple(s for s in samples if s.group not in test_set)
        folds.append(Fold(name=name, train=train, test=test))
    return tuple(folds)


def _classification_kind(audio_root: PathLike | None) -> str:
    return "audio_visual" if audio_root is not None else "classification"


def _label_from_name(info: DatasetInfo, name: str, file: PathLike, line: int) -> int:
    try:
        return info.label_index(name)
    except KeyError:
        raise NativeReleaseError(
            file, line, f"unknown label {name!r}; {info.name} labels are {', '.join(info.label_names)}"
        ) from None


# ----------------------------------------------------------------------------------------------------------------
# DFEW
# ----------------------------------------------------------------------------------------------------------------


def _read_dfew_split(file: Path, info: DatasetInfo, frames_root: PathLike) -> list[Sample]:
    """Read one ``EmoLabel_DataSplit/*(single-labeled)/set_k.csv``: ``video_name,label`` with 1-based labels."""
    rows = _read_lines(file)
    name_column, label_column = 0, 1
    if rows:
        first_number, first_line = rows[0]
        header = [value.lower() for value in _split_csv_line(file, first_number, first_line, ",")]
        if not header[0].lstrip("-").isdigit():
            if "video_name" not in header or "label" not in header:
                raise NativeReleaseError(
                    file, first_number, f"header must name the columns video_name and label, got {first_line!r}"
                )
            name_column, label_column = header.index("video_name"), header.index("label")
            rows = rows[1:]
    samples = []
    for number, line in rows:
        fields = _split_csv_line(file, number, line, ",")
        if len(fields) <= max(name_column, label_column):
            raise NativeReleaseError(file, number, f"expected the columns video_name,label, got {line!r}")
        video = _parse_int(fields[name_column], file, number, "video_name")
        if video < 0:
            raise NativeReleaseError(file, number, f"video_name must be >= 0, got {video}")
        official = _parse_int(fields[label_column], file, number, "the label")
        if not 1 <= official <= info.num_classes:
            names = ", ".join(f"{i + 1}={n}" for i, n in enumerate(info.label_names))
            raise NativeReleaseError(file, number, f"unknown label {official}; DFEW labels are {names}")
        clip_id = f"{video:05d}"
        samples.append(
            Sample(clip_id, join_path(frames_root, clip_id), official - 1, source=f"{file}:{number}")
        )
    _check_unique(samples, str(file))
    return samples


def _check_disjoint(train: Sequence[Sample], test: Sequence[Sample], train_file: Path, test_file: Path) -> None:
    test_ids = {s.clip_id: s for s in test}
    for sample in train:
        if sample.clip_id in test_ids:
            file, line = _split_source(sample.source, str(train_file))
            raise NativeReleaseError(
                file,
                line,
                f"clip {sample.clip_id!r} is in both the train split and the test split "
                f"({test_ids[sample.clip_id].source or test_file})",
            )


def prepare_dfew(root: PathLike, *, frames_root: PathLike | None = None) -> PreparedDataset:
    """DFEW: the 5 official single-label folds.

    Native layout: ``<root>/EmoLabel_DataSplit/train(single-labeled)/set_{1..5}.csv`` and
    ``test(single-labeled)/set_{1..5}.csv`` (``video_name,label`` with a header, labels 1-7 in the order
    Happy, Sad, Neutral, Angry, Surprise, Disgust, Fear), face frames in ``<frames root>/<5-digit id>/``.

    Args:
        root: the DFEW release folder.
        frames_root: frame folders; default ``<root>/Clip/clip_224x224``.

    Returns:
        Folds ``split01..split05``; labels are the official labels minus 1.
    """
    info = dataset_info("DFEW")
    root_path = Path(root)
    frames = frames_root if frames_root is not None else root_path / "Clip" / "clip_224x224"
    split_dir = _require_dir(root_path / "EmoLabel_DataSplit", "DFEW split folder", "pass the DFEW release as --root")
    folds = []
    for index, name in enumerate(info.folds, start=1):
        train_file = _require_file(
            split_dir / "train(single-labeled)" / f"set_{index}.csv", f"DFEW train split {index}"
        )
        test_file = _require_file(split_dir / "test(single-labeled)" / f"set_{index}.csv", f"DFEW test split {index}")
        train = _read_dfew_split(train_file, info, frames)
        test = _read_dfew_split(test_file, info, frames)
        _check_disjoint(train, test, train_file, test_file)
        folds.append(Fold(name, tuple(train), tuple(test)))
    return PreparedDataset(info.name, "classification", tuple(folds), info.label_names)


# ----------------------------------------------------------------------------------------------------------------
# FERV39k
# ----------------------------------------------------------------------------------------------------------------


def _read_two_column_list(file: Path) -> list[tuple[int, str, str]]:
    """``<path> <label>`` lines (space- or comma-separated) as ``(line, path, label)``."""
    entries = []
    for number, line in _read_lines(file):
        fields = _split_csv_line(file, number, line, ",") if "," in line else line.split()
        fields = [f for f in fields if f]
        if len(fields) != 2:
            raise NativeReleaseError(
                file, number, f"expected 2 fields '<clip> <label>', got {len(fields)} in {line.strip()!r}"
            )
        entries.append((number, fields[0], fields[1]))
    return entries


def prepare_ferv39k(root: PathLike, *, frames_root: PathLike | None = None) -> PreparedDataset:
    """FERV39k: the official All-scenes split.

    Native layout: ``<root>/4_setups/All_scenes/{train,test}_All.csv``, one ``<Scene>/<Emotion>/<clip> <Emotion>``
    line per clip (space-separated, no header; comma-separated lines are accepted too), face frames in
    ``<frames root>/<Scene>/<Emotion>/<clip>/``.

    Args:
        root: the FERV39k release folder.
        frames_root: frame folders; default ``<root>/2_ClipsforFaceCrop``.

    Returns:
        One fold ``all_scenes``; label order Happy, Sad, Neutral, Angry, Surprise, Disgust, Fear.
    """
    info = dataset_info("FERV39k")
    root_path = Path(root)
    frames = frames_root if frames_root is not None else root_path / "2_ClipsforFaceCrop"
    setup_dir = _require_dir(root_path / "4_setups" / "All_scenes", "FERV39k All_scenes setup folder")
    splits: dict[str, list[Sample]] = {}
    files: dict[str, Path] = {}
    for split in ("train", "test"):
        file = _require_file(setup_dir / f"{split}_All.csv", f"FERV39k {split} list")
        samples = []
        for number, clip, label_name in _read_two_column_list(file):
            clip_id = clip.strip("/")
            label = _label_from_name(info, label_name, file, number)
            samples.append(Sample(clip_id, join_path(frames, clip_id), label, source=f"{file}:{number}"))
        _check_unique(samples, str(file))
        splits[split], files[split] = samples, file
    _check_disjoint(splits["train"], splits["test"], files["train"], files["test"])
    fold = Fold(info.folds[0], tuple(splits["train"]), tuple(splits["test"]))
    return PreparedDataset(info.name, "classification", (fold,), info.label_names)


# ----------------------------------------------------------------------------------------------------------------
# MAFW
# ----------------------------------------------------------------------------------------------------------------


def _mafw_split_dir(root: Path, split_dir: PathLike | None) -> Path:
    if split_dir is not None:
        return _require_dir(Path(split_dir), "MAFW split folder")
    candidates = [root / "Train & Test Set", root / "split"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise MissingReleaseFileError(
        candidates[0], "MAFW split folder", f"also looked for {candidates[1]}; pass --split-dir"
    )


def _read_mafw_list(file: Path, *, compound: bool) -> list[tuple[int, str, str]]:
    entries = []
    for number, line in _read_lines(file):
        fields = line.split()
        if len(fields) < 2 or (not compound and len(fields) != 2):
            raise NativeReleaseError(file, number, f"expected '<clip>.mp4 <label>', got {line.strip()!r}")
        entries.append((number, fields[0], " ".join(fields[1:])))
    return entries


def prepare_mafw(
    root: PathLike,
    *,
    frames_root: PathLike | None = None,
    audio_root: PathLike | None = None,
    label_set: int = 11,
    split_dir: PathLike | None = None,
) -> PreparedDataset:
    """MAFW: the 5 official folds of the single-expression (11 classes) or compound (43 classes) set.

    Native layout: ``<root>/Train & Test Set/single/no_caption/set_{1..5}/{train,test}.txt`` (``split/`` is
    accepted instead of ``Train & Test Set/``), one ``<clip>.mp4 <label name>`` line per clip, face frames in
    ``<frames root>/<clip>/`` (``*.png``). The compound set is read from ``compound/no_caption/`` (that folder
    name and its label spelling are unverified); its class names are collected from the files: the 11 single
    classes present first (in registry order), then the other names sorted.

    Args:
        root: the MAFW release folder.
        frames_root: frame folders; default ``<root>/data/frames``.
        audio_root: wav folder (``<audio root>/<clip>.wav``); None writes video-only files.
        label_set: 11 (single) or 43 (compound).
        split_dir: override of the ``Train & Test Set`` folder.

    Returns:
        Folds ``split01..split05``.
    """
    if label_set not in (11, 43):
        raise ValueError(f"label_set must be 11 or 43, got {label_set}")
    compound = label_set == 43
    info = dataset_info("MAFW-43" if compound else "MAFW")
    root_path = Path(root)
    frames = frames_root if frames_root is not None else root_path / "data" / "frames"
    base = _mafw_split_dir(root_path, split_dir) / ("compound" if compound else "single") / "no_caption"
    raw: dict[tuple[str, str], tuple[Path, list[tuple[int, str, str]]]] = {}
    for index, name in enumerate(info.folds, start=1):
        for split in ("train", "test"):
            file = _require_file(base / f"set_{index}" / f"{split}.txt", f"MAFW {split} list of set {index}")
            raw[name, split] = (file, _read_mafw_list(file, compound=compound))
    if compound:
        found = sorted({label for _, entries in raw.values() for _, _, label in entries})
        single = dataset_info("MAFW").label_names
        label_names = tuple(n for n in single if n in found) + tuple(n for n in found if n not in single)
        notes: tuple[str, ...] = ()
        if len(label_names) != info.num_classes:
            notes = (f"found {len(label_names)} compound class names, expected {info.num_classes}",)
            logger.warning("MAFW compound set: %s", notes[0])
    else:
        label_names, notes = info.label_names, ()
    lookup = {n: i for i, n in enumerate(label_names)}
    lookup_lower = {n.lower(): i for i, n in enumerate(label_names)}
    folds = []
    for name in info.folds:
        per_split: dict[str, list[Sample]] = {}
        for split in ("train", "test"):
            file, entries = raw[name, split]
            samples = []
            for number, clip, label_name in entries:
                label = lookup.get(label_name, lookup_lower.get(label_name.lower()))
                if label is None:
                    raise NativeReleaseError(
                        file, number, f"unknown label {label_name!r}; MAFW labels are {', '.join(label_names)}"
                    )
                clip_id = clip.rsplit("/", 1)[-1].split(".")[0]
                audio = join_path(audio_root, f"{clip_id}.wav") if audio_root is not None else None
                samples.append(Sample(clip_id, join_path(frames, clip_id), label, "", audio, f"{file}:{number}"))
            _check_unique(samples, str(file))
            per_split[split] = samples
        _check_disjoint(per_split["train"], per_split["test"], raw[name, "train"][0], raw[name, "test"][0])
        folds.append(Fold(name, tuple(per_split["train"]), tuple(per_split["test"])))
    return PreparedDataset(info.name, _classification_kind(audio_root), tuple(folds), label_names, notes)


# ----------------------------------------------------------------------------------------------------------------
# CREMA-D
# ----------------------------------------------------------------------------------------------------------------

#: Inclusive actor-id ranges of the 5 CREMA-D test folds (the official fold builder: 18 actors per fold, 19 last).
CREMA_D_TEST_ACTORS: tuple[tuple[int, int], ...] = (
    (1001, 1018),
    (1019, 1036),
    (1037, 1054),
    (1055, 1072),
    (1073, 1091),
)


def prepare_crema_d(
    root: PathLike,
    *,
    frames_root: PathLike | None = None,
    audio_root: PathLike | None = None,
    video_dir: PathLike | None = None,
) -> PreparedDataset:
    """CREMA-D: 5 actor-independent folds over every clip of the release.

    Native layout: ``<root>/VideoFlash/<actor>_<sentence>_<EMO>_<level>.flv`` (``.mp4`` / ``.avi`` accepted),
    ``<root>/AudioWAV/<same name>.wav`` (already 16 kHz). The emotion code (ANG, DIS, FEA, HAP, NEU, SAD) gives
    the label; fold ``k`` tests actors ``CREMA_D_TEST_ACTORS[k-1]``.

    Args:
        root: the CREMA-D release folder.
        frames_root: frame folders ``<frames root>/<name>/``; default ``<root>/face_aligned``.
        audio_root: wav folder (e.g. ``<root>/AudioWAV``); None writes video-only files.
        video_dir: override of ``<root>/VideoFlash``.

    Returns:
        Folds ``split01..split05``. Drop the maintainers' broken clips with ``exclude=CREMA_D_BROKEN_CLIPS`` in
        :func:`finalize` (HiCMAE protocol).
    """
    info = dataset_info("CREMA-D")
    root_path = Path(root)
    frames = frames_root if frames_root is not None else root_path / "face_aligned"
    videos = _require_dir(
        Path(video_dir) if video_dir is not None else root_path / "VideoFlash", "CREMA-D video folder"
    )
    samples = []
    candidates = (p for p in videos.iterdir() if p.suffix.lower() in _VIDEO_SUFFIXES and not p.name.startswith("."))
    for path in sorted(candidates):
        fields = path.stem.split("_")
        if len(fields) != 4 or not fields[0].isdigit():
            raise NativeReleaseError(path, 0, "expected a file name <actor>_<sentence>_<EMO>_<level>")
        actor = int(fields[0])
        if not CREMA_D_TEST_ACTORS[0][0] <= actor <= CREMA_D_TEST_ACTORS[-1][1]:
            raise NativeReleaseError(path, 0, f"actor id {actor} outside 1001-1091")
        if fields[2] not in info.label_names:
            raise NativeReleaseError(
                path, 0, f"unknown emotion code {fields[2]!r}; CREMA-D codes are {', '.join(info.label_names)}"
            )
        audio = join_path(audio_root, f"{path.stem}.wav") if audio_root is not None else None
        label = info.label_names.index(fields[2])
        samples.append(Sample(path.stem, join_path(frames, path.stem), label, str(actor), audio, str(path)))
    if not samples:
        raise NativeReleaseError(videos, 0, "no video files found")
    _check_unique(samples, str(videos))
    test_groups = [
        (name, [str(a) for a in range(first, last + 1)]) for name, (first, last) in zip(info.folds, CREMA_D_TEST_ACTORS)
    ]
    folds = _fold_by_groups(samples, test_groups)
    return PreparedDataset(info.name, _classification_kind(audio_root), folds, info.label_names)


# ----------------------------------------------------------------------------------------------------------------
# RAVDESS
# ----------------------------------------------------------------------------------------------------------------

_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def prepare_ravdess(
    root: PathLike,
    *,
    frames_root: PathLike | None = None,
    audio_root: PathLike | None = None,
    video_modality: str = "02",
) -> PreparedDataset:
    """RAVDESS: 6 actor-independent folds over the speech videos.

    Native layout: ``<root>/Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4`` (the ``Video_Speech_Actor_XX`` archives; any depth
    below ``root``). The name codes are modality (01 audio-video, 02 video-only, 03 audio-only), vocal channel
    (01 speech, 02 song), emotion EE (01-08 -> label 0-7), intensity, statement, repetition and actor AA (01-24).
    Only files of ``video_modality`` and the speech channel are used (the official files use the video-only
    ``02-01-*`` clips). Fold ``k`` tests actors ``4k-3 .. 4k``.

    Args:
        root: folder holding the unpacked video archives.
        frames_root: frame folders mirroring the video tree; default ``<root>/face_aligned``.
        audio_root: wav folder of the audio-only speech files: ``<audio root>/Actor_XX/03-01-EE-II-SS-RR-AA.wav``
            (what ``tools/extract_audio.py`` makes from ``Audio_Speech_Actors_01-24``); None writes video-only files.
        video_modality: ``"02"`` (video-only, official) or ``"01"`` (audio-video).

    Returns:
        Folds ``split01..split06``.
    """
    if video_modality not in ("01", "02"):
        raise ValueError(f"video_modality must be '01' or '02', got {video_modality!r}")
    info = dataset_info("RAVDESS")
    root_path = _require_dir(Path(root), "RAVDESS folder")
    frames = frames_root if frames_root is not None else root_path / "face_aligned"
    samples = []
    for path in _video_files(root_path, skip=(frames, audio_root)):
        match = _RAVDESS_NAME.match(path.stem)
        if match is None:
            continue
        modality, channel, emotion, _, _, _, actor = match.groups()
        if modality != video_modality or channel != "01":
            continue
        if not 1 <= int(emotion) <= info.num_classes:
            raise NativeReleaseError(path, 0, f"unknown emotion code {emotion}; RAVDESS codes are 01-08")
        if not 1 <= int(actor) <= 24:
            raise NativeReleaseError(path, 0, f"actor code {actor} outside 01-24")
        folder = path.parent.name
        if folder.lower().startswith("actor_") and folder[6:].isdigit() and int(folder[6:]) != int(actor):
            raise NativeReleaseError(path, 0, f"actor code {actor} does not match its folder {folder}")
        relative = path.relative_to(root_path).with_suffix("").as_posix()
        audio = None
        if audio_root is not None:
            audio = join_path(audio_root, f"Actor_{actor}", "03" + path.stem[2:] + ".wav")
        samples.append(
            Sample(path.stem, join_path(frames, relative), int(emotion) - 1, f"Actor_{actor}", audio, str(path))
        )
    if not samples:
        raise NativeReleaseError(root_path, 0, f"no {video_modality}-01-*.mp4 RAVDESS speech videos found")
    _check_unique(samples, str(root_path))
    test_groups = [
        (name, [f"Actor_{a:02d}" for a in range(4 * k + 1, 4 * k + 5)]) for k, name in enumerate(info.folds)
    ]
    folds = _fold_by_groups(samples, test_groups)
    return PreparedDataset(info.name, _classification_kind(audio_root), folds, info.label_names)


# ----------------------------------------------------------------------------------------------------------------
# eNTERFACE'05
# ----------------------------------------------------------------------------------------------------------------

_SUBJECT_FOLDER = re.compile(r"^subject[\s_-]*(\d+)$", re.IGNORECASE)


def prepare_enterface(
    root: PathLike,
    *,
    frames_root: PathLike | None = None,
    audio_root: PathLike | None = None,
    exclude_subjects: Iterable[int] = (),
    num_folds: int = 5,
) -> PreparedDataset:
    """eNTERFACE'05: 5 subject-independent folds.

    Native layout: ``<root>/subject N/<emotion>/sentence M/<file>.avi`` (``subject_N`` and a missing sentence
    level are accepted). The emotion folder (anger, disgust, fear, happiness, sadness, surprise) gives the label.
    Subjects are sorted by number and cut into ``num_folds`` consecutive groups of ``ceil(subjects / num_folds)``
    (the last fold takes the rest): with the 43 subjects of the official files (no subject 6) that is 9, 9, 9,
    9 and 7 test subjects, as in MAE-DFER's committed folds.

    Args:
        root: the release folder.
        frames_root: frame folders mirroring the video tree with spaces replaced by ``_``
            (``<frames root>/subject_1/anger/sentence_1/s1_an_1/``); default ``<root>/face_aligned``.
        audio_root: wav folder with the same mirrored layout; None writes video-only files.
        exclude_subjects: subject numbers to leave out entirely (before the folds are cut).
        num_folds: number of folds (5 in the official protocol).

    Returns:
        Folds ``split01..split05``.
    """
    info = dataset_info("eNTERFACE05")
    root_path = _require_dir(Path(root), "eNTERFACE'05 folder")
    frames = frames_root if frames_root is not None else root_path / "face_aligned"
    skip = {int(s) for s in exclude_subjects}
    samples = []
    for path in _video_files(root_path, skip=(frames, audio_root)):
        parts = path.relative_to(root_path).parts
        subject_index = next((i for i, p in enumerate(parts[:-1]) if _SUBJECT_FOLDER.match(p)), None)
        if subject_index is None:
            raise NativeReleaseError(path, 0, "video is not below a 'subject N' folder")
        subject = int(_SUBJECT_FOLDER.match(parts[subject_index]).group(1))  # type: ignore[union-attr]
        if subject in skip:
            continue
        if subject_index + 1 >= len(parts) - 1:
            raise NativeReleaseError(path, 0, "expected subject N/<emotion>/.../<file>.avi")
        emotion = parts[subject_index + 1]
        label = _label_from_name(info, emotion.strip(), path, 0)
        relative = _strip_suffix(Path(*parts).as_posix())
        audio = join_path(audio_root, relative + ".wav") if audio_root is not None else None
        samples.append(Sample(relative, join_path(frames, relative), label, f"subject_{subject}", audio, str(path)))
    if not samples:
        raise NativeReleaseError(root_path, 0, "no .avi videos below 'subject N' folders found")
    _check_unique(samples, str(root_path))
    subjects = sorted({int(s.group.split("_")[1]) for s in samples})
    if len(subjects) < num_folds:
        raise NativeReleaseError(root_path, 0, f"{len(subjects)} subjects cannot make {num_folds} folds")
    per_fold = math.ceil(len(subjects) / num_folds)
    names = info.folds if num_folds == len(info.folds) else tuple(f"split{k:02d}" for k in range(1, num_folds + 1))
    test_groups = [
        (name, [f"subject_{s}" for s in subjects[k * per_fold : (k + 1) * per_fold]]) for k, name in enumerate(names)
    ]
    if any(not groups for _, groups in test_groups):
        raise NativeReleaseError(root_path, 0, f"{len(subjects)} subjects leave a fold empty with {num_folds} folds")
    folds = _fold_by_groups(samples, test_groups)
    return PreparedDataset(info.name, _classification_kind(audio_root), folds, info.label_names)


# ----------------------------------------------------------------------------------------------------------------
# MSP-IMPROV
# ----------------------------------------------------------------------------------------------------------------

_MSP_MASTER = re.compile(r"^(?:UTD|MSP)-IMPROV-(?P<id>[A-Za-z0-9-]+)\.avi\s*;\s*(?P<label>[^;\s]*)\s*;")
_MSP_ID = re.compile(r"^S(\d\d)([A-Z])-([FM])(\d\d)-([A-Z])-([A-Z]+\d+)$")
#: Consensus letters of ``Evaluation.txt`` that the 4-class protocol keeps, with their class index.
MSP_IMPROV_LETTERS: dict[str, int] = {"A": 0, "H": 1, "N": 2, "S": 3}
#: Consensus letters that exist but are not part of the 4-class protocol (other, no agreement).
MSP_IMPROV_UNUSED_LETTERS: tuple[str, ...] = ("O", "X")


def _read_msp_evaluation(file: Path) -> dict[str, tuple[str, int]]:
    """Consensus letter per utterance id from ``Evaluation.txt`` master lines: ``{id: (letter, line)}``."""
    labels: dict[str, tuple[str, int]] = {}
    for number, line in _read_lines(file, errors="replace"):  # raters' free-text comments may not be UTF-8
        text = line.strip()
        if not text.upper().startswith(("UTD-IMPROV-", "MSP-IMPROV-")):
            continue  # an individual rater's line
        match = _MSP_MASTER.match(text)
        if match is None:
            raise NativeReleaseError(file, number, f"malformed utterance line {text[:80]!r}")
        utterance, letter = match.group("id"), match.group("label")
        if letter not in MSP_IMPROV_LETTERS and letter not in MSP_IMPROV_UNUSED_LETTERS:
            raise NativeReleaseError(
                file, number, f"unknown label {letter!r}; MSP-IMPROV consensus labels are A, H, N, S, O, X"
            )
        if utterance in labels and labels[utterance][0] != letter:
            first_letter, first_line = labels[utterance]
            raise NativeReleaseError(
                file, number, f"{utterance} has label {letter} here but {first_letter} at line {first_line}"
            )
        labels[utterance] = (letter, number)
    return labels


def prepare_msp_improv(
    root: PathLike,
    *,
    frames_root: PathLike | None = None,
    audio_root: PathLike | None = None,
    labels_file: PathLike | None = None,
    video_dir: PathLike | None = None,
) -> PreparedDataset:
    """MSP-IMPROV: 4 consensus classes, 6 leave-one-session-out folds.

    Native layout: ``<root>/Evaluation.txt`` (one ``UTD-IMPROV-<id>.avi; <E>; A:..; V:..; D:.. ; N:..;`` line
    per utterance followed by the raters' lines) and the videos
    ``<root>/session<k>/S<nn><E>/<scenario>/MSP-IMPROV-<id>.avi`` (found at any depth). The consensus letter
    A/H/N/S gives classes 0-3; O (other) and X (no agreement) are left out. The session is the number of the
    speaker field (``F03``/``M03`` -> session 3); fold ``k`` tests session ``k``.

    Args:
        root: the release folder.
        frames_root: frame folders mirroring the video tree; default ``<root>/face_aligned``.
        audio_root: wav folder mirroring the video tree; None writes video-only files.
        labels_file: override of ``<root>/Evaluation.txt``.
        video_dir: where to look for the videos (default ``root``).

    Returns:
        Folds ``split01..split06``; utterances with a label but no video (and the reverse) are left out and
        counted in ``notes``.
    """
    info = dataset_info("MSP-IMPROV")
    root_path = Path(root)
    frames = frames_root if frames_root is not None else root_path / "face_aligned"
    evaluation = _require_file(
        Path(labels_file) if labels_file is not None else root_path / "Evaluation.txt", "MSP-IMPROV Evaluation.txt"
    )
    labels = _read_msp_evaluation(evaluation)
    search = _require_dir(Path(video_dir) if video_dir is not None else root_path, "MSP-IMPROV video folder")
    samples = []
    unlabeled = 0
    videos_seen: set[str] = set()
    for path in _video_files(search, skip=(frames, audio_root)):
        if not path.stem.startswith("MSP-IMPROV-") or path.suffix.lower() != ".avi":
            continue
        utterance = path.stem[len("MSP-IMPROV-") :]
        match = _MSP_ID.match(utterance)
        if match is None:
            raise NativeReleaseError(path, 0, "expected a name MSP-IMPROV-S<nn><E>-<F|M><nn>-<scenario>-<turn>")
        videos_seen.add(utterance)
        if utterance not in labels:
            unlabeled += 1
            continue
        letter, number = labels[utterance]
        if letter not in MSP_IMPROV_LETTERS:
            continue
        session = int(match.group(4))
        if not 1 <= session <= len(info.folds):
            raise NativeReleaseError(path, 0, f"session {session} outside 1-{len(info.folds)}")
        relative = path.relative_to(search).with_suffix("").as_posix()
        audio = join_path(audio_root, relative + ".wav") if audio_root is not None else None
        samples.append(
            Sample(
                path.stem,
                join_path(frames, relative),
                MSP_IMPROV_LETTERS[letter],
                f"session{session}",
                audio,
                f"{evaluation}:{number}",
            )
        )
    if not samples:
        raise NativeReleaseError(search, 0, "no labelled MSP-IMPROV-*.avi videos found")
    _check_unique(samples, str(search))
    notes = []
    if unlabeled:
        notes.append(f"{unlabeled} video(s) have no line in {evaluation.name} and were left out")
    without_video = sum(1 for u, (letter, _) in labels.items() if letter in MSP_IMPROV_LETTERS and u not in videos_seen)
    if without_video:
        notes.append(f"{without_video} labelled utterance(s) of {evaluation.name} have no video and were left out")
    for note in notes:
        logger.warning("MSP-IMPROV: %s", note)
    folds = _fold_by_groups(samples, [(name, [f"session{k}"]) for k, name in enumerate(info.folds, start=1)])
    return PreparedDataset(info.name, _classification_kind(audio_root), folds, info.label_names, tuple(notes))


# ----------------------------------------------------------------------------------------------------------------
# Werewolf-XL
# ----------------------------------------------------------------------------------------------------------------

_WEREWOLF_CLIP_COLUMNS = ("clip", "clip_name", "name", "video", "video_name", "file", "filename", "sample")
#: Game ids tested by each Werewolf-XL fold (inclusive ranges).
WEREWOLF_TEST_GAMES: tuple[tuple[int, int], ...] = ((1, 6), (7, 12), (13, 18), (19, 24), (25, 30))


def prepare_werewolf_xl(
    root: PathLike,
    labels_file: PathLike,
    *,
    frames_root: PathLike | None = None,
    audio_root: PathLike | None = None,
    clip_column: str | None = None,
    target_columns: Sequence[str] = ("pleasure", "arousal", "dominance"),
) -> PreparedDataset:
    """Werewolf-XL: regression of 3 scores, 5 game-independent folds.

    Native input: a table of the speaker clips with a header row (comma- or tab-separated) holding a clip-name
    column and one column per target. The release's exact file name and column names are unverified, so both
    are arguments. A clip name is ``<game>_<...>`` (e.g. ``01_01_128``); the game id (1-30) picks the fold:
    fold ``k`` tests games ``WEREWOLF_TEST_GAMES[k-1]``.

    Args:
        root: the release folder (default location of frames and audio).
        labels_file: the label table.
        frames_root: frame folders ``<frames root>/<clip>/``; default ``<root>/face_aligned``.
        audio_root: wav folder ``<audio root>/<clip>.wav``; default ``<root>/audio_16k``.
        clip_column: name of the clip column; default: the first of ``clip, clip_name, name, video, video_name,
            file, filename, sample`` present (case-insensitive).
        target_columns: the target columns in output order (case-insensitive).

    Returns:
        Folds ``split01..split05``, kind ``regression``.
    """
    info = dataset_info("Werewolf-XL")
    root_path = Path(root)
    frames = frames_root if frames_root is not None else root_path / "face_aligned"
    audio_base = audio_root if audio_root is not None else root_path / "audio_16k"
    table = _require_file(Path(labels_file), "Werewolf-XL label table")
    rows = _read_lines(table)
    if not rows:
        raise NativeReleaseError(table, 0, "empty label table")
    header_number, header_line = rows[0]
    delimiter = "\t" if "\t" in header_line else ","
    header = [h.lower() for h in _split_csv_line(table, header_number, header_line, delimiter)]
    if clip_column is not None:
        if clip_column.lower() not in header:
            raise NativeReleaseError(table, header_number, f"no column {clip_column!r} in the header {header}")
        clip_index = header.index(clip_column.lower())
    else:
        clip_index = next((header.index(c) for c in _WEREWOLF_CLIP_COLUMNS if c in header), -1)
        if clip_index < 0:
            known = ", ".join(_WEREWOLF_CLIP_COLUMNS)
            raise NativeReleaseError(table, header_number, f"no clip-name column ({known}) in the header {header}")
    target_indices = []
    for column in target_columns:
        if column.lower() not in header:
            raise NativeReleaseError(table, header_number, f"no target column {column!r} in the header {header}")
        target_indices.append(header.index(column.lower()))
    samples = []
    for number, line in rows[1:]:
        fields = _split_csv_line(table, number, line, delimiter)
        if len(fields) != len(header):
            raise NativeReleaseError(table, number, f"expected {len(header)} fields, got {len(fields)}")
        clip = _strip_suffix(fields[clip_index].rsplit("/", 1)[-1])
        game_text = clip.split("_", 1)[0]
        if not game_text.isdigit() or not 1 <= int(game_text) <= WEREWOLF_TEST_GAMES[-1][1]:
            raise NativeReleaseError(table, number, f"clip name {clip!r} does not start with a game id 01-30")
        targets = []
        for column, index in zip(target_columns, target_indices):
            try:
                value = float(fields[index])
            except ValueError:
                raise NativeReleaseError(
                    table, number, f"target {column!r} must be a number, got {fields[index]!r}"
                ) from None
            if not math.isfinite(value):
                raise NativeReleaseError(table, number, f"target {column!r} is not finite: {fields[index]!r}")
            targets.append(value)
        samples.append(
            Sample(
                clip,
                join_path(frames, clip),
                tuple(targets),
                str(int(game_text)),
                join_path(audio_base, f"{clip}.wav"),
                f"{table}:{number}",
            )
        )
    if not samples:
        raise NativeReleaseError(table, 0, "no clips in the label table")
    _check_unique(samples, str(table))
    test_groups = [
        (name, [str(g) for g in range(first, last + 1)]) for name, (first, last) in zip(info.folds, WEREWOLF_TEST_GAMES)
    ]
    folds = _fold_by_groups(samples, test_groups)
    return PreparedDataset(info.name, "regression", folds, tuple(target_columns))


# ----------------------------------------------------------------------------------------------------------------
# VoxCeleb2
# ----------------------------------------------------------------------------------------------------------------


def _voxceleb2_video_dir(root: Path, video_dir: PathLike | None) -> Path:
    if video_dir is not None:
        return _require_dir(Path(video_dir), "VoxCeleb2 mp4 folder")
    for candidate in (root / "dev" / "mp4", root / "mp4"):
        if candidate.is_dir():
            return candidate
    if root.is_dir() and any(p.is_dir() and p.name.startswith("id") for p in root.iterdir()):
        return root
    raise MissingReleaseFileError(root / "dev" / "mp4", "VoxCeleb2 dev mp4 folder", "pass --video-dir")


def _decodable(path: str) -> str | None:
    """None when the video opens and has frames, else the reason (runs in worker processes)."""
    from ..data.readers import VideoFileReader

    try:
        with VideoFileReader(path) as reader:
            if len(reader) == 0:
                return "no frames"
    except Exception as error:  # noqa: BLE001 - any decoder failure means "unreadable"
        return f"{type(error).__name__}: {str(error)[:200]}"
    return None


def prepare_voxceleb2(
    root: PathLike,
    *,
    video_dir: PathLike | None = None,
    audio_root: PathLike | None = None,
    check_decodable: bool = False,
    workers: int = 1,
) -> PreparedDataset:
    """VoxCeleb2 dev: the pre-training list of every clip.

    Native layout: ``<root>/dev/mp4/id<nnnnn>/<youtube id>/<nnnnn>.mp4``. Clip ids are ``id/youtube/nnnnn``.

    Args:
        root: the release folder (``<root>/dev/mp4``, ``<root>/mp4`` or the mp4 folder itself).
        video_dir: explicit mp4 folder.
        audio_root: wav folder mirroring the mp4 tree (``<audio root>/id/youtube/nnnnn.wav``); only used to drop
            clips without audio in :func:`finalize` (the pre-training list has no audio column).
        check_decodable: open every video (decord or PyAV) and leave out the ones that fail, as the official
            list builder did (283 of 1,092,009); slow.
        workers: processes for ``check_decodable``.

    Returns:
        One fold ``dev`` whose ``train`` split is every clip, kind ``pretrain``.
    """
    info = dataset_info("VoxCeleb2")
    videos = _voxceleb2_video_dir(Path(root), video_dir)
    samples = []
    for path in sorted(videos.glob("*/*/*.mp4")):
        relative = path.relative_to(videos).as_posix()
        clip_id = relative[: -len(".mp4")]
        audio = join_path(audio_root, clip_id + ".wav") if audio_root is not None else None
        samples.append(Sample(clip_id, join_path(videos, relative), None, clip_id.split("/")[0], audio, str(path)))
    if not samples:
        raise NativeReleaseError(videos, 0, "no <id>/<youtube id>/<n>.mp4 files found")
    notes = []
    if check_decodable:
        paths = [s.clip_path for s in samples]
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=workers) as pool:
                reasons = list(pool.map(_decodable, paths, chunksize=64))
        else:
            reasons = [_decodable(p) for p in paths]
        broken = [(s, r) for s, r in zip(samples, reasons) if r is not None]
        for sample, reason in broken:
            logger.warning("VoxCeleb2: leaving out %s (%s)", sample.clip_path, reason)
        if broken:
            notes.append(f"{len(broken)} undecodable video(s) left out, e.g. {broken[0][0].clip_id}")
        samples = [s for s, r in zip(samples, reasons) if r is None]
    fold = Fold(info.folds[0], tuple(samples), ())
    return PreparedDataset(info.name, "pretrain", (fold,), (), tuple(notes))


# ----------------------------------------------------------------------------------------------------------------
# Filtering and writing
# ----------------------------------------------------------------------------------------------------------------


def read_exclusion_list(file: PathLike) -> list[str]:
    """Clip ids from a text file, one per line (blank lines and ``#`` comments ignored).

    A line may be a path: for VoxCeleb2-style paths the last three components without ``.mp4`` are taken, for
    others the last component without its suffix (``.../1076_MTI_NEU_XX.flv`` -> ``1076_MTI_NEU_XX``).
    """
    path = _require_file(Path(file), "exclusion list")
    ids = []
    for _, line in _read_lines(path):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        ids.append(text.split()[0])
    return ids


def _exclusion_keys(entry: str) -> set[str]:
    entry = entry.strip().rstrip("/")
    keys = {entry, _strip_suffix(entry)}
    parts = _strip_suffix(entry).split("/")
    keys.add(parts[-1])
    if len(parts) >= 3:
        keys.add("/".join(parts[-3:]))
    return keys


def _media_problem(sample: Sample, frame_ext: str | None) -> str | None:
    clip = Path(sample.clip_path)
    if not clip.exists():
        return f"no {clip}"
    if clip.is_dir() and frame_ext is not None and next(clip.glob(f"*.{frame_ext}"), None) is None:
        return f"no *.{frame_ext} frames in {clip}"
    if sample.audio_path is not None and not Path(sample.audio_path).is_file():
        return f"no {sample.audio_path}"
    return None


def _to_row(sample: Sample, kind: str) -> AnnotationRow:
    if kind == "pretrain":
        return AnnotationRow(sample.clip_path, None)
    audio = sample.audio_path if kind in ("audio_visual", "regression") else None
    return AnnotationRow(sample.clip_path, sample.label, audio)


def finalize(
    prepared: PreparedDataset,
    out_dir: PathLike,
    *,
    exclude: Iterable[str] = (),
    skip_missing: bool = False,
) -> PrepareReport:
    """Filter the samples, write the split files, the label names and the checksum file.

    Args:
        prepared: output of a ``prepare_*`` function.
        out_dir: output folder; gets ``<fold>/{train,val,test}.csv`` (``<fold>/train.csv`` only for
            pre-training), ``label_names.txt`` (labelled datasets) and ``checksums.sha256``.
        exclude: clip ids (or paths, see :func:`read_exclusion_list`) to leave out.
        skip_missing: leave out clips whose frame folder (with at least one frame of the dataset's extension),
            video file or wav file does not exist, instead of writing them.

    Returns:
        The report (counts, dropped clips, sha256 of each written file).
    """
    info = dataset_info(prepared.dataset)
    out = Path(out_dir)
    exclude = list(exclude)
    wanted: set[str] = set()
    key_of: dict[str, str] = {}
    for entry in exclude:
        for key in _exclusion_keys(entry):
            wanted.add(key)
            key_of.setdefault(key, entry)
    matched_entries: set[str] = set()
    excluded: list[str] = []
    missing: list[tuple[str, str]] = []
    problems: dict[str, str | None] = {}

    def keep(sample: Sample) -> bool:
        if sample.clip_id in wanted:
            matched_entries.add(key_of[sample.clip_id])
            if sample.clip_id not in excluded:
                excluded.append(sample.clip_id)
            return False
        if skip_missing:
            if sample.clip_id not in problems:
                problems[sample.clip_id] = _media_problem(sample, info.frame_ext)
                if problems[sample.clip_id] is not None:
                    missing.append((sample.clip_id, problems[sample.clip_id]))  # type: ignore[arg-type]
            return problems[sample.clip_id] is None
        return True

    for fold in prepared.folds:
        for sample in (*fold.train, *fold.test, *(fold.val or ())):
            for path in (sample.clip_path, sample.audio_path):
                if path is not None and re.search(r"\s", path):
                    raise PrepareOptionError(
                        f"the path {path!r} contains whitespace, which the space-separated annotation files cannot "
                        "hold; move or symlink the data to a folder whose path has no spaces"
                    )
    written: list[Path] = []
    counts: dict[str, dict[str, int]] = {}
    for fold in prepared.folds:
        splits = fold.splits()
        names = ("train",) if prepared.kind == "pretrain" else ("train", "val", "test")
        counts[fold.name] = {}
        for split in names:
            samples = sorted((s for s in splits[split] if keep(s)), key=lambda s: (s.clip_path, s.audio_path or ""))
            file = out / fold.name / f"{split}.csv"
            rows = [_to_row(s, prepared.kind) for s in samples]
            write_annotations(file, rows, kind=prepared.kind)  # type: ignore[arg-type]
            written.append(file)
            counts[fold.name][split] = len(samples)
            logger.info("%s: %d clips -> %s", prepared.dataset, len(samples), file)
    if prepared.label_names:
        label_file = out / "label_names.txt"
        atomic_write_text(label_file, "".join(f"{name}\n" for name in prepared.label_names))
        written.append(label_file)
    checksums = {path.relative_to(out).as_posix(): sha256_file(path) for path in written}
    checksums = dict(sorted(checksums.items()))
    checksum_file = out / "checksums.sha256"
    atomic_write_text(checksum_file, "".join(f"{digest}  {name}\n" for name, digest in checksums.items()))
    unmatched = [entry for entry in dict.fromkeys(exclude) if entry not in matched_entries]
    official: dict[str, tuple[int, int]] = {}
    if info.official_sizes and prepared.dataset == info.name and len(info.folds) == len(prepared.folds):
        official = dict(zip(info.folds, info.official_sizes))
    return PrepareReport(
        dataset=prepared.dataset,
        out_dir=out,
        kind=prepared.kind,
        counts=counts,
        official_sizes=official,
        checksums=checksums,
        checksum_file=checksum_file,
        excluded=excluded,
        unmatched_exclusions=unmatched,
        missing_media=missing,
        notes=prepared.notes,
    )


#: The exceptions that mean "the release (or an argument pointing into it) is wrong", for the CLI scripts.
INPUT_ERRORS: tuple[type[Exception], ...] = (NativeReleaseError, MissingReleaseFileError, PrepareOptionError)


# ----------------------------------------------------------------------------------------------------------------
# Command-line plumbing shared by datasets/<name>/prepare.py
# ----------------------------------------------------------------------------------------------------------------


def build_parser(
    dataset: str,
    description: str | None,
    *,
    frames_help: str | None,
    audio_help: str | None,
) -> argparse.ArgumentParser:
    """The argument parser every ``datasets/<name>/prepare.py`` starts from.

    Options: ``--root`` (required), ``--out`` (required), ``--frames-root`` (when ``frames_help``),
    ``--audio-root`` (when ``audio_help``), ``--exclude`` (repeatable), ``--exclude-list``, ``--skip-missing``,
    ``--verbose``. Scripts add their dataset's own options.

    Args:
        dataset: registry name, for the help text.
        description: the script's docstring.
        frames_help: help of ``--frames-root`` (None: no such option).
        audio_help: help of ``--audio-root`` (None: no such option).
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter, prog=f"prepare {dataset}"
    )
    parser.add_argument("--root", type=Path, required=True, help=f"folder of the native {dataset} release")
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder for <fold>/{train,val,test}.csv and checksums.sha256"
    )
    if frames_help is not None:
        parser.add_argument("--frames-root", type=Path, default=None, help=frames_help)
    if audio_help is not None:
        parser.add_argument("--audio-root", type=Path, default=None, help=audio_help)
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="CLIP_ID", help="leave this clip out (repeatable)"
    )
    parser.add_argument("--exclude-list", type=Path, default=None, help="text file of clip ids to leave out")
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out clips whose frame folder (or video) or wav file does not exist, instead of writing them",
    )
    parser.add_argument("--verbose", action="store_true", help="log progress")
    return parser


def exclusions_from_args(args: argparse.Namespace) -> list[str]:
    """``--exclude`` ids followed by the ids of ``--exclude-list``."""
    ids = list(getattr(args, "exclude", []) or [])
    if getattr(args, "exclude_list", None) is not None:
        ids.extend(read_exclusion_list(args.exclude_list))
    return ids


def run_from_args(
    args: argparse.Namespace, build: Callable[[], PreparedDataset], *, extra_exclude: Iterable[str] = ()
) -> PrepareReport:
    """Build the dataset with ``build()`` and :func:`finalize` it with the common options of ``args``."""
    prepared = build()
    exclude = [*exclusions_from_args(args), *extra_exclude]
    return finalize(prepared, args.out, exclude=exclude, skip_missing=bool(getattr(args, "skip_missing", False)))


def run_cli(
    args: argparse.Namespace, build: Callable[[], PreparedDataset], *, extra_exclude: Iterable[str] = ()
) -> int:
    """The body of every ``datasets/<name>/prepare.py``: set up logging (``--verbose``), :func:`run_from_args`, print
    the report; a problem with the release is printed as ``error: ...`` and gives exit code 2 (nothing written)."""
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        report = run_from_args(args, build, extra_exclude=extra_exclude)
    except INPUT_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.text())
    return 0
