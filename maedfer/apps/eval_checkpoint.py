"""Evaluate only: score a fine-tuned checkpoint on a config's test set, without training.

``finetune/finetune.py --eval --checkpoint FILE|CARD_ID`` lands here (through :func:`maedfer.apps.train.main`). The
model is loaded as :func:`maedfer.apps.inference.load_inference_model` loads it (a maedfer run's
``checkpoint-last.pth`` or checkpoint folder, a released official ``.pth``, a converted ``.safetensors``; no code
runs), the test views are the ones fine-tuning scores (:func:`maedfer.data.build.build_test_loader`), the scores come
from :func:`maedfer.tasks.evaluate.evaluate` (gathered over every ``torchrun`` process), and rank 0 writes
``test_metrics.json``, ``confusion_matrix.csv`` / ``.png`` and ``test_predictions.csv`` as the training run does.
No optimizer, no training backend and no training split are built. With ``--folds`` every fold's checkpoint (a path
or card id with ``{fold}``) is scored and the mean +- std table is written.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import CheckpointError, atomic_write_text, stored_label_names
from ..config import ConfigError, ExperimentConfig, apply_overrides, config_from_dict, load_config

__all__ = [
    "PREDICTIONS_FILE",
    "CheckpointSpec",
    "evaluate_checkpoint",
    "evaluation_config",
    "resolve_checkpoint",
    "run_evaluation",
    "write_predictions_csv",
]

logger = logging.getLogger(__name__)

#: The per-clip predictions file written next to ``test_metrics.json``.
PREDICTIONS_FILE = "test_predictions.csv"
#: The configuration an evaluation used (``model.checkpoint`` is the evaluated file).
EVAL_CONFIG_FILE = "eval_config.yaml"
#: What a bad ``--eval`` request raises (reported on one line by the command).
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, CheckpointError, ConfigError)


@dataclass(frozen=True)
class CheckpointSpec:
    """What ``--checkpoint`` named, resolved.

    Attributes:
        path: The local model file (or maedfer checkpoint folder).
        card_id: The model card id it was given as (its model and names are the card's), or ``None`` for a path.
    """

    path: Path
    card_id: str | None = None


def _download(spec: str) -> Path:
    """The local file of a model card id or link, downloaded (verified, cached) by :func:`maedfer.hub.resolve_checkpoint`.

    Raises:
        FileNotFoundError: The hub cannot provide the file; the message says how to pass the file instead.
    """
    from ..hub import HubError, resolve_checkpoint as hub_resolve

    try:
        return Path(hub_resolve(spec))
    except HubError as error:
        raise FileNotFoundError(f"--checkpoint {spec}: {error} (or download the file and pass --checkpoint FILE)") from error


def resolve_checkpoint(text: str, *, fold: str | None = None, dataset: str | None = None) -> CheckpointSpec:
    """Resolve ``--checkpoint``: a file or checkpoint folder, or a model card id; ``{fold}`` filled in for ``fold``.

    ``{fold}`` becomes the dataset's fold name first (``split01`` for DFEW fold 1, as in the config's paths and the
    fold output folders of a maedfer run), then the fold as given (``1``, as in card ids ``..._fold1``); the first that
    names an existing path or a card wins.

    Raises:
        FileNotFoundError: Nothing exists under any of the names (the message names them).
    """
    from ..cards import find_card
    from .experiment import fold_name

    candidates = [text]
    if fold is not None and "{fold}" in text:
        names = [fold_name(dataset, fold) if dataset else fold, fold]
        candidates = list(dict.fromkeys(text.replace("{fold}", name) for name in names))
    for candidate in candidates:
        if Path(candidate).exists():
            return CheckpointSpec(Path(candidate))
    for candidate in candidates:
        if "://" in candidate:  # hf://owner/repo/file, https://...
            return CheckpointSpec(_download(candidate))
        if os.sep in candidate or "." in Path(candidate).name:
            continue  # a path, not an id
        try:
            card = find_card(candidate)
        except (KeyError, FileNotFoundError, ValueError):
            continue
        return CheckpointSpec(_download(card.id), card.id)
    tried = " or ".join(candidates)
    raise FileNotFoundError(f"--checkpoint {tried}: no such file or folder, and not a model card id")


def evaluation_config(
    config_file: str | os.PathLike[str] | None,
    overrides: Sequence[str],
    payload: Any,
    *,
    output_dir: str | None = None,
    fold: str | None = None,
) -> tuple[ExperimentConfig, bool]:
    """The configuration to evaluate with, and whether it is the checkpoint's own.

    With ``config_file`` the YAML and ``overrides`` define the test set, the views and the output folder. Without it,
    a maedfer checkpoint's stored config is used (the run's own test set and output folder), with ``overrides`` on
    top. ``output_dir`` replaces ``train.output_dir``; ``fold`` fills ``{fold}`` in the paths (as fine-tuning does).

    Raises:
        ConfigError: Neither a config file nor a checkpoint with a stored config.
    """
    from .experiment import with_fold

    stored = payload.get("config") if isinstance(payload, dict) else None
    own = config_file is None and isinstance(stored, dict)
    if own:
        cfg = config_from_dict(apply_overrides(copy.deepcopy(stored), overrides))
    elif config_file is None:
        raise ConfigError("the checkpoint holds no maedfer config: give the dataset's config with --config")
    else:
        cfg = load_config(config_file, overrides)
    if output_dir is not None:
        cfg.train.output_dir = output_dir
    if fold is not None and not (own and output_dir is None):
        cfg = with_fold(cfg, fold)  # a stored config's own output folder is already the fold's
    return cfg, own


def write_predictions_csv(path: Path, scores: Any, task: str, label_names: Sequence[str] | None) -> Path:
    """One row per test video (atomically): its path, the true and predicted label (index and name) and the scores.

    Classification columns: ``video, label, label_name, prediction, prediction_name, correct, score_<name>...``
    (scores: the mean of the views' softmax probabilities). Regression: ``video, true_<name>..., pred_<name>...``.

    Args:
        path: Target CSV.
        scores: The :class:`maedfer.tasks.evaluate.Evaluation` (with ``videos`` / ``outputs`` / ``targets``).
        task: ``"classification"`` or ``"regression"``.
        label_names: Output names (``None``: the indices).
    """
    outputs = np.asarray(scores.outputs)
    names = list(label_names) if label_names else [str(i) for i in range(outputs.shape[1])]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if task == "classification":
        writer.writerow(["video", "label", "label_name", "prediction", "prediction_name", "correct",
                         *(f"score_{name}" for name in names)])
        for video, target, row in zip(scores.videos, scores.targets, outputs):
            top = int(row.argmax())
            writer.writerow([video, int(target), names[int(target)], top, names[top], int(top == int(target)),
                             *(repr(float(v)) for v in row)])
    else:
        writer.writerow(["video", *(f"true_{name}" for name in names), *(f"pred_{name}" for name in names)])
        for video, target, row in zip(scores.videos, np.asarray(scores.targets).reshape(len(outputs), -1), outputs):
            writer.writerow([video, *(repr(float(v)) for v in target), *(repr(float(v)) for v in row)])
    return atomic_write_text(path, buffer.getvalue())


def evaluate_checkpoint(
    cfg: ExperimentConfig,
    spec: CheckpointSpec,
    *,
    payload: Any,
    stored_config: bool,
    model: str | None = None,
) -> dict[str, Any]:
    """Score ``spec`` on ``cfg``'s test set and write the results into ``cfg.train.output_dir`` (rank 0).

    The model is the one the checkpoint's stored config describes when it has one (``model`` overrides it), else
    ``model`` / the card's / ``cfg.model`` (name and ``kwargs``).

    Args:
        cfg: The evaluation config (:func:`evaluation_config`).
        spec: The checkpoint.
        payload: What :func:`maedfer.apps.inference.read_model_file` returned for it.
        stored_config: Whether ``cfg`` is the checkpoint's own config.
        model: A registry name or model card id for the file (``--model``).

    Returns:
        ``{"output_dir", "checkpoint", "test": metrics, "predictions"}``.
    """
    from ..compile import compile_model
    from ..config import dump_config
    from ..data.build import build_test_loader
    from ..engine.backends import autocast_context
    from ..tasks.evaluate import evaluate
    from .experiment import resolve_label_names, start_process, with_synthetic_world, write_test_results
    from .inference import load_inference_model

    task = cfg.train.task
    if task not in ("classification", "regression"):
        raise ConfigError(f"--eval needs a fine-tuning config (train.task classification or regression), got {task!r}")
    process = start_process(cfg)
    env, is_main, output_dir = process.env, process.is_main, process.output_dir
    device, precision = process.device, process.precision

    has_config = isinstance(payload, dict) and isinstance(payload.get("config"), dict)
    name = model or spec.card_id or (None if has_config else cfg.model.name)
    kwargs = dict(cfg.model.kwargs) if name == cfg.model.name and not has_config else None
    loaded = load_inference_model(spec.path, model_name=name, model_kwargs=kwargs, dataset=cfg.data.dataset,
                                  device=device, payload=payload)
    if loaded.config is not None and loaded.config.train.task != task:
        raise ConfigError(f"{spec.path} was trained for {loaded.config.train.task}, but the config evaluates {task}")
    if has_config and not stored_config and model is None and loaded.name != cfg.model.name:
        logger.warning("%s holds a %s (its stored config); the config's model.name %s is not used",
                       spec.path, loaded.name, cfg.model.name)
    net = loaded.model
    if cfg.train.compile:
        compile_model(net, **cfg.train.compile_options)
    stored = stored_label_names(payload, spec.path)
    num_outputs = int(getattr(net, "num_classes", 0) or 0)
    if stored is not None and len(stored) == num_outputs:
        names: list[str] | None = stored
    else:
        names = resolve_label_names(cfg, net) or loaded.label_names
    if is_main:
        logger.info("evaluating %s (%s, %s) on %s; %d process(es) on %s; precision %s; outputs %s",
                    spec.path, loaded.name, task, cfg.data.test_file or cfg.data.dataset, env.world_size, device,
                    precision, ", ".join(names) if names else f"{num_outputs} unnamed")

    data_cfg = with_synthetic_world(cfg, net, rank=env.rank, world_size=env.world_size)
    loader = build_test_loader(data_cfg, net, rank=env.rank, world_size=env.world_size)
    scores = evaluate(net, loader, task=task, num_classes=num_outputs if task == "classification" else 0,
                      device=device, label_names=names, autocast=lambda: autocast_context(device, precision),
                      world_size=env.world_size)
    predictions = output_dir / PREDICTIONS_FILE
    if is_main:
        write_test_results(output_dir, scores, names)
        write_predictions_csv(predictions, scores, task, names)
        used = copy.deepcopy(data_cfg)
        used.model.checkpoint = str(spec.path)
        dump_config(used, output_dir / EVAL_CONFIG_FILE)
        logger.info("per-clip predictions: %s", predictions)
    return {"output_dir": str(output_dir), "checkpoint": str(spec.path), "test": scores.metrics,
            "predictions": str(predictions)}


def run_evaluation(
    args: argparse.Namespace, overrides: Sequence[str], default_config: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """``--eval``: one checkpoint, or one per fold of ``args.folds`` followed by the fold summary.

    Every checkpoint is resolved before anything is scored, so a missing fold fails at once.

    Args:
        args: Parsed :func:`maedfer.apps.train.build_parser` arguments (``checkpoint``, ``config``, ``folds``,
            ``model``, ``output_dir``).
        overrides: Dotted config overrides.
        default_config: Used when neither ``--config`` nor a stored config is there.

    Returns:
        The result of :func:`evaluate_checkpoint`, or ``{fold: result}``.

    Raises:
        FileNotFoundError: A checkpoint does not exist (the message names it).
    """
    from .inference import read_model_file
    from .experiment import folds_summary_dir, parse_folds, write_folds_summary

    folds = parse_folds(args.folds)
    probe = load_config(args.config, overrides) if args.config is not None else None
    dataset = probe.data.dataset if probe is not None else None
    specs = {fold: resolve_checkpoint(args.checkpoint, fold=fold, dataset=dataset) for fold in folds or [None]}
    results: dict[str, Any] = {}
    fold_dirs: list[str] = []
    for fold, spec in specs.items():
        payload = read_model_file(spec.path)
        has_config = isinstance(payload, dict) and isinstance(payload.get("config"), dict)
        config_file = args.config if args.config is not None or has_config else default_config
        cfg, own = evaluation_config(config_file, overrides, payload, output_dir=args.output_dir, fold=fold)
        result = evaluate_checkpoint(cfg, spec, payload=payload, stored_config=own, model=args.model)
        if fold is None:
            return result
        results[fold] = result
        fold_dirs.append(cfg.train.output_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        base = args.output_dir if args.output_dir is not None else (probe.train.output_dir if probe else None)
        if base is not None:  # where fine-tuning with --folds writes its summary
            summary_dir = folds_summary_dir(base)
        else:  # the runs' own folders: their common parent
            summary_dir = Path(os.path.commonpath([os.path.abspath(d) for d in fold_dirs]))
        write_folds_summary(summary_dir, folds, results)
    return results
