"""Clip and audio readers (maedfer.data.readers) and tools/extract_audio.py.

All media are generated in tmp_path with known content: every frame carries its content id as 8 black/white
blocks (one bit each) in its top half, which survives JPEG and H.264 compression, so frame accuracy is checked by
decoding the blocks back. The official data fixtures give independent expectations for PIL / decord decoding.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib.util
import pickle
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from maedfer.data import readers
from maedfer.data.readers import (
    ClipReadError,
    FrameFolderReader,
    VideoFileReader,
    extract_audio_file,
    list_frames,
    open_clip,
    read_audio,
    read_wav,
)

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_DATA = ROOT / "tests" / "fixtures" / "official_data"
FPS = 25
NUM_VIDEO_FRAMES = 60
AUDIO_RATE_IN_VIDEO = 48000
TONE_HZ = 440.0


# ------------------------------------------------------------------------------------------------ media helpers


def id_image(content_id: int, width: int = 128, height: int = 96) -> np.ndarray:
    """uint8 (H, W, 3): bit b of ``content_id`` is a white (1) / black (0) block in column b of the top half;
    the bottom half is a texture that changes with the id (so frames differ everywhere)."""
    image = np.zeros((height, width, 3), np.uint8)
    block = width // 8
    for bit in range(8):
        if (content_id >> bit) & 1:
            image[: height // 2, bit * block : (bit + 1) * block] = 255
    texture = np.random.default_rng(content_id).integers(64, 192, (height - height // 2, width, 3), dtype=np.uint8)
    image[height // 2 :] = texture
    x = (content_id * 5) % (width - 16)
    image[height // 2 + 8 : height // 2 + 24, x : x + 16] = (255, 0, 0)  # a moving square for motion
    return image


def decode_ids(frames: np.ndarray) -> list[int]:
    """Read the 8-bit ids back from ``uint8 (L, H, W, 3)`` frames (centre of each block, threshold 128)."""
    height, width = frames.shape[1:3]
    block = width // 8
    ids = []
    for frame in frames:
        value = 0
        for bit in range(8):
            patch = frame[height // 8 : 3 * height // 8, bit * block + block // 4 : (bit + 1) * block - block // 4]
            value |= int(patch.mean() > 128) << bit
        ids.append(value)
    return ids


def write_video(path: Path, *, audio: bool, container_options: dict | None = None, size: int = 128) -> None:
    """H.264 yuv420p, 25 fps, GOP 25, 2 B-frames, NUM_VIDEO_FRAMES frames with id blocks; optional AAC tone."""
    with av.open(str(path), "w", options=container_options or {}) as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        video.codec_context.gop_size = 25
        video.codec_context.options = {"bf": "2", "g": "25", "crf": "18", "x264-params": "b-adapt=0:scenecut=0"}
        audio_stream = None
        if audio:
            audio_stream = container.add_stream("aac", rate=AUDIO_RATE_IN_VIDEO)
            audio_stream.layout = "stereo"
        for index in range(NUM_VIDEO_FRAMES):
            frame = av.VideoFrame.from_ndarray(id_image(index, size, size), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio_stream is not None:
            total = NUM_VIDEO_FRAMES * AUDIO_RATE_IN_VIDEO // FPS
            tone = (0.5 * np.sin(2 * np.pi * TONE_HZ * np.arange(total) / AUDIO_RATE_IN_VIDEO)).astype(np.float32)
            for start in range(0, total, 1024):
                chunk = tone[start : start + 1024]
                frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
                frame.sample_rate = AUDIO_RATE_IN_VIDEO
                frame.pts = start
                for packet in audio_stream.encode(frame):
                    container.mux(packet)
            for packet in audio_stream.encode(None):
                container.mux(packet)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    out: dict[str, Path] = {}

    # JPEG folder with unpadded names frame_1 .. frame_12 (content id = the number) and decoys.
    jpg = root / "clip_jpg"
    jpg.mkdir()
    for number in range(1, 13):
        Image.fromarray(id_image(number)).save(jpg / f"frame_{number}.jpg", quality=90)
    Image.fromarray(id_image(200)).save(jpg / "cover.jpeg", quality=90)
    Image.fromarray(id_image(201)).save(jpg / "UPPER.JPG", format="JPEG", quality=90)
    Image.fromarray(id_image(202)).save(jpg / ".hidden.jpg", quality=90)
    Image.fromarray(id_image(203)).save(jpg / "frame_99.png")
    (jpg / "notes.txt").write_text("not a frame\n")
    out["jpg"] = jpg

    png = root / "clip_png"
    png.mkdir()
    for number in range(10):
        Image.fromarray(id_image(number + 100)).save(png / f"{number + 1:05d}.png")
    Image.fromarray(id_image(250)).save(png / "00001.jpg", quality=90)  # decoy for ext="png"
    out["png"] = png

    out["image"] = root / "single.jpg"
    Image.fromarray(id_image(77)).save(out["image"], quality=90)

    out["video"] = root / "video_av.mp4"
    write_video(out["video"], audio=True)
    out["video_no_audio"] = root / "video_only.mp4"
    write_video(out["video_no_audio"], audio=False)
    out["video_faststart"] = root / "video_faststart.mp4"
    write_video(out["video_faststart"], audio=False, container_options={"movflags": "faststart"})
    out["video_mkv"] = root / "video.mkv"
    write_video(out["video_mkv"], audio=False)

    data = out["video_no_audio"].read_bytes()
    out["truncated"] = root / "truncated.mp4"
    out["truncated"].write_bytes(data[: int(len(data) * 0.3)])
    data = out["video_faststart"].read_bytes()
    out["truncated_faststart"] = root / "truncated_faststart.mp4"
    out["truncated_faststart"].write_bytes(data[: int(len(data) * 0.3)])
    out["tiny"] = root / "tiny.mp4"
    out["tiny"].write_bytes(data[:1000])
    out["garbage"] = root / "garbage.mp4"
    out["garbage"].write_bytes(np.random.default_rng(5).integers(0, 256, 8192, dtype=np.uint8).tobytes())

    rng = np.random.default_rng(7)
    out["wav_int16"] = root / "speech.wav"
    int16_samples = rng.integers(-32768, 32768, 16000 * 2 + 123, dtype=np.int16)
    int16_samples[:4] = (-32768, 32767, 0, -1)
    soundfile.write(out["wav_int16"], int16_samples, 16000, subtype="PCM_16")
    np.save(root / "speech_int16.npy", int16_samples)
    out["wav_int16_samples"] = root / "speech_int16.npy"

    out["wav_stereo"] = root / "stereo.wav"
    stereo = rng.integers(-20000, 20000, (8000, 2), dtype=np.int16)
    soundfile.write(out["wav_stereo"], stereo, 16000, subtype="PCM_16")
    np.save(root / "stereo_int16.npy", stereo)
    out["wav_stereo_samples"] = root / "stereo_int16.npy"

    out["wav_8k"] = root / "tone_8k.wav"
    tone = 0.25 * np.sin(2 * np.pi * 1000.0 * np.arange(8000) / 8000)
    soundfile.write(out["wav_8k"], (tone * 32767).astype(np.int16), 8000, subtype="PCM_16")
    return out


# ------------------------------------------------------------------------------------------------ frame folders


def test_list_frames_is_lexicographic_and_ignores_decoys(media: dict[str, Path]) -> None:
    names = [p.name for p in list_frames(media["jpg"])]
    # Official order: plain string sort of the names; other extensions, other case and hidden files are ignored.
    expected = ["frame_1.jpg", "frame_10.jpg", "frame_11.jpg", "frame_12.jpg"]
    expected += [f"frame_{k}.jpg" for k in range(2, 10)]
    assert names == expected
    assert [p.name for p in list_frames(media["jpg"], "png")] == ["frame_99.png"]
    assert [p.name for p in list_frames(media["png"], "png")] == [f"{k:05d}.png" for k in range(1, 11)]
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        list_frames(media["jpg"].parent / "no_such_folder")


def test_frame_folder_reader_order_content_and_pil_equality(media: dict[str, Path]) -> None:
    reader = FrameFolderReader(media["jpg"])
    assert len(reader) == 12
    frames = reader.read(range(12))
    assert frames.dtype == np.uint8 and frames.shape == (12, 96, 128, 3)
    assert decode_ids(frames) == [1, 10, 11, 12, 2, 3, 4, 5, 6, 7, 8, 9]
    for index, number in ((0, 1), (1, 10), (4, 2), (11, 9)):
        expected = np.asarray(Image.open(media["jpg"] / f"frame_{number}.jpg").convert("RGB"))
        np.testing.assert_array_equal(frames[index], expected)
    # unsorted indices with repeats come back in request order
    request = [4, 0, 4, 11, 1, 0]
    assert decode_ids(reader.read(np.array(request))) == [[1, 10, 11, 12, 2, 3, 4, 5, 6, 7, 8, 9][i] for i in request]


@pytest.mark.parametrize("decoder", ["torchvision", "opencv"])
def test_fast_jpeg_decoders_give_pils_pixels(decoder: str, media: dict[str, Path], tmp_path: Path) -> None:
    fast = FrameFolderReader(media["jpg"], image_decoder=decoder)
    assert fast.image_decoder == decoder
    request = [4, 0, 4, 11, 1, 0]
    np.testing.assert_array_equal(fast.read(request), FrameFolderReader(media["jpg"]).read(request))
    # other JPEG layouts, and a PNG named .jpg (decoded by PIL when the decoder refuses it)
    odd = tmp_path / "odd"
    odd.mkdir()
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (96, 128, 3), dtype=np.uint8))
    image.convert("L").save(odd / "a_grey.jpg", quality=90)
    image.save(odd / "b_444.jpg", quality=90, subsampling=0)
    image.save(odd / "c_420.jpg", quality=90, subsampling=2)
    image.save(odd / "d_progressive.jpg", quality=90, progressive=True)
    image.save(odd / "e_png_named_jpg.jpg", format="PNG")
    image.convert("CMYK").save(odd / "f_cmyk.jpg", quality=90)
    expected = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in sorted(odd.iterdir())])
    frames = FrameFolderReader(odd, image_decoder=decoder).read(range(6))
    np.testing.assert_array_equal(frames[:5], expected[:5])
    # CMYK -> RGB: torchvision matches PIL exactly, OpenCV's conversion rounds differently by at most one level
    assert np.abs(frames[5].astype(int) - expected[5]).max() <= (0 if decoder == "torchvision" else 1)
    (odd / "g_broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ClipReadError, match="g_broken.jpg"):
        FrameFolderReader(odd, image_decoder=decoder).read([6])


def test_image_decoder_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert readers.resolve_image_decoder("auto", "fast") == "torchvision"
    assert readers.resolve_image_decoder("auto", "official") == "pil"  # the official pipeline's decoder
    assert readers.resolve_image_decoder("pil", "fast") == "pil"
    assert readers.resolve_image_decoder("opencv", "official") == "opencv"
    with pytest.raises(ValueError, match="image decoder must be one of"):
        readers.resolve_image_decoder("turbo", "fast")
    monkeypatch.setattr(readers, "_DECODER_MODULES", {"torchvision": None})  # as if torchvision did not import
    assert readers.resolve_image_decoder("auto", "fast") == "opencv"
    with pytest.raises(ImportError, match="pip install torchvision"):
        readers.resolve_image_decoder("torchvision", "fast")
    monkeypatch.setattr(readers, "_DECODER_MODULES", {"torchvision": None, "opencv": None})
    assert readers.resolve_image_decoder("auto", "fast") == "pil"
    with pytest.raises(ImportError, match="pip install opencv-python-headless"):
        FrameFolderReader(ROOT, image_decoder="opencv")


def test_png_folder_is_lossless(media: dict[str, Path]) -> None:
    reader = FrameFolderReader(media["png"], ext="png")
    assert len(reader) == 10
    frames = reader.read([9, 0, 3])
    for frame, content in zip(frames, [109, 100, 103]):
        np.testing.assert_array_equal(frame, id_image(content))


def test_frame_folder_errors(media: dict[str, Path], tmp_path: Path) -> None:
    reader = FrameFolderReader(media["jpg"])
    with pytest.raises(IndexError, match=str(media["jpg"])):
        reader.read([0, 12])
    with pytest.raises(IndexError):
        reader.read([-1])
    with pytest.raises(ValueError):
        reader.read([])

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ClipReadError, match="empty") as info:
        FrameFolderReader(empty)
    assert info.value.path == str(empty)
    decoys_only = tmp_path / "decoys"
    decoys_only.mkdir()
    (decoys_only / "a.JPG").write_bytes((media["jpg"] / "frame_1.jpg").read_bytes())
    with pytest.raises(ClipReadError, match="decoys"):
        FrameFolderReader(decoys_only)
    with pytest.raises(FileNotFoundError, match="missing_clip"):
        FrameFolderReader(tmp_path / "missing_clip")

    broken = tmp_path / "broken"
    broken.mkdir()
    Image.fromarray(id_image(1)).save(broken / "00001.jpg", quality=90)
    (broken / "00002.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    good_bytes = (broken / "00001.jpg").read_bytes()
    (broken / "00003.jpg").write_bytes(good_bytes[: len(good_bytes) // 2])  # truncated JPEG
    Image.fromarray(id_image(4, width=64)).save(broken / "00004.jpg", quality=90)  # other size
    reader = FrameFolderReader(broken)
    assert decode_ids(reader.read([0])) == [1]  # the good frame still reads
    for index, name in ((1, "00002.jpg"), (2, "00003.jpg")):
        with pytest.raises(ClipReadError) as info:
            reader.read([0, index])
        assert info.value.path == str(broken / name) and name in str(info.value)
    with pytest.raises(ClipReadError, match="shape"):
        reader.read([0, 3])


def test_single_image_is_repeated(media: dict[str, Path]) -> None:
    reader = FrameFolderReader(media["image"])
    assert len(reader) == 1 and reader.is_single_image
    frames = reader.read([0, 5, 15])
    expected = np.asarray(Image.open(media["image"]).convert("RGB"))
    assert frames.shape == (3, *expected.shape)
    for frame in frames:
        np.testing.assert_array_equal(frame, expected)
    assert decode_ids(frames) == [77, 77, 77]


def test_open_clip_dispatch(media: dict[str, Path], tmp_path: Path) -> None:
    assert isinstance(open_clip(media["jpg"]), FrameFolderReader)
    assert len(open_clip(media["png"], ext="png")) == 10
    assert isinstance(open_clip(media["image"]), FrameFolderReader)
    clip = open_clip(media["video"], backend="pyav")
    assert isinstance(clip, VideoFileReader) and clip.backend == "pyav"
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        open_clip(tmp_path / "nothing_here")


# ------------------------------------------------------------------------------------------------ video files


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_video_reader_is_frame_accurate(media: dict[str, Path], backend: str) -> None:
    assert av.open(str(media["video"])).streams.video[0].codec_context.has_b_frames  # the file really has B-frames
    rng = np.random.default_rng(11)
    for name in ("video", "video_mkv"):
        with VideoFileReader(media[name], backend=backend) as reader:
            assert reader.backend == backend
            assert len(reader) == NUM_VIDEO_FRAMES
            assert reader.fps == pytest.approx(FPS)
            frames = reader.read(range(NUM_VIDEO_FRAMES))
            assert frames.shape == (NUM_VIDEO_FRAMES, 128, 128, 3) and frames.dtype == np.uint8
            assert decode_ids(frames) == list(range(NUM_VIDEO_FRAMES))
            for _ in range(6):
                request = rng.integers(0, NUM_VIDEO_FRAMES, 20).tolist()
                assert decode_ids(reader.read(request)) == request
            request = [59, 3, 3, 0, 41, 26, 25, 24, 59]  # around key frames, both ends, repeats
            assert decode_ids(reader.read(request)) == request


def test_backends_agree_pixelwise(media: dict[str, Path]) -> None:
    request = [0, 7, 13, 24, 25, 26, 38, 51, 59]
    decord_frames = VideoFileReader(media["video"], backend="decord").read(request)
    pyav_frames = VideoFileReader(media["video"], backend="pyav").read(request)
    # Same H.264 stream, same FFmpeg decoder and rgb24 conversion: identical up to a level of rounding.
    assert np.abs(decord_frames.astype(np.int16) - pyav_frames).max() <= 2


def test_pyav_seek_paths_and_counting_fallback(media: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "PYAV_RESEEK_GAP", 4)  # force a seek between most wanted frames
    reader = VideoFileReader(media["video"], backend="pyav")
    request = [50, 2, 30, 31, 9, 58, 2]
    assert decode_ids(reader.read(request)) == request
    # Without usable time stamps the backend decodes from the start and counts frames.
    counting = VideoFileReader(media["video"], backend="pyav")
    counting._impl._use_pts = False
    assert decode_ids(counting.read(request)) == request


def test_mkv_frame_count_comes_from_decoding(media: dict[str, Path]) -> None:
    assert av.open(str(media["video_mkv"])).streams.video[0].frames == 0  # Matroska stores no frame count
    assert len(VideoFileReader(media["video_mkv"], backend="pyav")) == NUM_VIDEO_FRAMES


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_frame_time_is_float32_like_decord(media: dict[str, Path], backend: str) -> None:
    import decord

    reader = VideoFileReader(media["video"], backend=backend)
    start, end = reader.frame_time(12)
    assert isinstance(start, np.float32) and isinstance(end, np.float32)
    assert (start, end) == (np.float32(0.48), np.float32(0.52))
    decord_reader = decord.VideoReader(str(media["video"]), num_threads=1)
    timestamps = decord_reader.get_frame_timestamp(list(range(NUM_VIDEO_FRAMES)))
    for index in range(NUM_VIDEO_FRAMES):
        assert reader.frame_time(index) == (timestamps[index, 0], timestamps[index, 1])
    # official HiCMAE arithmetic in float32: frame 12 starts at sample 7680 (float64 would give 7679)
    assert int(start * np.float32(16000)) == 7680
    with pytest.raises(IndexError):
        reader.frame_time(NUM_VIDEO_FRAMES)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_video_errors_name_the_file(media: dict[str, Path], backend: str, tmp_path: Path) -> None:
    reader = VideoFileReader(media["video"], backend=backend)
    with pytest.raises(IndexError, match=str(media["video"])):
        reader.read([0, NUM_VIDEO_FRAMES])
    with pytest.raises(IndexError):
        reader.read([-1])
    for name in ("truncated", "garbage"):
        with pytest.raises(ClipReadError) as info:
            VideoFileReader(media[name], backend=backend)
        assert info.value.path == str(media[name]) and str(media[name]) in str(info.value)
        assert info.value.reason
    with pytest.raises(ClipReadError, match="1 KiB|< 1024") as info:
        VideoFileReader(media["tiny"], backend=backend)
    assert info.value.path == str(media["tiny"])
    with pytest.raises(FileNotFoundError, match="absent.mp4"):
        VideoFileReader(tmp_path / "absent.mp4", backend=backend)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_truncated_faststart_file(media: dict[str, Path], backend: str) -> None:
    path = media["truncated_faststart"]
    try:
        reader = VideoFileReader(path, backend=backend)
    except ClipReadError as exc:  # decord indexes every packet on open, so it notices the truncation there
        assert exc.path == str(path)
        return
    # The index (moov) survives, so the file opens with the declared frame count; the data ends early.
    assert len(reader) == NUM_VIDEO_FRAMES
    assert decode_ids(reader.read([0, 1])) == [0, 1]
    with pytest.raises(ClipReadError) as info:
        reader.read([2, NUM_VIDEO_FRAMES - 1])
    assert info.value.path == str(path)


def test_pyav_must_decode_the_truncated_faststart_prefix(media: dict[str, Path]) -> None:
    reader = VideoFileReader(media["truncated_faststart"], backend="pyav")
    assert len(reader) == NUM_VIDEO_FRAMES
    with pytest.raises(ClipReadError, match="truncated"):
        reader.read([NUM_VIDEO_FRAMES - 1])


def test_backend_selection(media: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    assert VideoFileReader(media["video"]).backend == "decord"  # decord is installed here
    real_import = builtins.__import__

    def no_decord(name: str, *args, **kwargs):
        if name == "decord":
            raise ImportError("No module named 'decord'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "decord", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_decord)
    assert VideoFileReader(media["video"]).backend == "pyav"
    with pytest.raises(ImportError, match="pip install decord"):
        VideoFileReader(media["video"], backend="decord")
    with pytest.raises(ValueError, match="backend"):
        VideoFileReader(media["video"], backend="opencv")  # type: ignore[arg-type]


def test_clip_read_error_pickles() -> None:
    error = pickle.loads(pickle.dumps(ClipReadError("/x/y.mp4", "bad data")))
    assert isinstance(error, ClipReadError) and error.path == "/x/y.mp4" and error.reason == "bad data"
    assert "/x/y.mp4" in str(error)


# ------------------------------------------------------------------------------------------------ audio


def test_read_wav_scales_int16_like_torchaudio(media: dict[str, Path]) -> None:
    samples, rate = read_wav(media["wav_int16"])
    int16 = np.load(media["wav_int16_samples"])
    assert rate == 16000 and samples.dtype == np.float32 and samples.shape == (1, len(int16))
    np.testing.assert_array_equal(samples[0], int16.astype(np.float32) / np.float32(32768))
    assert samples[0, 0] == -1.0 and samples[0, 1] == np.float32(32767 / 32768)

    stereo, rate = read_wav(media["wav_stereo"])
    expected = np.load(media["wav_stereo_samples"]).T.astype(np.float32) / 32768
    assert stereo.shape == (2, 8000)
    np.testing.assert_array_equal(stereo, expected)


def test_read_audio_wav_segments(media: dict[str, Path]) -> None:
    int16 = np.load(media["wav_int16_samples"])
    full = read_audio(media["wav_int16"])
    assert full.shape == (1, len(int16)) and full.dtype == np.float32
    np.testing.assert_array_equal(full[0], int16 / np.float32(32768))
    segment = read_audio(media["wav_int16"], offset=7680, num_samples=4160)
    np.testing.assert_array_equal(segment[0], int16[7680 : 7680 + 4160] / np.float32(32768))
    tail = read_audio(media["wav_int16"], offset=len(int16) - 10, num_samples=100)
    assert tail.shape == (1, 10)  # shorter at the end, like torchaudio
    assert read_audio(media["wav_int16"], offset=len(int16) + 5).shape == (1, 0)
    with pytest.raises(ValueError):
        read_audio(media["wav_int16"], offset=-1)

    stereo = read_audio(media["wav_stereo"])
    channels = np.load(media["wav_stereo_samples"]).astype(np.float64) / 32768
    np.testing.assert_allclose(stereo[0], channels.mean(axis=1), atol=1e-7)


def test_read_audio_resamples_other_rates(media: dict[str, Path]) -> None:
    resampled = read_audio(media["wav_8k"], sample_rate=16000)
    assert resampled.dtype == np.float32 and abs(resampled.shape[1] - 16000) <= 64
    assert dominant_frequency(resampled[0], 16000) == pytest.approx(1000.0, abs=5)
    middle = resampled[0, 2000:14000]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.25 / np.sqrt(2), rel=0.02)
    segment = read_audio(media["wav_8k"], sample_rate=16000, offset=100, num_samples=50)
    np.testing.assert_array_equal(segment, resampled[:, 100:150])


def test_read_audio_from_mp4(media: dict[str, Path]) -> None:
    audio = read_audio(media["video"])
    duration_s = NUM_VIDEO_FRAMES / FPS
    assert audio.dtype == np.float32 and audio.ndim == 2 and audio.shape[0] == 1
    assert abs(audio.shape[1] - duration_s * 16000) <= 1024  # AAC priming / padding only
    assert dominant_frequency(audio[0], 16000) == pytest.approx(TONE_HZ, abs=3)
    middle = audio[0, 4000:-4000]
    # both channels carry the 0.5-amplitude tone: the mono down-mix is their mean, as in ffmpeg's int16 output
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.03)
    segment = read_audio(media["video"], offset=1600, num_samples=3200)
    np.testing.assert_array_equal(segment, audio[:, 1600:4800])
    with pytest.raises(ClipReadError, match="no audio track") as info:
        read_audio(media["video_no_audio"])
    assert info.value.reason == "no audio track" and info.value.path == str(media["video_no_audio"])
    with pytest.raises(FileNotFoundError, match="nothing.mp4"):
        read_audio(media["video"].parent / "nothing.mp4")


def test_extract_audio_file(media: dict[str, Path], tmp_path: Path) -> None:
    wav = tmp_path / "deep" / "folder" / "out.wav"
    count = extract_audio_file(media["video"], wav)
    info = soundfile.info(str(wav))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", count)
    written = soundfile.read(str(wav), dtype="int16")[0]
    # reading the video directly gives exactly what torchaudio.load would give for the extracted wav
    np.testing.assert_array_equal(read_audio(media["video"])[0], written / np.float32(32768))
    np.testing.assert_array_equal(read_wav(wav)[0][0], written / np.float32(32768))
    assert sorted(p.name for p in wav.parent.iterdir()) == ["out.wav"]  # no temporary file left
    with pytest.raises(ClipReadError, match="no audio track"):
        extract_audio_file(media["video_no_audio"], tmp_path / "none.wav")
    assert not (tmp_path / "none.wav").exists()


# ------------------------------------------------------------------------------------------------ official fixtures


@pytest.fixture(scope="module")
def official_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("official")
    inputs = torch.load(OFFICIAL_DATA / "inputs.pt", weights_only=True)
    for entry in inputs["files"]:
        path = root / entry["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(entry["data"].numpy().tobytes())
    return root, inputs


def test_official_frame_order_and_pil_decoding(official_inputs: tuple[Path, dict]) -> None:
    root, inputs = official_inputs
    for clip in inputs["clips"]:
        reader = FrameFolderReader(root / clip["dir"], ext=clip["ext"])
        assert [p.name for p in reader.frame_paths] == clip["sorted_file_names"]
    frame_resize = torch.load(OFFICIAL_DATA / "frame_resize.pt", weights_only=True)
    dirs = {c["name"]: (root / c["dir"], c["ext"]) for c in inputs["clips"]}
    dirs.update({i["name"]: (root / i["path"], "jpg") for i in inputs["images"]})
    checked = 0
    for clip in frame_resize["clips"]:
        reader = open_clip(dirs[clip["clip"]][0], ext=dirs[clip["clip"]][1])
        indices = [d["frame_index"] for d in clip["decoded"]]
        frames = reader.read(indices)
        for frame, record in zip(frames, clip["decoded"]):
            assert list(frame.shape) == record["decoded_shape"]
            assert hashlib.sha256(np.ascontiguousarray(frame).tobytes()).hexdigest() == record["decoded_sha256"]
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_official_video_decoding(official_inputs: tuple[Path, dict], backend: str) -> None:
    root, inputs = official_inputs
    pretrain = torch.load(OFFICIAL_DATA / "pretrain_dataset.pt", weights_only=True)
    videos = {v["name"]: v for v in inputs["videos"]}
    for config in pretrain["configs"]:
        for item in config["items"]:
            video = videos[item["video"]]
            reader = VideoFileReader(root / video["path"], backend=backend)
            assert len(reader) == item["duration"] == video["num_frames"]
            frames = reader.read(item["frame_indices"])
            digests = [hashlib.sha256(np.ascontiguousarray(f).tobytes()).hexdigest() for f in frames]
            assert digests == item["decoded_frames_sha256"]
            if "audio" in item:  # HiCMAE: float32 frame times give the official sample range
                audio = item["audio"]
                start = reader.frame_time(audio["start_frame_idx"])[0]
                end = reader.frame_time(audio["end_frame_idx"])[1]
                rate = np.float32(16000)
                assert int(start * rate) == audio["audio_start_idx"]
                assert int((end - start) * rate) == audio["audio_num_samples"]


def test_official_wav_samples(official_inputs: tuple[Path, dict]) -> None:
    root, inputs = official_inputs
    for entry in inputs["audios"]:
        samples, rate = read_wav(root / entry["path"])
        assert rate == entry["sample_rate"] and samples.shape == (entry["channels"], entry["num_samples"])
        int16 = (samples[0] * 32768).astype(np.int16)  # exact inverse of the /32768 scaling
        assert hashlib.sha256(int16.tobytes()).hexdigest() == entry["samples_sha256"]


# ---------------------------------------------------------------------------------------- tools/extract_audio.py


def load_extract_tool():
    spec = importlib.util.spec_from_file_location("extract_audio_tool", ROOT / "tools" / "extract_audio.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_extract_audio_tool_folder_resumes_and_reports_failures(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tool = load_extract_tool()
    videos = tmp_path / "videos"
    (videos / "actor1").mkdir(parents=True)
    (videos / "actor2" / "deeper").mkdir(parents=True)
    (videos / "actor1" / "a.mp4").write_bytes(media["video"].read_bytes())
    (videos / "actor2" / "deeper" / "b.MP4").write_bytes(media["video"].read_bytes())
    (videos / "actor2" / "silent.mkv").write_bytes(media["video_no_audio"].read_bytes())
    (videos / "actor2" / "broken.avi").write_bytes(media["garbage"].read_bytes())
    (videos / "actor2" / "notes.txt").write_text("ignored\n")
    out = tmp_path / "audio"
    failed_list = tmp_path / "failed.txt"
    argv = ["--folder", str(videos), "--out", str(out), "--no-progress", "--failed-list", str(failed_list)]

    assert tool.main(argv) == 1
    report = capsys.readouterr().out
    assert "done: 2, skipped: 0, failed: 2" in report
    assert str(videos / "actor2" / "silent.mkv") in report and "no audio track" in report
    assert str(videos / "actor2" / "broken.avi") in report
    assert sorted(failed_list.read_text().split()) == sorted(
        [str(videos / "actor2" / "silent.mkv"), str(videos / "actor2" / "broken.avi")]
    )
    produced = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert produced == ["actor1/a.wav", "actor2/deeper/b.wav"]
    first = out / "actor1" / "a.wav"
    info = soundfile.info(str(first))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert abs(info.frames - NUM_VIDEO_FRAMES / FPS * 16000) <= 1024
    modified = first.stat().st_mtime_ns

    assert tool.main(argv) == 1  # resumes: the good ones are skipped, the bad ones fail again
    report = capsys.readouterr().out
    assert "done: 0, skipped: 2, failed: 2" in report
    assert first.stat().st_mtime_ns == modified


def test_extract_audio_tool_annotation_file_with_workers(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tool = load_extract_tool()
    local = tmp_path / "vox" / "video" / "id001"
    local.mkdir(parents=True)
    for name in ("x.mp4", "y.mp4"):
        (local / name).write_bytes(media["video"].read_bytes())
    (local / "z.mp4").write_bytes(media["video_no_audio"].read_bytes())
    listing = tmp_path / "info_clean.csv"
    listing.write_text(
        "/remote/vox/video/id001/x 0\n/remote/vox/video/id001/y.mp4 0\n/remote/vox/video/id001/x.mp4 0\n"
        "/remote/vox/video/id001/z 0\n"
    )
    out = tmp_path / "vox" / "audio"
    argv = [
        "--annotations", str(listing), "--kind", "pretrain", "--path-map", f"/remote/vox={tmp_path / 'vox'}",
        "--root", str(tmp_path / "vox" / "video"), "--out", str(out), "--workers", "2", "--no-progress",
    ]
    assert tool.main(argv) == 1  # the failure comes back from a worker process
    report = capsys.readouterr().out
    assert "done: 2, skipped: 0, failed: 1" in report
    assert f"{local / 'z.mp4'}: ClipReadError" in report and "no audio track" in report
    produced = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert produced == ["id001/x.wav", "id001/y.wav"]
    assert tool.main(argv) == 1
    assert "done: 0, skipped: 2, failed: 1" in capsys.readouterr().out

    plain_list = tmp_path / "list.txt"
    plain_list.write_text(f"# videos\n{local / 'x.mp4'}\n\n")
    assert tool.main(["--list", str(plain_list), "--out", str(tmp_path / "flat"), "--no-progress"]) == 0
    assert (tmp_path / "flat" / "x.wav").is_file()  # root defaults to the folder holding the videos



# In a fresh interpreter (so that no other test's PyAV or thread state is inherited): the parent converts a large
# frame with PyAV's own default (swscale slice threads) on its main thread, then a forked DataLoader worker decodes the
# same video through maedfer's reader. Prints the worker's frames' shape.
_FORK_PROBE = """
import sys
import av, numpy as np, torch
from maedfer.data.readers import open_clip

class Frames(torch.utils.data.Dataset):
    def __len__(self):
        return 2
    def __getitem__(self, index):
        reader = open_clip(sys.argv[1], backend="pyav")
        try:
            return reader.read([0, 5])
        finally:
            reader.close()

with av.open(sys.argv[1]) as container:
    next(container.decode(video=0)).to_ndarray(format="rgb24")
loader = torch.utils.data.DataLoader(Frames(), batch_size=1, num_workers=1, timeout=60,
                                     multiprocessing_context="fork")
batches = list(loader)
assert np.array_equal(batches[0][0].numpy(), Frames()[0])
print(tuple(batches[1].shape))
"""


def test_forked_loader_worker_decodes_after_the_parent_converted_frames(tmp_path: Path) -> None:
    """Without a fresh PyAV reformatter in the forked child, the worker waited forever (DataLoader timeout)."""
    big = tmp_path / "big.mp4"
    write_video(big, audio=False, size=1024)
    out = subprocess.run([sys.executable, "-c", _FORK_PROBE, str(big)], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(1, 2, 1024, 1024, 3)"
