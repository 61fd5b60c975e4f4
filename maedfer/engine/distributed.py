"""Process-group setup and small collective helpers for single- and multi-process training.

A run is launched either as one plain process or with ``torchrun``/``deepspeed`` (one process per device). They set
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; under SLURM's ``srun`` without such a
launcher they are derived from ``SLURM_*`` (:mod:`maedfer.engine.slurm`). :func:`init_distributed` reads them,
creates the default process group (NCCL on CUDA, gloo on CPU) when there is more than one process, and binds the
process to its GPU. A single process gets no process group at all, and every helper in this module then behaves as
the identity (``barrier`` does nothing, ``all_gather_object`` returns ``[obj]``, ...).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "DistributedEnv",
    "all_gather_object",
    "all_reduce_mean",
    "barrier",
    "cleanup",
    "free_port",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_main_process",
    "seed_everything",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process sits in the run.

    Attributes:
        rank: Global rank of this process, ``0 <= rank < world_size``.
        local_rank: Rank of this process on its machine (selects the GPU).
        world_size: Number of processes in the run.
        device: The device this process computes on (``cuda:<local_rank>`` or ``cpu``).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this is the rank-0 process (the one that logs and writes files)."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """Whether the run has more than one process."""
        return self.world_size > 1


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    """Reads a non-negative integer environment variable.

    Args:
        environ: The environment (``os.environ``).
        name: The variable.
        default: Value when the variable is absent or empty.

    Returns:
        The value.

    Raises:
        ValueError: If the variable is not a non-negative integer.
    """
    raw = environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"Environment variable {name}={raw!r} is not an integer.") from None
    if value < 0:
        raise ValueError(f"Environment variable {name}={raw!r} must not be negative.")
    return value


def init_distributed(backend: str | None = None, device: str | None = None) -> DistributedEnv:
    """Reads the launcher's environment, creates the process group if needed and picks the device.

    ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` default to ``0``, ``1`` and ``0`` (a plain ``python`` run); a SLURM
    task (``srun``) without them gets them, and ``MASTER_ADDR``/``MASTER_PORT``, from its ``SLURM_*`` variables
    (written into ``os.environ``, see :func:`maedfer.engine.slurm.slurm_launch_env`). When
    ``WORLD_SIZE > 1`` the default process group is created with ``init_method="env://"`` (so ``MASTER_ADDR`` and
    ``MASTER_PORT`` must be set, as ``torchrun`` does), unless one already exists. A single process never gets a
    process group. On CUDA the current device is set to ``cuda:<LOCAL_RANK>``.

    Args:
        backend: Process-group backend; ``None`` picks ``"nccl"`` on CUDA and ``"gloo"`` on CPU.
        device: ``"cuda"``, ``"cuda:<i>"`` or ``"cpu"``; ``None`` picks CUDA when available. A bare ``"cuda"``
            becomes ``cuda:<LOCAL_RANK>``.

    Returns:
        The :class:`DistributedEnv` of this process.

    Raises:
        ValueError: If the environment variables are malformed or inconsistent, or the device string is invalid.
        RuntimeError: If CUDA is requested but unavailable, ``LOCAL_RANK`` exceeds the number of GPUs, or an
            existing process group disagrees with ``WORLD_SIZE``/``RANK``.
    """
    from .slurm import adopt_slurm_env

    environ = os.environ
    adopt_slurm_env(environ)
    world_size = _env_int(environ, "WORLD_SIZE", 1)
    rank = _env_int(environ, "RANK", 0)
    local_rank = _env_int(environ, "LOCAL_RANK", 0)
    if world_size < 1:
        raise ValueError(f"Environment variable WORLD_SIZE={world_size} must be at least 1.")
    if rank >= world_size:
        raise ValueError(f"Environment variable RANK={rank} must be smaller than WORLD_SIZE={world_size}.")

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch_device = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"Invalid device {device!r}: {exc}") from exc
    if torch_device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"Device {device!r} was requested but CUDA is not available.")
        index = local_rank if torch_device.index is None else torch_device.index
        if index >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank} selects cuda:{index} but only {torch.cuda.device_count()} GPU(s) are visible."
            )
        torch_device = torch.device("cuda", index)
        torch.cuda.set_device(torch_device)
    elif torch_device.type != "cpu":
        raise ValueError(f"Unsupported device {device!r}: use 'cuda', 'cuda:<index>' or 'cpu'.")

    if world_size > 1:
        if dist.is_available() and dist.is_initialized():
            if dist.get_world_size() != world_size or dist.get_rank() != rank:
                raise RuntimeError(
                    f"A process group already exists with rank {dist.get_rank()} of {dist.get_world_size()}, but "
                    f"the environment says RANK={rank}, WORLD_SIZE={world_size}."
                )
            logger.debug("Reusing the existing process group (%s).", dist.get_backend())
        else:
            missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not environ.get(name)]
            if missing:
                raise ValueError(
                    f"WORLD_SIZE={world_size} but {' and '.join(missing)} not set: launch with torchrun, or set "
                    "MASTER_ADDR and MASTER_PORT."
                )
            pg_backend = backend or ("nccl" if torch_device.type == "cuda" else "gloo")
            _init_process_group(pg_backend, rank, world_size, environ)
            logger.info(
                "Initialised process group %s: rank %d of %d (local rank %d) on %s.",
                pg_backend, rank, world_size, local_rank, torch_device,
            )
    env = DistributedEnv(rank=rank, local_rank=local_rank, world_size=world_size, device=torch_device)
    logger.debug("%s", env)
    return env


def _init_process_group(backend: str, rank: int, world_size: int, environ: Any) -> None:
    """``init_process_group`` from ``MASTER_ADDR``/``MASTER_PORT``; under a torchrun agent's store, in a namespace of
    this restart attempt.

    An elastic agent (``torchrun --max-restarts``) keeps its store across restarts: a restarted worker group that used
    the plain ``env://`` keys would read the previous attempt's peer addresses (gloo: "Connection refused").
    """
    attempt = environ.get("TORCHELASTIC_RESTART_COUNT")
    if environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or attempt is None:
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
        return
    from datetime import timedelta

    store = dist.TCPStore(environ["MASTER_ADDR"], int(environ["MASTER_PORT"]), world_size, is_master=False,
                          timeout=timedelta(minutes=30))
    dist.init_process_group(backend=backend, store=dist.PrefixStore(f"/maedfer/attempt_{attempt}", store),
                            rank=rank, world_size=world_size)


def _group_active() -> bool:
    """Whether a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank of this process (``0`` without a process group)."""
    return dist.get_rank() if _group_active() else 0


def get_world_size() -> int:
    """Number of processes (``1`` without a process group)."""
    return dist.get_world_size() if _group_active() else 1


def is_main_process() -> bool:
    """Whether this is rank 0 (always true without a process group)."""
    return get_rank() == 0


def barrier() -> None:
    """Waits for every process (does nothing without a process group)."""
    if _group_active() and dist.get_world_size() > 1:
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Gathers one picklable object from every process.

    Args:
        obj: This process's object.

    Returns:
        The objects of ranks ``0 .. world_size - 1``, in rank order (``[obj]`` without a process group).
    """
    if not _group_active() or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Averages a tensor over all processes.

    Args:
        tensor: Any shape; integer tensors are averaged in float64.

    Returns:
        A new tensor of the same shape (floating dtype) holding the mean over ranks; the input is not modified.
        Without a process group this is a copy of the input (as floating point).
    """
    result = tensor.detach().clone()
    if not result.is_floating_point():
        result = result.to(torch.float64)
    if not _group_active() or dist.get_world_size() == 1:
        return result
    dist.all_reduce(result, op=dist.ReduceOp.SUM)
    result /= dist.get_world_size()
    return result


def _restore_functional_linear() -> None:
    """Undo DeepSpeed ZeRO-3's process-wide replacement of ``torch.nn.functional.linear`` (its memory-efficient
    linear "persists unless manually reset"): later code in the process, e.g. fvcore's FLOP count, which sees the
    replacement as an opaque Python op, gets the real function back."""
    zero_init = sys.modules.get("deepspeed.runtime.zero.partition_parameters")
    original = getattr(getattr(zero_init, "InsertPostInitMethodToModuleSubClasses", None), "linear_bk", None)
    if original is not None and torch.nn.functional.linear is not original:
        torch.nn.functional.linear = original
        logger.debug("Restored torch.nn.functional.linear after DeepSpeed ZeRO-3.")


def cleanup() -> None:
    """Destroys the default process group if one exists (through DeepSpeed when it set the group up, so that its
    cached sub-groups go too: a later engine in the same process would otherwise use the dead group's copies), and
    gives ``torch.nn.functional.linear`` back if DeepSpeed ZeRO-3 replaced it."""
    _restore_functional_linear()
    if not _group_active():
        return
    ds_comm = sys.modules.get("deepspeed.comm.comm")
    backend = getattr(ds_comm, "cdb", None)
    if backend is not None and backend.is_initialized():
        ds_comm.destroy_process_group()
    else:
        dist.destroy_process_group()
    logger.debug("Destroyed the default process group.")


def free_port(host: str = "127.0.0.1") -> int:
    """Returns a TCP port that is free on ``host`` right now (the OS picks it).

    Args:
        host: Address to bind to while asking.

    Returns:
        The port number. Another process may take it before it is used; this is fine for tests and single-machine
        runs.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seeds Python, NumPy and PyTorch (all devices) with ``seed + rank``.

    Each process thus draws different augmentations and masks, while a run stays reproducible.

    Args:
        seed: The run's base seed.
        rank: This process's rank.

    Returns:
        The seed that was used (``seed + rank``).
    """
    effective = int(seed) + int(rank)
    random.seed(effective)
    np.random.seed(effective % 2**32)
    torch.manual_seed(effective)
    return effective
