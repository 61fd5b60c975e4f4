"""Evaluation metrics: classification (UAR/WAR/F1/top-k), regression (CCC/PCC/MAE/MSE/RMSE), losses, fold tables.

Details: ``docs/modules.md``, section ``maedfer/engine/metrics.py``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..utils import atomic_write_bytes, check_int

__all__ = [
    "ccc",
    "ccc_loss",
    "classification_metrics",
    "confusion_matrix",
    "format_fold_table",
    "gather_predictions",
    "mae",
    "mse",
    "pcc",
    "pcc_loss",
    "regression_metrics",
    "rmse",
    "save_confusion_matrix",
    "summarize_folds",
]

logger = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor | Sequence[Any]


def _to_numpy(values: ArrayLike) -> np.ndarray:
    """A NumPy copy of a tensor / array / sequence (tensors are detached and moved to the CPU)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.dtype in (torch.bfloat16, torch.float16):
            values = values.float()
        return values.numpy()
    return np.asarray(values)


def _as_labels(values: ArrayLike, name: str, num_classes: int) -> np.ndarray:
    """Validate integer class indices: 1-D, integral, in ``[0, num_classes)``; returns int64 ``(N,)``."""
    array = _to_numpy(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.isfinite(array)) or np.any(
            array != np.round(array)
        ):
            raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(
            f"{name} must be class indices in [0, {num_classes}), got values in [{array.min()}, {array.max()}]"
        )
    return array


# ------------------------------------------------------------------------------------------------ classification
def confusion_matrix(preds: ArrayLike, targets: ArrayLike, num_classes: int) -> np.ndarray:
    """Confusion matrix with the true class in rows and the predicted class in columns.

    Args:
        preds: ``(N,)`` predicted class indices.
        targets: ``(N,)`` true class indices.
        num_classes: Number of classes K.

    Returns:
        ``(K, K)`` int64 counts; ``cm[t, p]`` = number of samples of class ``t`` predicted as ``p``.

    Raises:
        ValueError: If the inputs are not 1-D class indices in ``[0, K)`` of the same length.
    """
    num_classes = check_int(num_classes, "num_classes")
    pred = _as_labels(preds, "preds", num_classes)
    true = _as_labels(targets, "targets", num_classes)
    if pred.shape != true.shape:
        raise ValueError(f"preds and targets must have the same length, got {pred.shape[0]} and {true.shape[0]}")
    counts = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _label_names(label_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if label_names is None:
        return [str(k) for k in range(num_classes)]
    names = [str(name) for name in label_names]
    if len(names) != num_classes:
        raise ValueError(f"got {len(names)} label names for {num_classes} classes: {names}")
    return names


def classification_metrics(
    preds: ArrayLike,
    targets: ArrayLike,
    num_classes: int,
    label_names: Sequence[str] | None = None,
    *,
    logits: ArrayLike | None = None,
) -> dict[str, Any]:
    """UAR, WAR, F1 and per-class recall of video-level predictions (plus top-1/top-5 from scores).

    All rates are fractions in ``[0, 1]`` (multiply by 100 for the papers' percentages).

    Args:
        preds: ``(N,)`` predicted class indices.
        targets: ``(N,)`` true class indices.
        num_classes: Number of classes K.
        label_names: K class names for the per-class entries (default ``"0"``, ``"1"``, ...).
        logits: Optional ``(N, K)`` scores (logits or probabilities) for ``top1`` / ``top5``.

    Returns:
        A dict with

        * ``uar`` (float): mean recall over the classes present in ``targets``;
        * ``war`` (float): accuracy;
        * ``f1_macro``, ``f1_weighted``, ``f1_micro`` (floats; micro F1 equals the accuracy);
        * ``per_class_recall`` (dict name -> float, or ``None`` for a class absent from the targets);
        * ``per_class_f1`` (dict name -> float, or ``None`` for a class absent from targets and predictions);
        * ``missing_classes`` (list of names absent from the targets; empty when all are present);
        * ``num_samples`` (int);
        * with ``logits``: ``top1`` and ``top5`` (top-``min(5, K)``) accuracies (floats).

    Raises:
        ValueError: On empty or malformed inputs.
    """
    num_classes = check_int(num_classes, "num_classes")
    names = _label_names(label_names, num_classes)
    cm = confusion_matrix(preds, targets, num_classes)
    total = int(cm.sum())
    if total == 0:
        raise ValueError("classification_metrics needs at least one sample")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    f1_denominator = support + predicted  # = 2 tp + fp + fn
    seen = f1_denominator > 0
    f1 = np.divide(2.0 * tp, f1_denominator, out=np.zeros_like(tp), where=seen)
    missing = [names[k] for k in range(num_classes) if not present[k]]
    if missing:
        logger.warning("classes absent from the targets (left out of the UAR): %s", ", ".join(missing))
    result: dict[str, Any] = {
        "uar": float(recall[present].mean()),
        "war": float(tp.sum() / total),
        "f1_macro": float(f1[seen].mean()),
        "f1_weighted": float((f1 * support).sum() / total),
        "f1_micro": float(tp.sum() / total),
        "per_class_recall": {names[k]: (float(recall[k]) if present[k] else None) for k in range(num_classes)},
        "per_class_f1": {names[k]: (float(f1[k]) if seen[k] else None) for k in range(num_classes)},
        "missing_classes": missing,
        "num_samples": total,
    }
    if logits is not None:
        scores = _to_numpy(logits).astype(np.float64)
        true = _as_labels(targets, "targets", num_classes)
        if scores.shape != (true.shape[0], num_classes):
            raise ValueError(f"logits must have shape (N, K) = {(true.shape[0], num_classes)}, got {scores.shape}")
        k = min(5, num_classes)
        # Rank of the true class = number of classes scoring strictly higher (ties favour the true class).
        true_scores = scores[np.arange(true.shape[0]), true]
        rank = (scores > true_scores[:, None]).sum(axis=1)
        result["top1"] = float((rank < 1).mean())
        result["top5"] = float((rank < k).mean())
    return result


def save_confusion_matrix(
    cm: ArrayLike,
    label_names: Sequence[str] | None,
    csv_path: str | os.PathLike[str],
    png_path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
) -> None:
    """Write a confusion matrix as CSV and (optionally) as a PNG heat map, both atomically.

    CSV layout: a header ``true\\pred,<name_0>,...,<name_K-1>`` then one row per true class
    ``<name_t>,<count>,...``. The PNG shows the counts in each cell over colours normalised per row (the recall of
    each true class); it needs matplotlib (imported only here).

    Args:
        cm: ``(K, K)`` integer counts, true class in rows.
        label_names: K class names (default ``"0"``, ``"1"``, ...).
        csv_path: Output CSV file.
        png_path: Output PNG file, or ``None`` to skip the image.
        title: Optional figure title.

    Raises:
        ValueError: If ``cm`` is not a square matrix of non-negative integers or the names do not fit.
        ImportError: If ``png_path`` is given and matplotlib is not installed.
    """
    counts = _to_numpy(cm)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(f"cm must be a square (K, K) matrix, got shape {counts.shape}")
    if counts.size and (np.any(counts < 0) or np.any(counts != np.round(counts))):
        raise ValueError("cm must hold non-negative integer counts")
    counts = counts.astype(np.int64)
    num_classes = counts.shape[0]
    names = _label_names(label_names, num_classes)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true\\pred", *names])
    for name, row in zip(names, counts):
        writer.writerow([name, *(int(v) for v in row)])
    atomic_write_bytes(csv_path, buffer.getvalue().encode("utf-8"))

    if png_path is None:
        return
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"saving the confusion matrix image {png_path} needs matplotlib: pip install matplotlib"
        ) from error
    support = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, support, out=np.zeros(counts.shape, dtype=np.float64), where=support > 0)
    size = max(4.0, 0.6 * num_classes + 2.0)
    figure = Figure(figsize=(size + 1.0, size))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    axes.set_xticks(range(num_classes), labels=names, rotation=45, ha="right")
    axes.set_yticks(range(num_classes), labels=names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title)
    for t in range(num_classes):
        for p in range(num_classes):
            axes.text(
                p, t, str(int(counts[t, p])), ha="center", va="center", fontsize=8,
                color="white" if normalised[t, p] > 0.5 else "black",
            )
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=120)
    atomic_write_bytes(png_path, png.getvalue())


# ------------------------------------------------------------------------------------------------ regression
def _as_columns(preds: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate regression arrays: ``(N,)`` or ``(N, K)`` of equal shape, N >= 1; returns float64 ``(N, K)``."""
    pred = _to_numpy(preds).astype(np.float64)
    true = _to_numpy(targets).astype(np.float64)
    if pred.ndim == 1:
        pred = pred[:, None]
    if true.ndim == 1:
        true = true[:, None]
    if pred.ndim != 2 or pred.shape != true.shape:
        raise ValueError(
            f"preds and targets must be (N,) or (N, K) arrays of the same shape, got {_to_numpy(preds).shape} "
            f"and {_to_numpy(targets).shape}"
        )
    if pred.shape[0] == 0:
        raise ValueError("regression metrics need at least one sample")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(true))):
        raise ValueError("preds and targets must be finite")
    return pred, true


def ccc(preds: ArrayLike, targets: ArrayLike, *, ddof: int = 1) -> np.ndarray:
    """Concordance correlation coefficient per target column.

    ``CCC = 2 cov(p, y) / (var(p) + var(y) + (mean(p) - mean(y))^2)`` with covariance and variances divided by
    ``N - ddof``. ``ddof=1`` reproduces the official HiCMAE metric (``np.cov``); ``ddof=0`` is Lin's population CCC.
    A zero denominator (both columns constant and equal) gives 1; ``N <= ddof`` gives NaN (undefined).

    Args:
        preds: ``(N,)`` or ``(N, K)`` predictions.
        targets: Same shape as ``preds``.
        ddof: Delta degrees of freedom of the covariance and variances.

    Returns:
        ``(K,)`` float64 (``K = 1`` for 1-D inputs).
    """
    pred, true = _as_columns(preds, targets)
    n = pred.shape[0]
    if n <= ddof:
        logger.warning("CCC with ddof=%d is undefined for %d sample(s)", ddof, n)
        return np.full(pred.shape[1], np.nan)
    pred_mean, true_mean = pred.mean(axis=0), true.mean(axis=0)
    dp, dt = pred - pred_mean, true - true_mean
    cov = (dp * dt).sum(axis=0) / (n - ddof)
    denominator = (dp**2).sum(axis=0) / (n - ddof) + (dt**2).sum(axis=0) / (n - ddof) + (pred_mean - true_mean) ** 2
    return np.divide(2.0 * cov, denominator, out=np.ones_like(cov), where=denominator > 0)


def pcc(preds: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """Pearson correlation coefficient per target column.

    One sample gives 1.0 (as the official metric). A constant column (zero variance) makes the correlation
    undefined; it is reported as 0.0 with a warning rather than NaN.

    Args:
        preds: ``(N,)`` or ``(N, K)`` predictions.
        targets: Same shape as ``preds``.

    Returns:
        ``(K,)`` float64 in ``[-1, 1]``.
    """
    pred, true = _as_columns(preds, targets)
    if pred.shape[0] == 1:
        return np.ones(pred.shape[1])
    dp, dt = pred - pred.mean(axis=0), true - true.mean(axis=0)
    scale = np.sqrt((dp**2).sum(axis=0) * (dt**2).sum(axis=0))
    if np.any(scale == 0):
        logger.warning("PCC is undefined for a constant column; reported as 0")
    result = np.divide((dp * dt).sum(axis=0), scale, out=np.zeros(pred.shape[1]), where=scale > 0)
    return np.clip(result, -1.0, 1.0)


def mse(preds: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """Mean squared error per target column: ``(K,)`` float64."""
    pred, true = _as_columns(preds, targets)
    return ((pred - true) ** 2).mean(axis=0)


def mae(preds: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """Mean absolute error per target column: ``(K,)`` float64."""
    pred, true = _as_columns(preds, targets)
    return np.abs(pred - true).mean(axis=0)


def rmse(preds: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """Root mean squared error per target column: ``(K,)`` float64."""
    return np.sqrt(mse(preds, targets))


def regression_metrics(
    preds: ArrayLike,
    targets: ArrayLike,
    names: Sequence[str] | None = None,
    *,
    ccc_ddof: int = 1,
) -> dict[str, Any]:
    """Per-target and averaged regression metrics (the official ``cal_regression_metrics``).

    Args:
        preds: ``(N, K)`` (or ``(N,)``) predictions.
        targets: Same shape as ``preds``.
        names: K target names for the per-target keys (default ``"0"``, ``"1"``, ...).
        ccc_ddof: ``ddof`` of :func:`ccc` (1 = official metric).

    Returns:
        ``{"ccc", "pcc", "mae", "mse", "rmse", "acc"}`` means over the K targets (``rmse`` is the mean of the
        per-target RMSEs, ``acc = 1 - mae`` unclipped, ``mse`` equals the mean over all elements), the same
        metrics per target as ``"<metric>_<name>"``, and ``"num_samples"``.

    Raises:
        ValueError: On malformed inputs or a wrong number of names.
    """
    pred, true = _as_columns(preds, targets)
    num_targets = pred.shape[1]
    labels = _label_names(names, num_targets)
    per_target = {
        "ccc": ccc(pred, true, ddof=ccc_ddof),
        "pcc": pcc(pred, true),
        "mae": mae(pred, true),
        "mse": mse(pred, true),
        "rmse": rmse(pred, true),
    }
    per_target["acc"] = 1.0 - per_target["mae"]
    result: dict[str, Any] = {metric: float(values.mean()) for metric, values in per_target.items()}
    for metric, values in per_target.items():
        for name, value in zip(labels, values):
            result[f"{metric}_{name}"] = float(value)
    result["num_samples"] = int(pred.shape[0])
    return result


def _loss_columns(preds: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B,)`` / ``(B, K)`` tensors of equal shape -> float32 ``(B, K)``."""
    if not isinstance(preds, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise ValueError("preds and targets must be tensors")
    if preds.dim() == 1:
        preds = preds[:, None]
    if targets.dim() == 1:
        targets = targets[:, None]
    if preds.dim() != 2 or preds.shape != targets.shape:
        raise ValueError(
            f"preds and targets must both be (B,) or (B, K), got {tuple(preds.shape)} and {tuple(targets.shape)}"
        )
    if preds.shape[0] < 2:
        raise ValueError(f"correlation losses need a batch of at least 2 samples, got {preds.shape[0]}")
    return preds.float(), targets.to(device=preds.device, dtype=torch.float32)


def ccc_loss(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - mean_k CCC_k`` over the whole batch, population statistics, no epsilon (HiCMAE ``CCCLoss``).

    Args:
        preds: ``(B, K)`` (or ``(B,)``) predictions.
        targets: Same shape.

    Returns:
        Scalar float32 tensor attached to ``preds``' graph.
    """
    pred, true = _loss_columns(preds, targets)
    pred_mean, true_mean = pred.mean(0), true.mean(0)
    dp, dt = pred - pred_mean, true - true_mean
    cov = (dp * dt).mean(0)
    denominator = (dp**2).mean(0) + (dt**2).mean(0) + (pred_mean - true_mean) ** 2
    return 1.0 - (2.0 * cov / denominator).mean()


def pcc_loss(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - mean_k PCC_k`` over the whole batch, ``PCC = cov / (sqrt(var_p var_y) + 1e-6)`` (HiCMAE ``PCCLoss``).

    Args:
        preds: ``(B, K)`` (or ``(B,)``) predictions.
        targets: Same shape.

    Returns:
        Scalar float32 tensor attached to ``preds``' graph.
    """
    pred, true = _loss_columns(preds, targets)
    dp, dt = pred - pred.mean(0), true - true.mean(0)
    cov = (dp * dt).mean(0)
    return 1.0 - (cov / (torch.sqrt((dp**2).mean(0) * (dt**2).mean(0)) + 1e-6)).mean()


# ------------------------------------------------------------------------------------------------ distributed
def gather_predictions(
    preds: ArrayLike, targets: ArrayLike, ids: Sequence[Hashable] | ArrayLike
) -> tuple[np.ndarray, np.ndarray, list[Hashable]]:
    """Collect the predictions of every process, de-duplicated by sample id, for exact metrics.

    The ``DistributedSampler`` pads the last shard with repeated samples; those repeats share their id and only the
    first occurrence (in rank order) is kept. The result is sorted by id, so it is the same on every rank and
    independent of the world size. Without an initialised process group (or with one process) only the local
    de-duplication and sorting happen.

    Args:
        preds: ``(N, ...)`` this process's predictions (logits, probabilities or regression outputs).
        targets: ``(N, ...)`` the matching targets.
        ids: N sample ids (ints or strings, mutually comparable), e.g. dataset indices.

    Returns:
        ``(preds, targets, ids)``: ``(M, ...)`` arrays and the M unique ids in sorted order.

    Raises:
        ValueError: If the lengths differ or the ids cannot be sorted.
    """
    local_preds = _to_numpy(preds)
    local_targets = _to_numpy(targets)
    raw_ids = _to_numpy(ids).tolist() if isinstance(ids, (torch.Tensor, np.ndarray)) else list(ids)
    local_ids = [v.item() if isinstance(v, np.generic) else v for v in raw_ids]
    if not (len(local_preds) == len(local_targets) == len(local_ids)):
        raise ValueError(
            f"preds, targets and ids must have the same length, got {len(local_preds)}, {len(local_targets)}, "
            f"{len(local_ids)}"
        )
    parts = [(list(local_preds), list(local_targets), local_ids)]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, parts[0])
        parts = gathered
    first: dict[Hashable, tuple[Any, Any]] = {}
    for part_preds, part_targets, part_ids in parts:
        for pred, target, sample_id in zip(part_preds, part_targets, part_ids):
            if sample_id not in first:
                first[sample_id] = (pred, target)
    try:
        unique_ids = sorted(first)
    except TypeError as error:
        raise ValueError(f"sample ids must be mutually comparable (all ints or all strings): {error}") from error
    if not unique_ids:
        return local_preds[:0], local_targets[:0], []
    out_preds = np.stack([np.asarray(first[i][0]) for i in unique_ids])
    out_targets = np.stack([np.asarray(first[i][1]) for i in unique_ids])
    return out_preds, out_targets, unique_ids


# ------------------------------------------------------------------------------------------------ folds
def summarize_folds(results: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and sample standard deviation (``ddof=1``) of each metric over folds.

    Only numeric (non-bool) metrics present in every fold are summarised; others are skipped with a log message.
    With a single fold the standard deviation is reported as 0.0.

    Args:
        results: One ``{metric: value}`` dict per fold.

    Returns:
        ``{metric: (mean, std)}`` in the metric order of the first fold.

    Raises:
        ValueError: If ``results`` is empty.
    """
    if not results:
        raise ValueError("summarize_folds needs at least one fold result")

    def numeric(value: Any) -> bool:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))

    keys = [k for k, v in results[0].items() if numeric(v)]
    common = [k for k in keys if all(k in r and numeric(r[k]) for r in results)]
    dropped = sorted(set(keys) - set(common))
    if dropped:
        logger.info("metrics missing from some folds, not summarised: %s", ", ".join(dropped))
    summary: dict[str, tuple[float, float]] = {}
    for key in common:
        values = np.array([float(r[key]) for r in results], dtype=np.float64)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summary[key] = (float(values.mean()), std)
    return summary


def format_fold_table(
    folds: Sequence[str | int],
    results: Sequence[Mapping[str, float]],
    metrics: Sequence[str] | None = None,
    *,
    digits: int = 4,
) -> str:
    """Markdown table with one row per fold and a ``mean ± std`` row (sample std, ``ddof=1``).

    Args:
        folds: Fold labels, one per result.
        results: One ``{metric: value}`` dict per fold.
        metrics: Columns to show (default: every metric :func:`summarize_folds` summarises).
        digits: Decimal places.

    Returns:
        The table followed by a line stating the standard-deviation convention.

    Raises:
        ValueError: If the lengths differ, ``results`` is empty or a requested metric is missing.
    """
    if len(folds) != len(results):
        raise ValueError(f"got {len(folds)} fold labels for {len(results)} results")
    summary = summarize_folds(results)
    columns = list(metrics) if metrics is not None else list(summary)
    unknown = [m for m in columns if m not in summary]
    if unknown:
        raise ValueError(f"metrics {unknown} are not numeric in every fold; available: {list(summary)}")
    lines = [
        "| fold | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for fold, result in zip(folds, results):
        lines.append(f"| {fold} | " + " | ".join(f"{float(result[m]):.{digits}f}" for m in columns) + " |")
    cells = [f"{summary[m][0]:.{digits}f} ± {summary[m][1]:.{digits}f}" for m in columns]
    lines.append("| mean ± std | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"std: sample standard deviation (ddof=1) over {len(results)} fold(s).")
    return "\n".join(lines)
