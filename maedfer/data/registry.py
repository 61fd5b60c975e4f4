"""The datasets of the MAE-DFER / SVFAP / HiCMAE papers, as data.

One :class:`DatasetInfo` per dataset holds what the rest of the toolkit needs to know about it: the number of
classes and their index order, the task, the fold names written by ``datasets/<name>/prepare.py``, the frame file
type and the temporal sampling rate of the official fine-tuning scripts. Nothing dispatches on dataset names with
``if``/``elif``; code looks a dataset up with :func:`dataset_info` and reads its fields.

Sources: the specs' data-pipeline sections (MAE-DFER/SVFAP data table, HiCMAE per-dataset recipes) and the split
files committed in the official repositories (their train/test sizes are recorded in ``official_sizes``). Where a
fact is not in those sources the ``notes`` field says "unverified".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "DatasetInfo",
    "DATASETS",
    "SYNTHETIC_CLASSES",
    "dataset_info",
    "dataset_label_names",
    "list_datasets",
    "normalize_dataset_name",
]

#: Allowed values of :attr:`DatasetInfo.modality`.
#: The synthetic face world's 7 classes, in the DFEW label order (``maedfer.synthetic`` draws them).
SYNTHETIC_CLASSES: tuple[str, ...] = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")

MODALITIES: tuple[str, ...] = ("video", "audio_visual", "audio_visual_unlabeled")
#: Allowed values of :attr:`DatasetInfo.task`.
TASKS: tuple[str, ...] = ("classification", "regression", "pretraining")


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of one dataset.

    Attributes:
        name: canonical name (the key of :data:`DATASETS`), e.g. ``"CREMA-D"``.
        num_classes: number of classes for classification; number of regression targets for regression; 0 for
            unlabeled (pre-training) data.
        label_names: class names in label-index order (index ``i`` is ``label_names[i]``); regression target
            names in target order; empty for unlabeled data, or when the names are only known from the release
            (``label_names_from_release``).
        modality: ``"video"`` (faces only), ``"audio_visual"`` (faces + 16 kHz speech) or
            ``"audio_visual_unlabeled"`` (pre-training videos with their sound track).
        task: ``"classification"``, ``"regression"`` or ``"pretraining"``.
        folds: fold folder names written by ``datasets/<name>/prepare.py`` (``<out>/<fold>/{train,val,test}.csv``).
        protocol: one line: folds, frames used, crops, sampling rate.
        frame_ext: extension of the face frames in a clip folder (``"jpg"`` / ``"png"``); ``None`` when the
            clips are video files (pre-training).
        sampling_rate: temporal stride ``sr`` of the official fine-tuning (or pre-training) clip sampler.
        official_splits: where the official folds come from and how validation is done.
        licence: licence / access note (see the dataset's own EULA / licence for the terms).
        homepage: where to request the data.
        aliases: other accepted spellings for :func:`dataset_info` (compared after normalisation).
        official_sizes: ``(train, test)`` clip counts per fold in the official split files, in ``folds`` order;
            empty when unknown.
        label_names_from_release: True when ``label_names`` is empty because the class names are read from the
            release's own label files at preparation time.
        systems: the official code bases that use the dataset.
        notes: anything a user should know, including facts marked "unverified".
    """

    name: str
    num_classes: int
    label_names: tuple[str, ...]
    modality: str
    task: str
    folds: tuple[str, ...]
    protocol: str
    frame_ext: str | None
    sampling_rate: int
    official_splits: str
    licence: str
    homepage: str
    aliases: tuple[str, ...] = ()
    official_sizes: tuple[tuple[int, int], ...] = ()
    label_names_from_release: bool = False
    systems: tuple[str, ...] = ()
    notes: str = ""
    _normalized_aliases: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"{self.name}: modality {self.modality!r} is not one of {MODALITIES}")
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: task {self.task!r} is not one of {TASKS}")
        if self.num_classes < 0:
            raise ValueError(f"{self.name}: num_classes must be >= 0")
        if (self.task == "pretraining") != (self.num_classes == 0):
            raise ValueError(f"{self.name}: num_classes is 0 exactly for pre-training data")
        if self.label_names_from_release:
            if self.label_names:
                raise ValueError(f"{self.name}: label_names must be empty when read from the release")
        elif len(self.label_names) != self.num_classes:
            raise ValueError(
                f"{self.name}: {len(self.label_names)} label names for num_classes={self.num_classes}"
            )
        if len(set(self.label_names)) != len(self.label_names):
            raise ValueError(f"{self.name}: duplicate label names")
        if not self.folds or len(set(self.folds)) != len(self.folds):
            raise ValueError(f"{self.name}: folds must be non-empty and unique")
        if self.official_sizes and len(self.official_sizes) != len(self.folds):
            raise ValueError(f"{self.name}: official_sizes needs one (train, test) pair per fold")
        if self.sampling_rate < 1:
            raise ValueError(f"{self.name}: sampling_rate must be >= 1")
        normalized = tuple(dict.fromkeys(normalize_dataset_name(a) for a in (self.name, *self.aliases)))
        object.__setattr__(self, "_normalized_aliases", normalized)

    @property
    def is_labeled(self) -> bool:
        """Whether clips carry labels (False for pre-training data)."""
        return self.num_classes > 0

    @property
    def annotation_kind(self) -> str:
        """The ``maedfer.data.annotations`` layout of the files ``prepare.py`` writes by default.

        ``"classification"`` for video-only classification, ``"audio_visual"`` for audio-visual classification
        (prepare.py writes ``"classification"`` instead when no audio folder is given), ``"regression"`` and
        ``"pretrain"``.
        """
        if self.task == "pretraining":
            return "pretrain"
        if self.task == "regression":
            return "regression"
        return "audio_visual" if self.modality == "audio_visual" else "classification"

    def label_index(self, label_name: str) -> int:
        """Index of a class name (exact match first, then case-insensitive).

        Raises:
            KeyError: the name is not a class of this dataset.
        """
        if label_name in self.label_names:
            return self.label_names.index(label_name)
        lowered = [name.lower() for name in self.label_names]
        if label_name.lower() in lowered:
            return lowered.index(label_name.lower())
        raise KeyError(f"{label_name!r} is not a class of {self.name} (classes: {', '.join(self.label_names)})")


def normalize_dataset_name(name: str) -> str:
    """Lower-case a dataset name and drop ``-``, ``_``, ``'``, ``.``, and whitespace (``"CREMA-D"`` -> ``"cremad"``)."""
    return re.sub(r"[-_'.\s]", "", name).lower()


def _folds(count: int) -> tuple[str, ...]:
    return tuple(f"split{k:02d}" for k in range(1, count + 1))


_SEVEN_BASIC = ("Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear")
_MAFW_SINGLE = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
)

_ENTRIES: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        name="DFEW",
        num_classes=7,
        label_names=_SEVEN_BASIC,
        modality="video",
        task="classification",
        folds=_folds(5),
        protocol=(
            "5 official folds (set_1..set_5, single-labelled clips); all face frames of a clip (*.jpg, sorted); "
            "frames squashed to 160x160, 16 frames at sampling rate 4; test: 2 temporal x 2 (identical) spatial views"
        ),
        frame_ext="jpg",
        sampling_rate=4,
        official_splits=(
            "EmoLabel_DataSplit/{train,test}(single-labeled)/set_k.csv of the release; label = official label - 1; "
            "val.csv is a copy of test.csv (as in MAE-DFER)"
        ),
        licence="Academic use only; request access with the DFEW EULA (see the dataset's EULA)",
        homepage="https://dfew-dataset.github.io/",
        official_sizes=((9356, 2341), (9356, 2341), (9357, 2340), (9358, 2339), (9361, 2336)),
        systems=("MAE-DFER", "SVFAP", "HiCMAE"),
        notes=(
            "MAE-DFER's committed files point at Clip/jpg_256/<5-digit id>; prepare.py defaults to the release's "
            "Clip/clip_224x224 face crops (pass --frames-root to use another frame folder)"
        ),
    ),
    DatasetInfo(
        name="FERV39k",
        num_classes=7,
        label_names=_SEVEN_BASIC,
        modality="video",
        task="classification",
        folds=("all_scenes",),
        protocol=(
            "1 official split (All_scenes train/test); all face frames (*.jpg, sorted); 160x160, 16 frames at "
            "sampling rate 1; test: 2x2 views"
        ),
        frame_ext="jpg",
        sampling_rate=1,
        official_splits="4_setups/All_scenes/{train,test}_All.csv of the release; val.csv is a copy of test.csv",
        licence="Academic use only; request access with the FERV39k licence agreement (see the dataset's EULA)",
        homepage="https://wangyanckxx.github.io/Proj_CVPR2022_FERV39k.html",
        aliases=("ferv-39k", "ferv39"),
        official_sizes=((31088, 7847),),
        systems=("MAE-DFER", "SVFAP"),
        notes="homepage address unverified",
    ),
    DatasetInfo(
        name="MAFW",
        num_classes=11,
        label_names=_MAFW_SINGLE,
        modality="audio_visual",
        task="classification",
        folds=_folds(5),
        protocol=(
            "5 official folds (single/no_caption set_1..set_5); all face frames (*.png, sorted); 160x160, 16 frames "
            "at sampling rate 4; test: 2x2 views; HiCMAE adds 16 kHz audio and drops the 21 clips without audio"
        ),
        frame_ext="png",
        sampling_rate=4,
        official_splits=(
            "Train & Test Set/single/no_caption/set_k/{train,test}.txt of the release; val.csv is a copy of test.csv"
        ),
        licence="Non-commercial research only; request access with the MAFW licence agreement (see the dataset's EULA)",
        homepage="https://mafw-database.github.io/MAFW",
        aliases=("mafw11", "mafw-11", "mafw_single"),
        official_sizes=((7333, 1839), (7335, 1837), (7339, 1833), (7340, 1832), (7341, 1831)),
        systems=("MAE-DFER", "SVFAP", "HiCMAE"),
        notes=(
            "official sizes are MAE-DFER's (video only); HiCMAE's audio-visual files have 7320/1836, 7323/1833, "
            "7329/1827, 7327/1829, 7325/1831"
        ),
    ),
    DatasetInfo(
        name="MAFW-43",
        num_classes=43,
        label_names=(),
        modality="audio_visual",
        task="classification",
        folds=_folds(5),
        protocol=(
            "5 folds of the compound-expression set (11 single + 32 multi-label categories = 43 classes); frames "
            "*.png; 160x160, 16 frames at sampling rate 4"
        ),
        frame_ext="png",
        sampling_rate=4,
        official_splits=(
            "class names and folds are read from the release's compound label files at preparation time "
            "(datasets/mafw/prepare.py --label-set 43); the official split CSVs are not in the HiCMAE repository"
        ),
        licence="as MAFW (see the dataset's EULA)",
        homepage="https://mafw-database.github.io/MAFW",
        aliases=("mafw43", "mafw_compound", "mafw-compound"),
        label_names_from_release=True,
        systems=("HiCMAE",),
        notes=(
            "the 43 class names and their index order are not known here: prepare.py writes the order it uses to "
            "label_names.txt (unverified against the authors' order)"
        ),
    ),
    DatasetInfo(
        name="CREMA-D",
        num_classes=6,
        label_names=("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"),
        modality="audio_visual",
        task="classification",
        folds=_folds(5),
        protocol=(
            "5 actor-independent folds (test actors 1001-1018, 1019-1036, 1037-1054, 1055-1072, 1073-1091); "
            "all face frames (*.jpg); 160x160, 16 frames at sampling rate 4; 16 kHz audio (HiCMAE)"
        ),
        frame_ext="jpg",
        sampling_rate=4,
        official_splits="actor id ranges of the official CSV builder; train + test only, val.csv is a copy of test.csv",
        licence="Open Database License per the dataset's GitHub page (see the dataset's licence)",
        homepage="https://github.com/CheyneyComputerScience/CREMA-D",
        aliases=("cremad", "crema", "cream-d", "crema_d"),
        official_sizes=((5979, 1463), (5972, 1470), (5966, 1476), (5966, 1476), (5885, 1557)),
        systems=("MAE-DFER", "HiCMAE"),
        notes=(
            "official sizes are MAE-DFER's (all 7,442 clips); HiCMAE drops 1076_MTI_NEU_XX, 1076_MTI_SAD_XX, "
            "1064_TIE_SAD_XX, 1064_IEO_DIS_MD (broken) and 1040_ITH_SAD_XX (reason not stated): 5974/1463 in fold 1"
        ),
    ),
    DatasetInfo(
        name="RAVDESS",
        num_classes=8,
        label_names=("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
        modality="audio_visual",
        task="classification",
        folds=_folds(6),
        protocol=(
            "6 actor-independent folds (test actors 1-4, 5-8, ..., 21-24); video-only speech clips (02-01-*), "
            "audio from the audio-only speech files (03-01-*); frames *.jpg; 160x160, 16 frames at sampling rate 4"
        ),
        frame_ext="jpg",
        sampling_rate=4,
        official_splits="actor groups of the committed CSVs; val.csv is a copy of test.csv",
        licence="CC BY-NC-SA 4.0 per the Zenodo record (see the dataset's licence)",
        homepage="https://zenodo.org/record/1188976",
        aliases=("ravdess-8",),
        official_sizes=((1200, 240),) * 6,
        systems=("MAE-DFER", "HiCMAE"),
        notes="no official fine-tuning script: the sampling rate 4 is the scripts' default (unverified for RAVDESS)",
    ),
    DatasetInfo(
        name="MSP-IMPROV",
        num_classes=4,
        label_names=("angry", "happy", "neutral", "sad"),
        modality="audio_visual",
        task="classification",
        folds=_folds(6),
        protocol=(
            "6 session-independent folds (leave one of the 6 sessions out); consensus labels A/H/N/S of "
            "Evaluation.txt; frames *.jpg; 160x160, 16 frames at sampling rate 4"
        ),
        frame_ext="jpg",
        sampling_rate=4,
        official_splits="session k is the test set of fold k; val.csv is byte-identical to test.csv in HiCMAE",
        licence="Academic licence agreement with the MSP lab, UT Dallas (see the dataset's EULA)",
        homepage="https://ecs.utdallas.edu/research/researchlabs/msp-lab/MSP-Improv.html",
        aliases=("mspimprov", "msp_improv", "improv"),
        official_sizes=((6871, 916), (6459, 1328), (6165, 1622), (6743, 1044), (6380, 1407), (6317, 1470)),
        systems=("HiCMAE",),
        notes="no official fine-tuning script: sampling rate 4 is the default (unverified); homepage unverified",
    ),
    DatasetInfo(
        name="eNTERFACE05",
        num_classes=6,
        label_names=("anger", "disgust", "fear", "happiness", "sadness", "surprise"),
        modality="audio_visual",
        task="classification",
        folds=_folds(5),
        protocol=(
            "5 subject-independent folds (subjects in id order, 9 per test fold, the last fold the rest); frames "
            "*.jpg; 160x160, 16 frames at sampling rate 4"
        ),
        frame_ext="jpg",
        sampling_rate=4,
        official_splits=(
            "subject groups of MAE-DFER's committed CSVs (43 subjects, no subject 6; test subjects 1-5,7-10 / "
            "11-19 / 20-28 / 29-37 / 38-44); val.csv is a copy of test.csv"
        ),
        licence="Free for research per the eNTERFACE'05 project page (see the dataset's licence; unverified)",
        homepage="http://www.enterface.net/enterface05/",
        aliases=("enterface", "enterface05", "enterface-05", "enterface'05", "enterface2005"),
        official_sizes=((1017, 270), (1017, 270), (1020, 267), (1017, 270), (1077, 210)),
        systems=("MAE-DFER",),
        notes="no official fine-tuning script: sampling rate 4 is the default (unverified); homepage unverified",
    ),
    DatasetInfo(
        name="Werewolf-XL",
        num_classes=3,
        label_names=("pleasure", "arousal", "dominance"),
        modality="audio_visual",
        task="regression",
        folds=_folds(5),
        protocol=(
            "regression of 3 continuous scores; 5 game-session-independent folds (test games 01-06, 07-12, 13-18, "
            "19-24, 25-30); frames *.jpg; 160x160, 16 frames at sampling rate 3; 16 kHz audio"
        ),
        frame_ext="jpg",
        sampling_rate=3,
        official_splits="game id = first '_' field of the clip name; val.csv is a copy of test.csv",
        licence="Research use on request from the authors (see the dataset's EULA)",
        homepage="",
        aliases=("werewolfxl", "werewolf", "werewolf_xl"),
        official_sizes=((11111, 3346), (11710, 2747), (11391, 3066), (10930, 3527), (12686, 1771)),
        systems=("SVFAP", "HiCMAE"),
        notes=(
            "the official files leave the 3 target columns unnamed; pleasure (valence), arousal, dominance is the "
            "order assumed here (unverified); homepage unverified"
        ),
    ),
    DatasetInfo(
        name="VoxCeleb2",
        num_classes=0,
        label_names=(),
        modality="audio_visual_unlabeled",
        task="pretraining",
        folds=("dev",),
        protocol=(
            "pre-training on the dev set (1,092,009 mp4 clips, 283 not decodable); 224x224 25 fps videos, top-centre "
            "160x160 cut, 16 frames at stride 4"
        ),
        frame_ext=None,
        sampling_rate=4,
        official_splits="the whole dev set minus undecodable clips (1,091,726); HiCMAE also drops 145 clips with AV "
        "duration mismatch (1,091,581)",
        licence="See the VoxCeleb licence on the dataset page",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox2.html",
        aliases=("vox2", "voxceleb-2", "voxceleb2dev"),
        systems=("MAE-DFER", "SVFAP", "HiCMAE"),
    ),
)

#: Every dataset, keyed by canonical name.
DATASETS: dict[str, DatasetInfo] = {info.name: info for info in _ENTRIES}


def _build_alias_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for info in _ENTRIES:
        for key in info._normalized_aliases:
            if key in index and index[key] != info.name:
                raise ValueError(f"dataset alias {key!r} is used by both {index[key]} and {info.name}")
            index[key] = info.name
    return index


_ALIAS_INDEX = _build_alias_index()


def dataset_info(name: str) -> DatasetInfo:
    """Look a dataset up by name or alias, ignoring case, ``-``, ``_``, ``'``, ``.`` and spaces.

    Args:
        name: e.g. ``"CREMA-D"``, ``"cremad"``, ``"crema_d"``, ``"mafw11"``, ``"MAFW-43"``.

    Returns:
        The dataset's :class:`DatasetInfo`.

    Raises:
        KeyError: unknown name; the message lists the known datasets.
    """
    key = normalize_dataset_name(name)
    if key not in _ALIAS_INDEX:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[_ALIAS_INDEX[key]]


def dataset_label_names(dataset: str, task: str = "classification") -> list[str] | None:
    """Output names of a model trained on ``dataset`` (a registry name, or ``"synthetic"`` for the synthetic world).

    The synthetic world's classes (:data:`SYNTHETIC_CLASSES`), or ``["valence", "arousal"]``
    for its regression split; a registered dataset's :attr:`DatasetInfo.label_names` (class names, or regression
    target names). ``None`` for an unknown dataset or one whose names are not recorded.
    """
    if dataset == "synthetic":
        return ["valence", "arousal"] if task == "regression" else list(SYNTHETIC_CLASSES)
    try:
        names = dataset_info(dataset).label_names
    except (KeyError, ValueError):
        return None
    return list(names) if names else None


def list_datasets(*, task: str | None = None, modality: str | None = None) -> list[str]:
    """Canonical dataset names, in registry order, optionally filtered by ``task`` and/or ``modality``."""
    return [
        info.name
        for info in _ENTRIES
        if (task is None or info.task == task) and (modality is None or info.modality == modality)
    ]
