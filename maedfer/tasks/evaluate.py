"""Evaluation of a fine-tuned model, in one place (the runner's validation and test, the tools, the tests).

A loader of test views (several temporal segments x spatial crops per video) is run through the model
(:func:`predict_views`); records from every process are gathered (:func:`gather_views`); the views are averaged per
video with :func:`~maedfer.data.transforms.aggregate_view_predictions` (softmax mean for classification, output mean
for regression) and scored with :mod:`maedfer.engine.metrics` (:func:`summarize_views`). :func:`evaluate` does all
three.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ContextManager

import numpy as np
import torch
from torch import nn

from ..data.transforms import aggregate_view_predictions
from ..engine.metrics import classification_metrics, confusion_matrix, regression_metrics
from ..models.contract import model_inputs

__all__ = ["Evaluation", "evaluate", "gather_views", "predict_views", "scalar_metrics", "summarize_views"]


@dataclass
class Evaluation:
    """Video-level metrics of one evaluation.

    Attributes:
        metrics: ``classification_metrics`` (or ``regression_metrics``) plus ``num_videos``.
        confusion: ``(K, K)`` confusion matrix (rows: true class) for classification, else ``None``.
        videos: The scored videos (their paths), in scoring order.
        outputs: ``(N, K)`` per-video outputs in :attr:`videos` order: the mean of the views' softmax probabilities
            (classification) or of their outputs (regression); ``None`` when not kept.
        targets: ``(N,)`` true classes or ``(N, K)`` regression targets, in the same order; ``None`` when not kept.
    """

    metrics: dict[str, Any]
    confusion: np.ndarray | None
    videos: list[str] = field(default_factory=list)
    outputs: np.ndarray | None = None
    targets: np.ndarray | None = None

    def scalars(self) -> dict[str, float]:
        """The numeric entries of :attr:`metrics` as floats."""
        return scalar_metrics(self.metrics)


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The int / float entries of a metrics mapping as floats (per-class lists and names dropped)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@torch.no_grad()
def predict_views(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    device: torch.device | str,
    autocast: Callable[[], ContextManager[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Run a classifier / regressor over test views (evaluation mode); one record per view.

    Args:
        model: Fine-tuning model, called as ``model(**model_inputs(model, batch))``.
        loader: Batches with the model's ``video`` / ``audio`` keys, ``label``, ``index`` and ``path`` (and
            ``segment`` / ``crop`` for multi-view tests; a ``skipped`` entry is ignored).
        device: Where the inputs go.
        autocast: Factory of the mixed-precision context (e.g. ``backend.autocast``); none by default.

    Returns:
        ``[{"output": (K,) float32 array, "label", "index", "path", "segment", "crop"}, ...]``.
    """
    records: list[dict[str, Any]] = []
    model.eval()
    for batch in loader:
        batch = {k: v for k, v in batch.items() if k != "skipped"}
        if not batch:
            continue
        inputs = {k: v.to(device) for k, v in model_inputs(model, batch).items()}
        with autocast() if autocast is not None else contextlib.nullcontext():
            outputs = model(**inputs).float().cpu()
        for row in range(outputs.shape[0]):
            records.append(
                {
                    "output": outputs[row].numpy(),
                    "label": batch["label"][row].numpy(),
                    "index": int(batch["index"][row]),
                    "path": batch["path"][row],
                    "segment": int(batch["segment"][row]) if "segment" in batch else 0,
                    "crop": int(batch["crop"][row]) if "crop" in batch else 0,
                }
            )
    return records


def gather_views(records: list[dict[str, Any]], world_size: int) -> list[dict[str, Any]]:
    """Every process's records (``all_gather_object``); the records themselves when ``world_size`` is 1."""
    if world_size == 1:
        return records
    gathered: list[list[dict[str, Any]]] = [None] * world_size  # type: ignore[list-item]
    torch.distributed.all_gather_object(gathered, records)
    return [r for part in gathered for r in part]


def summarize_views(
    records: Iterable[Mapping[str, Any]], task: str, num_classes: int, label_names: Sequence[str] | None = None
) -> Evaluation:
    """Video-level metrics from per-view records (softmax mean for classification, output mean for regression).

    Views are de-duplicated by ``(path, segment, crop)`` (the distributed sampler pads with repeats); videos are
    scored in sorted path order.

    Args:
        records: :func:`predict_views` records.
        task: ``"classification"`` or ``"regression"``.
        num_classes: Classes K (classification).
        label_names: Optional class names for the per-class metrics.
    """
    videos = aggregate_view_predictions(
        ({**record, "video_id": record["path"]} for record in records),
        "classification" if task == "classification" else "regression",
    )
    names = sorted(videos)
    outputs = np.stack([videos[n].output for n in names])
    targets = np.stack([np.asarray(videos[n].label) for n in names])
    if task == "classification":
        preds = outputs.argmax(1)
        metrics = classification_metrics(preds, targets.astype(int), num_classes, label_names=label_names)
        metrics["num_videos"] = len(names)
        confusion = confusion_matrix(preds, targets.astype(int), num_classes)
        return Evaluation(metrics, confusion, names, outputs, targets.astype(int))
    outputs, targets = outputs.reshape(len(names), -1), targets.reshape(len(names), -1)
    metrics = regression_metrics(outputs, targets)
    metrics["num_videos"] = len(names)
    return Evaluation(metrics, None, names, outputs, targets)


def evaluate(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    *,
    task: str,
    num_classes: int,
    device: torch.device | str,
    label_names: Sequence[str] | None = None,
    autocast: Callable[[], ContextManager[Any]] | None = None,
    world_size: int = 1,
) -> Evaluation:
    """:func:`predict_views` -> :func:`gather_views` -> :func:`summarize_views` (leaves the model in eval mode)."""
    records = gather_views(predict_views(model, loader, device, autocast), world_size)
    return summarize_views(records, task, num_classes, label_names)
