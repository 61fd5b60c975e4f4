"""Run-level helpers shared by training (:mod:`maedfer.apps.train`) and evaluation-only scoring
(:mod:`maedfer.apps.eval_checkpoint`): folds and their output folders, the synthetic world when no data is
configured, logging set-up, label names, and the test/fold result files (written atomically, rank 0).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import atomic_write_text
from ..config import ExperimentConfig

__all__ = [
    "SYNTHETIC_DEFAULT_ROOT", "parse_folds", "fold_name", "folds_summary_dir", "with_fold", "with_synthetic_world",
    "setup_logging", "resolve_label_names", "write_test_results", "write_folds_summary", "RunProcess", "start_process",
]

logger = logging.getLogger(__name__)

#: Where the synthetic world is generated when `data.root` is not set.
SYNTHETIC_DEFAULT_ROOT = "runs/synthetic_world"


def parse_folds(text: str | None) -> list[str]:
    """``"1-5"`` -> ``["1", "2", "3", "4", "5"]``; ``"1,3"`` -> ``["1", "3"]``; names pass through."""
    if not text:
        return []
    folds: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part and all(p.strip().isdigit() for p in part.split("-", 1)):
            low, high = (int(p) for p in part.split("-", 1))
            folds.extend(str(i) for i in range(low, high + 1))
        elif part:
            folds.append(part)
    return folds


def fold_name(dataset: str, fold: str) -> str:
    """A numeric fold ``"i"`` becomes the dataset's i-th fold name (``"1"`` -> ``"split01"`` for DFEW), as written by
    ``datasets/<name>/prepare.py``; other names pass through."""
    if not fold.isdigit():
        return fold
    try:
        from ..data.registry import dataset_info

        folds = dataset_info(dataset).folds
    except (KeyError, ValueError):
        return fold
    index = int(fold) - 1
    if folds and 0 <= index < len(folds) and fold not in folds:
        return folds[index]
    return fold


def folds_summary_dir(output_dir: str) -> Path:
    """Where the fold summary of a run whose ``train.output_dir`` is ``output_dir`` goes: the folder the fold outputs
    share (``runs/x`` for ``runs/x/{fold}`` and ``runs/x/fold{fold}``; ``output_dir`` itself when it has no ``{fold}``,
    the folds then going to ``output_dir/fold<i>``)."""
    if "{fold}" not in output_dir:
        return Path(output_dir)
    prefix = output_dir.split("{fold}")[0]
    return Path(prefix) if not prefix or prefix.endswith(("/", os.sep)) else Path(prefix).parent


def with_fold(cfg: ExperimentConfig, fold: str) -> ExperimentConfig:
    """A copy of ``cfg`` for one fold: ``{fold}`` in the data files, output folder and checkpoint replaced."""
    cfg = copy.deepcopy(cfg)
    fold = fold_name(cfg.data.dataset, fold)
    for name in ("train_file", "val_file", "test_file"):
        value = getattr(cfg.data, name)
        if value is not None:
            setattr(cfg.data, name, value.replace("{fold}", fold))
    placeholder = "{fold}" in cfg.train.output_dir
    cfg.train.output_dir = cfg.train.output_dir.replace("{fold}", fold)
    if not placeholder and fold:
        cfg.train.output_dir = str(Path(cfg.train.output_dir) / f"fold{fold}")
    if cfg.model.checkpoint is not None:
        cfg.model.checkpoint = cfg.model.checkpoint.replace("{fold}", fold)
    return cfg


def with_synthetic_world(cfg: ExperimentConfig, model: nn.Module, *, rank: int = 0, world_size: int = 1) -> ExperimentConfig:
    """``cfg`` with the synthetic world's split files filled in when ``data.dataset`` is ``synthetic``.

    The world is generated under ``data.root`` (default ``runs/synthetic_world``) on first use, by rank 0 only (the
    other ranks wait), so every command runs on a fresh machine without licensed data. Explicit files win.
    """
    import dataclasses

    from ..models.contract import input_modalities
    from ..synthetic import ensure_synthetic_world

    data, task = cfg.data, cfg.train.task
    if data.dataset != "synthetic":
        return cfg
    root = ensure_synthetic_world(data.root or SYNTHETIC_DEFAULT_ROOT, data.synthetic, is_main=rank == 0)
    if world_size > 1:
        torch.distributed.barrier()
    audio = "audio" in input_modalities(model)
    if task == "pretrain":
        sub = {"train": "pretrain/train.csv"}
    else:
        kind = "regression" if task == "regression" else ("audio_visual" if audio else "classification")
        sub = {split: f"{kind}/{split}.csv" for split in ("train", "val", "test")}
    files = {f"{split}_file": getattr(data, f"{split}_file") or str(root / rel) for split, rel in sub.items()}
    if task == "pretrain" and audio and not data.audio_path_replacements:
        # the synthetic world keeps videos/<clip>.mp4 next to audio/<clip>.wav
        files["audio_path_replacements"] = [["/videos/", "/audio/"], [".mp4", ".wav"]]
    return dataclasses.replace(cfg, data=dataclasses.replace(data, **files))


def setup_logging(output_dir: Path, is_main: bool) -> None:
    """Rank 0 logs INFO to the console and ``output_dir/log.txt``; other ranks log warnings only."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_maedfer", False):
            root.removeHandler(handler)
    level = logging.INFO if is_main else logging.WARNING
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(output_dir / "log.txt"))
    for handler in handlers:
        handler.setFormatter(fmt)
        handler.setLevel(level)
        handler._maedfer = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(min(root.level or logging.WARNING, level) if root.level else level)


def resolve_label_names(cfg: ExperimentConfig, model: nn.Module) -> list[str] | None:
    """The output names of a fine-tuning model: ``data.label_names`` when set (checked: one distinct name per
    output), else the registry's names of ``data.dataset`` when they fit (``valence`` / ``arousal`` for two
    regression outputs), else ``None``. ``None`` for pre-training.

    Raises:
        ConfigError: ``data.label_names`` does not give one distinct name per model output.
    """
    from ..config import ConfigError
    from .inference import label_names_for

    task = cfg.train.task
    if task not in ("classification", "regression"):
        return None
    num_outputs = int(getattr(model, "num_classes", 0) or 0)
    names = cfg.data.label_names
    if names is None:
        return label_names_for(cfg.data.dataset, num_outputs, task)
    if len(names) != num_outputs:
        what = "classes" if task == "classification" else "regression outputs"
        raise ConfigError(
            f"data.label_names has {len(names)} names ({', '.join(names)}) but the model {cfg.model.name} has "
            f"{num_outputs} {what}: give one name per output, in label order (or set model.kwargs.num_classes)"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"data.label_names: names must be distinct, {', '.join(repeated)} repeated")
    return list(names)


def write_test_results(output_dir: Path, scores: Any, label_names: Sequence[str] | None) -> None:
    """``test_metrics.json`` and, for classification, ``confusion_matrix.csv`` / ``.png`` (atomically, rank 0).

    Args:
        output_dir: Target folder.
        scores: The :class:`maedfer.tasks.evaluate.Evaluation` of the test set.
        label_names: Class names in label order (``None``: the class indices).
    """
    atomic_write_text(output_dir / "test_metrics.json", json.dumps(scores.metrics, indent=2, default=json_default))
    if scores.confusion is not None:
        from ..engine.metrics import save_confusion_matrix

        names = list(label_names or [str(i) for i in range(len(scores.confusion))])
        save_confusion_matrix(scores.confusion, names, output_dir / "confusion_matrix.csv",
                              output_dir / "confusion_matrix.png")
    logger.info("test: %s", ", ".join(f"{k} {v:.4g}" for k, v in scores.scalars().items()))


def write_folds_summary(summary_dir: Path, folds: Sequence[str], results: Mapping[str, Mapping[str, Any]]) -> Path:
    """``folds_summary.json`` / ``.md`` (per-fold test metrics and their mean +- std) in ``summary_dir``, atomically.

    Args:
        summary_dir: Target folder.
        folds: Fold names in order.
        results: Per fold, a result with the test metrics under ``"test"`` (what :func:`run` returns).

    Returns:
        The Markdown table's path.
    """
    from ..engine.metrics import format_fold_table, summarize_folds
    from ..tasks.evaluate import scalar_metrics

    per_fold = [scalar_metrics(results[f].get("test", {})) for f in folds]
    table = format_fold_table(folds, per_fold) if per_fold and per_fold[0] else "(no test metrics)"
    summary = {"folds": list(folds), "per_fold": per_fold,
               "summary": summarize_folds(per_fold) if per_fold and per_fold[0] else {}}
    atomic_write_text(summary_dir / "folds_summary.json", json.dumps(summary, indent=2, default=json_default))
    path = atomic_write_text(summary_dir / "folds_summary.md", table + "\n")
    logger.info("fold summary written to %s\n%s", path, table)
    return path


def json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)


@dataclass(frozen=True)
class RunProcess:
    """This process's place in a run: its distributed environment, output folder, device and resolved precision."""

    env: Any  # maedfer.engine.distributed.DistributedEnv
    output_dir: Path
    device: torch.device
    precision: str

    @property
    def is_main(self) -> bool:
        return self.env.rank == 0


def start_process(cfg: ExperimentConfig) -> RunProcess:
    """The start of a training or evaluation run: the process group (torchrun, deepspeed, srun or none), logging to
    ``train.output_dir/log.txt`` (rank 0), per-rank seeds, the device and the precision ``train.precision`` resolves
    to on it."""
    from ..engine.backends import resolve_precision
    from ..engine.distributed import init_distributed, seed_everything

    env = init_distributed()
    output_dir = Path(cfg.train.output_dir)
    setup_logging(output_dir, env.rank == 0)
    seed_everything(cfg.train.seed, env.rank)
    device = torch.device(env.device)
    return RunProcess(env, output_dir, device, resolve_precision(cfg.train.precision, device))
