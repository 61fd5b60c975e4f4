"""maedfer.data.registry against the facts in the specs (class counts, label orders, folds, sampling rates)."""

from __future__ import annotations

import dataclasses

import pytest

from maedfer.data.registry import DATASETS, DatasetInfo, dataset_info, list_datasets, normalize_dataset_name

# (num_classes, label order) as written in the specs' dataset tables.
SPEC_LABELS = {
    "DFEW": ["Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear"],
    "FERV39k": ["Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear"],
    "MAFW": [
        "anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise",
        "contempt", "anxiety", "helplessness", "disappointment",
    ],
    "CREMA-D": ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"],
    "RAVDESS": ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"],
    "MSP-IMPROV": ["angry", "happy", "neutral", "sad"],
    "eNTERFACE05": ["anger", "disgust", "fear", "happiness", "sadness", "surprise"],
}


@pytest.mark.parametrize("name", sorted(SPEC_LABELS))
def test_label_orders_match_the_specs(name: str) -> None:
    info = dataset_info(name)
    assert list(info.label_names) == SPEC_LABELS[name]
    assert info.num_classes == len(SPEC_LABELS[name])
    assert info.task == "classification"
    for index, label in enumerate(SPEC_LABELS[name]):
        assert info.label_index(label) == index
        assert info.label_index(label.upper()) == index  # case-insensitive


def test_fold_counts_sampling_rates_and_frame_types() -> None:
    expected = {  # name: (number of folds, sampling rate, frame extension)
        "DFEW": (5, 4, "jpg"),
        "FERV39k": (1, 1, "jpg"),
        "MAFW": (5, 4, "png"),
        "MAFW-43": (5, 4, "png"),
        "CREMA-D": (5, 4, "jpg"),
        "RAVDESS": (6, 4, "jpg"),
        "MSP-IMPROV": (6, 4, "jpg"),
        "eNTERFACE05": (5, 4, "jpg"),
        "Werewolf-XL": (5, 3, "jpg"),
        "VoxCeleb2": (1, 4, None),
    }
    assert set(DATASETS) == set(expected)
    for name, (folds, rate, ext) in expected.items():
        info = DATASETS[name]
        assert len(info.folds) == folds, name
        assert info.sampling_rate == rate, name
        assert info.frame_ext == ext, name
    assert DATASETS["FERV39k"].folds == ("all_scenes",)
    assert DATASETS["DFEW"].folds == ("split01", "split02", "split03", "split04", "split05")
    assert DATASETS["VoxCeleb2"].folds == ("dev",)


def test_official_sizes_from_the_specs() -> None:
    assert DATASETS["DFEW"].official_sizes == ((9356, 2341), (9356, 2341), (9357, 2340), (9358, 2339), (9361, 2336))
    assert {train + test for train, test in DATASETS["DFEW"].official_sizes} == {11697}
    assert DATASETS["FERV39k"].official_sizes == ((31088, 7847),)
    assert DATASETS["MAFW"].official_sizes == ((7333, 1839), (7335, 1837), (7339, 1833), (7340, 1832), (7341, 1831))
    assert {train + test for train, test in DATASETS["MAFW"].official_sizes} == {9172}
    assert DATASETS["RAVDESS"].official_sizes == ((1200, 240),) * 6
    assert DATASETS["MSP-IMPROV"].official_sizes[0] == (6871, 916)
    assert DATASETS["Werewolf-XL"].official_sizes[0] == (11111, 3346)


def test_mafw43_werewolf_and_voxceleb2() -> None:
    mafw43 = dataset_info("MAFW-43")
    assert mafw43.num_classes == 43 and mafw43.label_names == () and mafw43.label_names_from_release
    werewolf = dataset_info("Werewolf-XL")
    assert werewolf.task == "regression" and werewolf.num_classes == 3 and len(werewolf.label_names) == 3
    assert werewolf.annotation_kind == "regression"
    vox = dataset_info("VoxCeleb2")
    assert vox.num_classes == 0 and vox.task == "pretraining" and not vox.is_labeled
    assert vox.annotation_kind == "pretrain"
    assert "1,092,009" in vox.protocol and "283" in vox.protocol
    assert dataset_info("DFEW").annotation_kind == "classification"
    assert dataset_info("CREMA-D").annotation_kind == "audio_visual"


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("crema-d", "CREMA-D"),
        ("cremad", "CREMA-D"),
        ("CREMA_D", "CREMA-D"),
        ("cream-d", "CREMA-D"),  # the HiCMAE script folder's spelling
        ("mafw", "MAFW"),
        ("mafw11", "MAFW"),
        ("MAFW-43", "MAFW-43"),
        ("mafw43", "MAFW-43"),
        ("dfew", "DFEW"),
        ("ferv39k", "FERV39k"),
        ("FERV-39k", "FERV39k"),
        ("msp-improv", "MSP-IMPROV"),
        ("MSP_IMPROV", "MSP-IMPROV"),
        ("enterface", "eNTERFACE05"),
        ("eNTERFACE'05", "eNTERFACE05"),
        ("ravdess", "RAVDESS"),
        ("werewolf-xl", "Werewolf-XL"),
        ("WEREWOLF-XL", "Werewolf-XL"),
        ("voxceleb2", "VoxCeleb2"),
        ("vox2", "VoxCeleb2"),
    ],
)
def test_aliases(alias: str, name: str) -> None:
    assert dataset_info(alias).name == name


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown dataset 'kinetics'.*DFEW"):
        dataset_info("kinetics")
    with pytest.raises(KeyError, match="'Contempt' is not a class of DFEW"):
        dataset_info("DFEW").label_index("Contempt")


def test_no_duplicate_names_or_aliases() -> None:
    keys: dict[str, str] = {}
    for info in DATASETS.values():
        assert DATASETS[info.name] is info
        for alias in (info.name, *info.aliases):
            key = normalize_dataset_name(alias)
            assert keys.setdefault(key, info.name) == info.name, f"{alias} of {info.name} also names {keys[key]}"
        assert len(set(info.folds)) == len(info.folds)
        assert len(set(info.label_names)) == len(info.label_names)
    assert len({normalize_dataset_name(n) for n in DATASETS}) == len(DATASETS)


def test_list_datasets_filters() -> None:
    assert list_datasets()[0] == "DFEW" and len(list_datasets()) == len(DATASETS)
    assert list_datasets(task="regression") == ["Werewolf-XL"]
    assert list_datasets(task="pretraining") == ["VoxCeleb2"]
    assert list_datasets(modality="video") == ["DFEW", "FERV39k"]


def test_entries_are_frozen_and_validated() -> None:
    info = DATASETS["DFEW"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.num_classes = 8  # type: ignore[misc]
    fields = {f.name: getattr(info, f.name) for f in dataclasses.fields(DatasetInfo) if f.init}
    with pytest.raises(ValueError, match="6 label names for num_classes=7"):
        DatasetInfo(**{**fields, "label_names": info.label_names[:6]})
    with pytest.raises(ValueError, match="modality"):
        DatasetInfo(**{**fields, "modality": "audio"})
    with pytest.raises(ValueError, match="one \\(train, test\\) pair per fold"):
        DatasetInfo(**{**fields, "official_sizes": ((1, 1),)})
    with pytest.raises(ValueError, match="num_classes is 0 exactly for pre-training"):
        DatasetInfo(**{**fields, "task": "pretraining"})
