"""Loading a trained model for inference and turning a raw video into its inputs.

Details: ``docs/modules.md``, section ``maedfer/apps/inference.py``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..audio import FbankConfig
from ..checkpoint import CheckpointError, read_checkpoint, stored_label_names
from ..config import ExperimentConfig, config_from_dict
from ..data.build import audio_fbank_config
from ..preprocess.faces import NoFaceError
from ..data.readers import ClipReadError, VideoFileReader
from ..data.sampling import AudioSegment
from ..models.contract import input_modalities, modality_name
from ..models.utils import video_encoder

__all__ = [
    "AUDIO_MODALITIES",
    "DEFAULT_FPS",
    "INPUT_ERRORS",
    "InferenceModel",
    "NoAudioError",
    "add_model_source_arguments",
    "checkpoint_from_args",
    "VideoFrames",
    "clip_audio_segment",
    "clip_filterbank",
    "clip_to_input",
    "error_message",
    "label_names_for",
    "load_inference_model",
    "read_model_file",
    "read_soundtrack",
    "read_video_frames",
    "reader_fps",
    "video_encoder",
    "with_device",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

#: Modalities whose models read the soundtrack.
AUDIO_MODALITIES: tuple[str, ...] = ("audio_visual", "audio")


@dataclass
class InferenceModel:
    """A model ready for inference and the facts needed to feed it.

    Attributes:
        model: The module in eval mode on ``device``.
        name: Registry name of the model.
        kind: ``"finetune"`` (encoder + head) or ``"pretrain"`` (masked autoencoder).
        task: ``"classification"``, ``"regression"`` or ``"pretrain"``.
        modality: ``"video"``, ``"audio_visual"`` or ``"audio"``.
        num_frames: Frames per clip ``T`` the model takes.
        sampling_rate: Frame stride used in training (every ``sampling_rate``-th frame).
        input_size: Square input side ``H = W`` in pixels.
        short_side_size: Short side the frames are resized to before the centre crop at test time.
        label_names: Class names in label order (classification), target names (regression) or ``None``.
        fbank: Filter-bank settings of the audio input (``None`` for video-only models).
        config: The training config stored in the checkpoint (``None`` for a bare state dict).
        device: Where the model lives.
    """

    model: nn.Module
    name: str
    kind: str
    task: str
    modality: str
    num_frames: int
    sampling_rate: int
    input_size: int
    short_side_size: int
    label_names: list[str] | None
    fbank: FbankConfig | None
    config: ExperimentConfig | None
    device: torch.device

    @property
    def num_outputs(self) -> int:
        """Size of the model's output vector (classes or regression targets; 0 for a pre-training model)."""
        return int(getattr(self.model, "num_classes", 0) or 0)

    @property
    def needs_audio(self) -> bool:
        """Whether the model reads the soundtrack (``modality`` is ``"audio_visual"`` or ``"audio"``)."""
        return self.modality in AUDIO_MODALITIES


def label_names_for(dataset: str | None, num_outputs: int, task: str) -> list[str] | None:
    """Output names of a model with ``num_outputs`` outputs trained on ``dataset`` for ``task``.

    Two regression outputs are ``["valence", "arousal"]``; otherwise the dataset's names
    (:func:`maedfer.data.registry.dataset_label_names`) when there is one per output, else ``None`` (callers then
    use ``class_0``, ``class_1`` ...).
    """
    from ..data.registry import dataset_label_names

    if dataset is None:
        return None
    if task == "regression" and num_outputs == 2:
        return ["valence", "arousal"]
    names = dataset_label_names(dataset, task)
    return names if names and len(names) == num_outputs else None


def _task_of(kind: str, config: ExperimentConfig | None) -> str:
    if kind == "pretrain":
        return "pretrain"
    if config is not None and config.train.task in ("classification", "regression"):
        return config.train.task
    return "classification"


def _geometry(model: nn.Module) -> tuple[int, int, str]:
    """``(num_frames, input_size, modality)`` read from the model's video encoder."""
    modality = modality_name(input_modalities(model))
    encoder = video_encoder(model)
    if encoder is None:  # audio-only model: no video geometry
        return 0, 0, modality
    embed = encoder.patch_embed
    num_frames = int(getattr(embed, "num_frames", 0) or getattr(encoder, "num_frames", 0))
    img_size = getattr(embed, "img_size", None) or getattr(encoder, "img_size", None)
    input_size = int(img_size[0] if isinstance(img_size, (tuple, list)) else img_size)
    return num_frames, input_size, modality


def read_model_file(checkpoint: PathLike) -> Any:
    """Read a model file for :func:`load_inference_model` (``weights_only``; no code runs).

    A file is read with :func:`maedfer.checkpoint.read_checkpoint`. A resumable checkpoint folder of a maedfer run
    (``checkpoint-e<epoch>-s<step>/`` of the local or DDP backend) gives
    ``{"model": <its weights>, "config": <its config>, "label_names": ...}``.

    Raises:
        FileNotFoundError: Nothing exists at ``checkpoint``.
        CheckpointError: The file cannot be read, or the folder is not a complete maedfer checkpoint of the local or
            DDP backend (DeepSpeed folders: use the run's ``checkpoint-last.pth``).
    """
    from ..engine.backends import CLIENT_STATE_FILE, TRAINING_STATE_FILE

    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        return read_checkpoint(path)
    if not (path / CLIENT_STATE_FILE).is_file():
        raise CheckpointError(f"{path} is a folder but not a complete maedfer checkpoint (no {CLIENT_STATE_FILE})")
    if not (path / TRAINING_STATE_FILE).is_file():
        raise CheckpointError(
            f"{path} holds no {TRAINING_STATE_FILE} (a DeepSpeed checkpoint folder?): evaluate the run's "
            "consolidated checkpoint-last.pth instead"
        )
    client, state = read_checkpoint(path / CLIENT_STATE_FILE), read_checkpoint(path / TRAINING_STATE_FILE)
    if not isinstance(client, Mapping) or not isinstance(state, Mapping) or "model" not in state:
        raise CheckpointError(f"{path}: not a maedfer training checkpoint (no model weights or client state)")
    return {"model": state["model"], "config": client.get("config"), "label_names": client.get("label_names")}


def load_inference_model(
    checkpoint: PathLike,
    *,
    model_name: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    device: str | torch.device = "cpu",
    payload: Any = None,
) -> InferenceModel:
    """Build the model stored in ``checkpoint`` and load its weights.

    Args:
        checkpoint: A maedfer training checkpoint (``.pth`` with ``model`` and ``config``, or a resumable checkpoint
            folder, see :func:`read_model_file`), an official ``.pth`` or a ``.safetensors`` file. Loaded with
            ``weights_only=True``. A model card id, ``hf://owner/repo/file`` or an ``https://`` link is downloaded
            first (:func:`maedfer.hub.resolve_checkpoint`); a :func:`maedfer.hub.save_pretrained` folder or
            ``hf://owner/repo`` gives its model, arguments and labels.
        model_name: Registry name, or the id of a model card in ``models/`` (e.g. ``mae_dfer_mafw_fold1``: the
            card gives the registry model, its constructor arguments, the frame stride and the label names);
            required when the checkpoint has no config, overrides the config's otherwise.
        model_kwargs: Constructor overrides (merged over the config's ``model.kwargs``).
        dataset: Dataset whose label names to use (default: the config's ``data.dataset``).
        device: Target device.
        payload: What :func:`read_model_file` returned for ``checkpoint``, when the caller has read it already.

    Returns:
        The :class:`InferenceModel`, in eval mode.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        CheckpointError: The file cannot be read, has no config and ``model_name`` is missing, or a fine-tuned
            model's head is not in the file (its predictions would come from random weights).
    """
    from ..checkpoint import load_checkpoint
    from ..registry import create_model, list_models, model_entry

    path = Path(checkpoint)
    if payload is None:
        from ..hub import card_id_of, pretrained_folder, resolve_checkpoint

        # A card id, hf://owner/repo/file or an https link: downloaded (verified, cached) by maedfer.hub; a card id
        # also names the model, its arguments and labels.
        model_name = model_name or card_id_of(checkpoint)
        path = resolve_checkpoint(checkpoint)
        if (layout := pretrained_folder(path)) is not None:  # a save_pretrained folder (or Hub repository)
            path, saved_name, saved_kwargs = layout
            model_name = model_name or saved_name
            model_kwargs = {**saved_kwargs, **(model_kwargs or {})}
        payload = read_model_file(path)  # read once: the config and the weights come from the same object
    config: ExperimentConfig | None = None
    if isinstance(payload, Mapping) and isinstance(payload.get("config"), Mapping):
        config = config_from_dict(payload["config"])
    if config is None and model_name is None:
        raise CheckpointError(
            f"{path} holds no maedfer training config: pass the registry name of its model (model_name=..., "
            "--model on the command line; see `python -c \"import maedfer; print(maedfer.list_models())\"`)"
        )
    card = None
    if model_name is not None and model_name not in list_models(include_official=True):
        from ..cards import find_card

        try:
            card = find_card(model_name)
        except KeyError as error:
            raise CheckpointError(f"{model_name!r} is neither a registered model nor a model card id: {error}") from None
    name = card.model if card is not None else (model_name or config.model.name)  # type: ignore[union-attr]
    kwargs: dict[str, Any] = dict(config.model.kwargs) if config is not None and model_name is None else {}
    if card is not None:
        kwargs.update(card.model_kwargs)
    kwargs.update(model_kwargs or {})
    from ..models.assemble import ModelDescription, description_kind, model_from_config

    if card is None and model_name is None and config is not None and ModelDescription.of(config.model).given:
        # A model described by config sections (assembled, or overriding a preset): build it the way training did.
        described = replace(config.model, kwargs=kwargs) if config.model.name is not None else config.model
        model, kind = model_from_config(described), description_kind(config.model)
        name = name or getattr(model, "model_name", "assembled model")
    else:
        entry = model_entry(name)
        kind = entry.kind
        if config is not None and config.model.official_behaviour and entry.kind == "pretrain":
            from ..registry import OFFICIAL_BEHAVIOUR

            for key, value in OFFICIAL_BEHAVIOUR.get(entry.system, {}).items():
                kwargs.setdefault(key, value)
        width = bool(card is not None and card.width_from_checkpoint)
        model = create_model(name, checkpoint=payload if width else None, width_from_checkpoint=width, **kwargs)
    if config is not None and config.train.linear_probe and kind == "finetune" and model_name is None:
        from ..tasks.linear_probe import LinearProbe

        model = LinearProbe(model)  # a linear-probe run saves the frozen model with its probe head (head.norm, head.fc)
    report = load_checkpoint(model, payload, source=str(path))
    head_missing = [key for key in report.missing_keys if key.split(".")[0] == "head"]
    if kind == "finetune" and head_missing:
        raise CheckpointError(
            f"{path}: the classification/regression head of {name} is not in the checkpoint (missing "
            f"{', '.join(head_missing)}; dropped: {', '.join(report.removed_head_keys) or 'none'}); "
            "check num_classes (a model card id or model_kwargs sets it)"
        )
    target = torch.device(device)
    model.to(target).eval()
    num_frames, input_size, modality = _geometry(model)
    task = _task_of(kind, config)
    if config is not None:
        data = config.data
        num_frames = data.num_frames or num_frames
        sampling_rate, input_size, short_side = data.sampling_rate, data.input_size, data.short_side_size
    elif card is not None:
        sampling_rate = int(card.input.get("sampling_rate", 4))
        short_side = int(card.input.get("input_size", input_size))
    else:
        sampling_rate, short_side = 4, input_size
    num_outputs = int(getattr(model, "num_classes", 0) or 0)
    names = stored_label_names(payload, path)
    if names is not None and len(names) != num_outputs:
        logger.warning("%s carries %d label names for %d outputs; ignoring them", path, len(names), num_outputs)
        names = None
    if names is None:
        names = label_names_for(dataset or (config.data.dataset if config is not None else None), num_outputs, task)
    if names is None and card is not None and len(card.label_names) == num_outputs:
        names = list(card.label_names)
    fbank = audio_fbank_config(model)
    logger.info("loaded %s (%s, %s) from %s", name, task, modality, path)
    return InferenceModel(
        model=model, name=name, kind=kind, task=task, modality=modality, num_frames=num_frames,
        sampling_rate=sampling_rate, input_size=input_size, short_side_size=short_side, label_names=names,
        fbank=fbank, config=config, device=target,
    )


def with_device(loaded: InferenceModel, device: str | torch.device) -> InferenceModel:
    """The same model moved to ``device``."""
    target = torch.device(device)
    loaded.model.to(target)
    return replace(loaded, device=target)


@dataclass
class VideoFrames:
    """The frames of a video file (or frame folder) ready to be cut into clips.

    Attributes:
        path: The source.
        frames: ``uint8 (N, H, W, 3)`` RGB: face crops (``H = W = face_size``) when faces were detected, else the
            full frames.
        fps: Frame rate (25.0 assumed when the container states none, e.g. for frame folders).
        face_boxes: ``float32 (N, 4)`` ``(x, y, w, h)`` face box per frame, or ``None`` without face detection.
    """

    path: Path
    frames: Any
    fps: float
    face_boxes: Any = None

    def __len__(self) -> int:
        return int(self.frames.shape[0])


DEFAULT_FPS = 25.0


def reader_fps(reader: Any) -> float:
    """Frame rate of a clip reader: the video's own, or :data:`DEFAULT_FPS` for frame folders and containers that
    state none."""
    return float(reader.fps) if isinstance(reader, VideoFileReader) and reader.fps > 0 else DEFAULT_FPS


def read_video_frames(
    path: PathLike,
    *,
    detect_faces: bool = True,
    face_size: int = 224,
    detector: Any = None,
    detector_backend: str = "auto",
    detect_every: int = 1,
    video_backend: str = "auto",
) -> VideoFrames:
    """Decode a video (or frame folder) and, by default, crop its main face in every frame.

    Args:
        path: Video file (mp4, avi, ...), frame folder or single image.
        detect_faces: Detect and track the main face and return crops of it; ``False`` returns the frames as they
            are (for videos that are already face crops, like the datasets' released face clips).
        face_size: Side of the face crops in pixels.
        detector: A :class:`maedfer.preprocess.faces.FaceDetector` to reuse (default: a new one of ``detector_backend``).
        detector_backend: ``"auto"``, ``"yunet"`` or ``"haar"``.
        detect_every: Run the detector on every N-th frame only (the boxes are tracked in between).
        video_backend: ``"auto"``, ``"decord"`` or ``"pyav"``.

    Returns:
        A :class:`VideoFrames`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        maedfer.data.readers.ClipReadError: The file cannot be decoded or has no frames.
        maedfer.preprocess.faces.NoFaceError: ``detect_faces`` and no frame shows a face (the message names the file).
    """
    from ..preprocess.faces import FaceDetector, extract_face_clip, iter_clip_frames
    from ..data.readers import open_clip

    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"video {source} does not exist")
    reader = open_clip(source, backend=video_backend)  # type: ignore[arg-type]
    if len(reader) == 0:
        raise ClipReadError(source, "no frames")
    fps = reader_fps(reader)
    if not detect_faces:
        frames = np.stack(list(iter_clip_frames(reader)))
        return VideoFrames(path=source, frames=frames, fps=fps)
    detector = detector if detector is not None else FaceDetector(backend=detector_backend)  # type: ignore[arg-type]
    faces, stats = extract_face_clip(
        iter_clip_frames(reader), detector, size=face_size, detect_every=detect_every, clip_name=str(source)
    )
    return VideoFrames(path=source, frames=faces, fps=fps, face_boxes=stats.boxes)


def clip_to_input(frames: Any, loaded: InferenceModel) -> torch.Tensor:
    """The evaluation transform of the model's training config for one clip.

    Frames are resized so that the short side is ``loaded.short_side_size`` (square frames become
    ``short_side x short_side``), centre-cropped to ``loaded.input_size`` and normalised with the ImageNet
    statistics, as the single-view test transform does.

    Args:
        frames: ``uint8 (T, H, W, 3)`` RGB with ``T = loaded.num_frames``.
        loaded: The model the clip is for.

    Returns:
        ``float32 (3, T, S, S)`` with ``S = loaded.input_size``.
    """
    from ..data.transforms import center_crop, resize_frames_short_side, to_normalized_tensor

    if frames.shape[0] != loaded.num_frames:
        raise ValueError(f"the model takes clips of {loaded.num_frames} frames, got {frames.shape[0]}")
    if min(frames.shape[1:3]) != loaded.short_side_size:
        frames = resize_frames_short_side(frames, loaded.short_side_size)
    return to_normalized_tensor(center_crop(frames, loaded.input_size))


# ----------------------------------------------------------------------------------------------------------------
# audio
# ----------------------------------------------------------------------------------------------------------------


class NoAudioError(ClipReadError):
    """A model that needs the soundtrack was given a source without one (no track, an empty one, a frame folder).

    A :class:`~maedfer.data.readers.ClipReadError`, so callers that skip unreadable inputs skip these too.

    Attributes:
        path: The source (as a string).
        reason: What is missing, e.g. ``"no audio track"``.
        modality: The model's modality (``"audio_visual"`` or ``"audio"``), or ``None`` when unknown.
    """

    def __init__(self, path: PathLike, reason: str = "no audio track", modality: str | None = None) -> None:
        super().__init__(path, reason)
        self.modality = modality
        self.args = (f"{self.path}: {self.description}",)

    @property
    def description(self) -> str:
        """The reason and, when the modality is known, why the model needs the soundtrack (no file name)."""
        if self.modality is None:
            return self.reason
        kind = "audio-visual" if self.modality == "audio_visual" else "audio-only"
        return f"{self.reason}, but the model is {kind} and needs the soundtrack"

    def __reduce__(self) -> tuple[type[NoAudioError], tuple[str, str, str | None]]:  # type: ignore[override]
        return (type(self), (self.path, self.reason, self.modality))


def read_soundtrack(path: PathLike, sample_rate: int, *, modality: str | None = None) -> np.ndarray:
    """The whole soundtrack of a video (or audio) file, mono, at ``sample_rate``.

    Args:
        path: Video or audio file.
        sample_rate: Output rate in Hz (the filter bank's, ``loaded.fbank.sample_rate``).
        modality: The modality of the model that needs the audio; only used in the :class:`NoAudioError` message.

    Returns:
        ``float32 (1, n)`` with ``n >= 1`` (:func:`maedfer.data.readers.read_audio`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        NoAudioError: ``path`` is a frame folder, or has no audio track, or an empty one.
        maedfer.data.readers.ClipReadError: The file cannot be decoded.
    """
    from ..data.readers import read_audio

    source = Path(path)
    if source.is_dir():
        raise NoAudioError(source, "no audio track (it is a frame folder; give the video's audio file)", modality)
    try:
        waveform = read_audio(source, sample_rate=sample_rate)
    except ClipReadError as error:
        if error.reason == "no audio track":
            raise NoAudioError(source, error.reason, modality) from error
        raise
    if waveform.shape[-1] == 0:
        raise NoAudioError(source, "an empty audio track", modality)
    return waveform


def clip_audio_segment(
    num_samples_total: int,
    first_frame: int,
    last_frame: int,
    num_frames_total: int,
    fbank: FbankConfig,
    *,
    path: PathLike,
) -> AudioSegment:
    """The waveform cut of a clip's frame range, checked to hold at least one filter-bank frame.

    HiCMAE's relative-time rule (:func:`maedfer.data.sampling.audio_segment`): frame ``i`` of ``n`` sits at
    ``i / (n - 1)`` of the waveform, the cut is ``[int(ts(first) * N), int(ts(last) * N))``, and a cut of at most
    1024 samples falls back to the whole waveform when that is shorter than 2.56 s.

    Args:
        num_samples_total: Waveform length ``N``.
        first_frame: First frame of the clip's audio range.
        last_frame: Last frame of the range (see :func:`maedfer.data.sampling.view_audio_frame_range` /
            :func:`~maedfer.data.sampling.window_audio_frame_range`).
        num_frames_total: Frames ``n`` of the video.
        fbank: The model's filter-bank settings.
        path: The audio source, named in errors.

    Returns:
        The :class:`maedfer.data.sampling.AudioSegment`; ``segment.slice`` cuts the waveform's last axis.

    Raises:
        maedfer.data.sampling.AudioSegmentError: (a ``ValueError``) The cut is too short for a filter bank.
    """
    from ..audio import num_fbank_frames
    from ..data.sampling import AudioSegmentError, audio_segment

    segment = audio_segment(
        first_frame, last_frame, num_frames_total, int(num_samples_total), sample_rate=fbank.sample_rate,
        source=str(path),
    )
    if num_fbank_frames(segment.num_samples, fbank.sample_rate, fbank.frame_shift_ms) == 0:
        raise AudioSegmentError(
            f"{path}: the audio of frames {first_frame}..{last_frame} (of {num_frames_total}) has "
            f"{segment.num_samples} samples, fewer than one filter-bank frame"
        )
    return segment


def clip_filterbank(
    waveform: np.ndarray | torch.Tensor,
    first_frame: int,
    last_frame: int,
    num_frames_total: int,
    fbank: FbankConfig,
    *,
    path: PathLike,
) -> torch.Tensor:
    """The filter bank of the audio of a clip's frame range (the audio input of a HiCMAE model).

    The waveform is cut by :func:`clip_audio_segment` (HiCMAE's relative-time rule) and turned into the normalised
    log-mel filter bank by :func:`maedfer.audio.wav_to_fbank`.

    Args:
        waveform: ``float32 (1, N)`` soundtrack at ``fbank.sample_rate`` (:func:`read_soundtrack`).
        first_frame: First frame of the clip's audio range.
        last_frame: Last frame of the range.
        num_frames_total: Frames ``n`` of the video.
        fbank: The model's filter-bank settings (``loaded.fbank``).
        path: The audio source, named in errors.

    Returns:
        ``float32 (1, fbank.target_length, fbank.num_mel_bins)``.

    Raises:
        maedfer.data.sampling.AudioSegmentError: (a ``ValueError``) The cut is too short for a filter bank.
    """
    from ..audio import wav_to_fbank

    segment = clip_audio_segment(int(waveform.shape[-1]), first_frame, last_frame, num_frames_total, fbank, path=path)
    return wav_to_fbank(waveform[..., segment.slice], fbank)


#: What bad input raises (a missing or unreadable file, no face, no soundtrack, a checkpoint that does not fit, a bad
#: argument); the command-line tools report these as one line and exit code 2 instead of a traceback.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError, ClipReadError, NoFaceError, CheckpointError, ValueError, KeyError,
)


def error_message(error: BaseException) -> str:
    """The message of an input error on one line (a ``KeyError``'s text without the quotes ``str`` adds)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split()) or type(error).__name__


def add_model_source_arguments(parser: Any, *, checkpoint_help: str = "checkpoint") -> None:
    """The command-line options that name a model's weights, shared by the tools.

    ``--checkpoint FILE|CARD_ID|hf://...|https://...`` or ``--pretrained CARD_ID`` (one of them is required; a card id
    is downloaded into ``$MAEDFER_HOME`` and verified on first use, then read from the cache), ``--model`` for files
    that hold no maedfer config, and ``--offline`` (only the cache). Read them back with :func:`checkpoint_from_args`.
    """
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="FILE|CARD_ID|URL",
                        help=f"{checkpoint_help}: a .pth / .safetensors file, a save_pretrained folder, a model card id, "
                             "an hf://owner/repo[/file] or an https:// link (downloads are cached and hash-checked)")
    source.add_argument("--pretrained", metavar="CARD_ID",
                        help="released weights by model card id (see models/README.md), fetched into $MAEDFER_HOME "
                             "on first use; the same as --checkpoint CARD_ID")
    parser.add_argument("--model", default=None,
                        help="registry name or model card id (needed when the checkpoint holds no maedfer config)")
    parser.add_argument("--offline", action="store_true",
                        help="use only files already in the cache ($MAEDFER_HOME); no downloads")


def checkpoint_from_args(args: Any) -> str:
    """The checkpoint named by :func:`add_model_source_arguments`' options; ``--offline`` turns downloads off for
    the rest of the process (``$MAEDFER_OFFLINE=1``)."""
    if getattr(args, "offline", False):
        from ..hub import OFFLINE_ENV

        os.environ[OFFLINE_ENV] = "1"
    return str(args.checkpoint if args.checkpoint is not None else args.pretrained)
