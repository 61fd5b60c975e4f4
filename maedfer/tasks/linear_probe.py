"""Linear probing: a frozen encoder's pooled clip feature, a parameter-free BatchNorm, and one trainable linear layer.

:class:`LinearProbe` wraps any fine-tuning model (a video encoder, the audio ViT, a HiCMAE classifier) and
:class:`LinearProbeTask` / :class:`LinearProbeRegressionTask` train it through the one trainer loop. Optional feature
caching (:func:`cache_features`, :class:`CachedFeatures`) runs the encoder once over the un-augmented training clips.
Details: ``docs/modules.md``, section ``maedfer/tasks/linear_probe.py``.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..models.contract import bind_inputs, input_modalities
from ..models.wrappers import unwrap_model
from .finetune import ClassificationTask, RegressionTask

__all__ = [
    "CachedFeatures",
    "LinearProbe",
    "LinearProbeRegressionTask",
    "LinearProbeTask",
    "cache_features",
    "unaugmented",
]

logger = logging.getLogger(__name__)

#: BatchNorm epsilon of MAE's linear-probing head.
PROBE_NORM_EPS = 1e-6
#: Standard deviation of the (truncated normal) initial weights of the linear layer, as MAE's linear probe.
PROBE_INIT_STD = 0.01


def _pooled_width(model: nn.Module) -> int:
    """Width ``C`` of ``model.forward_features``: the input width of its head, else ``model.num_features``."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return int(head.in_features)
    width = getattr(model, "num_features", None)
    if isinstance(width, int) and width > 0:
        return width
    raise TypeError(f"cannot tell the pooled feature width of a {type(model).__name__} (no Linear head, no num_features)")


class LinearProbe(nn.Module):
    """A frozen fine-tuning model whose pooled feature feeds ``BatchNorm1d(affine=False)`` and a new linear layer.

    The encoder (every parameter of ``model``, its own head included) is frozen, runs without gradients and stays in
    evaluation mode even while the probe trains (no dropout or drop-path in the features); only ``head.fc`` learns,
    and ``head.norm`` tracks the feature statistics in training mode (MAE's linear-probing head: a BatchNorm without
    affine parameters, then a linear layer initialised with std 0.01 and zero bias). The feature is the model's
    ``forward_features``: the pooled vector that :func:`maedfer.apps.features.encode_clip` calls ``"pooled"``.

    Args:
        model: Fine-tuning model with ``forward_features`` and ``input_modalities`` (any maedfer classifier or
            regressor); its weights (e.g. loaded from a pre-training checkpoint) are used as they are.
        num_outputs: Outputs ``K`` of the linear layer (default ``model.num_classes``).

    Attributes:
        encoder: The frozen model.
        head: ``Sequential(norm=BatchNorm1d(C, affine=False), fc=Linear(C, K))``.
        num_classes: ``K``.
    """

    def __init__(self, model: nn.Module, num_outputs: int | None = None) -> None:
        super().__init__()
        model = unwrap_model(model)
        if not callable(getattr(model, "forward_features", None)):
            raise TypeError(f"{type(model).__name__} has no forward_features; a linear probe needs a fine-tuning model")
        modalities = input_modalities(model)
        outputs = int(num_outputs if num_outputs is not None else getattr(model, "num_classes", 0))
        if outputs < 1:
            raise ValueError(f"a linear probe needs num_outputs >= 1, got {outputs} (set the model's num_classes)")
        width = _pooled_width(model)
        self.encoder = model
        # Restored by to_classifier (some models keep parameters frozen on purpose, e.g. the LGI region head's unused
        # last local stage).
        self._trainable = frozenset(name for name, param in model.named_parameters() if param.requires_grad)
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.head = nn.Sequential(OrderedDict(
            norm=nn.BatchNorm1d(width, affine=False, eps=PROBE_NORM_EPS),
            fc=nn.Linear(width, outputs),
        ))
        nn.init.trunc_normal_(self.head.fc.weight, std=PROBE_INIT_STD)
        nn.init.zeros_(self.head.fc.bias)
        self.head_activation = getattr(model, "head_activation", None) or nn.Identity()
        self.input_modalities: tuple[str, ...] = modalities
        self.num_classes = outputs
        self.num_features = width
        # A TokenEncoder takes its one input positionally (named ``video`` even for the audio ViT); HiCMAE's
        # classifier takes ``video=`` / ``audio=``.
        parameters = inspect.signature(model.forward_features).parameters
        self._by_keyword = all(name in parameters for name in modalities) and len(parameters) > 1

    def train(self, mode: bool = True) -> LinearProbe:
        """Training mode for the head's BatchNorm only; the encoder always stays in evaluation mode."""
        self.training = mode
        self.encoder.eval()
        self.head.train(mode)
        return self

    @torch.no_grad()
    def forward_features(self, *inputs: torch.Tensor, video: torch.Tensor | None = None,
                         audio: torch.Tensor | None = None) -> torch.Tensor:
        """The frozen pooled feature ``(B, C)`` of ``video`` ``(B, 3, T, H, W)`` and / or ``audio`` ``(B, 1, T_a, F)``."""
        bound = bind_inputs(self, inputs, video=video, audio=audio)
        if self._by_keyword:
            return self.encoder.forward_features(**bound)
        return self.encoder.forward_features(*bound.values())

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` pooled features -> ``(B, K)`` outputs (BatchNorm, linear layer, the model's head activation)."""
        return self.head_activation(self.head(features))

    def forward(self, *inputs: torch.Tensor, video: torch.Tensor | None = None, audio: torch.Tensor | None = None,
                features: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs ``(B, K)`` of the clip inputs (as the wrapped model takes them), or of cached ``features`` ``(B, C)``."""
        if features is not None:
            if inputs or video is not None or audio is not None:
                raise TypeError("give either clip inputs or cached features, not both")
            return self.forward_head(features)
        return self.forward_head(self.forward_features(*inputs, video=video, audio=audio))

    def to_classifier(self) -> nn.Module:
        """A copy of the wrapped model whose head is the probe's BatchNorm folded into one ``nn.Linear``.

        In evaluation mode it gives the probe's outputs (up to float rounding), and it loads and saves like any
        fine-tuning model of its kind: ``W' = W / sqrt(var + eps)``, ``b' = b - W' @ mean``.
        """
        norm, fc = self.head.norm, self.head.fc
        scale = torch.rsqrt(norm.running_var + norm.eps)
        folded = nn.Linear(fc.in_features, fc.out_features).to(fc.weight)
        with torch.no_grad():
            folded.weight.copy_(fc.weight * scale[None, :])
            folded.bias.copy_(fc.bias - folded.weight @ norm.running_mean)
        model = copy.deepcopy(self.encoder)
        model.head = folded
        if hasattr(model, "num_classes"):
            model.num_classes = fc.out_features
        for name, param in model.named_parameters():
            param.requires_grad_(name in self._trainable or name.startswith("head."))
        return model


class _ProbeInputs:
    """Task mixin: a batch with ``"features"`` (cached, ``(B, C)``) feeds the probe's head directly."""

    def inputs(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if "features" in batch:
            return {"features": batch["features"]}
        return super().inputs(batch)  # type: ignore[misc]


def _as_probe(model: nn.Module, num_outputs: int | None) -> LinearProbe:
    return model if isinstance(model, LinearProbe) else LinearProbe(model, num_outputs)


class LinearProbeTask(_ProbeInputs, ClassificationTask):
    """Linear-probe classification: plain cross-entropy (no mixup; label smoothing 0 by default, as MAE's protocol).

    Batch keys: those of :class:`~maedfer.tasks.finetune.ClassificationTask`, or ``"features"`` ``(B, C)`` (cached
    pooled features) and ``"label"``.

    Args:
        model: A fine-tuning model (wrapped into a :class:`LinearProbe`) or a :class:`LinearProbe`.
        num_classes: Classes K.
        label_smoothing: Label smoothing of the cross-entropy.
    """

    def __init__(self, model: nn.Module, *, num_classes: int, label_smoothing: float = 0.0) -> None:
        super().__init__(_as_probe(model, num_classes), num_classes=num_classes, mixup=None,
                         label_smoothing=label_smoothing)


class LinearProbeRegressionTask(_ProbeInputs, RegressionTask):
    """Linear-probe regression (a frozen encoder under a BatchNorm + linear regressor), with the losses of
    :class:`~maedfer.tasks.finetune.RegressionTask`. Batch keys as :class:`LinearProbeTask` (float labels).

    Args:
        model: A fine-tuning regressor (wrapped into a :class:`LinearProbe`) or a :class:`LinearProbe`.
        loss: Regression loss name.
    """

    def __init__(self, model: nn.Module, *, loss: str = "mse") -> None:
        super().__init__(_as_probe(model, None), loss=loss)


# ------------------------------------------------------------------------------------------------ feature caching
def unaugmented(dataset: Dataset) -> Dataset:
    """A shallow copy of a training :class:`~maedfer.data.video_datasets.VideoClipDataset` that serves its clips
    the way validation does (the official temporal sampling, centre crop, no augmentation)."""
    if getattr(dataset, "mode", None) != "train":
        raise TypeError(f"expected a training VideoClipDataset (mode 'train'), got {type(dataset).__name__}")
    plain = copy.copy(dataset)
    plain.mode = "validation"
    return plain


class CachedFeatures(Dataset):
    """Pooled features with their labels, as items ``{"features": (C,), "label": ..., "index": int}``.

    Args:
        features: ``(N, C)`` float features.
        labels: ``(N,)`` int64 class indices or ``(N, K)`` / ``(N,)`` float targets.
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if features.dim() != 2 or labels.shape[0] != features.shape[0]:
            raise ValueError(f"features must be (N, C) with N labels, got {tuple(features.shape)} and "
                             f"{tuple(labels.shape)}")
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitem__(self, index: Any) -> dict[str, Any]:
        if isinstance(index, tuple):  # (epoch, index) from a sampler feeding persistent workers
            index = index[1]
        return {"features": self.features[index], "label": self.labels[index], "index": int(index)}


@torch.no_grad()
def cache_features(probe: LinearProbe, loader: DataLoader, device: torch.device | str = "cpu") -> CachedFeatures:
    """Run the frozen encoder once over ``loader`` (un-augmented clips, see :func:`unaugmented`).

    Args:
        probe: The probe whose encoder computes the features.
        loader: Batches with the model's inputs, ``"label"`` and ``"index"`` (the dataset index of each item).
            Unreadable items (a ``"skipped"`` entry) are left out.
        device: Where the encoder runs.

    Returns:
        :class:`CachedFeatures` on the CPU, in dataset-index order.
    """
    was_training = probe.training
    probe.eval()
    features: dict[int, torch.Tensor] = {}
    labels: dict[int, torch.Tensor] = {}
    for batch in loader:
        if "index" not in batch:
            continue  # every item of the batch was unreadable
        inputs = {key: batch[key].to(device) for key in probe.input_modalities}
        pooled = probe.forward_features(**inputs).float().cpu()
        for position, index in enumerate(batch["index"].tolist()):
            features[index] = pooled[position]
            labels[index] = batch["label"][position]
    probe.train(was_training)
    if not features:
        raise ValueError("no readable training clip to cache features of")
    order = sorted(features)
    logger.info("cached the pooled features of %d training clips (computed once, no augmentation)", len(order))
    return CachedFeatures(torch.stack([features[i] for i in order]), torch.stack([labels[i] for i in order]))
