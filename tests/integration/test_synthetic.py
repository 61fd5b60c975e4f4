"""The synthetic face world (maedfer.synthetic, tools/make_synthetic.py).

Expectations come from the specification of the world, not from the generator: 7 classes in the DFEW order with the
valence / arousal pairs below, a neutral face at the start of every clip, 16 kHz mono audio lasting
``num_frames / fps`` seconds, zero-padded frame names, identity-disjoint splits and absolute paths. Learnability is
checked with simple classifiers written here (nearest centroid / least squares on gradient-magnitude images,
autocorrelation pitch and RMS energy of the waveform) on identities that the classifier never saw.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from PIL import Image

from maedfer.data.annotations import read_annotations
from maedfer.synthetic import SyntheticIdentity, make_synthetic_world, render_clip, synthesize_voice

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")  # DFEW label order
VALENCE_AROUSAL = {  # full-intensity targets from the specification
    "happy": (0.8, 0.6),
    "sad": (-0.7, -0.3),
    "neutral": (0.0, 0.0),
    "angry": (-0.6, 0.8),
    "surprise": (0.2, 0.9),
    "disgust": (-0.7, 0.3),
    "fear": (-0.7, 0.8),
}


def _identity(seed: int) -> SyntheticIdentity:
    return SyntheticIdentity.sample(np.random.default_rng(seed), identity_id=seed)


def _decoded_mp4(path: Path) -> np.ndarray:
    """All video frames of an mp4, decoded, ``uint8 (T, H, W, 3)``."""
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def _tree_digest(root: Path, skip_suffix: str = ".csv") -> dict[str, str]:
    """sha256 of every file but the annotation CSVs and the mp4s (whose encoder output is compared decoded)."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix not in (skip_suffix, ".mp4")
    }


# ------------------------------------------------------------------------------------------------------------------
# In-memory generator
# ------------------------------------------------------------------------------------------------------------------


def test_identity_sample_is_deterministic_and_varied() -> None:
    assert _identity(3) == _identity(3)
    identities = [_identity(seed) for seed in range(12)]
    assert len({identity.skin for identity in identities}) == 12
    assert len({identity.background for identity in identities}) == 12
    assert len({round(identity.base_pitch_hz, 3) for identity in identities}) == 12


def test_render_clip_shapes_and_determinism() -> None:
    identity = _identity(1)
    frames, audio, info = render_clip(identity, 4, num_frames=10, size=48, seed=(7, 1))
    assert frames.shape == (10, 48, 48, 3) and frames.dtype == np.uint8
    assert audio.dtype == np.float32 and audio.shape == (round(10 / 25 * 16000),)
    assert float(np.abs(audio).max()) <= 1.0 and float(np.abs(audio).max()) > 0.05
    assert info["label"] == 4 and info["class_name"] == "surprise"
    assert info["valence"] == pytest.approx(0.2) and info["arousal"] == pytest.approx(0.9)

    again_frames, again_audio, again_info = render_clip(identity, "surprise", num_frames=10, size=48, seed=(7, 1))
    assert again_frames.tobytes() == frames.tobytes() and again_audio.tobytes() == audio.tobytes()
    assert again_info == info
    other_frames, other_audio, _ = render_clip(identity, 4, num_frames=10, size=48, seed=(7, 2))
    assert other_frames.tobytes() != frames.tobytes() and other_audio.tobytes() != audio.tobytes()

    _, _, half = render_clip(identity, "fear", num_frames=4, size=32, seed=0, intensity=0.5)
    assert (half["valence"], half["arousal"]) == pytest.approx((-0.35, 0.4))
    with pytest.raises(ValueError, match="unknown class"):
        render_clip(identity, "contempt", num_frames=4, size=32)
    with pytest.raises(ValueError, match="outside"):
        render_clip(identity, 7, num_frames=4, size=32)


def test_expression_starts_neutral_and_unfolds() -> None:
    """Same seed, different classes: the first frame is the same neutral face, later frames differ."""
    identity = _identity(5)
    clips = {name: render_clip(identity, name, num_frames=16, size=64, seed=11)[0] for name in CLASSES}
    neutral = clips["neutral"].astype(np.int16)
    for name in CLASSES:
        changed = np.abs(clips[name].astype(np.int16) - neutral).max(axis=-1) > 12  # (T, H, W)
        assert changed[0].mean() < 0.02, name  # at most the talking mouth differs at the start
        if name != "neutral":
            assert changed[-1].mean() > 0.05, name


def _gradient_image(frame: np.ndarray, cells: int = 16) -> np.ndarray:
    grey = frame.astype(np.float32).mean(axis=-1)
    d_row, d_col = np.gradient(grey)
    magnitude = np.hypot(d_row, d_col)
    return np.asarray(Image.fromarray(magnitude).resize((cells, cells), Image.Resampling.BOX), dtype=np.float32)


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = vector.ravel() - vector.mean()
    return vector / (np.linalg.norm(vector) + 1e-6)


def test_classes_are_separable_on_held_out_identities() -> None:
    """12 identities (8 to fit, 4 held out) x 7 classes x 2 clips of 12 frames at 64x64."""
    first, last, labels, held_out = [], [], [], []
    for identity_seed in range(12):
        identity = _identity(100 + identity_seed)
        for label in range(7):
            for clip in range(2):
                intensity = float(np.random.default_rng([identity_seed, label, clip]).uniform(0.7, 1.0))
                frames, _, _ = render_clip(
                    identity, label, num_frames=12, size=64, seed=(identity_seed, label, clip), intensity=intensity
                )
                first.append(_gradient_image(frames[0]))
                last.append(_gradient_image(frames[-1]))
                labels.append(label)
                held_out.append(identity_seed >= 8)
    labels_array, test = np.asarray(labels), np.asarray(held_out)
    train = ~test

    def nearest_centroid_accuracy(features: np.ndarray) -> float:
        centroids = np.stack([features[train & (labels_array == k)].mean(0) for k in range(7)])
        distances = ((features[test][:, None, :] - centroids[None]) ** 2).sum(-1)
        return float((distances.argmin(1) == labels_array[test]).mean())

    def least_squares_accuracy(features: np.ndarray, ridge: float = 0.1) -> float:
        design = np.c_[features[train], np.ones(int(train.sum()))]
        targets = np.eye(7)[labels_array[train]]
        weights = np.linalg.solve(design.T @ design + ridge * np.eye(design.shape[1]), design.T @ targets)
        scores = np.c_[features[test], np.ones(int(test.sum()))] @ weights
        return float((scores.argmax(1) == labels_array[test]).mean())

    change = np.stack([_unit(b - a) for a, b in zip(first, last)])
    apex = np.stack([_unit(b) for b in last])
    start = np.stack([_unit(a) for a in first])
    # The temporal change (apex - start) identifies the class: chance is 1/7.
    assert nearest_centroid_accuracy(change) > 0.6
    # The class is visible in the apex frame alone ...
    assert least_squares_accuracy(apex) > 0.5
    # ... but not in the neutral first frame.
    assert nearest_centroid_accuracy(start) < 0.35


def _pitch_hz(audio: np.ndarray, sample_rate: int = 16000) -> float:
    """Median autocorrelation pitch of the voiced 64 ms windows."""
    estimates = []
    for begin in range(0, len(audio) - 1024, 320):
        window = audio[begin : begin + 1024].astype(np.float64)
        if np.sqrt(np.mean(window**2)) < 0.02:
            continue
        window -= window.mean()
        correlation = np.correlate(window, window, "full")[1023:]
        shortest, longest = sample_rate // 500, sample_rate // 60
        estimates.append(sample_rate / (shortest + int(np.argmax(correlation[shortest:longest]))))
    return float(np.median(estimates))


def test_voice_prosody_depends_on_class() -> None:
    for identity_seed in range(4):
        identity = _identity(200 + identity_seed)
        pitch, energy = {}, {}
        for name in ("happy", "sad", "angry"):
            audio, envelope, _ = synthesize_voice(
                identity, name, num_samples=16000, rng=np.random.default_rng([identity_seed, CLASSES.index(name)])
            )
            assert audio.shape == (16000,) and envelope.shape == (16000,)
            pitch[name] = _pitch_hz(audio)
            energy[name] = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
        assert pitch["happy"] > 1.2 * pitch["sad"], (identity_seed, pitch)
        assert pitch["angry"] > pitch["sad"], (identity_seed, pitch)
        assert energy["angry"] > 1.2 * energy["happy"] > 1.2 * 1.2 * energy["sad"], (identity_seed, energy)
        # The identity sets the register: the sad (lowest) pitch stays near the base pitch.
        assert 0.7 * identity.base_pitch_hz < pitch["sad"] < 1.1 * identity.base_pitch_hz


# ------------------------------------------------------------------------------------------------------------------
# The world on disk
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("synthetic") / "world"
    started = time.perf_counter()
    world = make_synthetic_world(out, num_identities=6, clips_per_class=2, num_frames=12, size=48, seed=3)
    elapsed = time.perf_counter() - started
    return world, out, elapsed


def test_small_world_is_fast(small_world) -> None:
    _, _, elapsed = small_world
    assert elapsed < 15.0


def test_world_counts_and_media_files(small_world) -> None:
    world, out, _ = small_world
    assert world.root == out.resolve()
    assert world.num_clips == {"train": 14, "val": 14, "test": 14}  # 7 classes x 2 clips per split
    info = json.loads((out / "info.json").read_text())
    assert info["classes"] == list(CLASSES)
    names = sorted(clip["name"] for clip in info["clips"])
    assert len(names) == 42

    frame_dirs = sorted(path for path in (out / "frames").iterdir())
    assert [path.name for path in frame_dirs] == names
    for folder in frame_dirs[:5]:
        files = sorted(path.name for path in folder.iterdir())
        assert files == [f"{index:05d}.jpg" for index in range(1, 13)]
        with Image.open(folder / "00001.jpg") as image:
            assert image.format == "JPEG" and image.size == (48, 48) and image.mode == "RGB"

    wavs = sorted((out / "audio").glob("*.wav"))
    assert [path.stem for path in wavs] == names
    for path in wavs[:5]:
        meta = soundfile.info(str(path))
        assert (meta.samplerate, meta.channels, meta.frames, meta.subtype) == (16000, 1, 12 * 640, "PCM_16")

    videos = sorted((out / "videos").glob("*.mp4"))
    assert [path.stem for path in videos] == names
    for path in videos[:3]:
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            assert video.average_rate == 25 and video.codec_context.name == "h264"
            assert (video.codec_context.width, video.codec_context.height) == (48, 48)
            assert video.codec_context.pix_fmt == "yuv420p"
            assert len(container.streams.audio) == 1
            audio = container.streams.audio[0]
            assert (audio.codec_context.name, audio.rate, audio.channels) == ("aac", 16000, 1)
            assert sum(1 for _ in container.decode(video=0)) == 12
        with av.open(str(path)) as container:
            samples = sum(frame.samples for frame in container.decode(audio=0))
        assert abs(samples - 12 * 640) <= 1024

    # mp4, wav and frames carry the same clip: the decoded video matches the JPEG frames closely.
    clip = names[0]
    with av.open(str(out / "videos" / f"{clip}.mp4")) as container:
        decoded = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    jpegs = np.stack(
        [np.asarray(Image.open(out / "frames" / clip / f"{i:05d}.jpg").convert("RGB")) for i in range(1, 13)]
    )
    assert np.abs(decoded.astype(np.float32) - jpegs.astype(np.float32)).mean() < 6.0

    with Image.open(out / "preview.png") as preview:
        assert preview.format == "PNG" and preview.size[0] > 6 * 48 and preview.size[1] >= 7 * 48


def test_world_annotation_files(small_world) -> None:
    world, out, _ = small_world
    info = json.loads((out / "info.json").read_text())
    identity_of = {clip["name"]: clip["identity_id"] for clip in info["clips"]}
    intensity_of = {clip["name"]: clip["intensity"] for clip in info["clips"]}
    identities_by_split = {}
    for split in ("train", "val", "test"):
        rows = read_annotations(out / "classification" / f"{split}.csv", kind="classification")
        assert len(rows) == 14
        assert sorted(row.label for row in rows) == sorted(list(range(7)) * 2)
        for row in rows:
            path = Path(row.path)
            assert path.is_absolute() and path.is_dir() and path.parent == out.resolve() / "frames"
            assert CLASSES[row.label] in path.name
        identities_by_split[split] = {identity_of[Path(row.path).name] for row in rows}

        av_rows = read_annotations(out / "audio_visual" / f"{split}.csv", kind="audio_visual")
        assert [(r.path, r.label) for r in av_rows] == [(r.path, r.label) for r in rows]
        for row in av_rows:
            assert Path(row.audio_path).is_file() and Path(row.audio_path).stem == Path(row.path).name

        regression_rows = read_annotations(out / "regression" / f"{split}.csv", kind="regression", num_targets=2)
        for row, class_row in zip(regression_rows, rows):
            valence, arousal = VALENCE_AROUSAL[CLASSES[class_row.label]]
            intensity = intensity_of[Path(row.path).name]
            assert 0.7 <= intensity <= 1.0 or CLASSES[class_row.label] == "neutral"
            assert row.label == pytest.approx((valence * intensity, arousal * intensity), abs=1e-3)
            assert Path(row.audio_path).suffix == ".wav"
    # Identity-disjoint splits (6 identities: 4 / 1 / 1).
    assert identities_by_split["train"].isdisjoint(identities_by_split["val"])
    assert identities_by_split["train"].isdisjoint(identities_by_split["test"])
    assert identities_by_split["val"].isdisjoint(identities_by_split["test"])
    assert [len(identities_by_split[s]) for s in ("train", "val", "test")] == [4, 1, 1]

    pretrain = read_annotations(out / "pretrain" / "train.csv", kind="pretrain")
    assert len(pretrain) == 14
    assert all(Path(row.path).suffix == ".mp4" and Path(row.path).is_file() for row in pretrain)
    assert {identity_of[Path(row.path).stem] for row in pretrain} == identities_by_split["train"]
    assert world.annotation_file("pretrain") == out.resolve() / "pretrain" / "train.csv"
    assert world.annotation_file("regression", "val") == out.resolve() / "regression" / "val.csv"


def test_world_is_deterministic_and_independent_of_workers(tmp_path: Path) -> None:
    settings = {"num_identities": 3, "clips_per_class": 1, "num_frames": 6, "size": 32, "seed": 9}
    first = make_synthetic_world(tmp_path / "a", **settings)
    second = make_synthetic_world(tmp_path / "b", num_workers=2, **settings)
    digest_a, digest_b = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    assert digest_a == digest_b and any(name.endswith(".jpg") for name in digest_a)
    # The mp4s: the same pictures up to codec noise. Byte equality is not asserted: full-suite runs in a fresh clone
    # saw x264 encode the same frames to other bytes in a worker process (decoded: 2.7 levels apart on average at
    # 32x32; pictures of another world differ by tens of levels).
    videos_a = sorted((tmp_path / "a").rglob("*.mp4"))
    assert videos_a and [p.name for p in videos_a] == [p.name for p in sorted((tmp_path / "b").rglob("*.mp4"))]
    for video in videos_a:
        frames_a = _decoded_mp4(video).astype(np.int16)
        frames_b = _decoded_mp4(tmp_path / "b" / video.relative_to(tmp_path / "a")).astype(np.int16)
        assert frames_a.shape == frames_b.shape and np.abs(frames_a - frames_b).mean() < 8.0, video.name
    for kind, files in first.annotation_files.items():
        for split, path in files.items():
            text_a = path.read_text().replace(str(first.root), "ROOT")
            text_b = second.annotation_files[kind][split].read_text().replace(str(second.root), "ROOT")
            assert text_a == text_b
    other = make_synthetic_world(tmp_path / "c", **{**settings, "seed": 10})
    assert _tree_digest(other.root) != digest_a
    other_video = _decoded_mp4(other.root / videos_a[0].relative_to(tmp_path / "a")).astype(np.int16)
    assert np.abs(other_video - _decoded_mp4(videos_a[0]).astype(np.int16)).mean() > 8.0  # the check can fail


def test_world_formats_and_errors(tmp_path: Path) -> None:
    world = make_synthetic_world(
        tmp_path / "frames_only",
        num_identities=3,
        clips_per_class=1,
        num_frames=4,
        size=32,
        formats=("frames",),
        preview=False,
    )
    assert sorted(world.annotation_files) == ["classification"]
    assert not (world.root / "videos").exists() and not (world.root / "audio").exists()
    assert world.preview_file is None and not (world.root / "preview.png").exists()
    with pytest.raises(KeyError):
        world.annotation_file("pretrain")

    with pytest.raises(FileExistsError):  # not empty
        make_synthetic_world(world.root, num_identities=3, clips_per_class=1, num_frames=4, size=32)
    again = make_synthetic_world(world.root, num_identities=3, clips_per_class=1, num_frames=4, size=32, overwrite=True)
    assert (again.root / "videos").is_dir()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not a world")
    with pytest.raises(FileExistsError):
        make_synthetic_world(foreign, num_identities=3, clips_per_class=1, num_frames=4, size=32, overwrite=True)
    assert (foreign / "keep.txt").read_text() == "not a world"

    with pytest.raises(ValueError, match="formats"):
        make_synthetic_world(tmp_path / "x", formats=("gif",))
    with pytest.raises(ValueError, match="at least 3 identities"):
        make_synthetic_world(tmp_path / "x", num_identities=2)
    with pytest.raises(ValueError, match="even"):
        make_synthetic_world(tmp_path / "x", num_identities=3, size=33)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("make_synthetic_tool", ROOT / "tools" / "make_synthetic.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "cli"
    argv = [
        "--out",
        str(out),
        "--identities",
        "3",
        "--clips-per-class",
        "1",
        "--frames",
        "4",
        "--size",
        "32",
        "--formats",
        "frames,wav",
        "--workers",
        "1",
    ]
    assert tool.main(argv) == 0
    printed = capsys.readouterr().out
    assert "21 clips" in printed and str(out.resolve()) in printed
    assert len(read_annotations(out / "audio_visual" / "test.csv", kind="audio_visual")) == 7
    assert not (out / "pretrain").exists()
    assert tool.main(argv) == 2  # the folder is not empty now
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(["--out", str(out), "--formats", "gif"])
