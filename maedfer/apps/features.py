"""Feature extraction for downstream models: pooled clip vectors, token maps and intermediate layers.

Details: ``docs/modules.md``, section ``maedfer/apps/features.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..compile import optimize_for_inference
from ..engine.backends import autocast_context, resolve_precision
from ..models.encoder import raster_order, take_indices
from .inference import (
    INPUT_ERRORS,
    InferenceModel,
    add_model_source_arguments,
    checkpoint_from_args,
    clip_audio_segment,
    clip_filterbank,
    clip_to_input,
    error_message,
    load_inference_model,
    read_soundtrack,
    read_video_frames,
)

__all__ = [
    "FEATURE_LEVELS",
    "GRID_KEYS",
    "MANIFEST_NAME",
    "OUTPUT_FORMATS",
    "ExtractionSummary",
    "clip_views",
    "encode_clip",
    "extract_features_to_folder",
    "extract_video_features",
    "output_names",
    "read_video_list",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
FeatureLevel = Literal["pooled", "tokens", "layers"]
OutputFormat = Literal["npy", "safetensors"]

#: The feature levels of :func:`encode_clip`.
FEATURE_LEVELS: tuple[str, ...] = ("pooled", "tokens", "layers")
#: Output formats of :func:`extract_features_to_folder`.
OUTPUT_FORMATS: tuple[str, ...] = ("npy", "safetensors")
#: Keys holding token-grid shapes (int64, no batch / clip axis).
GRID_KEYS: frozenset[str] = frozenset({"grid", "video_grid", "audio_grid"})
#: Name of the per-folder manifest.
MANIFEST_NAME = "manifest.jsonl"


# ---------------------------------------------------------------------------------------------------- model anatomy


@dataclass(frozen=True)
class _Anatomy:
    """Where the encoders of a model are.

    Attributes:
        video_encoder: The video :class:`~maedfer.models.encoder.TokenEncoder` (``None`` for audio-only models).
        audio_encoder: The audio encoder of a HiCMAE model.
        fusion: The cross-modal fusion of a HiCMAE model.
        audio_visual: Whether the model is a HiCMAE model (classifier or pre-training).
        finetuned: Whether the model has a head (its ``forward_features`` is the head input).
    """

    video_encoder: nn.Module | None
    audio_encoder: nn.Module | None
    fusion: nn.Module | None
    audio_visual: bool
    finetuned: bool


def _anatomy(model: nn.Module) -> _Anatomy:
    """Find the encoders of ``model`` (HiCMAE classifier / pre-training, video MAE or a fine-tuning encoder)."""
    from ..models.audio_visual import AudioVisualClassifier, AudioVisualMaskedAutoencoder
    from ..models.utils import video_encoder

    if isinstance(model, (AudioVisualClassifier, AudioVisualMaskedAutoencoder)):
        return _Anatomy(
            video_encoder=model.encoder,
            audio_encoder=model.encoder_audio,
            fusion=model.encoder_fusion,
            audio_visual=True,
            finetuned=isinstance(model, AudioVisualClassifier),
        )
    encoder = video_encoder(model)
    if encoder is not None:  # a fine-tuning encoder, or MaskedVideoAutoencoder and alike
        return _Anatomy(encoder, None, None, audio_visual=False, finetuned=encoder is model)
    raise TypeError(f"cannot find the encoder of a {type(model).__name__}; expected a maedfer model")


def _default_layers(model: nn.Module, encoder: nn.Module) -> list[int]:
    """Every block, or the taps of a HiCMAE pre-training model."""
    taps = getattr(model, "return_intermediate_features", None)
    if taps is not None:
        return [int(i) for i in taps]
    return list(range(len(encoder.blocks)))


def _resolve_layers(layers: Sequence[int] | None, model: nn.Module, encoder: nn.Module, what: str) -> list[int]:
    """Validated, non-negative block indices (negative ones count from the end), duplicates removed."""
    chosen = _default_layers(model, encoder) if layers is None else [int(i) for i in layers]
    try:
        return list(dict.fromkeys(take_indices(len(encoder.blocks), chosen)))
    except ValueError as error:
        raise ValueError(f"layers {chosen} for the {what}: {error}") from None


def _check_request(loaded: InferenceModel, level: str, layers: Sequence[int] | None) -> _Anatomy:
    """Validate ``level`` / ``layers`` against the model; returns its anatomy."""
    if level not in FEATURE_LEVELS:
        raise ValueError(f"level must be one of {', '.join(FEATURE_LEVELS)}, got {level!r}")
    if layers is not None and level != "layers":
        raise ValueError(f"layers only apply to level='layers', got level={level!r}")
    parts = _anatomy(loaded.model)
    if level == "layers":
        for encoder, what in ((parts.video_encoder, "video encoder"), (parts.audio_encoder, "audio encoder")):
            if encoder is not None:
                _resolve_layers(layers, loaded.model, encoder, what)
    return parts


# ---------------------------------------------------------------------------------------------------- encoding


def _grid_tensor(num_tokens: int, spatial: Sequence[int]) -> Tensor:
    """``(t, *spatial)`` int64 with ``t = num_tokens / prod(spatial)``."""
    per_step = int(np.prod(spatial))
    return torch.tensor([num_tokens // per_step, *spatial], dtype=torch.int64)


def _encode_video(
    model: nn.Module, parts: _Anatomy, video: Tensor, level: str, layers: Sequence[int] | None
) -> dict[str, Tensor]:
    """Features of a single-modality video model (fine-tuning encoder or masked autoencoder)."""
    encoder = parts.video_encoder
    assert encoder is not None
    spatial = tuple(int(v) for v in encoder.grid_size[1:])
    if level == "pooled":
        if parts.finetuned:
            return {"pooled": encoder.forward_features(video)}
        return {"pooled": encoder.forward_encoder(video).tokens.mean(1)}
    if level == "tokens":
        out = encoder.forward_encoder(video)
        tokens, _ = raster_order(out.tokens, out.positions)
        features = {"tokens": tokens, "grid": _grid_tensor(tokens.shape[1], spatial)}
        if out.summary_tokens is not None:
            features[encoder.summary_name] = out.summary_tokens
        return features
    indices = _resolve_layers(layers, model, encoder, "video encoder")
    found = encoder.forward_intermediates(video, indices=indices, norm=False)
    features = {}
    for index, tokens, summary in zip(found.indices, found.tokens, found.summary):
        features[f"layer_{index}"] = tokens
        if summary is not None:
            features[f"layer_{index}_{encoder.summary_name}"] = summary
    features["grid"] = torch.tensor(encoder.grid_size, dtype=torch.int64)
    return features


def _encode_audio_visual(
    model: nn.Module,
    parts: _Anatomy,
    video: Tensor | None,
    audio: Tensor | None,
    level: str,
    layers: Sequence[int] | None,
) -> dict[str, Tensor]:
    """Features of a HiCMAE model (classifier or pre-training, any modality)."""
    if parts.video_encoder is not None and video is None:
        raise ValueError(f"{type(model).__name__} needs a video input")
    if parts.audio_encoder is not None and audio is None:
        raise ValueError(f"{type(model).__name__} needs an audio input (a (B, 1, T_a, F) filter bank)")
    if level == "pooled" and parts.finetuned:
        return {"pooled": model.forward_features(video, audio)}
    features: dict[str, Tensor] = {}
    outputs = {}
    for name, encoder, source in (("video", parts.video_encoder, video), ("audio", parts.audio_encoder, audio)):
        if encoder is None:
            continue
        taps = _resolve_layers(layers, model, encoder, f"{name} encoder") if level == "layers" else None
        if taps is None:
            out = encoder.forward_encoder(source)
        else:
            found = encoder.forward_intermediates(source, indices=taps)
            out = found.output
            for index, layer in zip(found.indices, found.tokens):
                features[f"{name}_layer_{index}"] = layer
        out.tokens, out.positions = raster_order(out.tokens, out.positions)  # an LGI-Former tower is region-major
        outputs[name] = out
        if level == "tokens":
            features[f"{name}_tokens"] = out.tokens
        spatial = encoder.grid_size[1:]
        features[f"{name}_grid"] = _grid_tensor(out.tokens.shape[1], tuple(int(v) for v in spatial))
    if parts.fusion is not None:
        fused = parts.fusion(outputs["video"].tokens, outputs["audio"].tokens)
        features["fused_video"], features["fused_audio"] = fused
    if level == "pooled":  # pre-training model: token means of both encoders and of the fusion
        pooled = [outputs[name].tokens.mean(1) for name in ("video", "audio") if name in outputs]
        if parts.fusion is not None:
            pooled += [features["fused_video"].mean(1), features["fused_audio"].mean(1)]
        return {"pooled": torch.cat(pooled, dim=-1)}
    return features


def encode_clip(
    loaded: InferenceModel,
    video: Tensor | None,
    audio: Tensor | None = None,
    *,
    level: FeatureLevel = "pooled",
    layers: Sequence[int] | None = None,
) -> dict[str, Tensor]:
    """Features of a batch of clips (see the module docstring for the keys and shapes of every level).

    Args:
        loaded: The model (:func:`maedfer.apps.inference.load_inference_model`).
        video: ``float32 (B, 3, T, H, W)`` normalised clips (:func:`maedfer.apps.inference.clip_to_input`); ``None`` only
            for an audio-only HiCMAE model.
        audio: ``float32 (B, 1, T_a, F)`` normalised filter banks for HiCMAE models with an audio encoder.
        level: ``"pooled"``, ``"tokens"`` or ``"layers"``.
        layers: Block indices for ``level="layers"`` (default: see the module docstring).

    Returns:
        ``{key: tensor}``; features are float tensors with a leading batch axis on ``loaded.device``, the ``*grid``
        keys (:data:`GRID_KEYS`) int64 CPU tensors without a batch axis.

    Raises:
        ValueError: An unknown level, ``layers`` with another level, an out-of-range layer, a missing input, or audio
            given to a video-only model.
        TypeError: The model is not a maedfer model.
    """
    parts = _check_request(loaded, level, layers)
    model = loaded.model
    if model.training:
        logger.warning("encode_clip: the model is in training mode (dropout active); call model.eval() first")
    with torch.inference_mode():
        video = video.to(loaded.device) if video is not None else None
        audio = audio.to(loaded.device) if audio is not None else None
        if parts.audio_visual:
            features = _encode_audio_visual(model, parts, video, audio, level, layers)
        else:
            if audio is not None:
                raise ValueError(f"{loaded.name} is a video-only model; it takes no audio input")
            if video is None:
                raise ValueError(f"{loaded.name} needs a video input (B, 3, T, H, W)")
            features = _encode_video(model, parts, video, level, layers)
    return {key: value.cpu() if key in GRID_KEYS else value for key, value in features.items()}


# ---------------------------------------------------------------------------------------------------- video files


def clip_views(
    num_frames_total: int, clip_len: int, sampling_rate: int, num_clips: int = 1
) -> tuple[np.ndarray, list[int], np.ndarray]:
    """The ``num_clips`` test-time views of a video (see the module docstring).

    Args:
        num_frames_total: Frames ``n`` of the video.
        clip_len: Frames per clip ``L``.
        sampling_rate: Frame stride ``sr``.
        num_clips: Number of clips (>= 1); 1 gives the centred view.

    Returns:
        ``(loaded, starts, frame_indices)``: the loaded frame indices (int64, every ``sr``-th frame padded to ``L``,
        :func:`~maedfer.data.sampling.stride_loaded_indices`), the start of each view in ``loaded`` and the
        ``(num_clips, L)`` int64 frame indices.
    """
    from ..data.sampling import segment_temporal_start, stride_loaded_indices

    if isinstance(num_clips, bool) or not isinstance(num_clips, (int, np.integer)) or num_clips < 1:
        raise ValueError(f"num_clips must be an integer >= 1, got {num_clips!r}")
    loaded = stride_loaded_indices(num_frames_total, clip_len, sampling_rate)
    if num_clips == 1:
        starts = [max(loaded.size - clip_len, 0) // 2]
    else:
        starts = [segment_temporal_start(loaded.size, clip_len, num_clips, k) for k in range(num_clips)]
    indices = np.stack([loaded[start : start + clip_len] for start in starts]).astype(np.int64)
    return loaded, starts, indices


def _clip_filterbanks(
    loaded: InferenceModel,
    audio_source: Path,
    frame_views: tuple[np.ndarray, list[int]],
    num_frames_total: int,
) -> tuple[Tensor, np.ndarray]:
    """Filter banks of every clip, cut as the evaluation dataset does (the test view's audio frame range).

    Returns:
        ``(fbanks float32 (num_clips, 1, T_a, F), samples int64 (num_clips, 2))`` with the ``[start, stop)`` waveform
        samples each clip used.

    Raises:
        maedfer.apps.inference.NoAudioError: ``audio_source`` has no (or an empty) audio track, or is a frame folder.
        maedfer.data.sampling.AudioSegmentError: A clip's audio is too short.
    """
    from ..data.sampling import view_audio_frame_range

    fbank = loaded.fbank
    assert fbank is not None
    waveform = read_soundtrack(audio_source, fbank.sample_rate, modality=loaded.modality)
    loaded_indices, starts = frame_views
    banks, samples = [], []
    for start in starts:
        frames = view_audio_frame_range(
            loaded_indices, start, loaded.num_frames, loaded.sampling_rate, num_frames_total
        )
        segment = clip_audio_segment(waveform.shape[-1], *frames, num_frames_total, fbank, path=audio_source)
        banks.append(clip_filterbank(waveform, *frames, num_frames_total, fbank, path=audio_source))
        samples.append((segment.slice.start, segment.slice.stop))
    return torch.stack(banks), np.asarray(samples, dtype=np.int64)


def extract_video_features(
    loaded: InferenceModel,
    path: PathLike,
    *,
    level: FeatureLevel = "pooled",
    layers: Sequence[int] | None = None,
    num_clips: int = 1,
    detect_faces: bool = True,
    audio_path: PathLike | None = None,
    detector: Any = None,
    video_backend: str = "auto",
) -> dict[str, np.ndarray]:
    """Features of ``num_clips`` clips of a video file (or frame folder).

    Args:
        loaded: The model.
        path: Video file or frame folder.
        level: ``"pooled"``, ``"tokens"`` or ``"layers"`` (see the module docstring).
        layers: Block indices for ``level="layers"``.
        num_clips: Clips per video (:func:`clip_views`; 1 = the centred clip).
        detect_faces: Crop the main face of every frame first (``False`` for videos that are already face crops).
        audio_path: Audio source of an audio-visual model (a wav, or any file with an audio track); default
            ``path`` itself.
        detector: A :class:`maedfer.preprocess.faces.FaceDetector` to reuse across videos.
        video_backend: ``"auto"``, ``"decord"`` or ``"pyav"``.

    Returns:
        The :func:`encode_clip` keys as float32 arrays with a leading clip axis ``(num_clips, ...)`` (the ``*grid``
        keys stay int64 without a clip axis), plus ``frame_indices`` int64 ``(num_clips, L)`` (positions in the
        decoded frame list) and, for models with audio, ``audio_samples`` int64 ``(num_clips, 2)``, the
        ``[start, stop)`` 16 kHz samples of each clip's audio.

    Raises:
        FileNotFoundError: ``path`` (or ``audio_path``) does not exist.
        maedfer.data.readers.ClipReadError: The video cannot be decoded.
        maedfer.apps.inference.NoAudioError: (a ``ClipReadError``) An audio-visual model's audio source has no audio
            track, an empty one, or is a frame folder (the message names the file).
        maedfer.preprocess.faces.NoFaceError: ``detect_faces`` and no face was found.
        maedfer.data.sampling.AudioSegmentError: A clip's audio is too short.
        ValueError: Bad ``level`` / ``layers`` / ``num_clips``.
    """
    parts = _check_request(loaded, level, layers)
    if loaded.num_frames < 1:
        raise ValueError(f"{loaded.name}: the clip length is unknown (load a checkpoint with its training config)")
    source = Path(path)
    frames = read_video_frames(source, detect_faces=detect_faces, detector=detector, video_backend=video_backend)
    num_total = len(frames)
    loaded_indices, starts, indices = clip_views(num_total, loaded.num_frames, loaded.sampling_rate, num_clips)
    video = None
    if parts.video_encoder is not None:
        video = torch.stack([clip_to_input(frames.frames[clip], loaded) for clip in indices])
    audio = samples = None
    if parts.audio_encoder is not None:
        audio_source = Path(audio_path) if audio_path is not None else source
        if not audio_source.exists():
            raise FileNotFoundError(f"audio source {audio_source} does not exist")
        audio, samples = _clip_filterbanks(loaded, audio_source, (loaded_indices, starts), num_total)
    features = encode_clip(loaded, video, audio, level=level, layers=layers)
    arrays: dict[str, np.ndarray] = {}
    for key, value in features.items():
        arrays[key] = value.numpy() if key in GRID_KEYS else value.detach().float().cpu().numpy()
    arrays["frame_indices"] = indices
    if samples is not None:
        arrays["audio_samples"] = samples
    logger.debug("%s: %d frames, clips %s", source, num_total, indices[:, 0].tolist())
    return arrays


# ---------------------------------------------------------------------------------------------------- lists and names


def read_video_list(list_file: PathLike) -> tuple[list[Path], list[Path | None]]:
    """Videos (and audio files) named by a list file.

    Two layouts are recognised from the first line that is not blank or a ``#`` comment:

    * one path per line: a plain list (:func:`maedfer.preprocess.batch.read_path_list`, first field of each line);
    * two or more fields: an official annotation file (:func:`maedfer.data.annotations.read_annotations`):
      ``<clip> <label>`` (classification / pretrain), ``<clip> <audio> <int label>`` (audio_visual) or
      ``<clip> <audio> <target> ...`` (regression). The audio column, if any, becomes the audio source.

    Relative paths are taken relative to the current directory.

    Returns:
        ``(videos, audio_paths)`` of equal length (``None`` where the list gives no audio).

    Raises:
        FileNotFoundError: ``list_file`` does not exist.
        maedfer.data.annotations.AnnotationError: A malformed annotation line.
    """
    from ..data.annotations import read_annotations
    from ..preprocess.batch import read_path_list

    source = Path(list_file)
    if not source.is_file():
        raise FileNotFoundError(f"list file {source} does not exist")
    first: list[str] = []
    with open(source, encoding="utf-8-sig") as handle:
        for text in handle:
            fields = text.split()
            if fields and not fields[0].startswith("#"):
                first = fields
                break
    if len(first) <= 1:
        videos = read_path_list(source, None)
        return videos, [None] * len(videos)
    if len(first) == 2:
        kind = "classification"
    else:
        kind = "audio_visual" if len(first) == 3 and first[2].lstrip("+-").isdigit() else "regression"
    rows = read_annotations(source, kind=kind, default_suffix=None)  # type: ignore[arg-type]
    return [Path(row.path) for row in rows], [Path(row.audio_path) if row.audio_path else None for row in rows]


def output_names(videos: Sequence[PathLike]) -> list[str]:
    """Output name of every video: its stem, or ``<parent>__<stem>`` (more parents as needed) for shared stems.

    Args:
        videos: Distinct video files or frame folders.

    Returns:
        One name per video, all different.

    Raises:
        ValueError: Two inputs are the same path, or no name separates them.
    """
    paths = [Path(os.path.abspath(v)) for v in videos]
    if len(set(paths)) != len(paths):
        raise ValueError("the same video is listed twice")
    bases = [p.name if p.is_dir() else p.stem for p in paths]
    names = list(bases)
    groups: dict[str, list[int]] = {}
    for index, base in enumerate(bases):
        groups.setdefault(base, []).append(index)
    for members in groups.values():
        if len(members) == 1:
            continue
        depth_limit = max(len(paths[i].parent.parts) - 1 for i in members)
        for depth in range(1, depth_limit + 2):
            if depth <= depth_limit:
                candidates = ["__".join([*paths[i].parent.parts[1:][-depth:], bases[i]]) for i in members]
            else:  # same folders all the way up: the suffix tells them apart
                candidates = ["__".join([*paths[i].parent.parts[1:], paths[i].name]) for i in members]
            if len(set(candidates)) == len(candidates):
                for i, candidate in zip(members, candidates):
                    names[i] = candidate
                break
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise ValueError(f"cannot give distinct output names to the inputs named {', '.join(clashes)}")
    return names


# ---------------------------------------------------------------------------------------------------- folder output


@dataclass
class ExtractionSummary:
    """Outcome of :func:`extract_features_to_folder`.

    Attributes:
        done: Videos whose features were computed and written in this run.
        skipped_existing: Videos skipped because complete outputs with the same settings existed (resume).
        failed: ``(video, reason)`` of every video that could not be processed.
        manifest: Path of ``manifest.jsonl``.
    """

    done: int = 0
    skipped_existing: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    manifest: Path | None = None

    @property
    def total(self) -> int:
        """Number of videos considered."""
        return self.done + self.skipped_existing + len(self.failed)


def _atomic_save_npy(target: Path, array: np.ndarray) -> None:
    """``np.save`` (no pickles) through :func:`maedfer.utils.atomic_write`."""
    from ..utils import atomic_write

    atomic_write(target, lambda handle, _tmp: np.save(handle, array, allow_pickle=False))


def _record(
    name: str, video: Path, audio: Path | None, files: list[str], arrays: Mapping[str, Any], settings: Mapping[str, Any]
) -> dict[str, Any]:
    """The manifest record of one video (``arrays`` maps keys to objects with ``shape`` and ``dtype``)."""
    return {
        "name": name,
        "video": str(video),
        "audio": str(audio) if audio is not None else None,
        "files": files,
        "shapes": {key: [int(v) for v in value.shape] for key, value in arrays.items()},
        "dtypes": {key: str(value.dtype) for key, value in arrays.items()},
        "settings": dict(settings),
    }


def _write_outputs(
    out_dir: Path,
    name: str,
    output_format: str,
    arrays: Mapping[str, np.ndarray],
    settings: Mapping[str, Any],
    video: Path,
    audio: Path | None,
) -> dict[str, Any]:
    """Write one video's arrays (atomically; the completion marker last) and return its manifest record."""
    from ..checkpoint import atomic_write_text, save_safetensors

    if output_format == "safetensors":
        file_name = f"{name}.safetensors"
        record = _record(name, video, audio, [file_name], arrays, settings)
        metadata = {
            "format": "maedfer-features",
            "model": str(settings["model"]),
            "level": str(settings["level"]),
            "layers": json.dumps(settings["layers"]),
            "num_clips": str(settings["num_clips"]),
            "video": record["video"],
            "audio": json.dumps(record["audio"]),
            "frame_indices": json.dumps(np.asarray(arrays["frame_indices"]).tolist()),
            "grids": json.dumps({k: np.asarray(v).tolist() for k, v in arrays.items() if k in GRID_KEYS}),
            "settings": json.dumps(record["settings"], sort_keys=True),
        }
        tensors = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in arrays.items()}
        save_safetensors(tensors, out_dir / file_name, metadata=metadata, label_names=settings.get("label_names"))
        return record
    marker = out_dir / f"{name}.json"
    previous = _read_json(marker)
    marker.unlink(missing_ok=True)  # not done until the new marker is written
    files = [f"{name}.{key}.npy" for key in arrays]
    for key, file_name in zip(arrays, files):
        _atomic_save_npy(out_dir / file_name, np.asarray(arrays[key]))
    if isinstance(previous, dict):
        for stale in set(previous.get("files", [])) - set(files):  # keys of an earlier run with other settings
            if isinstance(stale, str) and "/" not in stale:
                (out_dir / stale).unlink(missing_ok=True)
    record = _record(name, video, audio, files, arrays, settings)
    atomic_write_text(marker, json.dumps(record, sort_keys=True) + "\n")
    return record


def _read_json(path: Path) -> Any:
    """Parsed JSON of ``path``, or ``None`` when it is missing or invalid."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _existing_record(
    out_dir: Path, name: str, output_format: str, settings: Mapping[str, Any], video: Path, audio: Path | None
) -> dict[str, Any] | None:
    """The record of complete outputs of ``name`` made from ``video`` (and ``audio``) with ``settings``, else
    ``None``."""
    audio_text = str(audio) if audio is not None else None
    expected = json.loads(json.dumps(dict(settings)))  # the JSON view of the settings, as stored
    if output_format == "safetensors":
        from safetensors import safe_open

        target = out_dir / f"{name}.safetensors"
        if not target.is_file():
            return None
        try:
            with safe_open(str(target), framework="numpy") as handle:
                metadata = handle.metadata() or {}
                shapes = {key: handle.get_slice(key) for key in handle.keys()}
                arrays = {key: _ShapeDtype(tuple(s.get_shape()), str(s.get_dtype())) for key, s in shapes.items()}
            stored = json.loads(metadata.get("settings", "null"))
            stored_audio = json.loads(metadata.get("audio", "null"))
        except Exception as error:  # noqa: BLE001 - a damaged file of any kind is recomputed
            logger.warning("%s is unreadable (%s); recomputing it", target, error)
            return None
        if stored != expected or metadata.get("video") != str(video) or stored_audio != audio_text:
            return None
        record = _record(name, video, audio, [target.name], arrays, settings)
        record["dtypes"] = {key: _numpy_dtype_name(value.dtype) for key, value in arrays.items()}
        return record
    record = _read_json(out_dir / f"{name}.json")
    if not isinstance(record, dict) or record.get("settings") != expected:
        return None
    if record.get("video") != str(video) or record.get("audio") != audio_text:
        return None
    if not _files_complete(out_dir, record):
        return None
    return record


@dataclass(frozen=True)
class _ShapeDtype:
    shape: tuple[int, ...]
    dtype: str


def _numpy_dtype_name(safetensors_dtype: str) -> str:
    """numpy name of a safetensors dtype string (``F32`` -> ``float32``)."""
    names = {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32"}
    return names.get(safetensors_dtype, safetensors_dtype.lower())


def _files_complete(out_dir: Path, record: Mapping[str, Any]) -> bool:
    """Whether every file of a record exists (npy files: with the recorded shape)."""
    files = record.get("files")
    shapes = record.get("shapes", {})
    if not isinstance(files, list) or not files:
        return False
    for file_name in files:
        target = out_dir / str(file_name)
        if not target.is_file():
            return False
        if target.suffix == ".npy":
            key = target.name[len(str(record.get("name", ""))) + 1 : -len(".npy")]
            try:
                shape = np.load(target, mmap_mode="r", allow_pickle=False).shape
            except (OSError, ValueError):
                return False
            if key in shapes and list(shape) != list(shapes[key]):
                return False
    return True


def _read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """Records of an existing manifest by name (the last one wins); unreadable lines are skipped."""
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            logger.warning("%s:%d: not a JSON record (an interrupted write?); dropped", path, number)
            continue
        if isinstance(record, dict) and isinstance(record.get("name"), str):
            records[record["name"]] = record
    return records


def _append_manifest(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line with a single write, flushed to disk."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def extract_features_to_folder(
    loaded: InferenceModel,
    videos: Sequence[PathLike],
    out_dir: PathLike,
    *,
    format: OutputFormat = "npy",  # noqa: A002 - the name users expect
    level: FeatureLevel = "pooled",
    layers: Sequence[int] | None = None,
    num_clips: int = 1,
    detect_faces: bool = True,
    audio_paths: Sequence[PathLike | None] | None = None,
    detector: Any = None,
    detector_backend: str = "auto",
    video_backend: str = "auto",
    resume: bool = True,
    progress: bool = False,
) -> ExtractionSummary:
    """Extract features of many videos into ``out_dir`` (layout, resuming and manifest: see the module docstring).

    Args:
        loaded: The model.
        videos: Video files or frame folders (duplicates are processed once).
        out_dir: Output folder (created).
        format: ``"npy"`` or ``"safetensors"``.
        level: ``"pooled"``, ``"tokens"`` or ``"layers"``.
        layers: Block indices for ``level="layers"``.
        num_clips: Clips per video.
        detect_faces: Crop the main face first.
        audio_paths: Per video, its audio source for audio-visual models (``None`` entries: the video itself).
        detector: A :class:`maedfer.preprocess.faces.FaceDetector` to use (default: one of ``detector_backend``, created
            once for the run).
        detector_backend: ``"auto"``, ``"yunet"`` or ``"haar"``.
        video_backend: ``"auto"``, ``"decord"`` or ``"pyav"``.
        resume: Skip videos whose outputs are complete and made with the same settings.
        progress: Show a tqdm progress bar.

    Returns:
        The :class:`ExtractionSummary`. Unreadable videos, videos without a face and missing or too short audio
        are listed in ``failed``; they do not stop the run.

    Raises:
        ValueError: Bad settings (format, level, layers, num_clips) or inputs that cannot be named apart.
    """
    from ..preprocess.faces import NoFaceError
    from ..data.readers import ClipReadError

    if format not in OUTPUT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(OUTPUT_FORMATS)}, got {format!r}")
    parts = _check_request(loaded, level, layers)
    clip_views(1, 1, 1, num_clips)  # validates num_clips
    audio_list = list(audio_paths) if audio_paths is not None else [None] * len(videos)
    if len(audio_list) != len(videos):
        raise ValueError(f"audio_paths has {len(audio_list)} entries for {len(videos)} videos")
    unique: dict[Path, Path | None] = {}  # video -> the audio source actually read (None for video-only models)
    for video, audio in zip(videos, audio_list):
        video_path = Path(os.path.abspath(video))
        source = None
        if parts.audio_encoder is not None:
            source = Path(os.path.abspath(audio)) if audio is not None else video_path
        unique.setdefault(video_path, source)
    inputs = list(unique.items())
    names = output_names([video for video, _ in inputs])
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "model": loaded.name,
        "level": level,
        "layers": None if layers is None else [int(i) for i in layers],
        "num_clips": int(num_clips),
        "detect_faces": bool(detect_faces),
        "format": format,
    }
    if loaded.label_names:  # the output names of a fine-tuned model (stored in its checkpoint, else its dataset's)
        settings["label_names"] = list(loaded.label_names)

    existing: dict[str, dict[str, Any]] = {}
    if resume:
        for name, (video, audio) in zip(names, inputs):
            record = _existing_record(folder, name, format, settings, video, audio)
            if record is not None:
                existing[name] = record
    manifest = folder / MANIFEST_NAME
    kept = {name: record for name, record in _read_manifest(manifest).items()
            if name not in names and _files_complete(folder, record)}
    kept.update(existing)
    from ..checkpoint import atomic_write_text

    atomic_write_text(manifest, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept.values()))

    summary = ExtractionSummary(skipped_existing=len(existing), manifest=manifest)
    pending = [(name, video, audio) for name, (video, audio) in zip(names, inputs) if name not in existing]
    if existing:
        logger.info("%d of %d videos already done in %s", len(existing), len(inputs), folder)
    if detect_faces and detector is None and pending:
        from ..preprocess.faces import FaceDetector

        detector = FaceDetector(backend=detector_backend)  # type: ignore[arg-type]
    iterator: Any = pending
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pending, unit="video", desc="features")
    expected_errors = (FileNotFoundError, ClipReadError, NoFaceError, ValueError, OSError)
    for name, video, audio in iterator:
        try:
            arrays = extract_video_features(
                loaded, video, level=level, layers=layers, num_clips=num_clips, detect_faces=detect_faces,
                audio_path=audio, detector=detector, video_backend=video_backend,
            )
        except expected_errors as error:
            logger.warning("%s: %s", video, error)
            summary.failed.append((video, str(error)))
            continue
        record = _write_outputs(folder, name, format, arrays, settings, video, audio)
        _append_manifest(manifest, record)
        summary.done += 1
    logger.info(
        "features of %d videos written to %s (%d skipped, %d failed)",
        summary.done, folder, summary.skipped_existing, len(summary.failed),
    )
    return summary


# ------------------------------------------------------------------------------------------ command line

#: Help text of ``maedfer extract-features`` (and ``tools/extract_features.py``).
CLI_DESCRIPTION = """Extract clip features of videos with a trained (or pre-trained) maedfer model, resumably.

Examples:
    maedfer extract-features clip1.mp4 clip2.mp4 --checkpoint runs/demo_finetune/checkpoint-last.pth \\
        --out features/
    maedfer extract-features --list test.csv --checkpoint hicmae.pth --model hicmae_base --out feats \\
        --level layers --layers 3 7 11 --format safetensors --num-clips 2 --no-face-detect

Inputs: videos (or frame folders) on the command line, or ``--list FILE``: one path per line, or an official
annotation file (``<clip> <label>``, ``<clip> <audio> <label>``, ``<clip> <audio> <targets...>``; the layout is
detected, and its audio column is the audio of audio-visual models). Relative paths are relative to the current
directory.

Levels (see ``maedfer.apps.features`` for every key and shape): ``pooled`` (the head input, one vector per clip),
``tokens`` (final token features in raster order, plus the grid shape) and ``layers`` (intermediate blocks; HiCMAE:
the tapped encoder layers and the fusion outputs).

Output per video, named after its stem (``<parent>__<stem>`` when stems clash): ``--format npy`` writes
``<name>.<key>.npy`` per key and ``<name>.json`` last; ``--format safetensors`` writes ``<name>.safetensors`` with
metadata. ``<out>/manifest.jsonl`` lists every video with its files and shapes. Videos whose outputs are complete
(same model and settings) are skipped unless ``--no-resume``.

Exit codes: 0 when every video was processed (or skipped), 2 when any video failed (unreadable, no face, no audio)
or the arguments / checkpoint are bad.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=CLI_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="*", type=Path, help="video files or frame folders")
    parser.add_argument("--list", type=Path, default=None, help="list file or annotation file of the inputs")
    add_model_source_arguments(parser, checkpoint_help="model checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--level", choices=FEATURE_LEVELS, default="pooled", help="feature level (default pooled)")
    parser.add_argument("--layers", type=int, nargs="+", default=None,
                        help="--level layers: block indices (default: all blocks / the HiCMAE taps)")
    parser.add_argument("--format", choices=OUTPUT_FORMATS, default="npy", help="output format (default npy)")
    parser.add_argument("--num-clips", type=int, default=1, help="evenly spaced clips per video (default 1, centred)")
    parser.add_argument("--no-face-detect", action="store_true", help="the videos are face crops already")
    parser.add_argument("--face-backend", choices=("auto", "yunet", "haar"), default="auto", help="face detector")
    parser.add_argument("--video-backend", choices=("auto", "decord", "pyav"), default="auto", help="video decoder")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="fp32",
                        help="autocast precision (auto: bf16 on CUDA, fp32 on CPU; features are saved as float32)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model's transformer blocks")
    parser.add_argument("--no-resume", action="store_true", help="recompute videos whose outputs exist")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if bool(args.videos) == (args.list is not None):
        parser.error("give either videos or --list FILE")
    if args.layers is not None and args.level != "layers":
        parser.error("--layers needs --level layers")
    if args.num_clips < 1:
        parser.error("--num-clips must be >= 1")

    try:
        if args.list is not None:
            videos, audio_paths = read_video_list(args.list)
        else:
            videos, audio_paths = list(args.videos), [None] * len(args.videos)
        args.checkpoint = checkpoint_from_args(args)
        loaded = load_inference_model(args.checkpoint, model_name=args.model, device=args.device)
        print(f"{len(videos)} videos, model {loaded.name} ({loaded.kind}), level {args.level} -> {args.out}")
        precision = resolve_precision(args.precision, torch.device(args.device))
        optimize_for_inference(loaded.model, precision, compile=args.compile, blocks_only=True)
        with autocast_context(torch.device(args.device), precision):
            summary = extract_features_to_folder(
                loaded, videos, args.out, format=args.format, level=args.level, layers=args.layers,
                num_clips=args.num_clips, detect_faces=not args.no_face_detect, audio_paths=audio_paths,
                detector_backend=args.face_backend, video_backend=args.video_backend, resume=not args.no_resume,
                progress=not args.no_progress,
            )
    except INPUT_ERRORS as error:
        print(f"error: {error_message(error)}", file=sys.stderr)
        return 2

    print(f"done: {summary.done}, skipped (existing): {summary.skipped_existing}, failed: {len(summary.failed)}")
    print(f"manifest: {summary.manifest}")
    if summary.failed:
        print("failed videos:")
        for video, reason in summary.failed:
            print(f"  {video}: {reason}")
        return 2
    return 0

