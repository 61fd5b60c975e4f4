"""Official annotation formats (maedfer.data.annotations): parsing, path remapping, errors, writing."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from maedfer.data.annotations import (
    AnnotationError,
    AnnotationRow,
    read_annotations,
    remap_path,
    write_annotations,
)

OFFICIAL_DATA = Path(__file__).resolve().parents[1] / "fixtures" / "official_data"
AUTHORS_ROOT = "/mnt/data1/brain/AC/Dataset/DFEW"


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_classification_tolerates_whitespace_comments_and_crlf(tmp_path: Path) -> None:
    text = (
        "# DFEW split 1, train\r\n"
        f"{AUTHORS_ROOT}/Clip/jpg_256/00001 3   \r\n"
        "\r\n"
        "   \n"
        f"{AUTHORS_ROOT}/Clip/jpg_256/00002\t0\n"
        "  # an indented comment\n"
        "relative/clip 6"
    )
    file = write_text(tmp_path / "train.csv", "\ufeff" + text)  # with a byte-order mark
    rows = read_annotations(file)
    assert rows == [
        AnnotationRow(f"{AUTHORS_ROOT}/Clip/jpg_256/00001", 3, None, 2),
        AnnotationRow(f"{AUTHORS_ROOT}/Clip/jpg_256/00002", 0, None, 5),
        AnnotationRow("relative/clip", 6, None, 7),
    ]
    assert all(type(row.label) is int for row in rows)

    mapped = read_annotations(file, path_map={AUTHORS_ROOT: "/local/dfew/"})
    assert [row.path for row in mapped] == [
        "/local/dfew/Clip/jpg_256/00001",
        "/local/dfew/Clip/jpg_256/00002",
        "relative/clip",
    ]


def test_audio_visual_and_path_map_on_both_paths(tmp_path: Path) -> None:
    file = write_text(
        tmp_path / "test.csv",
        "/data/ycs/AC/Dataset/CREMA-D/face/1001_DFA_ANG_XX /data/ycs/AC/Dataset/CREMA-D/audio/1001_DFA_ANG_XX.wav 0\n"
        "/data/ycs/AC/Dataset/CREMA-D/face/1001_DFA_SAD_XX /elsewhere/1001_DFA_SAD_XX.wav 5\n",
    )
    rows = read_annotations(file, kind="audio_visual", path_map={"/data/ycs/AC/Dataset/CREMA-D": "/srv/cremad"})
    assert rows[0] == AnnotationRow("/srv/cremad/face/1001_DFA_ANG_XX", 0, "/srv/cremad/audio/1001_DFA_ANG_XX.wav", 1)
    assert rows[1] == AnnotationRow("/srv/cremad/face/1001_DFA_SAD_XX", 5, "/elsewhere/1001_DFA_SAD_XX.wav", 2)


def test_regression_targets(tmp_path: Path) -> None:
    file = write_text(tmp_path / "werewolf.csv", "clips/a audio/a.wav 1.0 0.0 0.5\nclips/b audio/b.wav -1.5 2e-3 7\n")
    rows = read_annotations(file, kind="regression", num_targets=3)
    assert rows[0].label == (1.0, 0.0, 0.5) and rows[0].audio_path == "audio/a.wav"
    assert rows[1].label == (-1.5, 0.002, 7.0) and all(type(v) is float for v in rows[1].label)
    assert read_annotations(file, kind="regression") == rows  # count inferred from the first line

    with pytest.raises(AnnotationError, match=r"werewolf\.csv:1: expected 2 targets, got 3"):
        read_annotations(file, kind="regression", num_targets=2)
    uneven = write_text(tmp_path / "uneven.csv", "a a.wav 1 2 3\nb b.wav 1 2\n")
    with pytest.raises(AnnotationError, match=r"uneven\.csv:2: 2 targets, but line 1 has 3"):
        read_annotations(uneven, kind="regression")
    for bad, reason in (("a a.wav 1 x 3", "target 2"), ("a a.wav nan 1 2", "finite"), ("a 1", "got 2 fields")):
        with pytest.raises(AnnotationError, match=reason):
            read_annotations(write_text(tmp_path / "bad.csv", bad + "\n"), kind="regression")


def test_pretrain_lists(tmp_path: Path) -> None:
    file = write_text(
        tmp_path / "info_clean.csv",
        "/vox/dev/mp4/id00012/21Uxsk56VDQ/00001.mp4 0\n"
        "/vox/dev/mp4/id00012/21Uxsk56VDQ/00002 0\n"
        "/vox/dev/mp4/id00012/21Uxsk56VDQ/00003.mp4\n"
        "/vox/dev.v2/mp4/id00013/clip/00004\n",
    )
    paths = [row.path for row in read_annotations(file, kind="pretrain")]
    assert paths == [
        "/vox/dev/mp4/id00012/21Uxsk56VDQ/00001.mp4",
        "/vox/dev/mp4/id00012/21Uxsk56VDQ/00002.mp4",  # official: '.mp4' appended when the name has no '.'
        "/vox/dev/mp4/id00012/21Uxsk56VDQ/00003.mp4",
        "/vox/dev.v2/mp4/id00013/clip/00004.mp4",  # only the last component counts
    ]
    assert all(row.label is None and row.audio_path is None for row in read_annotations(file, kind="pretrain"))
    plain = [row.path for row in read_annotations(file, kind="pretrain", default_suffix=None)]
    assert plain[1] == "/vox/dev/mp4/id00012/21Uxsk56VDQ/00002"
    mapped = read_annotations(file, kind="pretrain", path_map={"/vox": "/data/voxceleb2"})
    assert mapped[1].path == "/data/voxceleb2/dev/mp4/id00012/21Uxsk56VDQ/00002.mp4"

    with pytest.raises(AnnotationError, match=r"bad\.csv:2: the second \(dummy label\) field must be an integer"):
        read_annotations(write_text(tmp_path / "bad.csv", "a.mp4 0\nb.mp4 zero\n"), kind="pretrain")
    with pytest.raises(AnnotationError, match=r"spaces\.csv:1: .*paths cannot contain spaces"):
        read_annotations(write_text(tmp_path / "spaces.csv", "/my videos/a.mp4 0\n"), kind="pretrain")


def test_malformed_lines_name_file_and_line(tmp_path: Path) -> None:
    file = write_text(tmp_path / "val.csv", "clip/a 1\n\n# fine so far\nclip/b one\n")
    with pytest.raises(AnnotationError) as info:
        read_annotations(file)
    error = info.value
    assert isinstance(error, ValueError)
    assert (error.file, error.line) == (str(file), 4)
    assert str(error).startswith(f"{file}:4: ") and "'one'" in str(error)
    restored = pickle.loads(pickle.dumps(error))
    assert (restored.file, restored.line, str(restored)) == (error.file, error.line, str(error))

    cases = {
        "clip/a 1 2\n": r":1: expected 2 space-separated fields .*got 3; paths cannot contain spaces",
        "clip/a\n": r":1: expected 2 space-separated fields",
        "clip/a 1.5\n": r":1: the class label must be an integer, got '1.5'",
        "/my clips/a 1\n": r":1: .*paths cannot contain spaces",
    }
    for text, pattern in cases.items():
        with pytest.raises(AnnotationError, match=pattern):
            read_annotations(write_text(tmp_path / "case.csv", text))
    pattern = r"av\.csv:1: expected 3 space-separated fields \(<clip> <audio> <label>\)"
    with pytest.raises(AnnotationError, match=pattern):
        read_annotations(write_text(tmp_path / "av.csv", "clip/a 3\n"), kind="audio_visual")


def test_bad_arguments(tmp_path: Path) -> None:
    file = write_text(tmp_path / "x.csv", "a 1\n")
    with pytest.raises(ValueError, match="unknown annotation kind"):
        read_annotations(file, kind="detection")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_targets"):
        read_annotations(file, num_targets=3)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_annotations(tmp_path / "missing.csv")
    assert read_annotations(write_text(tmp_path / "empty.csv", "\n# nothing\n")) == []


def test_remap_path_matches_whole_components() -> None:
    mapping = {AUTHORS_ROOT: "/local/dfew", AUTHORS_ROOT + "/Clip/": "/fast/clips/"}
    assert remap_path(AUTHORS_ROOT + "/Clip/jpg_256/00001", mapping) == "/fast/clips/jpg_256/00001"  # longest wins
    assert remap_path(AUTHORS_ROOT + "/Split/train.csv", mapping) == "/local/dfew/Split/train.csv"
    assert remap_path(AUTHORS_ROOT, mapping) == "/local/dfew"
    assert remap_path(AUTHORS_ROOT + "2/Clip/00001", mapping) == AUTHORS_ROOT + "2/Clip/00001"  # no partial names
    assert remap_path("relative/clip", mapping) == "relative/clip"
    assert remap_path("/a/b/c", {"/a": ""}) == "b/c"
    assert remap_path("/a/b/c", None) == "/a/b/c"
    with pytest.raises(ValueError):
        remap_path("/a", {"": "/b"})


@pytest.mark.parametrize(
    ("kind", "rows"),
    [
        ("classification", [AnnotationRow("/d/clip_1", 0), AnnotationRow("rel/clip_2", 10)]),
        ("audio_visual", [AnnotationRow("/d/c1", 3, "/d/c1.wav"), AnnotationRow("/d/c2", 0, "/d/c2.wav")]),
        (
            "regression",
            [
                AnnotationRow("/d/c1", (0.1, -2.5, 1e-07), "/d/c1.wav"),
                AnnotationRow("/d/c2", (1 / 3, 0.0, 7.0), "/d/c2.wav"),
            ],
        ),
        ("pretrain", [AnnotationRow("/vox/a/00001.mp4", None), AnnotationRow("/vox/b/00002.mp4", None)]),
    ],
)
def test_write_read_round_trip(tmp_path: Path, kind: str, rows: list[AnnotationRow]) -> None:
    file = tmp_path / "sub" / f"{kind}.csv"
    write_annotations(file, rows, kind=kind)  # type: ignore[arg-type]
    back = read_annotations(file, kind=kind)  # type: ignore[arg-type]
    assert [(r.path, r.label, r.audio_path) for r in back] == [(r.path, r.label, r.audio_path) for r in rows]
    assert [r.line for r in back] == [1, 2]
    assert sorted(p.name for p in file.parent.iterdir()) == [file.name]  # no temporary file left


def test_written_text_is_the_official_layout(tmp_path: Path) -> None:
    file = tmp_path / "out.csv"
    write_annotations(file, [AnnotationRow("/d/a", 2), AnnotationRow("/d/b", 5.0)])
    assert file.read_text() == "/d/a 2\n/d/b 5\n"
    write_annotations(file, [AnnotationRow("/v/a.mp4", None)], kind="pretrain")
    assert file.read_text() == "/v/a.mp4 0\n"
    write_annotations(file, [AnnotationRow("/f/a", (1.0, 0.0, 0.5), "/w/a.wav")], kind="regression")
    assert file.read_text() == "/f/a /w/a.wav 1.0 0.0 0.5\n"


def test_write_refuses_unrepresentable_rows_atomically(tmp_path: Path) -> None:
    file = tmp_path / "keep.csv"
    file.write_text("old content\n")
    bad_rows = [
        ([AnnotationRow("/d/ok", 1), AnnotationRow("/my clips/a", 1)], "classification", "whitespace"),
        ([AnnotationRow("/d/tab\tname", 1)], "classification", "whitespace"),
        ([AnnotationRow("/d/a", 1, "/my audio/a.wav")], "audio_visual", "whitespace"),
        ([AnnotationRow("/d/a", 1, None)], "audio_visual", "audio_path"),
        ([AnnotationRow("/d/a", 1.5)], "classification", "integer"),
        ([AnnotationRow("/d/a", None)], "classification", "integer"),
        ([AnnotationRow("/d/a", (float("nan"),), "/a.wav")], "regression", "finite"),
        ([AnnotationRow("", 1)], "classification", "non-empty"),
    ]
    for rows, kind, pattern in bad_rows:
        with pytest.raises(ValueError, match=pattern):
            write_annotations(file, rows, kind=kind)  # type: ignore[arg-type]
    assert file.read_text() == "old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.csv"]
    with pytest.raises(ValueError, match="unknown annotation kind"):
        write_annotations(file, [], kind="video")  # type: ignore[arg-type]


def test_official_fixture_annotation_lines(tmp_path: Path) -> None:
    finetune = torch.load(OFFICIAL_DATA / "finetune_dataset.pt", weights_only=True)
    audio_visual = torch.load(OFFICIAL_DATA / "hicmae_av_dataset.pt", weights_only=True)
    pretrain = torch.load(OFFICIAL_DATA / "pretrain_dataset.pt", weights_only=True)
    root = tmp_path / "data_root"
    configs = [(c, "classification") for c in finetune["configs"]]
    configs += [(c, "regression" if c["name"] == "werewolf_xl" else "audio_visual") for c in audio_visual["configs"]]
    for config, kind in configs:
        text = "".join(line + "\n" for line in config["annotation_lines"])
        file = write_text(tmp_path / f"{config['name']}.csv", text)
        num_targets = 3 if kind == "regression" else None
        rows = read_annotations(file, kind=kind, path_map={"{root}": str(root)}, num_targets=num_targets)
        assert len(rows) == len(config["annotation_lines"])
        labels_by_clip = {row.path.rsplit("/", 1)[-1].removesuffix(".jpg"): row.label for row in rows}
        for item in config["modes"]["test"]["items"]:
            expected = tuple(item["label"]) if kind == "regression" else item["label"]
            assert labels_by_clip[item["clip"]] == expected
        assert all(row.path.startswith(str(root) + "/") for row in rows)
        if kind != "classification":
            assert all(row.audio_path == f"{root}/audio/{row.path.rsplit('/', 1)[-1]}.wav" for row in rows)
    for config in pretrain["configs"]:
        file = write_text(tmp_path / f"{config['name']}.csv", "".join(line + "\n" for line in config["setting_lines"]))
        rows = read_annotations(file, kind="pretrain", path_map={"{root}": str(root)})
        expected = [line.split()[0].replace("{root}", str(root)) for line in config["setting_lines"]]
        assert [row.path for row in rows] == expected
