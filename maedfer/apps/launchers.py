"""What the training entry points accept from launchers: ``deepspeed``'s ``--local_rank``, DeepSpeed JSON configs.

The ``deepspeed`` launcher starts ``script --local_rank=N <args>`` (and sets ``LOCAL_RANK`` etc.), and DeepSpeed's
convention is ``--deepspeed --deepspeed_config ds.json``; :func:`add_launcher_arguments` accepts these beside the
YAML configuration, and :func:`launcher_overrides` turns them into dotted overrides. :func:`resolve_backend_name`
and :func:`deepspeed_options` check how ``train.backend``, ``train.zero_stage``, ``train.ema_decay`` and
``train.deepspeed_config`` combine before anything is built. The SLURM side lives in :mod:`maedfer.engine.slurm`.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from ..config import ConfigError, ExperimentConfig

__all__ = ["add_launcher_arguments", "deepspeed_options", "launcher_overrides", "resolve_backend_name"]

logger = logging.getLogger(__name__)


def add_launcher_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``--local_rank``/``--local-rank``, ``--deepspeed`` and ``--deepspeed_config``/``--deepspeed-config``.

    Args:
        parser: The entry point's parser.

    Returns:
        ``parser``.
    """
    group = parser.add_argument_group("launchers")
    group.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=None,
                       help="set by the deepspeed launcher (and torch.distributed.launch); LOCAL_RANK from the "
                            "environment wins, this is used when the environment lacks it")
    group.add_argument("--deepspeed", action="store_true",
                       help="train with DeepSpeed (the same as train.backend=deepspeed)")
    group.add_argument("--deepspeed_config", "--deepspeed-config", dest="deepspeed_config", default=None,
                       metavar="JSON", help="DeepSpeed JSON merged over the generated DeepSpeed configuration "
                                            "(train.deepspeed_config=JSON; implies the DeepSpeed backend)")
    return parser


def launcher_overrides(args: argparse.Namespace) -> list[str]:
    """Dotted overrides for the launcher arguments, and ``LOCAL_RANK`` from ``--local_rank`` when unset.

    Args:
        args: Parsed arguments of a parser given to :func:`add_launcher_arguments`.

    Returns:
        Overrides to apply before the user's own dotted overrides (which therefore win).
    """
    local_rank = getattr(args, "local_rank", None)
    if local_rank is not None:
        from_env = os.environ.get("LOCAL_RANK", "").strip()
        if not from_env:
            os.environ["LOCAL_RANK"] = str(local_rank)
        elif from_env != str(local_rank):
            logger.warning("--local_rank=%d differs from LOCAL_RANK=%s in the environment; using the environment's.",
                           local_rank, from_env)
    overrides: list[str] = []
    if getattr(args, "deepspeed", False):
        overrides.append("train.backend=deepspeed")
    if getattr(args, "deepspeed_config", None):
        overrides.append(f"train.deepspeed_config={args.deepspeed_config}")
    return overrides


def resolve_backend_name(cfg: ExperimentConfig, world_size: int) -> str:
    """The backend a run uses: ``train.backend``, with ``auto`` resolved.

    ``auto`` becomes ``deepspeed`` when ``train.deepspeed_config`` is set, else ``ddp`` for several processes and
    ``local`` for one.

    Raises:
        ConfigError: ``train.deepspeed_config`` or ``train.zero_stage > 0`` with a non-DeepSpeed backend, or
            ZeRO-3 with ``train.ema_decay`` (the EMA copy would hold ZeRO-3's empty weight partitions).
    """
    train = cfg.train
    name = train.backend
    if name == "auto":
        name = "deepspeed" if train.deepspeed_config else ("ddp" if world_size > 1 else "local")
    if name != "deepspeed":
        if train.deepspeed_config:
            raise ConfigError(f"train.deepspeed_config={train.deepspeed_config} needs train.backend 'deepspeed' "
                              f"(or 'auto'), not {train.backend!r}")
        if train.zero_stage:
            raise ConfigError(f"train.zero_stage={train.zero_stage} needs train.backend=deepspeed (backend is "
                              f"{name!r})")
    if name == "deepspeed" and train.zero_stage == 3 and train.ema_decay:
        raise ConfigError("train.ema_decay does not combine with train.zero_stage=3: ZeRO-3 partitions the weights "
                          "the EMA copies; use ZeRO stage 2 for EMA runs, or train.ema_decay=null")
    return name


def deepspeed_options(cfg: ExperimentConfig) -> dict[str, Any]:
    """The DeepSpeed backend's options for ``cfg``: ZeRO stage, micro-batch size and the user's JSON (if any).

    Returns:
        Keyword arguments for :func:`maedfer.engine.backends.build_backend` (besides ``precision``).

    Raises:
        FileNotFoundError: ``train.deepspeed_config`` does not exist.
        ValueError: It is not a JSON object (the message names the file and line).
    """
    from ..engine.backends import load_deepspeed_json

    options: dict[str, Any] = {"zero_stage": cfg.train.zero_stage, "micro_batch_size": cfg.data.batch_size}
    if cfg.train.deepspeed_config:
        options["config_overrides"] = load_deepspeed_json(cfg.train.deepspeed_config)
        options["config_source"] = str(cfg.train.deepspeed_config)
    return options
