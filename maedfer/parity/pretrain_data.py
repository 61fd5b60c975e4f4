"""Replay of the official pre-training dataset records (``tests/fixtures/official_data/pretrain_dataset.pt``).

The recorded random draws are fed into :class:`maedfer.data.pretrain_datasets.PretrainClipDataset` and every
intermediate (frame indices, decoded frames, crops, output tensor, masks, HiCMAE audio) is compared.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from ..audio import FbankConfig, num_fbank_frames
from ..data.annotations import AnnotationRow, read_annotations
from ..data.pretrain_datasets import (
    PRETRAIN_PRESETS,
    CropBox,
    MaskSpec,
    PretrainAudioConfig,
    PretrainClipDataset,
    PretrainDraws,
    pretrain_frame_indices,
    pretrain_offset_range,
)
from ..data.readers import VideoFileReader
from ..masking import is_part_window_mask, is_tube_mask
from ..targets import IMAGENET_MEAN, IMAGENET_STD
from .fixtures import _decode_png, _sha256, write_fixture_inputs

__all__ = ["check_pretrain_fixture"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]



def check_pretrain_fixture(
    path: PathLike,
    *,
    inputs_path: PathLike | None = None,
    root: PathLike | None = None,
    backends: Sequence[str] = ("decord", "pyav"),
) -> list[tuple[str, bool, float, str]]:
    """Replay the official pre-training records (``pretrain_dataset.pt``) through this module.

    For every config and item, with the recorded random draws (offset, crop pair and offset, audio gain,
    masks) fed in: frame indices, decoded frames (sha256, for each backend), crop geometry (crop sizes,
    candidate pairs and offsets), the output tensor (sha256, sum and excerpt), the 160 x 160 frames after
    crop and resize, mask statistics, and for HiCMAE the audio window, the audio path and the fbank.

    Args:
        path: ``pretrain_dataset.pt`` or the folder holding it.
        inputs_path: ``inputs.pt`` (default: next to ``path``).
        root: Folder to write the inputs to (default: a temporary folder, removed afterwards).
        backends: Video backends whose decoded frames are checked.

    Returns:
        One ``(check name, passed, max abs difference or mismatch count, detail)`` per check.

    Raises:
        FileNotFoundError: If a fixture file is missing.
        ValueError: If ``path`` is not a pre-training fixture.
    """
    fixture_path = Path(path)
    if fixture_path.is_dir():
        fixture_path = fixture_path / "pretrain_dataset.pt"
    inputs_file = Path(inputs_path) if inputs_path is not None else fixture_path.with_name("inputs.pt")
    for file in (fixture_path, inputs_file):
        if not file.is_file():
            raise FileNotFoundError(f"fixture file not found: {file}")
    fixture = torch.load(fixture_path, weights_only=True)
    if fixture.get("kind") != "pretrain_dataset":
        raise ValueError(f"{fixture_path}: expected kind 'pretrain_dataset', got {fixture.get('kind')!r}")
    inputs = torch.load(inputs_file, weights_only=True)
    if root is not None:
        return _check_pretrain_records(fixture, inputs, Path(root), backends)
    with tempfile.TemporaryDirectory(prefix="maedfer_pretrain_fixture_") as tmp:
        return _check_pretrain_records(fixture, inputs, Path(tmp), backends)


def _dataset_for_config(config: Mapping[str, Any], rows: list[AnnotationRow], backend: str) -> PretrainClipDataset:
    """Build the dataset that corresponds to one official pre-training configuration."""
    args = config["args"]
    grid = tuple(config["window_size"])
    mask_kind = args["mask_type"]
    window = tuple(args["part_win_size"][1:]) if mask_kind == "part_window" else None
    patch = int(args["patch_size"][0]) if "patch_size" in args else 16
    mask = MaskSpec(mask_kind, float(args["mask_ratio"]), window, int(args["num_frames"]) // grid[0], patch)
    audio = None
    if "audio_conf" in config:
        conf = config["audio_conf"]
        fbank = FbankConfig(
            sample_rate=int(args.get("audio_sample_rate", 16000)),
            num_mel_bins=int(conf["num_mel_bins"]),
            target_length=int(conf["target_length"]),
            mean=float(conf["mean"]),
            std=float(conf["std"]),
        )
        audio = PretrainAudioConfig(
            sample_rate=int(args.get("audio_sample_rate", 16000)),
            fbank=fbank,
            mask_ratio=float(args["mask_ratio_audio"]),
            mask_grid=tuple(config["window_size_audio"]),  # type: ignore[arg-type]
        )
    crop = config["voxceleb2_crop"]
    return PretrainClipDataset(
        rows,
        num_frames=int(args["num_frames"]),
        sampling_rate=int(args["sampling_rate"]),
        input_size=int(args["input_size"]),
        mask=mask,
        audio=audio,
        fixed_crop=((int(crop[0][0]), int(crop[0][1])), (int(crop[1][0]), int(crop[1][1]))),
        num_samples=int(args.get("num_samples", 1)),
        backend=backend,  # type: ignore[arg-type]
    )


def _check_pretrain_records(
    fixture: Mapping[str, Any], inputs: Mapping[str, Any], root: Path, backends: Sequence[str]
) -> list[tuple[str, bool, float, str]]:
    """Run the checks of :func:`check_pretrain_fixture` with inputs written under ``root``."""
    write_fixture_inputs(inputs, root)
    tol = fixture["tolerances"]
    mean = fixture["normalization"]["mean"]
    std = fixture["normalization"]["std"]
    results: list[tuple[str, bool, float, str]] = []

    def record(name: str, passed: bool, value: float, detail: str) -> None:
        results.append((name, bool(passed), float(value), detail))
        log = logger.info if passed else logger.warning
        log("%s: %s (%g) %s", name, "ok" if passed else "FAILED", value, detail)

    for config in fixture["configs"]:
        lines = [line.replace("{root}", str(root)) for line in config["setting_lines"]]
        list_file = root / f"{config['name']}_setting.csv"
        list_file.write_text("".join(line + "\n" for line in lines))
        rows = read_annotations(list_file, kind="pretrain")
        dataset = _dataset_for_config(config, rows, "pyav")
        num_frames, sampling_rate = dataset.num_frames, dataset.sampling_rate
        record(
            f"{config['name']}/normalization",
            tuple(mean) == tuple(IMAGENET_MEAN) and tuple(std) == tuple(IMAGENET_STD),
            0.0,
            f"mean {mean}, std {std}",
        )
        preset = PRETRAIN_PRESETS.get(str(config.get("system")), {})
        ok = (
            preset.get("mask") == dataset.mask_spec
            and preset.get("fixed_crop") == dataset.fixed_crop
            and (preset.get("audio") is None) == (dataset.audio is None)
            and (dataset.num_frames, dataset.sampling_rate, dataset.input_size) == (16, 4, 160)
        )
        record(f"{config['name']}/preset", ok, 0.0 if ok else 1.0, f"{config.get('system')}: {dataset.mask_spec}")
        for number, item in enumerate(config["items"]):
            prefix = f"{config['name']}/item{number}:{item['video']}:seed{item['seed']}"
            row = rows[int(item["dataset_index"])]
            duration = int(item["duration"])
            offset = int(item["segment_indices"][0]) - 1

            # temporal sampling
            count = pretrain_offset_range(duration, num_frames, sampling_rate)
            ids = pretrain_frame_indices(duration, offset, num_frames, sampling_rate)
            in_range = (0 <= offset < count) if count > 0 else offset == 0
            ok = ids == list(item["frame_indices"]) and count == int(item["average_duration"]) and in_range
            mismatches = sum(a != b for a, b in zip(ids, item["frame_indices"]))
            record(f"{prefix}/frame_indices", ok, mismatches, f"offset {offset}, offsets {max(count, 1)}, ids {ids}")

            # decoding
            for backend in backends:
                with VideoFileReader(row.path, backend=backend) as reader:  # type: ignore[arg-type]
                    length = len(reader)
                    decoded = reader.read(item["frame_indices"])
                hashes = [_sha256(frame) for frame in decoded]
                bad = sum(h != e for h, e in zip(hashes, item["decoded_frames_sha256"]))
                ok = (
                    length == duration
                    and list(decoded.shape[1:]) == list(item["decoded_frame_shape"])
                    and len(hashes) == len(item["decoded_frames_sha256"])
                    and bad == 0
                )
                record(f"{prefix}/decode[{backend}]", ok, bad, f"{length} frames, {bad} frame hashes differ")

            # crop geometry
            crop = item["crop"]
            image_w, image_h = int(crop["image_w"]), int(crop["image_h"])
            pair = (int(crop["crop_pair"][0]), int(crop["crop_pair"][1]))
            sizes = dataset.crop.crop_sizes(image_w, image_h)
            pairs = dataset.crop.candidate_pairs(image_w, image_h)
            offsets = dataset.crop.candidate_offsets(image_w, image_h, *pair)
            box = CropBox(int(crop["crop_w"]), int(crop["crop_h"]), int(crop["offset_w"]), int(crop["offset_h"]))
            fixed_h = dataset.fixed_crop[0][1] - dataset.fixed_crop[0][0] if dataset.fixed_crop else None
            fixed_w = dataset.fixed_crop[1][1] - dataset.fixed_crop[1][0] if dataset.fixed_crop else None
            ok = (
                sizes == list(crop["crop_sizes"])
                and pairs == [tuple(p) for p in crop["candidate_pairs"]]
                and offsets == [tuple(o) for o in crop["candidate_offsets"]]
                and pair in pairs
                and (box.crop_w, box.crop_h) == pair
                and (box.offset_w, box.offset_h) in offsets
                and (fixed_w, fixed_h) == (image_w, image_h)
            )
            where = f"pair {pair} at ({box.offset_w}, {box.offset_h})"
            record(f"{prefix}/crop_geometry", ok, 0.0 if ok else 1.0, where)

            # full item with the recorded draws
            draws = PretrainDraws(
                offset=offset,
                crop=box,
                gain=float(item["audio"]["gain"]) if "audio" in item else None,
                mask=item["mask"],
                mask_audio=item.get("audio_mask"),
            )
            out = dataset.load(int(item["dataset_index"]), [draws], return_frames=True)
            video = out["video"]
            array = video.numpy()
            sha_ok = _sha256(array.astype("<f4")) == item["output_sha256"]
            excerpt = video[:, :, ::32, ::32]
            excerpt_diff = float((excerpt - item["output_excerpt"]).abs().max())
            sum_diff = abs(float(array.astype(np.float64).sum()) - float(item["output_sum"]))
            ok = (
                list(video.shape) == list(item["output_shape"])
                and str(video.dtype).replace("torch.", "") == item["output_dtype"]
                and excerpt_diff <= tol["video_atol"]
                and sum_diff <= tol["video_atol"] * array.size
            )
            record(
                f"{prefix}/output",
                ok,
                excerpt_diff,
                f"sha256 {'identical' if sha_ok else 'differs'}, |sum diff| {sum_diff:.3g}",
            )
            record(f"{prefix}/output_sha256", sha_ok, 0.0 if sha_ok else 1.0, item["output_sha256"][:16])
            if "output_frames_png" in item:
                worst = 0
                for position, png in zip(item["output_frame_positions"], item["output_frames_png"]):
                    expected = _decode_png(png).astype(np.int16)
                    worst = max(worst, int(np.abs(out["frames"][position].astype(np.int16) - expected).max()))
                record(f"{prefix}/output_frames_png", worst == 0, worst, f"positions {item['output_frame_positions']}")

            # masks
            mask = item["mask"]
            generator = dataset.mask_generator
            if dataset.mask_spec.kind == "part_window":
                grid, window_cells = dataset.mask_spec.grid(num_frames, dataset.input_size), dataset.mask_spec.window
                structure = window_cells is not None and is_part_window_mask(mask, grid, window_cells)
            else:
                structure = is_tube_mask(mask, dataset.mask_spec.grid(num_frames, dataset.input_size))
            drawn = generator(torch.Generator().manual_seed(int(item["seed"])))
            ok = (
                list(mask.shape) == list(item["mask_shape"])
                and int(mask.sum()) == int(item["mask_num_masked"]) == generator.num_masked
                and structure
                and drawn.shape == mask.shape
                and int(drawn.sum()) == generator.num_masked
            )
            record(
                f"{prefix}/mask",
                ok,
                abs(int(mask.sum()) - generator.num_masked),
                f"{dataset.mask_spec.kind}: {int(mask.sum())}/{mask.numel()} masked, structure {structure}",
            )

            # audio
            if "audio" in item:
                rec = item["audio"]
                window = out["audio_windows"][0]
                audio_path = dataset.audio_path(row)
                expected_path = rec["audio_path"].replace("{root}", str(root))
                ok = (
                    window.start_frame == int(rec["start_frame_idx"])
                    and window.end_frame == int(rec["end_frame_idx"])
                    and window.start_time == np.float32(rec["audio_start"])
                    and window.end_time == np.float32(rec["audio_end"])
                    and window.offset == int(rec["audio_start_idx"])
                    and window.num_samples == int(rec["audio_num_samples"])
                    and audio_path == expected_path
                    and rec["timestamp_dtype"] == "float32"
                )
                record(
                    f"{prefix}/audio_window",
                    ok,
                    abs(window.offset - int(rec["audio_start_idx"]))
                    + abs(window.num_samples - int(rec["audio_num_samples"])),
                    f"frames {window.start_frame}..{window.end_frame}, samples {window.offset}+{window.num_samples}",
                )
                fbank_config = dataset.audio.fbank  # type: ignore[union-attr]
                frames_before = num_fbank_frames(
                    window.num_samples, fbank_config.sample_rate, fbank_config.frame_shift_ms
                )
                fbank = out["audio"]
                expected = rec["fbank"]
                diff = float((fbank - expected).abs().max())
                close = bool(torch.allclose(fbank, expected, atol=tol["fbank_atol"], rtol=tol["fbank_rtol"]))
                fb_sha = _sha256(fbank.numpy().astype("<f4")) == rec["fbank_sha256"]
                ok = (
                    close
                    and list(fbank.shape) == list(expected.shape)
                    and frames_before == int(rec["fbank_frames_before_pad_or_cut"])
                    and fbank_config.target_length - frames_before == int(rec["pad_or_cut"])
                )
                record(
                    f"{prefix}/fbank",
                    ok,
                    diff,
                    f"{frames_before} frames before pad/cut, gain {rec['gain']:.6f}, "
                    f"sha256 {'identical' if fb_sha else 'differs'}",
                )
                audio_mask = item["audio_mask"]
                am = dataset.audio_mask_generator
                assert am is not None
                drawn_audio = am(torch.Generator().manual_seed(int(item["seed"])))
                ok = (
                    audio_mask.dtype == torch.bool
                    and audio_mask.numel() == am.num_tokens
                    and int(audio_mask.sum()) == int(item["audio_mask_num_masked"]) == am.num_masked
                    and int(drawn_audio.sum()) == am.num_masked
                )
                record(
                    f"{prefix}/audio_mask",
                    ok,
                    abs(int(audio_mask.sum()) - am.num_masked),
                    f"{int(audio_mask.sum())}/{audio_mask.numel()} masked",
                )
    return results
