"""datasets/<name>/prepare.py on small fake releases built in each dataset's native layout.

Every expectation below is written out by hand from the fake release (which clip has which native label, which
actor / subject / session / game goes to which fold per the protocol), not computed by the code under test.
Checksums are recomputed here with hashlib.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
DATASET_DIRS = (
    "dfew", "ferv39k", "mafw", "crema-d", "ravdess", "msp-improv", "enterface05", "werewolf-xl", "voxceleb2"
)


def load_script(name: str) -> ModuleType:
    """Import datasets/<name>/prepare.py by path (datasets/ is not a package)."""
    path = REPO / "datasets" / name / "prepare.py"
    spec = importlib.util.spec_from_file_location(f"prepare_{name.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = load_script(name).main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def check_checksums(out: Path, stdout: str, expected_files: set[str]) -> dict[str, str]:
    """checksums.sha256 lists exactly ``expected_files`` with their real sha256, and stdout prints each line."""
    recorded = {}
    for text in lines(out / "checksums.sha256"):
        digest, name = text.split("  ")
        recorded[name] = digest
    assert set(recorded) == expected_files
    for name, digest in recorded.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
        assert f"{digest}  {name}" in stdout
    return recorded


def fold_files(folds: list[str], splits: tuple[str, ...] = ("train", "val", "test")) -> set[str]:
    return {f"{fold}/{split}.csv" for fold in folds for split in splits} | {"label_names.txt"}


def check_val_is_test(out: Path, folds: list[str]) -> None:
    for fold in folds:
        assert (out / fold / "val.csv").read_bytes() == (out / fold / "test.csv").read_bytes()


FOLDS5 = [f"split0{k}" for k in range(1, 6)]
FOLDS6 = [f"split0{k}" for k in range(1, 7)]


# ----------------------------------------------------------------------------------------------------------------
# DFEW
# ----------------------------------------------------------------------------------------------------------------


def make_dfew(root: Path) -> None:
    """10 clips; set k tests clips 2k-1 and 2k; clip v has the official (1-based) label DFEW_LABELS[v]."""
    for k in range(1, 6):
        test_ids = [2 * k - 1, 2 * k]
        train_ids = [v for v in range(1, 11) if v not in test_ids]
        for split, ids in (("train", train_ids), ("test", test_ids)):
            rows = "".join(f"{v},{DFEW_LABELS[v]}\n" for v in reversed(ids))  # unsorted on purpose
            file = root / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{k}.csv"
            write(file, "video_name,label\n" + rows)


DFEW_LABELS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 1, 9: 5, 10: 7}


def test_dfew_folds_labels_and_checksums(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = tmp_path / "DFEW", tmp_path / "out"
    make_dfew(root)
    rc, stdout, _ = run("dfew", ["--root", root, "--out", out], capsys)
    assert rc == 0
    frames = f"{root.as_posix()}/Clip/clip_224x224"
    # official label - 1: Happy(1)->0, Sad(2)->1
    assert lines(out / "split01" / "test.csv") == [f"{frames}/00001 0", f"{frames}/00002 1"]
    assert lines(out / "split01" / "train.csv") == [
        f"{frames}/00003 2",
        f"{frames}/00004 3",
        f"{frames}/00005 4",
        f"{frames}/00006 5",
        f"{frames}/00007 6",
        f"{frames}/00008 0",
        f"{frames}/00009 4",
        f"{frames}/00010 6",
    ]
    assert lines(out / "split05" / "test.csv") == [f"{frames}/00009 4", f"{frames}/00010 6"]
    check_val_is_test(out, FOLDS5)
    assert lines(out / "label_names.txt") == ["Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear"]
    first = check_checksums(out, stdout, fold_files(FOLDS5))

    # determinism: a second run into another folder gives the same bytes
    rc, stdout2, _ = run("dfew", ["--root", root, "--out", tmp_path / "out2"], capsys)
    assert rc == 0
    assert check_checksums(tmp_path / "out2", stdout2, fold_files(FOLDS5)) == first
    assert (out / "checksums.sha256").read_bytes() == (tmp_path / "out2" / "checksums.sha256").read_bytes()


def test_dfew_frames_root_and_headerless_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "DFEW"
    make_dfew(root)
    write(root / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv", "2,2\n1,1\n")  # no header
    rc, _, _ = run("dfew", ["--root", root, "--out", tmp_path / "out", "--frames-root", "faces/dfew"], capsys)
    assert rc == 0
    assert lines(tmp_path / "out" / "split01" / "test.csv") == ["faces/dfew/00001 0", "faces/dfew/00002 1"]


def test_dfew_missing_label_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "DFEW"
    make_dfew(root)
    missing = root / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_3.csv"
    missing.unlink()
    rc, _, stderr = run("dfew", ["--root", root, "--out", tmp_path / "out"], capsys)
    assert rc == 2
    assert str(missing) in stderr and "not found" in stderr
    assert not (tmp_path / "out").exists()  # nothing is written when the release is incomplete


def test_dfew_unknown_label_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "DFEW"
    make_dfew(root)
    bad = write(root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_2.csv", "video_name,label\n3,1\n4,8\n")
    rc, _, stderr = run("dfew", ["--root", root, "--out", tmp_path / "out"], capsys)
    assert rc == 2
    assert f"{bad}:3" in stderr and "unknown label 8" in stderr


def test_dfew_clip_in_train_and_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "DFEW"
    make_dfew(root)
    bad = write(root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_4.csv", "video_name,label\n7,1\n3,2\n")
    rc, _, stderr = run("dfew", ["--root", root, "--out", tmp_path / "out"], capsys)
    assert rc == 2  # clip 7 is also in set_4's test split
    assert f"{bad}:2" in stderr and "'00007'" in stderr and "both" in stderr


# ----------------------------------------------------------------------------------------------------------------
# FERV39k
# ----------------------------------------------------------------------------------------------------------------


def make_ferv39k(root: Path) -> None:
    setup = root / "4_setups" / "All_scenes"
    write(
        setup / "train_All.csv",
        "Social/Fear/0003 Fear\nAction/Happy/0001 Happy\nAction/Angry/0002 Angry\nInterview/Neutral/0007 Neutral\n",
    )
    write(
        setup / "test_All.csv", "Social/Surprise/0004 Surprise\nDailyLife/Disgust/0005 Disgust\nAction/Sad/0006 Sad\n"
    )


def test_ferv39k_label_order_and_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = tmp_path / "FERV39k", tmp_path / "out"
    make_ferv39k(root)
    rc, stdout, _ = run("ferv39k", ["--root", root, "--out", out], capsys)
    assert rc == 0
    frames = f"{root.as_posix()}/2_ClipsforFaceCrop"
    # Happy 0, Sad 1, Neutral 2, Angry 3, Surprise 4, Disgust 5, Fear 6; sorted by path
    assert lines(out / "all_scenes" / "train.csv") == [
        f"{frames}/Action/Angry/0002 3",
        f"{frames}/Action/Happy/0001 0",
        f"{frames}/Interview/Neutral/0007 2",
        f"{frames}/Social/Fear/0003 6",
    ]
    assert lines(out / "all_scenes" / "test.csv") == [
        f"{frames}/Action/Sad/0006 1",
        f"{frames}/DailyLife/Disgust/0005 5",
        f"{frames}/Social/Surprise/0004 4",
    ]
    check_val_is_test(out, ["all_scenes"])
    check_checksums(out, stdout, fold_files(["all_scenes"]))


def test_ferv39k_unknown_label_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "FERV39k"
    make_ferv39k(root)
    bad = write(root / "4_setups" / "All_scenes" / "test_All.csv", "Action/Sad/0006 Sad\nAction/Sad/0008 Contempt\n")
    rc, _, stderr = run("ferv39k", ["--root", root, "--out", tmp_path / "out"], capsys)
    assert rc == 2 and f"{bad}:2" in stderr and "'Contempt'" in stderr
    bad.unlink()
    rc, _, stderr = run("ferv39k", ["--root", root, "--out", tmp_path / "out"], capsys)
    assert rc == 2 and str(bad) in stderr and "not found" in stderr


# ----------------------------------------------------------------------------------------------------------------
# MAFW
# ----------------------------------------------------------------------------------------------------------------

MAFW_CLIPS = {  # clip -> label name; set k tests clips with index % 5 == k - 1
    "00001": "anger",
    "00002": "disgust",
    "00003": "fear",
    "00004": "happiness",
    "00005": "neutral",
    "00006": "sadness",
    "00007": "surprise",
    "00008": "contempt",
    "00009": "anxiety",
    "00010": "helplessness",
    "00011": "disappointment",
}


def make_mafw(root: Path, folder: str = "Train & Test Set") -> None:
    clips = list(MAFW_CLIPS)
    for k in range(1, 6):
        test = [c for i, c in enumerate(clips) if i % 5 == k - 1]
        train = [c for c in clips if c not in test]
        for split, members in (("train", train), ("test", test)):
            text = "".join(f"{c}.mp4 {MAFW_CLIPS[c]}\n" for c in members)
            write(root / folder / "single" / "no_caption" / f"set_{k}" / f"{split}.txt", text)


def test_mafw_eleven_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = tmp_path / "MAFW", tmp_path / "out"
    make_mafw(root)
    rc, stdout, _ = run("mafw", ["--root", root, "--out", out], capsys)
    assert rc == 0
    frames = f"{root.as_posix()}/data/frames"
    # set_1 tests clips 00001 (anger 0), 00006 (sadness 5), 00011 (disappointment 10)
    assert lines(out / "split01" / "test.csv") == [f"{frames}/00001 0", f"{frames}/00006 5", f"{frames}/00011 10"]
    # set_3 tests 00003 (fear 2) and 00008 (contempt 7)
    assert lines(out / "split03" / "test.csv") == [f"{frames}/00003 2", f"{frames}/00008 7"]
    train = lines(out / "split03" / "train.csv")
    assert len(train) == 9 and f"{frames}/00009 8" in train and f"{frames}/00010 9" in train
    assert f"{frames}/00004 3" in train and f"{frames}/00005 4" in train and f"{frames}/00007 6" in train
    check_val_is_test(out, FOLDS5)
    check_checksums(out, stdout, fold_files(FOLDS5))


def test_mafw_audio_visual_skips_clips_without_audio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = tmp_path / "MAFW", tmp_path / "out"
    make_mafw(root, folder="split")  # the MAE-DFER name of the split folder
    audio = tmp_path / "audio_16k"
    for clip in MAFW_CLIPS:
        touch(root / "data" / "frames" / clip / "00001.png")
        if clip != "00006":  # like the 21 MAFW clips whose audio could not be extracted
            touch(audio / f"{clip}.wav", b"RIFF")
    rc, stdout, _ = run("mafw", ["--root", root, "--out", out, "--audio-root", audio, "--skip-missing"], capsys)
    assert rc == 0
    frames = f"{root.as_posix()}/data/frames"
    assert lines(out / "split01" / "test.csv") == [
        f"{frames}/00001 {audio.as_posix()}/00001.wav 0",
        f"{frames}/00011 {audio.as_posix()}/00011.wav 10",
    ]
    for fold in FOLDS5:
        for split in ("train", "test"):
            assert all("00006" not in line for line in lines(out / fold / f"{split}.csv"))
    assert "skipped 1 clip(s) with missing media" in stdout and "00006" in stdout


def test_mafw_compound_label_names_from_release(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = tmp_path / "MAFW", tmp_path / "out"
    compound = {"00001": "anger", "00002": "happiness", "00003": "fear_surprise", "00004": "anger_sadness",
                "00005": "anger", "00006": "fear_surprise"}
    clips = list(compound)
    for k in range(1, 6):
        test = [c for i, c in enumerate(clips) if i % 5 == k - 1]
        for split, members in (("train", [c for c in clips if c not in test]), ("test", test)):
            text = "".join(f"{c}.mp4 {compound[c]}\n" for c in members)
            write(root / "Train & Test Set" / "compound" / "no_caption" / f"set_{k}" / f"{split}.txt", text)
    rc, stdout, _ = run("mafw", ["--root", root, "--out", out, "--label-set", "43"], capsys)
    assert rc == 0
    # single classes present first in registry order (anger, happiness), then the other names sorted
    assert lines(out / "label_names.txt") == ["anger", "happiness", "anger_sadness", "fear_surprise"]
    frames = f"{root.as_posix()}/data/frames"
    assert lines(out / "split01" / "test.csv") == [f"{frames}/00001 0", f"{frames}/00006 3"]
    assert lines(out / "split04" / "test.csv") == [f"{frames}/00004 2"]
    assert "found 4 compound class names, expected 43" in stdout


def test_mafw_unknown_label_and_missing_split_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "MAFW"
    make_mafw(root)
    bad = root / "Train & Test Set" / "single" / "no_caption" / "set_2" / "test.txt"
    write(bad, "00002.mp4 disgust\n00007.mp4 joy\n")
    rc, _, stderr = run("mafw", ["--root", root, "--out", tmp_path / "out"], capsys)
    assert rc == 2 and f"{bad}:2" in stderr and "'joy'" in stderr
    rc, _, stderr = run("mafw", ["--root", tmp_path / "empty", "--out", tmp_path / "out"], capsys)
    assert rc == 2 and "Train & Test Set" in stderr and "not found" in stderr


# ----------------------------------------------------------------------------------------------------------------
# CREMA-D
# ----------------------------------------------------------------------------------------------------------------

CREMA_CLIPS = [
    "1001_DFA_ANG_XX",
    "1002_IEO_HAP_HI",
    "1018_TIE_SAD_XX",
    "1019_MTI_NEU_XX",
    "1040_ITS_DIS_XX",
    "1054_IWW_FEA_XX",
    "1055_DFA_HAP_LO",
    "1072_TAI_ANG_MD",
    "1073_DFA_SAD_XX",
    "1076_MTI_NEU_XX",  # one of the maintainers' broken clips
    "1091_WSI_FEA_XX",
]
# Test actors per the official ranges 1001-1018, 1019-1036, 1037-1054, 1055-1072, 1073-1091
CREMA_TEST = {
    "split01": ["1001_DFA_ANG_XX 0", "1002_IEO_HAP_HI 3", "1018_TIE_SAD_XX 5"],
    "split02": ["1019_MTI_NEU_XX 4"],
    "split03": ["1040_ITS_DIS_XX 1", "1054_IWW_FEA_XX 2"],
    "split04": ["1055_DFA_HAP_LO 3", "1072_TAI_ANG_MD 0"],
    "split05": ["1073_DFA_SAD_XX 5", "1076_MTI_NEU_XX 4", "1091_WSI_FEA_XX 2"],
}


def make_crema(root: Path) -> None:
    for name in CREMA_CLIPS:
        touch(root / "VideoFlash" / f"{name}.flv")
        touch(root / "AudioWAV" / f"{name}.wav")
    touch(root / "VideoFlash" / "readme.txt")  # not a video: ignored


def test_crema_d_actor_independent_folds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = tmp_path / "CREMA-D", tmp_path / "out"
    make_crema(root)
    rc, stdout, _ = run("crema-d", ["--root", root, "--out", out, "--frames-root", "faces"], capsys)
    assert rc == 0
    every = {f"{c.rsplit(' ')[0]}" for rows in CREMA_TEST.values() for c in rows}
    for fold, expected in CREMA_TEST.items():
        test = lines(out / fold / "test.csv")
        assert test == [f"faces/{row}" for row in expected]
        train = lines(out / fold / "train.csv")
        test_actors = {row.split("/")[1][:4] for row in test}
        train_actors = {row.split("/")[1][:4] for row in train}
        assert not test_actors & train_actors  # actor-independent
        assert {row.split(" ")[0].split("/")[1] for row in train + test} == every
    check_val_is_test(out, FOLDS5)
    check_checksums(out, stdout, fold_files(FOLDS5))
    # a file-system scan, yet deterministic: a second run writes the same bytes
    rc, _, _ = run("crema-d", ["--root", root, "--out", tmp_path / "again", "--frames-root", "faces"], capsys)
    assert rc == 0
    assert (out / "checksums.sha256").read_bytes() == (tmp_path / "again" / "checksums.sha256").read_bytes()


def test_crema_d_audio_visual_and_broken_clips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = tmp_path / "CREMA-D", tmp_path / "out"
    make_crema(root)
    argv = ["--root", root, "--out", out, "--frames-root", "faces", "--audio-root", root / "AudioWAV"]
    rc, stdout, _ = run("crema-d", [*argv, "--exclude-broken", "--exclude", "1002_IEO_HAP_HI"], capsys)
    assert rc == 0
    wav = (root / "AudioWAV").as_posix()
    assert lines(out / "split05" / "test.csv") == [
        f"faces/1073_DFA_SAD_XX {wav}/1073_DFA_SAD_XX.wav 5",
        f"faces/1091_WSI_FEA_XX {wav}/1091_WSI_FEA_XX.wav 2",
    ]
    assert lines(out / "split01" / "test.csv") == [
        f"faces/1001_DFA_ANG_XX {wav}/1001_DFA_ANG_XX.wav 0",
        f"faces/1018_TIE_SAD_XX {wav}/1018_TIE_SAD_XX.wav 5",
    ]
    assert "excluded 2 clip(s)" in stdout
    # three of the four broken ids are not in this fake release
    assert "warning: 3 exclusion id(s) matched no clip" in stdout


def test_crema_d_unknown_emotion_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "CREMA-D"
    make_crema(root)
    bad = touch(root / "VideoFlash" / "1003_DFA_JOY_XX.flv")
    rc, _, stderr = run("crema-d", ["--root", root, "--out", tmp_path / "out"], capsys)
    assert rc == 2 and str(bad) in stderr and "'JOY'" in stderr


def test_root_with_spaces_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "CREMA-D"
    make_crema(root)
    rc, _, stderr = run("crema-d", ["--root", root, "--out", tmp_path / "out", "--frames-root", "my faces"], capsys)
    assert rc == 2 and "'my faces/" in stderr and "whitespace" in stderr


# ----------------------------------------------------------------------------------------------------------------
# RAVDESS
# ----------------------------------------------------------------------------------------------------------------

RAVDESS_ACTORS = (1, 4, 5, 9, 13, 17, 21, 24)


def make_ravdess(root: Path) -> None:
    for actor in RAVDESS_ACTORS:
        folder = root / f"Video_Speech_Actor_{actor:02d}" / f"Actor_{actor:02d}"
        emotion = actor % 8 + 1  # 1 -> 02 calm, 4 -> 05 angry, 5 -> 06, 9 -> 02, 13 -> 06, 17 -> 02, 21 -> 06, 24 -> 01
        touch(folder / f"02-01-{emotion:02d}-01-01-01-{actor:02d}.mp4")
        touch(folder / f"02-01-08-02-02-02-{actor:02d}.mp4")  # surprised
        touch(folder / f"01-01-{emotion:02d}-01-01-01-{actor:02d}.mp4")  # audio-video file: not used
    touch(root / "Video_Song_Actor_01" / "Actor_01" / "02-02-03-01-01-01-01.mp4")  # song: not used
    touch(root / "Audio_Speech_Actors_01-24" / "Actor_01" / "03-01-02-01-01-01-01.wav")  # not a video


def test_ravdess_actor_folds_and_audio_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = tmp_path / "RAVDESS", tmp_path / "out"
    make_ravdess(root)
    audio = tmp_path / "audio"
    argv = ["--root", root, "--out", out, "--frames-root", "f", "--audio-root", audio]
    rc, stdout, _ = run("ravdess", argv, capsys)
    assert rc == 0
    a = audio.as_posix()
    assert lines(out / "split01" / "test.csv") == [
        f"f/Video_Speech_Actor_01/Actor_01/02-01-02-01-01-01-01 {a}/Actor_01/03-01-02-01-01-01-01.wav 1",
        f"f/Video_Speech_Actor_01/Actor_01/02-01-08-02-02-02-01 {a}/Actor_01/03-01-08-02-02-02-01.wav 7",
        f"f/Video_Speech_Actor_04/Actor_04/02-01-05-01-01-01-04 {a}/Actor_04/03-01-05-01-01-01-04.wav 4",
        f"f/Video_Speech_Actor_04/Actor_04/02-01-08-02-02-02-04 {a}/Actor_04/03-01-08-02-02-02-04.wav 7",
    ]
    expected_test_actors = {  # fold k tests actors 4k-3..4k
        "split01": {1, 4}, "split02": {5}, "split03": {9}, "split04": {13}, "split05": {17}, "split06": {21, 24}
    }
    for fold, actors in expected_test_actors.items():
        test_actors = {int(row.split(" ")[0][-2:]) for row in lines(out / fold / "test.csv")}
        train_actors = {int(row.split(" ")[0][-2:]) for row in lines(out / fold / "train.csv")}
        assert test_actors == actors
        assert train_actors == set(RAVDESS_ACTORS) - actors
    assert len(lines(out / "split06" / "test.csv")) == 4 and len(lines(out / "split06" / "train.csv")) == 12
    assert lines(out / "split06" / "test.csv")[2].endswith("03-01-01-01-01-01-24.wav 0")  # neutral
    check_val_is_test(out, FOLDS6)
    check_checksums(out, stdout, fold_files(FOLDS6))


def test_ravdess_unknown_emotion_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "RAVDESS"
    make_ravdess(root)
    bad = touch(root / "Actor_02" / "02-01-09-01-01-01-02.mp4")
    rc, _, stderr = run("ravdess", ["--root", root, "--out", tmp_path / "out"], capsys)
    assert rc == 2 and str(bad) in stderr and "unknown emotion code 09" in stderr


# ----------------------------------------------------------------------------------------------------------------
# eNTERFACE'05
# ----------------------------------------------------------------------------------------------------------------

ENTERFACE_SUBJECTS = (1, 2, 3, 4, 5, 7, 8, 9, 10, 11)  # no subject 6, like the official files
ENTERFACE_EMOTIONS = {
    "an": "anger", "di": "disgust", "fe": "fear", "ha": "happiness", "sa": "sadness", "su": "surprise"
}


def make_enterface(root: Path) -> None:
    for subject in ENTERFACE_SUBJECTS:
        codes = list(ENTERFACE_EMOTIONS)
        for code in (codes[subject % 6], codes[(subject + 1) % 6]):
            emotion = ENTERFACE_EMOTIONS[code]
            touch(root / f"subject {subject}" / emotion / "sentence 1" / f"s{subject}_{code}_1.avi")


def test_enterface_subject_folds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = tmp_path / "enterface", tmp_path / "out"
    make_enterface(root)
    rc, stdout, _ = run("enterface05", ["--root", root, "--out", out, "--frames-root", "fa"], capsys)
    assert rc == 0
    # 10 subjects -> 5 test groups of 2 in subject order: (1,2) (3,4) (5,7) (8,9) (10,11)
    # subject 1: codes[1] = di (1), codes[2] = fe (2); subject 2: fe (2), ha (3)
    assert lines(out / "split01" / "test.csv") == [
        "fa/subject_1/disgust/sentence_1/s1_di_1 1",
        "fa/subject_1/fear/sentence_1/s1_fe_1 2",
        "fa/subject_2/fear/sentence_1/s2_fe_1 2",
        "fa/subject_2/happiness/sentence_1/s2_ha_1 3",
    ]
    groups = {"split02": {3, 4}, "split03": {5, 7}, "split04": {8, 9}, "split05": {10, 11}}
    for fold, subjects in groups.items():
        test_subjects = {int(r.split("/")[1].split("_")[1]) for r in lines(out / fold / "test.csv")}
        train_subjects = {int(r.split("/")[1].split("_")[1]) for r in lines(out / fold / "train.csv")}
        assert test_subjects == subjects and not train_subjects & subjects
        assert train_subjects | test_subjects == set(ENTERFACE_SUBJECTS)
    # subject 7: codes[1] = di, codes[2] = fe
    assert "fa/subject_7/disgust/sentence_1/s7_di_1 1" in lines(out / "split03" / "test.csv")
    check_checksums(out, stdout, fold_files(FOLDS5))


def test_enterface_exclude_subjects_and_unknown_emotion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = tmp_path / "enterface", tmp_path / "out"
    make_enterface(root)
    touch(root / "face_aligned" / "stray.avi")  # inside the default frames root, which is not searched for videos
    argv = ["--root", root, "--out", out, "--exclude-subjects", "11", "10", "9", "8", "7"]
    rc, _, _ = run("enterface05", argv, capsys)
    assert rc == 0  # 5 subjects left: one per fold
    assert {r.split("/")[-4] for r in lines(out / "split05" / "test.csv")} == {"subject_5"}
    bad = touch(root / "subject 3" / "joy" / "sentence 2" / "s3_jo_2.avi")
    rc, _, stderr = run("enterface05", ["--root", root, "--out", out], capsys)
    assert rc == 2 and str(bad) in stderr and "unknown label 'joy'" in stderr


# ----------------------------------------------------------------------------------------------------------------
# MSP-IMPROV
# ----------------------------------------------------------------------------------------------------------------

MSP_EVALUATION = """UTD-IMPROV-S01A-F01-P-FM01.avi; A; A:3.600000; V:2.200000; D:3.400000 ; N:2.800000;
Evaluator_1; Angry; Frustrated, caf\xe9; A:4.0; V:2.0; D:4.0; N:3.0;

UTD-IMPROV-S01H-M01-S-MF02.avi; H; A:3.000000; V:4.200000; D:3.000000 ; N:3.400000;
UTD-IMPROV-S02N-F02-R-FF01.avi; N; A:2.000000; V:3.000000; D:3.000000 ; N:2.000000;
UTD-IMPROV-S02S-M03-T-MF01.avi; S; A:2.000000; V:1.600000; D:2.200000 ; N:2.000000;
UTD-IMPROV-S03A-F04-P-FM03.avi; O; A:3.000000; V:3.000000; D:3.000000 ; N:3.000000;
UTD-IMPROV-S03H-M05-P-MF04.avi; X; A:3.000000; V:3.000000; D:3.000000 ; N:3.000000;
UTD-IMPROV-S04H-F05-S-FM05.avi; H; A:3.400000; V:4.000000; D:3.000000 ; N:3.000000;
UTD-IMPROV-S05A-M06-P-MF06.avi; A; A:4.000000; V:1.800000; D:4.000000 ; N:3.000000;
UTD-IMPROV-S06N-F06-R-FF02.avi; N; A:2.400000; V:3.000000; D:3.000000 ; N:2.400000;
UTD-IMPROV-S07S-F03-P-FM07.avi; S; A:2.000000; V:2.000000; D:2.000000 ; N:2.000000;
"""
MSP_VIDEOS = [  # (session folder, utterance id); S07S-F03 has a label but no video, S08N-M02 a video but no label
    ("session1", "S01A-F01-P-FM01"),
    ("session1", "S01H-M01-S-MF02"),
    ("session2", "S02N-F02-R-FF01"),
    ("session3", "S02S-M03-T-MF01"),
    ("session4", "S03A-F04-P-FM03"),
    ("session5", "S03H-M05-P-MF04"),
    ("session5", "S04H-F05-S-FM05"),
    ("session6", "S05A-M06-P-MF06"),
    ("session6", "S06N-F06-R-FF02"),
    ("session2", "S08N-M02-P-MF01"),
]


def make_msp_improv(root: Path) -> None:
    (root / "Evaluation.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "Evaluation.txt").write_bytes(MSP_EVALUATION.encode("latin-1"))  # a rater comment is not UTF-8
    for session, utterance in MSP_VIDEOS:
        sentence, scenario = utterance.split("-")[0], utterance.split("-")[2]
        touch(root / "Video" / session / sentence / scenario / f"MSP-IMPROV-{utterance}.avi")


def test_msp_improv_sessions_and_consensus_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = tmp_path / "MSP-IMPROV", tmp_path / "out"
    make_msp_improv(root)
    audio = tmp_path / "wav"
    argv = ["--root", root, "--out", out, "--frames-root", "f", "--audio-root", audio]
    rc, stdout, _ = run("msp-improv", argv, capsys)
    assert rc == 0
    w = audio.as_posix()

    def row(relative: str, label: int) -> str:
        return f"f/Video/{relative} {w}/Video/{relative}.wav {label}"

    # A 0, H 1, N 2, S 3; O and X left out; fold k tests session k (speaker number)
    expected_test = {
        "split01": [
            row("session1/S01A/P/MSP-IMPROV-S01A-F01-P-FM01", 0),
            row("session1/S01H/S/MSP-IMPROV-S01H-M01-S-MF02", 1),
        ],
        "split02": [
            row("session2/S02N/R/MSP-IMPROV-S02N-F02-R-FF01", 2)
        ],
        "split03": [
            row("session3/S02S/T/MSP-IMPROV-S02S-M03-T-MF01", 3)
        ],
        "split04": [],
        "split05": [
            row("session5/S04H/S/MSP-IMPROV-S04H-F05-S-FM05", 1)
        ],
        "split06": [
            row("session6/S05A/P/MSP-IMPROV-S05A-M06-P-MF06", 0),
            row("session6/S06N/R/MSP-IMPROV-S06N-F06-R-FF02", 2),
        ],
    }
    all_rows = {row for rows in expected_test.values() for row in rows}
    for fold, rows in expected_test.items():
        assert lines(out / fold / "test.csv") == rows
        assert set(lines(out / fold / "train.csv")) == all_rows - set(rows)
    check_val_is_test(out, FOLDS6)
    check_checksums(out, stdout, fold_files(FOLDS6))
    assert "1 video(s) have no line in Evaluation.txt" in stdout
    assert "1 labelled utterance(s) of Evaluation.txt have no video" in stdout


def test_msp_improv_unknown_label_and_missing_evaluation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "MSP-IMPROV"
    make_msp_improv(root)
    text = MSP_EVALUATION.replace("S02N-F02-R-FF01.avi; N;", "S02N-F02-R-FF01.avi; Q;")
    bad = write(root / "Evaluation.txt", text)
    rc, _, stderr = run("msp-improv", ["--root", root, "--out", tmp_path / "out"], capsys)
    assert rc == 2 and f"{bad}:5" in stderr and "unknown label 'Q'" in stderr
    bad.unlink()
    rc, _, stderr = run("msp-improv", ["--root", root, "--out", tmp_path / "out"], capsys)
    assert rc == 2 and str(bad) in stderr and "not found" in stderr


# ----------------------------------------------------------------------------------------------------------------
# Werewolf-XL
# ----------------------------------------------------------------------------------------------------------------

WEREWOLF_TABLE = """name,speaker,dominance,arousal,pleasure
01_01_128,3,0.5,0.0,1.0
06_02_7,1,1.5,0.75,-0.5
07_01_12,2,0.0,0.25,0.5
13_03_4,5,1.0,1.0,1.5
24_01_99,4,-1.0,0.5,0.0
25_02_3,6,0.25,0.5,2.0
30_01_1.mp4,2,1.0,0.0,0.5
"""


def test_werewolf_xl_game_folds_and_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = tmp_path / "Werewolf-XL", tmp_path / "out"
    table = write(root / "labels.csv", WEREWOLF_TABLE)
    rc, stdout, _ = run("werewolf-xl", ["--root", root, "--labels", table, "--out", out], capsys)
    assert rc == 0
    f, a = f"{root.as_posix()}/face_aligned", f"{root.as_posix()}/audio_16k"
    # targets in the order pleasure, arousal, dominance; fold k tests games 6k-5..6k
    assert lines(out / "split01" / "test.csv") == [
        f"{f}/01_01_128 {a}/01_01_128.wav 1.0 0.0 0.5",
        f"{f}/06_02_7 {a}/06_02_7.wav -0.5 0.75 1.5",
    ]
    assert lines(out / "split02" / "test.csv") == [f"{f}/07_01_12 {a}/07_01_12.wav 0.5 0.25 0.0"]
    assert lines(out / "split03" / "test.csv") == [f"{f}/13_03_4 {a}/13_03_4.wav 1.5 1.0 1.0"]
    assert lines(out / "split04" / "test.csv") == [f"{f}/24_01_99 {a}/24_01_99.wav 0.0 0.5 -1.0"]
    assert lines(out / "split05" / "test.csv") == [
        f"{f}/25_02_3 {a}/25_02_3.wav 2.0 0.5 0.25",
        f"{f}/30_01_1 {a}/30_01_1.wav 0.5 0.0 1.0",
    ]
    assert len(lines(out / "split05" / "train.csv")) == 5
    assert lines(out / "label_names.txt") == ["pleasure", "arousal", "dominance"]
    check_checksums(out, stdout, fold_files(FOLDS5))


def test_werewolf_xl_bad_target_and_unknown_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "Werewolf-XL"
    table = write(root / "labels.csv", WEREWOLF_TABLE.replace("07_01_12,2,0.0", "07_01_12,2,high"))
    rc, _, stderr = run("werewolf-xl", ["--root", root, "--labels", table, "--out", tmp_path / "out"], capsys)
    assert rc == 2 and f"{table}:4" in stderr and "'dominance'" in stderr and "'high'" in stderr
    argv = ["--root", root, "--labels", table, "--out", tmp_path / "out", "--target-columns", "valence,arousal"]
    rc, _, stderr = run("werewolf-xl", argv, capsys)
    assert rc == 2 and f"{table}:1" in stderr and "'valence'" in stderr


# ----------------------------------------------------------------------------------------------------------------
# VoxCeleb2
# ----------------------------------------------------------------------------------------------------------------


def tiny_mp4(path: Path, frames: int = 6) -> Path:
    """A real MPEG-4 video of random-noise frames (a few KiB, above the readers' 1 KiB minimum), encoded with PyAV."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        noise = np.random.default_rng(0)
        for _ in range(frames):
            image = noise.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return touch(path, buffer.getvalue())


def test_voxceleb2_list_exclusions_and_decodability(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "VoxCeleb2"
    mp4 = root / "dev" / "mp4"
    good = [mp4 / "id00002/aBc/00001.mp4", mp4 / "id00001/xYz/00002.mp4", mp4 / "id00001/xYz/00001.mp4"]
    for path in good:
        tiny_mp4(path)
    broken = touch(mp4 / "id00003" / "q_q" / "00007.mp4", b"not a video")
    touch(mp4 / "id00003" / "q_q" / "notes.txt")
    out = tmp_path / "out"
    rc, stdout, _ = run("voxceleb2", ["--root", root, "--out", out], capsys)
    assert rc == 0
    m = mp4.as_posix()
    assert lines(out / "dev" / "train.csv") == [
        f"{m}/id00001/xYz/00001.mp4 0",
        f"{m}/id00001/xYz/00002.mp4 0",
        f"{m}/id00002/aBc/00001.mp4 0",
        f"{m}/id00003/q_q/00007.mp4 0",
    ]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "checksums.sha256", "dev/train.csv"
    ]
    check_checksums(out, stdout, {"dev/train.csv"})

    exclude = write(tmp_path / "broken.txt", f"# unreadable\n{broken}\nid00002/aBc/00001\n")
    rc, _, _ = run("voxceleb2", ["--root", root, "--out", out, "--exclude-list", exclude], capsys)
    assert rc == 0
    assert lines(out / "dev" / "train.csv") == [f"{m}/id00001/xYz/00001.mp4 0", f"{m}/id00001/xYz/00002.mp4 0"]

    rc, stdout, _ = run("voxceleb2", ["--root", root, "--out", out, "--check-decodable"], capsys)
    assert rc == 0
    assert lines(out / "dev" / "train.csv") == [
        f"{m}/id00001/xYz/00001.mp4 0",
        f"{m}/id00001/xYz/00002.mp4 0",
        f"{m}/id00002/aBc/00001.mp4 0",
    ]
    assert "1 undecodable video(s) left out, e.g. id00003/q_q/00007" in stdout


def test_voxceleb2_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, stderr = run("voxceleb2", ["--root", tmp_path / "nothing", "--out", tmp_path / "out"], capsys)
    assert rc == 2 and "dev/mp4" in stderr and "not found" in stderr


# ----------------------------------------------------------------------------------------------------------------
# Layout of datasets/
# ----------------------------------------------------------------------------------------------------------------


def test_datasets_folder_layout() -> None:
    folder = REPO / "datasets"
    assert not list(folder.rglob("__init__.py"))  # not an importable package
    index = (folder / "README.md").read_text(encoding="utf-8")
    for name in DATASET_DIRS:
        assert (folder / name / "prepare.py").is_file()
        readme = (folder / name / "README.md").read_text(encoding="utf-8")
        assert "Checksums of the produced split files" in readme
        assert f"datasets/{name}/prepare.py" in readme
        assert f"({name}/README.md)" in index

