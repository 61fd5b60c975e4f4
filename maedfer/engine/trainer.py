"""The one training loop of maedfer, driven by a task object and a backend.

The loop knows nothing about objectives (they live in :mod:`maedfer.tasks`) nor about DDP / DeepSpeed (they live in
:mod:`maedfer.engine.backends`). It handles: the per-iteration learning-rate schedule, gradient accumulation,
non-finite losses (skipped and counted; a run of them stops with a clear error), EMA weights, periodic and final
checkpoints with everything needed to resume exactly (model, optimizer, scaler, RNG states, sampler position,
config), evaluation with the official test views, and logging (rank 0: ``logging``, tensorboard, a progress bar).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import atomic_write_text, save_checkpoint
from ..config import ExperimentConfig, config_to_dict
from .ema import ModelEma

__all__ = ["NonFiniteLossError", "TrainState", "Trainer", "find_latest_checkpoint"]

logger = logging.getLogger(__name__)

_CHECKPOINT_RE = re.compile(r"^checkpoint-e(\d+)-s(\d+)(\.pth)?$")


class NonFiniteLossError(RuntimeError):
    """Too many consecutive non-finite losses."""


@dataclass
class TrainState:
    """Where the run is.

    Attributes:
        epoch: Current epoch (0-based).
        batches_done: Data batches consumed in the current epoch (the sampler position).
        global_step: Optimizer steps taken so far.
        nonfinite_losses: Total steps skipped because the loss was NaN/inf.
        skipped_steps: Total optimizer steps skipped by the backend (fp16 overflow, non-finite gradients).
        history: Per-epoch summaries (training loss, validation metrics).
    """

    epoch: int = 0
    batches_done: int = 0
    global_step: int = 0
    nonfinite_losses: int = 0
    skipped_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def _plain_rng_state() -> dict[str, Any]:
    """RNG states as plain containers + tensors, loadable with ``weights_only=True``."""
    python = random.getstate()
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [python[0], list(python[1]), python[2]],
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), int(numpy_state[2]),
                  int(numpy_state[3]), float(numpy_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_plain_rng_state(state: Mapping[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state[0], numpy_state[1].numpy().astype(np.uint32), numpy_state[2], numpy_state[3],
                         numpy_state[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rank_and_world_size() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_rng_states() -> list[dict[str, Any]]:
    """The RNG states of all ranks, in rank order (collective when a process group exists)."""
    state = _plain_rng_state()
    _, world_size = _rank_and_world_size()
    if world_size == 1:
        return [state]
    states: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(states, state)
    return states


def find_latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete ``checkpoint-e<epoch>-s<step>[.pth]`` in ``output_dir`` (files are written atomically,
    so every file present is complete; DeepSpeed folders count when they hold ``client_state.pth``)."""
    best: tuple[int, int] | None = None
    best_path = None
    directory = Path(output_dir)
    if not directory.is_dir():
        return None
    for path in directory.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        if not match:
            continue
        if path.is_dir() and not (path / "client_state.pth").is_file():
            continue
        key = (int(match.group(1)), int(match.group(2)))
        if best is None or key > best:
            best, best_path = key, path
    return best_path


class Trainer:
    """Runs ``fit()``: epochs of ``task(batch)`` steps through ``backend``, with evaluation and checkpoints.

    Args:
        cfg: The experiment configuration (saved in checkpoints).
        task: A :class:`maedfer.tasks.Task` whose ``model`` is the backend's (wrapped) model.
        backend: A :class:`maedfer.engine.backends.TrainingBackend`, already set up.
        train_loader: Training batches.
        train_sampler: Its sampler (``set_epoch``, ``start_index``).
        train_dataset: Dataset with ``set_epoch`` (per-epoch augmentation draws), or ``None``.
        lr_schedule: Learning rate per optimizer step (already scaled by the total batch).
        steps_per_epoch: Optimizer steps per epoch.
        output_dir: Checkpoints, logs and metrics.
        is_main: Rank 0 (writes files and logs).
        evaluate: ``evaluate(epoch) -> dict`` called every ``cfg.train.eval_every_epochs`` epochs (or ``None``).
        on_step: Optional hook ``on_step(trainer, batch, outputs)`` (rank 0), e.g. reconstruction images.
        writer: Tensorboard ``SummaryWriter`` or ``None``.
        skip_counter: Counts unreadable samples (``maedfer.data.video_datasets.SkipCounter``) or ``None``.
        label_names: The model's output names in label order, stored in every checkpoint (``label_names``), or
            ``None`` (pre-training, unnamed outputs).
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        *,
        task: Any,
        backend: Any,
        train_loader: Iterable[Mapping[str, Any]],
        train_sampler: Any,
        train_dataset: Any,
        lr_schedule: np.ndarray,
        steps_per_epoch: int,
        output_dir: str | Path,
        is_main: bool = True,
        evaluate: Callable[[int], dict[str, Any]] | None = None,
        on_step: Callable[[Trainer, Mapping[str, Any], Mapping[str, Any]], None] | None = None,
        writer: Any = None,
        skip_counter: Any = None,
        label_names: Sequence[str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.task = task
        self.backend = backend
        self.train_loader = train_loader
        self.train_sampler = train_sampler
        self.train_dataset = train_dataset
        self.lr_schedule = lr_schedule
        self.steps_per_epoch = steps_per_epoch
        self.output_dir = Path(output_dir)
        self.is_main = is_main
        self.evaluate_fn = evaluate
        self.on_step = on_step
        self.writer = writer
        self.skip_counter = skip_counter
        self.label_names = list(label_names) if label_names is not None else None
        self.state = TrainState()
        self.ema = ModelEma(backend.module, cfg.train.ema_decay) if cfg.train.ema_decay else None
        self._consecutive_nonfinite = 0

    # ------------------------------------------------------------------------------------------------ checkpoints
    def _client_state(self) -> dict[str, Any]:
        return {
            "state": asdict(self.state),
            "rng": _plain_rng_state(),
            "config": config_to_dict(self.cfg),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "label_names": self.label_names,
            # Every rank's RNG states (dropout / drop-path draws differ per rank), so that a resumed multi-process
            # run continues each rank's streams exactly.
            "rng_ranks": _gather_rng_states(),
            # The data layout a mid-epoch position depends on (streamed shards), checked on resume.
            "data": self.train_loader.state_dict() if hasattr(self.train_loader, "state_dict") else None,
        }

    def save_checkpoint(self) -> Path:
        """Write a resumable checkpoint ``checkpoint-e<epoch>-s<global_step>`` and prune old ones."""
        name = f"checkpoint-e{self.state.epoch:04d}-s{self.state.global_step:07d}"
        path = self.output_dir / name
        self.backend.save(path, self._client_state())
        if self.is_main:
            self._prune_checkpoints()
            logger.info("saved %s", path)
        return path

    def _prune_checkpoints(self) -> None:
        keep = self.cfg.train.keep_checkpoints
        if keep <= 0:
            return
        found = sorted(
            (p for p in self.output_dir.iterdir() if _CHECKPOINT_RE.match(p.name)),
            key=lambda p: tuple(int(g) for g in _CHECKPOINT_RE.match(p.name).groups()[:2]),  # type: ignore[union-attr]
        )
        for old in found[:-keep]:
            if old.is_dir():
                import shutil

                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)

    def save_final_weights(self) -> Path | None:
        """``checkpoint-last.pth``: ``{"model": full weights, "config", "epoch", "label_names"}`` (what fine-tuning
        and evaluation load)."""
        weights = self.backend.consolidated_state_dict()
        if not self.is_main:
            return None
        payload = {"model": weights, "config": config_to_dict(self.cfg), "epoch": self.state.epoch,
                   "label_names": self.label_names}
        if self.ema is not None:
            payload["model_ema"] = self.ema.state_dict()
        path = save_checkpoint(payload, self.output_dir / "checkpoint-last.pth")
        logger.info("saved final weights %s", path)
        return path

    def resume(self, source: str | Path | None) -> bool:
        """Restore a checkpoint written by :meth:`save_checkpoint`; returns whether one was loaded."""
        if source is None:
            return False
        client = self.backend.load(Path(source))
        self.state = TrainState(**client["state"])
        rank_states = client.get("rng_ranks")
        rank, world_size = _rank_and_world_size()
        if rank_states and len(rank_states) == world_size:
            _restore_plain_rng_state(rank_states[rank])
        else:
            if world_size > 1:
                logger.warning("the checkpoint holds no RNG state for each of %d ranks; every rank continues from "
                               "rank 0's RNG state", world_size)
            _restore_plain_rng_state(client["rng"])
        if client.get("data") is not None and hasattr(self.train_loader, "load_state_dict"):
            self.train_loader.load_state_dict(client["data"])
        elif self.state.batches_done and hasattr(self.train_loader, "load_state_dict"):
            raise ValueError(f"{source} stopped mid-epoch without a data position for streamed shards; resume it "
                             f"with the data settings it was written with")
        if self.ema is not None and client.get("ema") is not None:
            self.ema.load_state_dict(client["ema"])
        logger.info(
            "resumed from %s: epoch %d, %d batches into it, step %d",
            source, self.state.epoch, self.state.batches_done, self.state.global_step,
        )
        return True

    # ------------------------------------------------------------------------------------------------ training
    def _set_lr(self, step: int) -> float:
        value = float(self.lr_schedule[min(step, len(self.lr_schedule) - 1)])
        for group in self.backend.param_groups:
            group["lr"] = value * group.get("lr_scale", 1.0)
        return value

    def _log(self, values: Mapping[str, Any], step: int, prefix: str) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    continue
                value = value.item()
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        """Run the rest of ``epoch`` (from ``state.batches_done``); returns mean logged values."""
        cfg = self.cfg.train
        accum = max(1, self.cfg.optim.accum_steps)
        self.task.train()
        if hasattr(self.train_sampler, "set_epoch"):
            self.train_sampler.set_epoch(epoch)
        if hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(epoch)
        self.train_sampler.start_index = self.state.batches_done * self._batch_size()
        max_batches = self.steps_per_epoch * accum
        sums: dict[str, float] = {}
        count = 0
        progress = self._progress(epoch)
        start = time.perf_counter()
        clips = 0
        iterator = iter(self.train_loader)
        while self.state.batches_done < max_batches:
            try:
                batch = next(iterator)
            except StopIteration:
                break
            batch = self._drop_skipped(batch)
            if batch is None:
                self.state.batches_done += 1
                continue
            micro = self.state.batches_done % accum
            lr = self._set_lr(self.state.global_step)
            sync = micro == accum - 1
            context = self.backend.no_sync() if not sync else contextlib.nullcontext()
            with context, self.backend.autocast():
                outputs = self.task(self._to_device(batch))
            loss = outputs["loss"]
            if not torch.isfinite(loss.detach()).all():
                self._nonfinite(epoch)
                self.backend.zero_grad()
                self.state.batches_done += 1
                continue
            self._consecutive_nonfinite = 0
            with context:
                self.backend.backward(loss / accum)
            self.state.batches_done += 1
            clips += int(next(iter(v for v in batch.values() if isinstance(v, torch.Tensor))).shape[0])
            if not sync:
                continue
            result = self.backend.step()
            if result.get("skipped"):
                self.state.skipped_steps += 1
            elif self.ema is not None:
                self.ema.update(self.backend.module)
            self.state.global_step += 1
            values = {k: float(v) for k, v in outputs.items() if k != "loss" and _is_scalar(v)}
            values["loss"] = float(loss.detach())
            values["lr"] = lr
            if result.get("grad_norm") is not None:
                values["grad_norm"] = float(result["grad_norm"])
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            if self.is_main:
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{lr:.2e}")
                if self.state.global_step % max(1, cfg.log_every_steps) == 0:
                    elapsed = time.perf_counter() - start
                    values["clips_per_s"] = clips / elapsed if elapsed > 0 else 0.0
                    self._log(values, self.state.global_step, "train")
                if self.on_step is not None:
                    self.on_step(self, batch, outputs)
            if cfg.save_every_steps and self.state.global_step % cfg.save_every_steps == 0:
                self.save_checkpoint()
        if progress is not None:
            progress.close()
        means = {key: total / max(count, 1) for key, total in sums.items()}
        elapsed = time.perf_counter() - start
        means["clips_per_s"] = clips / elapsed if elapsed > 0 else 0.0
        return means

    def _batch_size(self) -> int:
        loader = self.train_loader
        return int(getattr(loader, "batch_size", None) or 1)

    def _progress(self, epoch: int) -> Any:
        if not self.is_main:
            return None
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            return None
        accum = max(1, self.cfg.optim.accum_steps)
        return tqdm(
            total=self.steps_per_epoch,
            initial=self.state.batches_done // accum,
            desc=f"epoch {epoch + 1}/{self.cfg.train.epochs}",
            leave=False,
            dynamic_ncols=True,
            disable=None,
        )

    def _drop_skipped(self, batch: Mapping[str, Any]) -> dict[str, Any] | None:
        skipped = batch.get("skipped")
        if skipped is not None and self.skip_counter is not None:
            self.skip_counter.update(batch)
        valid = {k: v for k, v in batch.items() if k != "skipped"}
        return valid if any(isinstance(v, torch.Tensor) for v in valid.values()) else None

    def _to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        device = next(self.backend.module.parameters()).device
        return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _nonfinite(self, epoch: int) -> None:
        self.state.nonfinite_losses += 1
        self._consecutive_nonfinite += 1
        logger.warning(
            "non-finite loss at epoch %d batch %d (step skipped; %d in a row, %d in total)",
            epoch, self.state.batches_done, self._consecutive_nonfinite, self.state.nonfinite_losses,
        )
        limit = self.cfg.train.max_nonfinite_steps
        if self._consecutive_nonfinite > limit:
            raise NonFiniteLossError(
                f"{self._consecutive_nonfinite} consecutive non-finite losses (limit train.max_nonfinite_steps="
                f"{limit}) at epoch {epoch}: lower optim.lr, enable optim.clip_grad or use bf16/fp32"
            )

    def fit(self) -> TrainState:
        """Train from ``state`` to ``cfg.train.epochs``, evaluating and checkpointing on the way."""
        cfg = self.cfg.train
        for epoch in range(self.state.epoch, cfg.epochs):
            self.state.epoch = epoch
            epoch_start = time.perf_counter()
            train_stats = self.train_one_epoch(epoch)
            summary: dict[str, Any] = {"epoch": epoch, "train": train_stats, "seconds": time.perf_counter() - epoch_start}
            last = epoch == cfg.epochs - 1
            if self.evaluate_fn is not None and cfg.eval_every_epochs and (
                (epoch + 1) % cfg.eval_every_epochs == 0 or last
            ):
                summary["validation"] = self.evaluate_fn(epoch)
                self._log(summary["validation"], epoch, "val")
            self.state.history.append(summary)
            self._log({f"epoch_{k}": v for k, v in train_stats.items()}, epoch, "train")
            if self.is_main:
                logger.info(
                    "epoch %d/%d: %s%s (%.1f s)",
                    epoch + 1, cfg.epochs,
                    ", ".join(f"{k} {v:.4g}" for k, v in train_stats.items()),
                    "" if "validation" not in summary else "; val " + ", ".join(
                        f"{k} {v:.4g}" for k, v in summary["validation"].items() if isinstance(v, (int, float))
                    ),
                    summary["seconds"],
                )
            # The next epoch starts from its first batch.
            self.state.epoch = epoch + 1
            self.state.batches_done = 0
            if last or (cfg.save_every_epochs and (epoch + 1) % cfg.save_every_epochs == 0):
                self.save_checkpoint()
        self.save_final_weights()
        if self.is_main:
            atomic_write_text(self.output_dir / "history.json", json.dumps(self.state.history, indent=2, default=str))
        return self.state


def _is_scalar(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (int, float))

