"""Check maedfer's data pipeline against the official data fixtures (``tests/fixtures/official_data``).

Details: ``docs/modules.md``, section ``maedfer/parity/data.py``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio import num_fbank_frames
from ..targets import IMAGENET_MEAN, IMAGENET_STD
from ..data.readers import FrameFolderReader, list_frames, read_wav
from ..data.sampling import relative_timestamp, window_frame_indices
from ..data.transforms import center_crop, resize_frames_square
from ..data.video_datasets import AudioConfig, VideoClipDataset
from .fixtures import _bytes, _decode_png, _sha256, write_fixture_inputs

__all__ = ["GroupResult", "check_data_fixture"]

logger = logging.getLogger(__name__)

#: ``(group name, passed, max_abs_err, reason)``; ``reason`` is empty when the group passed.
GroupResult = tuple[str, bool, float, str]

_DEFAULT_TOLERANCES = {"video_atol": 1e-6, "video_atol_one_level": 0.0176, "fbank_atol": 1e-3, "fbank_rtol": 1e-4}
_MAX_REASONS = 5


class _Group:
    """Accumulates the comparisons of one record group."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failures: list[str] = []
        self.max_abs_err = 0.0
        self.checks = 0

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def equal(self, what: str, actual: Any, expected: Any) -> bool:
        """Exact comparison of plain values (ints, lists, strings, bools)."""
        self.checks += 1
        if isinstance(actual, np.ndarray):
            actual = actual.tolist()
        if actual != expected:
            self.fail(f"{what}: got {actual!r}, expected {expected!r}")
            return False
        return True

    def close(
        self,
        what: str,
        actual: torch.Tensor,
        expected: torch.Tensor,
        atol: float,
        rtol: float = 0.0,
        *,
        record: bool = True,
    ) -> bool:
        """``|actual - expected| <= atol + rtol * |expected|`` elementwise.

        ``record`` adds the max abs error to the group's ``max_abs_err`` (off for aggregate values such as sums).
        """
        self.checks += 1
        actual = actual.detach().cpu()
        expected = expected.detach().cpu()
        if tuple(actual.shape) != tuple(expected.shape):
            self.fail(f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
            return False
        if actual.dtype == expected.dtype and torch.equal(actual, expected):
            return True  # exact: error 0
        actual = actual.to(torch.float64)
        expected = expected.to(torch.float64)
        diff = (actual - expected).abs()
        err = float(diff.max()) if diff.numel() else 0.0
        if record:
            self.max_abs_err = max(self.max_abs_err, err)
        bound = atol + rtol * expected.abs()
        if bool((diff > bound).any()):
            self.fail(f"{what}: max |diff| {err:.3g} exceeds atol {atol:g} + rtol {rtol:g}")
            return False
        return True

    def same_pixels(self, what: str, actual: np.ndarray, expected: np.ndarray) -> bool:
        """Exact comparison of uint8 images; records the max difference in levels."""
        self.checks += 1
        if actual.shape != expected.shape:
            self.fail(f"{what}: shape {actual.shape}, expected {expected.shape}")
            return False
        err = int(np.abs(actual.astype(np.int16) - expected.astype(np.int16)).max(initial=0))
        self.max_abs_err = max(self.max_abs_err, float(err))
        if err:
            self.fail(f"{what}: differs by up to {err} levels")
            return False
        return True

    def result(self) -> GroupResult:
        if not self.checks and not self.failures:
            return (self.name, False, self.max_abs_err, "nothing was checked")
        if self.failures:
            extra = f" (+{len(self.failures) - _MAX_REASONS} more)" if len(self.failures) > _MAX_REASONS else ""
            return (self.name, False, self.max_abs_err, "; ".join(self.failures[:_MAX_REASONS]) + extra)
        return (self.name, True, self.max_abs_err, "")


@contextmanager
def _group(results: list[GroupResult], name: str) -> Iterator[_Group]:
    """Run the checks of one group; an exception fails the group with its message."""
    group = _Group(name)
    try:
        yield group
    except Exception as error:  # report, do not abort the other groups
        logger.debug("group %s raised:\n%s", name, traceback.format_exc())
        group.fail(f"{type(error).__name__}: {error}")
    results.append(group.result())


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run with one intra-op torch thread, like a DataLoader worker (much faster for these small tensors)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _sub_root(value: str, root: Path) -> str:
    return value.replace("{root}", str(root))


def _write_annotation_files(cfg: Mapping[str, Any], root: Path) -> Path:
    """Write the config's annotation lines to ``<data_path>/{train,val,test}.csv``; return the folder."""
    data_path = Path(_sub_root(str(cfg["args"]["data_path"]), root))
    data_path.mkdir(parents=True, exist_ok=True)
    text = "".join(_sub_root(line, root) + "\n" for line in cfg["annotation_lines"])
    for name in ("train.csv", "val.csv", "test.csv"):
        (data_path / name).write_text(text)
    return data_path


def _clip_locations(inputs: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """``{clip name: (relative path, frame ext)}`` for frame folders and single images."""
    locations = {clip["name"]: (clip["dir"], clip["ext"]) for clip in inputs["clips"]}
    for image in inputs.get("images", []):
        locations[image["name"]] = (image["path"], "jpg")
    return locations


# ------------------------------------------------------------------------------------------------- inputs


def _check_inputs(inputs: Mapping[str, Any], root: Path, results: list[GroupResult]) -> None:
    with _group(results, "inputs/files") as group:
        for entry in inputs["files"]:
            group.equal(f"{entry['path']} sha256", hashlib.sha256(_bytes(entry["data"])).hexdigest(), entry["sha256"])
    with _group(results, "inputs/frame_order") as group:
        for clip in inputs["clips"]:
            names = [p.name for p in list_frames(root / clip["dir"], clip["ext"])]
            group.equal(f"{clip['name']} sorted frames", names, list(clip["sorted_file_names"]))
            for decoy in clip.get("decoy_files", []):
                group.equal(f"{clip['name']} ignores {decoy}", decoy in names, False)
    with _group(results, "inputs/audio") as group:
        for audio in inputs.get("audios", []):
            samples, rate = read_wav(root / audio["path"])
            group.equal(f"{audio['path']} sample rate", rate, audio["sample_rate"])
            group.equal(f"{audio['path']} shape", list(samples.shape), [audio["channels"], audio["num_samples"]])
            as_int16 = np.round(samples.T * 32768.0).astype(np.int16)
            group.equal(f"{audio['path']} int16 samples sha256", _sha256(as_int16), audio["samples_sha256"])


# ------------------------------------------------------------------------------------------- frame resize


def _check_frame_resize(
    fx: Mapping[str, Any], inputs: Mapping[str, Any], root: Path, results: list[GroupResult]
) -> None:
    locations = _clip_locations(inputs)
    for clip in fx["clips"]:
        name = clip["clip"]
        with _group(results, f"frame_resize/{name}") as group:
            relative, ext = locations[name]
            reader = FrameFolderReader(root / relative, ext=ext)
            indices = [record["frame_index"] for record in clip["decoded"]]
            decoded = reader.read(indices)
            for record, frame in zip(clip["decoded"], decoded):
                index = record["frame_index"]
                group.equal(f"frame {index} file", reader.frame_paths[index].name, record["file"])
                group.equal(f"frame {index} decoded shape", list(frame.shape), list(record["decoded_shape"]))
                group.equal(f"frame {index} decoded sum", int(frame.sum(dtype=np.int64)), int(record["decoded_sum"]))
                group.equal(f"frame {index} decoded sha256", _sha256(frame), record["decoded_sha256"])
            for resized in clip["resized"]:
                size = int(resized["size"])
                frames = reader.read(list(resized["frame_indices"]))
                ours = resize_frames_square(frames, size)
                for k, index in enumerate(resized["frame_indices"]):
                    expected = _decode_png(resized["png"][k])
                    group.same_pixels(f"frame {index} resized to {size}", ours[k], expected)
                    group.equal(f"frame {index} resized sha256", _sha256(ours[k]), resized["resized_sha256"][k])


def _frame_bank(frame_resize: Mapping[str, Any] | None) -> dict[tuple[str, int, int], np.ndarray]:
    """``{(clip, size, frame index): uint8 (S, S, 3)}`` from ``frame_resize.pt`` (README ``bank``)."""
    if frame_resize is None:
        return {}
    return {
        (clip["clip"], int(resized["size"]), int(index)): _decode_png(png)
        for clip in frame_resize["clips"]
        for resized in clip["resized"]
        for index, png in zip(resized["frame_indices"], resized["png"])
    }


def _expected_view(
    bank: Mapping[tuple[str, int, int], np.ndarray], clip: str, indices: Sequence[int], size: int, crop: int, mode: str
) -> torch.Tensor | None:
    """The README ``expected_view`` recipe, or ``None`` when a frame is missing from the bank."""
    try:
        frames = np.stack([bank[clip, size, int(i)] for i in indices])
    except KeyError:
        return None
    if mode == "validation":
        frames = center_crop(frames, crop)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 255
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None, None]
    return (x - mean) / std


# ---------------------------------------------------------------------------------------- dataset records


def _make_dataset(cfg: Mapping[str, Any], mode: str, data_path: Path, audio: bool) -> VideoClipDataset:
    kwargs = cfg["modes"][mode]["constructor_kwargs"]
    annotation_file = data_path / cfg["modes"][mode]["annotation_file"]
    task = kwargs.get("task", "classification")
    return VideoClipDataset(
        annotation_file,
        mode,  # type: ignore[arg-type]
        num_frames=int(kwargs["clip_len"]),
        sampling_rate=int(kwargs["frame_sample_rate"]),
        input_size=int(kwargs["crop_size"]),
        short_side_size=int(kwargs["short_side_size"]),
        test_num_segment=int(kwargs["test_num_segment"]),
        test_num_crop=int(kwargs["test_num_crop"]),
        file_ext=str(kwargs["file_ext"]),
        audio=AudioConfig() if audio else None,
        task=task,
        official_duplicate_crops=True,
        skip_bad_samples=False,
    )


def _recorded_window_end(item: Mapping[str, Any]) -> int | None:
    """Window end of a random training / validation window: recorded start + ``L * sr``."""
    if item.get("random_start"):
        return int(item["frame_indices"][0]) + int(item["converted_len"])
    return None


def _check_video_output(
    group: _Group,
    what: str,
    video: torch.Tensor,
    item: Mapping[str, Any],
    expected_full: Callable[[], torch.Tensor | None] | None,
    atol: float,
) -> None:
    """Shape, dtype and values of a video output.

    A sha256 equal to the official one proves bit identity; otherwise the tensor is compared with the README
    ``expected_view`` (``expected_full``, computed lazily), the stored excerpt and the float64 sums, within ``atol``.
    """
    group.equal(f"{what} shape", list(video.shape), list(item["output_shape"]))
    if "output_dtype" in item:
        group.equal(f"{what} dtype", str(video.dtype).replace("torch.", ""), item["output_dtype"])
    if "output_sha256" not in item:
        return
    if _sha256(video) == item["output_sha256"]:
        group.equal(f"{what} sha256", True, True)  # bit-identical to the official tensor: nothing else to compare
        return
    logger.info("%s: sha256 differs from the official tensor; comparing within tolerance", what)
    full = expected_full() if expected_full is not None else None
    if expected_full is not None and full is None:
        group.fail(f"{what}: frames missing from frame_resize.pt")
    if full is not None:
        group.close(f"{what} vs expected_view", video, full, atol)
    group.close(f"{what} excerpt", video[:, :, ::32, ::32], item["output_excerpt"], atol)
    numel = video.numel()
    as64 = video.to(torch.float64)
    group.close(f"{what} sum", as64.sum().reshape(1), torch.tensor([item["output_sum"]]), atol * numel, record=False)
    if "output_abs_sum" in item:
        abs_sum = as64.abs().sum().reshape(1)
        group.close(f"{what} abs sum", abs_sum, torch.tensor([item["output_abs_sum"]]), atol * numel, record=False)


def _check_audio(
    group: _Group,
    what: str,
    dataset: VideoClipDataset,
    plan: Any,
    audio_out: torch.Tensor,
    record: Mapping[str, Any],
    cfg: Mapping[str, Any],
    tolerances: Mapping[str, float],
) -> None:
    segment = plan.audio_segment
    n = plan.num_frames_total
    group.equal(f"{what} start frame", segment.start_frame, record["start_frame_idx"])
    group.equal(f"{what} end frame", segment.end_frame, record["end_frame_idx"])
    group.equal(f"{what} relative start", relative_timestamp(segment.start_frame, n), record["audio_start"])
    group.equal(f"{what} relative end", relative_timestamp(segment.end_frame, n), record["audio_end"])
    group.equal(f"{what} start sample", segment.start_sample, record["audio_start_idx"])
    group.equal(f"{what} end sample", segment.end_sample, record["audio_end_idx"])
    group.equal(f"{what} whole audio", segment.whole_audio, record["whole_audio_used"])
    group.equal(f"{what} segment samples", segment.num_samples, record["segment_num_samples"])
    frames = num_fbank_frames(segment.num_samples)
    group.equal(f"{what} fbank frames", frames, record["fbank_frames_before_pad_or_cut"])
    target = dataset.audio.fbank.target_length if dataset.audio is not None else 256
    group.equal(f"{what} target length", target, record["target_length"])
    group.equal(f"{what} pad or cut", target - frames, record["pad_or_cut"])
    group.equal(f"{what} gain used", plan.gain, record["gain"])
    group.equal(f"{what} fbank shape", list(audio_out.shape), list(record["fbank_shape"]))
    atol, rtol = tolerances["fbank_atol"], tolerances["fbank_rtol"]
    if "fbank" in record:
        group.close(f"{what} fbank", audio_out, record["fbank"], atol, rtol)
    group.close(f"{what} fbank excerpt", audio_out[:, ::16, :], record["fbank_excerpt"], atol, rtol)
    gain1 = dataset.load_audio(plan, gain=1.0)
    if "segment" in record:
        stored = cfg["audio_segments"][record["segment"]]
        group.equal(f"{what} segment clip", stored["clip"], record.get("_clip"))
        group.equal(
            f"{what} segment range",
            [segment.start_sample, segment.end_sample],
            [stored["audio_start_idx"], stored["audio_end_idx"]],
        )
        group.equal(f"{what} segment whole audio", segment.whole_audio, stored["whole_audio_used"])
        group.close(f"{what} fbank gain 1", gain1, stored["fbank_gain1"], atol, rtol)
    if "fbank_gain1_excerpt" in record:
        group.close(f"{what} fbank gain 1 excerpt", gain1[:, ::16, :], record["fbank_gain1_excerpt"], atol, rtol)
    if _sha256(audio_out) != record["fbank_sha256"] or _sha256(gain1) != record["fbank_gain1_sha256"]:
        logger.info("%s: fbank sha256 differs from the official tensor (within tolerance)", what)


def _check_dataset_fixture(
    fx: Mapping[str, Any],
    root: Path,
    frame_resize: Mapping[str, Any] | None,
    results: list[GroupResult],
    audio: bool,
) -> None:
    tolerances = {**_DEFAULT_TOLERANCES, **fx.get("tolerances", {})}
    video_atol = float(tolerances["video_atol"])
    bank = _frame_bank(frame_resize)
    prefix = "hicmae_av_dataset" if audio else "finetune_dataset"
    for cfg in fx["configs"]:
        data_path = _write_annotation_files(cfg, root)
        for mode, mode_fx in cfg["modes"].items():
            video_name = f"{prefix}/{cfg['name']}/{mode}" + ("/video" if audio else "")
            audio_results: list[tuple[Any, Any, Any, Mapping[str, Any]]] = []
            with _group(results, video_name) as group:
                dataset = _make_dataset(cfg, mode, data_path, audio)
                group.equal("length", len(dataset), mode_fx["length"])
                kwargs = mode_fx["constructor_kwargs"]
                size, crop = int(kwargs["short_side_size"]), int(kwargs["crop_size"])
                for item in mode_fx["items"]:
                    index = int(item["dataset_index"])
                    what = f"item {index} ({item['clip']})"
                    end = _recorded_window_end(item) if mode != "test" else None
                    gain = float(item["audio"]["gain"]) if audio else None
                    out, plan = dataset.load(index, window_end=end, gain=gain)
                    row = dataset.rows[plan.sample]
                    group.equal(f"{what} label", out["label"].tolist(), item["label"])
                    group.equal(f"{what} frame indices", plan.frame_indices, list(item["frame_indices"]))
                    returned = item.get("returned_sample", item.get("returned"))
                    if isinstance(returned, str):
                        group.equal(f"{what} path", row.path, _sub_root(returned, root))
                    if item.get("single_image_sample"):
                        group.equal(f"{what} single image", Path(row.path).is_file(), True)
                    if mode == "test":
                        group.equal(f"{what} segment", plan.view.segment, item["chunk_nb"])
                        group.equal(f"{what} crop", plan.view.crop, item["split_nb"])
                        group.equal(f"{what} loaded indices", plan.loaded_indices, list(item["loaded_indices"]))
                        group.equal(f"{what} temporal start", plan.temporal_start, item["temporal_start"])
                        step = dataset.test_views.spatial_step(size, size, size)
                        group.equal(f"{what} spatial step", step, item["spatial_step"])
                        group.equal(
                            f"{what} spatial start",
                            dataset.test_views.spatial_start(plan.view.crop, size, size, size),
                            item["spatial_start"],
                        )
                    else:
                        window = plan.window
                        group.equal(f"{what} random start", window.random_start, item["random_start"])
                        if "converted_len" in item:
                            group.equal(f"{what} converted_len", window.span, item["converted_len"])
                        if "seg_len" in item:
                            group.equal(f"{what} seg_len", plan.num_frames_total, item["seg_len"])
                        legacy = np.random.RandomState(int(item["numpy_seed"]))
                        drawn = window_frame_indices(
                            plan.num_frames_total, dataset.num_frames, dataset.sampling_rate, rng=legacy
                        )
                        group.equal(
                            f"{what} frame indices (RandomState(numpy_seed) draw)", drawn, list(item["frame_indices"])
                        )
                    expected: Callable[[], torch.Tensor | None] | None = None
                    if mode_fx.get("video_in_frame_resize") and mode != "train" and bank:
                        expected = partial(_expected_view, bank, item["clip"], item["frame_indices"], size, crop, mode)
                    _check_video_output(group, f"{what} video", out["video"], item, expected, video_atol)
                    if audio:
                        audio_results.append((out, plan, dataset, {**item["audio"], "_clip": item["clip"]}))
            if audio:
                with _group(results, f"{prefix}/{cfg['name']}/{mode}/audio") as group:
                    if not audio_results:
                        group.fail("the video checks failed before any audio was loaded")
                    for out, plan, dataset, record in audio_results:
                        what = f"item {plan.index} ({record['_clip']})"
                        _check_audio(group, what, dataset, plan, out["audio"], record, cfg, tolerances)


# -------------------------------------------------------------------------------------------------- entry


def check_data_fixture(
    path: str | Path,
    *,
    fixture: Mapping[str, Any] | None = None,
    inputs_path: str | Path | None = None,
) -> list[GroupResult]:
    """Run our data pipeline on every record of one official data fixture.

    Args:
        path: The fixture file (``frame_resize.pt``, ``finetune_dataset.pt``, ``hicmae_av_dataset.pt``,
            ``pretrain_dataset.pt`` or ``inputs.pt``).
        fixture: The already loaded fixture dict (e.g. a modified copy); default: ``torch.load(path)``.
        inputs_path: ``inputs.pt``; default: next to ``path``. ``frame_resize.pt`` next to it is used for the
            full ``expected_view`` comparison when present.

    Returns:
        One ``(group, passed, max_abs_err, reason)`` per record group.

    Raises:
        FileNotFoundError: If the fixture or ``inputs.pt`` is missing.
        ValueError: On an unknown fixture kind.
    """
    path = Path(path)
    fx = fixture if fixture is not None else torch.load(path, weights_only=True)
    kind = fx.get("kind")
    if kind == "pretrain_dataset":
        from .pretrain_data import check_pretrain_fixture

        return list(check_pretrain_fixture(path))
    if kind not in ("inputs", "frame_resize", "finetune_dataset", "av_dataset"):
        raise ValueError(f"{path}: unknown data fixture kind {kind!r}")

    inputs_file = Path(inputs_path) if inputs_path is not None else path.parent / "inputs.pt"
    inputs = fx if kind == "inputs" else torch.load(inputs_file, weights_only=True)
    frame_resize: Mapping[str, Any] | None = None
    if kind in ("finetune_dataset", "av_dataset"):
        resize_file = inputs_file.parent / "frame_resize.pt"
        if resize_file.is_file():
            frame_resize = torch.load(resize_file, weights_only=True)

    results: list[GroupResult] = []
    with tempfile.TemporaryDirectory(prefix="maedfer_data_fixture_") as tmp, _one_torch_thread():
        root = Path(tmp)
        write_fixture_inputs(inputs, root)
        if kind == "inputs":
            _check_inputs(inputs, root, results)
        elif kind == "frame_resize":
            _check_frame_resize(fx, inputs, root, results)
        else:
            _check_dataset_fixture(fx, root, frame_resize, results, audio=kind == "av_dataset")
    for name, passed, err, reason in results:
        if passed:
            logger.info("PASS %s max_abs_err=%.3g", name, err)
        else:
            logger.warning("FAIL %s %s", name, reason)
    return results
