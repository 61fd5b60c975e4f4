"""Training backends: one interface over plain PyTorch, DistributedDataParallel and DeepSpeed.

Details: ``docs/modules.md``, section ``maedfer/engine/backends.py``.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from maedfer.checkpoint import read_checkpoint, save_checkpoint
from maedfer.engine.distributed import DistributedEnv, barrier, free_port

__all__ = [
    "BACKEND_NAMES",
    "CLIENT_STATE_FILE",
    "DDPBackend",
    "DeepSpeedBackend",
    "LocalBackend",
    "PRECISIONS",
    "TRAINING_STATE_FILE",
    "TrainingBackend",
    "cpu_has_native_bf16",
    "build_backend",
    "build_optimizer",
    "autocast_context",
    "load_deepspeed_json",
    "resolve_precision",
]

logger = logging.getLogger(__name__)

#: Names accepted by :func:`build_backend`.
BACKEND_NAMES: tuple[str, ...] = ("auto", "local", "ddp", "deepspeed")
#: Precisions accepted by the backends (``"auto"``: bf16 on CUDA, fp32 on CPU).
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp16", "fp32")

#: Weights and optimizer state written by the plain PyTorch backends' :meth:`TrainingBackend.save`.
TRAINING_STATE_FILE = "training_state.pth"
#: The caller's client state, written last by every backend's :meth:`TrainingBackend.save` (completion marker).
CLIENT_STATE_FILE = "client_state.pth"
#: DeepSpeed checkpoint tag (sub-folder) used by :meth:`DeepSpeedBackend.save`.
DEEPSPEED_TAG = "state"

_HALF_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


# ----------------------------------------------------------------------------------------------- helpers


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turns a precision request into ``"bf16"``, ``"fp16"`` or ``"fp32"``.

    Args:
        precision: One of :data:`PRECISIONS`.
        device: The training device.

    Returns:
        ``"auto"`` becomes ``"bf16"`` on CUDA devices that support it (``"fp16"`` on older GPUs) and ``"fp32"`` on
        the CPU; other values are returned unchanged.

    Raises:
        ValueError: If ``precision`` is unknown, or bf16 is requested on a GPU without bf16 support.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}.")
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if precision == "auto":
            return "bf16" if bf16_ok else "fp16"
        if precision == "bf16" and not bf16_ok:
            raise ValueError(f"bf16 was requested but {torch.cuda.get_device_name(device)} does not support it; "
                             "use precision 'fp16' or 'fp32'.")
        return precision
    if precision == "bf16" and not cpu_has_native_bf16():
        _warn_emulated_bf16()
    return "fp32" if precision == "auto" else precision


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN multiplies bfloat16 matrices natively on this CPU (AVX-512 or AMX); ``True`` when unknown.

    Without it (AVX2-only CPUs such as AMD Zen 3) a bf16 matrix multiply falls back to a scalar reference kernel.
    """
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return True if check is None else bool(check())
    except RuntimeError:
        return True


_WARNED_EMULATED_BF16 = False


def _warn_emulated_bf16() -> None:
    """Says once per process that CPU bf16 is emulated here and how much slower it is."""
    global _WARNED_EMULATED_BF16
    if _WARNED_EMULATED_BF16:
        return
    _WARNED_EMULATED_BF16 = True
    logger.warning(
        "precision bf16 on a CPU without native bfloat16 support (torch reports %s, oneDNN no bf16): bf16 matrix "
        "multiplies run in a slow reference kernel, measured 0.9 vs 132 GFLOP/s for fp32 on an AVX2 AMD EPYC; "
        "use precision fp32 (or auto) on this machine", torch.backends.cpu.get_cpu_capability())


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Mixed-precision context for a resolved precision (:func:`resolve_precision`).

    Returns:
        ``torch.autocast`` with bfloat16/float16 on ``device`` for ``"bf16"``/``"fp16"``, a no-op context for
        ``"fp32"``.
    """
    dtype = _HALF_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _cfg_get(cfg: Any, key: str, default: Any) -> Any:
    """Reads ``key`` from a mapping or an attribute object (``OptimConfig``), with a default."""
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def build_optimizer(
    param_groups: Sequence[Mapping[str, Any]],
    optimizer_cfg: Any,
    device: torch.device,
) -> torch.optim.AdamW:
    """Builds the AdamW optimizer that every backend uses.

    Args:
        param_groups: Parameter groups. Each has ``params`` (an iterable of parameters) and optionally
            ``weight_decay`` (default: the configuration's) and ``lr_scale`` (default ``1.0``); other keys are kept.
            Empty groups are dropped.
        optimizer_cfg: An ``OptimConfig`` or a mapping with ``lr`` (default ``1e-3``), ``betas`` (default
            ``(0.9, 0.999)``), ``eps`` (default ``1e-8``) and ``weight_decay`` (default ``0.0``).
        device: The training device; on CUDA the fused AdamW kernel is used.

    Returns:
        ``torch.optim.AdamW`` whose groups start at ``lr * lr_scale`` (the training loop overwrites ``lr`` every
        step).

    Raises:
        ValueError: If a group has no ``params`` key, or if a parameter appears in two groups.
    """
    base_lr = float(_cfg_get(optimizer_cfg, "lr", 1e-3))
    betas = tuple(float(b) for b in _cfg_get(optimizer_cfg, "betas", (0.9, 0.999)))
    if len(betas) != 2:
        raise ValueError(f"AdamW betas must be two numbers, got {betas!r}.")
    eps = float(_cfg_get(optimizer_cfg, "eps", 1e-8))
    default_wd = float(_cfg_get(optimizer_cfg, "weight_decay", 0.0))
    groups: list[dict[str, Any]] = []
    for index, group in enumerate(param_groups):
        if "params" not in group:
            raise ValueError(f"Parameter group {index} has no 'params' key (keys: {sorted(group)}).")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            logger.debug("Dropping empty parameter group %d.", index)
            continue
        new_group = dict(group)
        new_group["params"] = params
        new_group.setdefault("lr_scale", 1.0)
        new_group.setdefault("weight_decay", default_wd)
        new_group["lr"] = base_lr * float(new_group["lr_scale"])
        groups.append(new_group)
    if not groups:
        raise ValueError("No parameters to optimise: every parameter group is empty.")
    fused = device.type == "cuda" and all(p.is_cuda and p.is_floating_point() for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=base_lr, betas=betas, eps=eps, weight_decay=default_wd,
                             fused=True if fused else None)


def _warn_untrained(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Logs a warning for trainable parameters that no optimizer group contains."""
    in_groups = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in in_groups]
    if missing:
        logger.warning("%d trainable parameter(s) are in no optimizer group and will not be trained: %s",
                       len(missing), ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))


def _total_grad_norm(params: Sequence[Tensor]) -> Tensor:
    """L2 norm of all gradients together, as a float32 scalar tensor (``0`` when no parameter has a gradient)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch.stack([torch.linalg.vector_norm(g.detach(), 2, dtype=torch.float32).to(grads[0].device)
                         for g in grads])
    return torch.linalg.vector_norm(norms, 2)


def _fp32_cpu_copy(state: Mapping[str, Any]) -> dict[str, Any]:
    """Copies a state dict to the CPU, casting floating tensors to float32."""
    result: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, Tensor):
            value = value.detach().to("cpu", copy=True)
            if value.is_floating_point():
                value = value.float()
        result[key] = value
    return result


# -------------------------------------------------------------------------------------------- interface


class TrainingBackend(abc.ABC):
    """What the training loop needs from a backend (see the module docstring for the calling pattern).

    Attributes:
        name: ``"local"``, ``"ddp"`` or ``"deepspeed"``.
        env: The process's :class:`~maedfer.engine.distributed.DistributedEnv`.
        device: The training device.
        precision: ``"bf16"``, ``"fp16"`` or ``"fp32"`` (``"auto"`` resolved).
        clip_grad: Max gradient norm applied in :meth:`step` (``None``: no clipping); set by :meth:`setup`.
        accum_steps: Gradient accumulation steps from the optimizer configuration (bookkeeping; the loop decides
            the boundaries with :meth:`no_sync`).
    """

    name: ClassVar[str] = ""

    def __init__(self, env: DistributedEnv, *, precision: str = "auto") -> None:
        """Stores the environment and resolves the precision.

        Args:
            env: The process's distributed environment.
            precision: One of :data:`PRECISIONS`.

        Raises:
            ValueError: If the precision is unknown or unsupported on the device.
        """
        self.env = env
        self.device = env.device
        self.precision = resolve_precision(precision, env.device)
        self.clip_grad: float | None = None
        self.accum_steps = 1
        self._in_no_sync = False
        self._last_backward_unsynced = False

    # ------------------------------------------------------------------ setup and accessors

    @abc.abstractmethod
    def setup(self, model: nn.Module, param_groups: list[dict[str, Any]], optimizer_cfg: Any) -> None:
        """Moves/wraps the model and builds the AdamW optimizer (see :func:`build_optimizer`).

        Args:
            model: The model, on any device; it is moved to :attr:`device`.
            param_groups: Groups of ``model``'s parameters with ``weight_decay`` and ``lr_scale``.
            optimizer_cfg: ``OptimConfig`` or a mapping: ``lr``, ``betas``, ``eps``, ``weight_decay``,
                ``clip_grad`` (``None``/``0``: off) and ``accum_steps``.
        """

    @property
    @abc.abstractmethod
    def model(self) -> nn.Module:
        """The model to call for the forward pass (possibly a wrapper such as DDP or a DeepSpeed engine)."""

    @property
    @abc.abstractmethod
    def module(self) -> nn.Module:
        """The unwrapped model (for evaluation, EMA, state dicts)."""

    @property
    @abc.abstractmethod
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer (for DeepSpeed, its wrapper)."""

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The live optimizer parameter groups; writing ``group["lr"]`` changes the learning rate of the next step.

        Each group keeps the ``lr_scale`` and ``weight_decay`` it was given in :meth:`setup`.
        """
        return self.optimizer.param_groups

    def _check_setup(self) -> None:
        """Raises if :meth:`setup` has not been called."""
        if not getattr(self, "_is_setup", False):
            raise RuntimeError(f"{type(self).__name__}.setup() must be called first.")

    def _read_step_options(self, optimizer_cfg: Any) -> None:
        """Reads ``clip_grad`` and ``accum_steps`` from the optimizer configuration."""
        clip = _cfg_get(optimizer_cfg, "clip_grad", None)
        self.clip_grad = float(clip) if clip is not None and float(clip) > 0 else None
        self.accum_steps = int(_cfg_get(optimizer_cfg, "accum_steps", 1) or 1)
        if self.accum_steps < 1:
            raise ValueError(f"accum_steps must be at least 1, got {self.accum_steps}.")

    # ------------------------------------------------------------------ training step

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed-precision context for the forward pass and the loss.

        Returns:
            ``torch.autocast`` with bfloat16/float16 for ``"bf16"``/``"fp16"``, a no-op context for ``"fp32"``.
        """
        return autocast_context(self.device, self.precision)

    def no_sync(self) -> contextlib.AbstractContextManager[None]:
        """Context for the forward and backward passes of accumulation micro-steps before the last one.

        Gradients are accumulated locally without communication; the backward pass of the last micro-step (outside
        this context) synchronises them. :meth:`step` must not follow a backward made inside this context. The
        returned object may be entered several times in a row (e.g. once for the forward pass and once for the
        backward pass of the same micro-step), but not nested.
        """
        return _NoSyncContext(self)

    def _no_sync_context(self) -> contextlib.AbstractContextManager[Any]:
        """The backend-specific part of :meth:`no_sync`."""
        return contextlib.nullcontext()

    def backward(self, loss: Tensor) -> None:
        """Back-propagates ``loss`` (already divided by the accumulation steps by the caller).

        Args:
            loss: Scalar tensor.
        """
        self._check_setup()
        self._backward(loss)
        self._last_backward_unsynced = self._in_no_sync

    @abc.abstractmethod
    def _backward(self, loss: Tensor) -> None:
        """Backend-specific backward pass."""

    def step(self) -> dict[str, Any]:
        """Clips, checks and applies the accumulated gradients, then clears them.

        Returns:
            ``{"grad_norm": float | None, "skipped": bool}``: the total gradient L2 norm before clipping (after fp16
            unscaling; ``inf``/``nan`` when gradients are not finite) and whether the update was skipped because
            of an fp16 overflow or non-finite gradients (parameters and optimizer state are then unchanged).

        Raises:
            RuntimeError: If the last backward pass ran inside :meth:`no_sync` (its gradients were never
                synchronised).
        """
        self._check_setup()
        if self._last_backward_unsynced:
            raise RuntimeError("step() called after a backward() inside no_sync(): the last micro-step's backward "
                               "must run outside no_sync() so that gradients are synchronised.")
        return self._step()

    @abc.abstractmethod
    def _step(self) -> dict[str, Any]:
        """Backend-specific optimizer step."""

    def zero_grad(self) -> None:
        """Drops all accumulated gradients (e.g. to abandon an accumulation window after a non-finite loss)."""
        self._check_setup()
        self._zero_grad()
        self._last_backward_unsynced = False

    @abc.abstractmethod
    def _zero_grad(self) -> None:
        """Backend-specific :meth:`zero_grad`."""

    # ------------------------------------------------------------------ state

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The backend's training state besides the weights: ``backend``, ``precision``, ``optimizer``, ``scaler``."""

    @abc.abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned."""

    def save(self, path_dir: str | os.PathLike[str], client_state: Mapping[str, Any]) -> Path:
        """Saves weights, optimizer and scaler state into the folder ``path_dir``, then ``client_state.pth``.

        Collective: call it on every rank. An existing checkpoint in the folder is overwritten; ``client_state.pth``
        is removed first and written last, so the folder counts as complete only once everything is on disk.

        Args:
            path_dir: The checkpoint folder (created if needed).
            client_state: The loop's own state (epoch, step, RNG states, EMA weights...): tensors, plain containers,
                numbers and strings only.

        Returns:
            ``path_dir`` as a :class:`~pathlib.Path`.
        """
        self._check_setup()
        folder = Path(path_dir)
        marker = folder / CLIENT_STATE_FILE
        if self.env.is_main:
            folder.mkdir(parents=True, exist_ok=True)
            marker.unlink(missing_ok=True)
        barrier()
        self._save_state(folder)
        barrier()
        if self.env.is_main:
            save_checkpoint(dict(client_state), marker)
        barrier()
        logger.info("Saved %s checkpoint %s.", self.name, folder)
        return folder

    def load(self, path_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """Restores what :meth:`save` wrote and returns the ``client_state``. Collective: call it on every rank.

        Raises:
            FileNotFoundError: If the folder holds no complete checkpoint.
        """
        self._check_setup()
        folder = Path(path_dir)
        if not self.has_checkpoint(folder):
            raise FileNotFoundError(f"No complete checkpoint in {folder} (no {CLIENT_STATE_FILE}).")
        self._load_state(folder)
        client_state = read_checkpoint(folder / CLIENT_STATE_FILE)
        if not isinstance(client_state, dict):
            raise ValueError(f"{folder / CLIENT_STATE_FILE} holds a {type(client_state).__name__}, not a dict.")
        logger.info("Restored %s checkpoint %s.", self.name, folder)
        return client_state

    @staticmethod
    def has_checkpoint(path_dir: str | os.PathLike[str]) -> bool:
        """Whether ``path_dir`` holds a complete checkpoint written by :meth:`save` (any backend)."""
        return (Path(path_dir) / CLIENT_STATE_FILE).is_file()

    @abc.abstractmethod
    def _save_state(self, folder: Path) -> None:
        """Writes the backend's own files into ``folder`` (collective)."""

    @abc.abstractmethod
    def _load_state(self, folder: Path) -> None:
        """Reads the backend's own files from ``folder`` (collective)."""

    @abc.abstractmethod
    def consolidated_state_dict(self) -> dict[str, Tensor]:
        """The full model state dict with floating tensors in float32 on the CPU.

        Collective (ZeRO gathers the fp32 master weights): call it on every rank; every rank gets the result.
        """


class _NoSyncContext:
    """What :meth:`TrainingBackend.no_sync` returns: re-usable, not re-entrant."""

    def __init__(self, backend: TrainingBackend) -> None:
        """Remembers the backend."""
        self._backend = backend
        self._inner: contextlib.AbstractContextManager[Any] | None = None

    def __enter__(self) -> None:
        """Marks the backend as inside ``no_sync`` and enters the backend-specific context."""
        backend = self._backend
        if backend._in_no_sync:
            raise RuntimeError("no_sync() contexts cannot be nested.")
        inner = backend._no_sync_context()
        inner.__enter__()
        self._inner = inner
        backend._in_no_sync = True

    def __exit__(self, *exc_info: Any) -> None:
        """Leaves the backend-specific context."""
        self._backend._in_no_sync = False
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.__exit__(*exc_info)


# --------------------------------------------------------------------------------- plain PyTorch backends


class _TorchBackend(TrainingBackend):
    """Shared code of :class:`LocalBackend` and :class:`DDPBackend` (torch AdamW, optional GradScaler)."""

    def __init__(self, env: DistributedEnv, *, precision: str = "auto") -> None:
        """See :class:`TrainingBackend`."""
        super().__init__(env, precision=precision)
        self._module: nn.Module | None = None
        self._wrapped: nn.Module | None = None
        self._optimizer: torch.optim.AdamW | None = None
        self.scaler: torch.amp.GradScaler | None = None

    def setup(self, model: nn.Module, param_groups: list[dict[str, Any]], optimizer_cfg: Any) -> None:
        """See :meth:`TrainingBackend.setup`."""
        self._read_step_options(optimizer_cfg)
        self._module = model.to(self.device)
        self._optimizer = build_optimizer(param_groups, optimizer_cfg, self.device)
        _warn_untrained(self._module, self._optimizer)
        self._wrapped = self._wrap(self._module)
        if self.precision == "fp16":
            self.scaler = torch.amp.GradScaler(self.device.type)
        self._is_setup = True
        logger.info("%s backend ready on %s (%s, clip_grad=%s).", self.name, self.device, self.precision,
                    self.clip_grad)

    def _wrap(self, module: nn.Module) -> nn.Module:
        """Wraps the module for the forward pass (identity here)."""
        return module

    @property
    def model(self) -> nn.Module:
        """See :attr:`TrainingBackend.model`."""
        self._check_setup()
        assert self._wrapped is not None
        return self._wrapped

    @property
    def module(self) -> nn.Module:
        """See :attr:`TrainingBackend.module`."""
        self._check_setup()
        assert self._module is not None
        return self._module

    @property
    def optimizer(self) -> torch.optim.AdamW:
        """See :attr:`TrainingBackend.optimizer`."""
        self._check_setup()
        assert self._optimizer is not None
        return self._optimizer

    def _backward(self, loss: Tensor) -> None:
        """``loss.backward()``, scaled by the GradScaler in fp16."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _step(self) -> dict[str, Any]:
        """Unscale (fp16), clip, check, step, zero the gradients."""
        optimizer = self.optimizer
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if self.clip_grad is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, self.clip_grad, error_if_nonfinite=False)
        else:
            norm = _total_grad_norm(params)
        grad_norm = float(norm)
        finite = math.isfinite(grad_norm)
        if finite:
            if self.scaler is not None:
                self.scaler.step(optimizer)
            else:
                optimizer.step()
        else:
            logger.warning("Non-finite gradient norm (%s): skipping this optimizer step.", grad_norm)
        if self.scaler is not None:
            self.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return {"grad_norm": grad_norm, "skipped": not finite}

    def _zero_grad(self) -> None:
        """Sets every gradient to ``None``."""
        self.optimizer.zero_grad(set_to_none=True)
        self.module.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        """See :meth:`TrainingBackend.state_dict`."""
        return {
            "backend": self.name,
            "precision": self.precision,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores the optimizer (and the fp16 loss scale) from :meth:`state_dict`.

        A state saved by the local or DDP backend can be loaded by either.

        Raises:
            ValueError: If the state comes from DeepSpeed or its parameter groups do not match.
        """
        kind = state.get("backend", "local")
        if kind not in ("local", "ddp"):
            raise ValueError(f"Cannot load a {kind!r} backend state into the {self.name!r} backend.")
        if "optimizer" not in state:
            raise ValueError(f"Backend state has no 'optimizer' entry (keys: {sorted(state)}).")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise ValueError(f"The saved optimizer state does not match this model's parameter groups: {exc}") from exc
        scaler_state = state.get("scaler")
        if self.scaler is not None and scaler_state:
            self.scaler.load_state_dict(scaler_state)
        elif self.scaler is not None:
            logger.warning("No fp16 loss-scaler state saved; starting with a fresh loss scale.")
        elif scaler_state:
            logger.info("Ignoring the saved fp16 loss-scaler state (training in %s).", self.precision)

    def _save_state(self, folder: Path) -> None:
        """Rank 0 writes ``training_state.pth``: ``model`` (unwrapped state dict), ``optimizer``, ``scaler``..."""
        if self.env.is_main:
            save_checkpoint({"model": self.module.state_dict(), **self.state_dict()}, folder / TRAINING_STATE_FILE)

    def _load_state(self, folder: Path) -> None:
        """Every rank reads ``training_state.pth`` into the model, the optimizer and the scaler.

        Raises:
            FileNotFoundError: If the file does not exist.
            maedfer.checkpoint.CheckpointError: If it cannot be read.
            ValueError: If it lacks ``model``/``optimizer`` or does not match the model.
        """
        file = folder / TRAINING_STATE_FILE
        if not file.is_file():
            raise FileNotFoundError(f"No training state {file}.")
        state = read_checkpoint(file)
        if not isinstance(state, Mapping) or "model" not in state or "optimizer" not in state:
            keys = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"{file} is not a training checkpoint: it needs 'model' and 'optimizer' (has {keys}).")
        try:
            self.module.load_state_dict(state["model"], strict=True)
        except RuntimeError as exc:
            raise ValueError(f"The weights in {file} do not match the model: {exc}") from exc
        try:
            self.load_state_dict(state)
        except ValueError as exc:
            raise ValueError(f"{file}: {exc}") from exc

    def consolidated_state_dict(self) -> dict[str, Tensor]:
        """See :meth:`TrainingBackend.consolidated_state_dict` (no communication here)."""
        return _fp32_cpu_copy(self.module.state_dict())


class LocalBackend(_TorchBackend):
    """A single process training the model as is."""

    name: ClassVar[str] = "local"

    def __init__(self, env: DistributedEnv, *, precision: str = "auto") -> None:
        """See :class:`TrainingBackend`.

        Raises:
            ValueError: If ``env`` describes more than one process.
        """
        if env.world_size > 1:
            raise ValueError(f"The local backend runs one process but WORLD_SIZE={env.world_size}; use 'ddp'.")
        super().__init__(env, precision=precision)


class DDPBackend(_TorchBackend):
    """DistributedDataParallel over the default process group (one process per device).

    Args:
        env: The process's distributed environment; the process group must already exist.
        precision: One of :data:`PRECISIONS`.
        find_unused_parameters: Let DDP tolerate parameters that receive no gradient in a step (LGI 'region'
            heads, SVFAP's official pre-training). ``static_graph`` stays off.
    """

    name: ClassVar[str] = "ddp"

    def __init__(self, env: DistributedEnv, *, precision: str = "auto", find_unused_parameters: bool = False) -> None:
        """See the class docstring.

        Raises:
            RuntimeError: If no process group exists.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("The DDP backend needs a process group: launch with torchrun and call "
                               "init_distributed() first, or use the 'local' backend.")
        super().__init__(env, precision=precision)
        self.find_unused_parameters = bool(find_unused_parameters)

    def _wrap(self, module: nn.Module) -> nn.Module:
        """Wraps the module in DistributedDataParallel."""
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(
            module, device_ids=device_ids, find_unused_parameters=self.find_unused_parameters, static_graph=False
        )

    def _no_sync_context(self) -> contextlib.AbstractContextManager[Any]:
        """DDP's own ``no_sync``."""
        wrapped = self.model
        assert isinstance(wrapped, nn.parallel.DistributedDataParallel)
        return wrapped.no_sync()


# ------------------------------------------------------------------------------------------------- DeepSpeed


def _import_deepspeed() -> Any:
    """Imports DeepSpeed with its CPU pitfalls handled.

    Returns:
        The ``deepspeed`` module.

    Raises:
        ImportError: If DeepSpeed is not installed.
    """
    try:
        import deepspeed
        import deepspeed.ops
    except ImportError as exc:
        raise ImportError('The DeepSpeed backend needs DeepSpeed: pip install "maedfer[deepspeed]" '
                          "(or pip install deepspeed).") from exc
    compatible = getattr(deepspeed.ops, "__compatible_ops__", None)
    if isinstance(compatible, dict):
        # Its JIT build takes about two minutes on a small CPU machine, and only inference uses it.
        compatible["deepspeed_shm_comm"] = False
    return deepspeed


#: DeepSpeed settings that mirror the experiment configuration: a user's JSON may repeat them (or say ``"auto"``) but
#: must not contradict them, because the data loader, the LR scaling and the training loop follow the configuration.
#: Keys are paths in the DeepSpeed JSON; values name the configuration field to change instead.
DEEPSPEED_CONTROLLED_KEYS: dict[tuple[str, ...], str] = {
    ("train_micro_batch_size_per_gpu",): "data.batch_size",
    ("gradient_accumulation_steps",): "optim.accum_steps",
    ("train_batch_size",): "data.batch_size x processes x optim.accum_steps",
    ("gradient_clipping",): "optim.clip_grad",
    ("bf16", "enabled"): "train.precision",
    ("fp16", "enabled"): "train.precision",
    ("zero_optimization", "stage"): "train.zero_stage",
}
#: DeepSpeed sections a user's JSON cannot hold: maedfer builds the AdamW optimizer and the per-step LR schedule.
DEEPSPEED_REFUSED_KEYS: dict[str, str] = {
    "optimizer": "maedfer builds AdamW itself from the optim section (optim.lr, optim.betas, optim.weight_decay ...)",
    "scheduler": "maedfer sets the learning rate every step from optim.lr, optim.min_lr and optim.warmup_epochs",
    "bfloat16": "use the 'bf16' section (and train.precision)",
}


def load_deepspeed_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a user's DeepSpeed JSON configuration.

    Args:
        path: The JSON file.

    Returns:
        Its top-level object.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not valid JSON (the message names the file, line and column) or not a JSON object.
    """
    import json

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"DeepSpeed config {file} does not exist.")
    text = file.read_text(encoding="utf-8")
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}:{exc.lineno}:{exc.colno}: invalid JSON in the DeepSpeed config: {exc.msg}.") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{file}: a DeepSpeed config must be a JSON object, got {type(loaded).__name__}.")
    return loaded


def _lookup(config: Mapping[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    """``(True, value)`` for the entry at ``path`` of nested mappings, ``(False, None)`` when absent."""
    node: Any = config
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _same_setting(user: Any, generated: Any) -> bool:
    """Whether a user's value equals maedfer's (numbers compared as numbers; ``0``/``None``/``False`` clipping)."""
    if isinstance(generated, bool) or isinstance(user, bool):
        return bool(user) == bool(generated)
    if isinstance(user, (int, float)) and isinstance(generated, (int, float)):
        return float(user) == float(generated)
    return user == generated


def _drop_auto(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` without entries whose value is the string ``"auto"`` (filled in from maedfer's)."""
    result: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            result[key] = _drop_auto(value)
        elif not (isinstance(value, str) and value == "auto"):
            result[key] = value
    return result


def _deep_update(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merges ``overrides`` into ``base`` (in place) and returns it."""
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


class DeepSpeedBackend(TrainingBackend):
    """DeepSpeed with ZeRO stage 0, 1, 2 or 3 and a client ``torch.optim.AdamW``.

    Gradient accumulation is driven by the caller through :meth:`no_sync` (DeepSpeed's accumulation boundary is
    set before each backward pass), so :meth:`step` is called once per optimizer step like the other backends.
    With bf16/fp16 DeepSpeed keeps the model in half precision and fp32 master weights in the optimizer; the
    forward pass must run inside :meth:`autocast`, which casts fp32 inputs.

    Args:
        env: The process's distributed environment. With several processes the process group should already
            exist (:func:`~maedfer.engine.distributed.init_distributed`); DeepSpeed reuses it.
        zero_stage: 0, 1, 2 or 3. ZeRO-3 partitions the weights too: :meth:`consolidated_state_dict` gathers them.
        precision: ``"auto"`` (bf16 on CUDA, fp32 on CPU), ``"bf16"``, ``"fp16"`` (CUDA only) or ``"fp32"``.
        micro_batch_size: Samples per process per micro-step (DeepSpeed's ``train_micro_batch_size_per_gpu``;
            bookkeeping only, the data loader decides the real batch).
        config_overrides: A user's DeepSpeed configuration (e.g. from :func:`load_deepspeed_json`), merged
            (recursively) into the generated one last: its entries win, except that the keys of
            :data:`DEEPSPEED_CONTROLLED_KEYS` must agree with the generated values (``"auto"`` takes them) and the
            sections of :data:`DEEPSPEED_REFUSED_KEYS` are refused (see :meth:`build_config`).
        config_source: Where ``config_overrides`` came from (a file name), for error messages.

    Attributes:
        ds_config: The configuration passed to ``deepspeed.initialize`` (after :meth:`setup`).
        init_seconds: Wall time of ``deepspeed.initialize`` (after :meth:`setup`).
    """

    name: ClassVar[str] = "deepspeed"

    def __init__(
        self,
        env: DistributedEnv,
        *,
        zero_stage: int = 0,
        precision: str = "auto",
        micro_batch_size: int = 1,
        config_overrides: Mapping[str, Any] | None = None,
        config_source: str | None = None,
    ) -> None:
        """See the class docstring.

        Raises:
            ValueError: For an unsupported ZeRO stage or precision (fp16 on the CPU).
            ImportError: If DeepSpeed is not installed.
            RuntimeError: If DeepSpeed already picked an accelerator other than ``env.device``.
        """
        if zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"DeepSpeed ZeRO stage must be 0, 1, 2 or 3, got {zero_stage!r}.")
        if env.device.type != "cuda" and precision == "fp16":
            raise ValueError("DeepSpeed supports bf16/fp32 on CPU; fp16 needs a CUDA device. "
                             "Use precision 'bf16' or 'fp32'.")
        if micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be at least 1, got {micro_batch_size}.")
        super().__init__(env, precision=precision)
        self.zero_stage = int(zero_stage)
        self.micro_batch_size = int(micro_batch_size)
        self.config_overrides = dict(config_overrides or {})
        self.config_source = config_source or "the DeepSpeed config overrides"
        if env.device.type == "cpu" and "DS_ACCELERATOR" not in os.environ:
            os.environ["DS_ACCELERATOR"] = "cpu"
        self._deepspeed = _import_deepspeed()
        from deepspeed.accelerator import get_accelerator

        accelerator = get_accelerator().device_name()
        if accelerator != env.device.type:
            raise RuntimeError(f"DeepSpeed's accelerator is {accelerator!r} but training runs on {env.device}; set "
                               f"DS_ACCELERATOR={env.device.type} before DeepSpeed is first imported.")
        self._engine: Any = None
        self._client_optimizer: torch.optim.AdamW | None = None
        self.ds_config: dict[str, Any] = {}
        self.init_seconds: float | None = None

    def _set_launcher_env(self) -> None:
        """Fills in the variables DeepSpeed expects from a launcher (missing ones only).

        Without them DeepSpeed tries MPI discovery (and fails without mpi4py); ``LOCAL_RANK`` is always required.
        """
        defaults = {"RANK": str(self.env.rank), "WORLD_SIZE": str(self.env.world_size),
                    "LOCAL_RANK": str(self.env.local_rank)}
        if self.env.world_size == 1:
            defaults["MASTER_ADDR"] = "127.0.0.1"
        for key, value in defaults.items():
            if not os.environ.get(key):
                os.environ[key] = value
                logger.debug("Set %s=%s for DeepSpeed.", key, value)
        if self.env.world_size == 1 and not os.environ.get("MASTER_PORT"):
            os.environ["MASTER_PORT"] = str(free_port())
            logger.debug("Set MASTER_PORT=%s for DeepSpeed.", os.environ["MASTER_PORT"])

    def build_config(self) -> dict[str, Any]:
        """The DeepSpeed configuration for this backend (call after the optimizer options are known).

        The user's ``config_overrides`` win over the generated entries, with two exceptions that would otherwise
        break a run silently or obscurely: an entry of :data:`DEEPSPEED_CONTROLLED_KEYS` (batch sizes,
        accumulation, clipping, precision, ZeRO stage) must equal the generated value or be ``"auto"``, and the
        ``optimizer``/``scheduler`` sections are refused.

        Returns:
            A JSON-like dict: micro-batch size, accumulation steps, clipping, bf16/fp16 sections and the ZeRO
            stage, merged with ``config_overrides``.

        Raises:
            ValueError: For a contradicting or refused entry; the message names :attr:`config_source`, the key and
                the configuration field to change instead.
        """
        config: dict[str, Any] = {
            "train_batch_size": self.micro_batch_size * self.accum_steps * self.env.world_size,
            "train_micro_batch_size_per_gpu": self.micro_batch_size,
            "gradient_accumulation_steps": self.accum_steps,
            "gradient_clipping": float(self.clip_grad or 0.0),
            "bf16": {"enabled": self.precision == "bf16"},
            "fp16": {"enabled": self.precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
            "zero_optimization": {"stage": self.zero_stage},
            "zero_allow_untested_optimizer": True,
            "steps_per_print": None,
            "wall_clock_breakdown": False,
        }
        for key, reason in DEEPSPEED_REFUSED_KEYS.items():
            if key in self.config_overrides:
                raise ValueError(f"{self.config_source}: remove the '{key}' section: {reason}.")
        for path, field_name in DEEPSPEED_CONTROLLED_KEYS.items():
            present, user = _lookup(self.config_overrides, path)
            _, generated = _lookup(config, path)
            if present and user != "auto" and not _same_setting(user, generated):
                raise ValueError(
                    f"{self.config_source}: '{'.'.join(path)}' is {user!r} but the experiment configuration gives "
                    f"{generated!r}; set {field_name} instead (or write \"auto\" or leave the key out)."
                )
        merged = _deep_update(config, _drop_auto(self.config_overrides))
        if self.config_overrides:
            logger.info("DeepSpeed config: %s merged over the generated one.", self.config_source)
        return merged

    def setup(self, model: nn.Module, param_groups: list[dict[str, Any]], optimizer_cfg: Any) -> None:
        """Builds the client AdamW and calls ``deepspeed.initialize`` (see :meth:`TrainingBackend.setup`)."""
        self._read_step_options(optimizer_cfg)
        self._set_launcher_env()
        model = model.to(self.device)
        client = build_optimizer(param_groups, optimizer_cfg, self.device)
        _warn_untrained(model, client)
        self.ds_config = self.build_config()
        start = time.perf_counter()
        engine, _, _, _ = self._deepspeed.initialize(model=model, optimizer=client, config=self.ds_config)
        self.init_seconds = time.perf_counter() - start
        self._engine = engine
        self._client_optimizer = client
        self._is_setup = True
        logger.info("DeepSpeed ZeRO-%d %s initialised in %.2f s on %s (optimizer wrapper: %s).", self.zero_stage,
                    self.precision, self.init_seconds, self.device, type(engine.optimizer).__name__)

    @property
    def engine(self) -> Any:
        """The ``DeepSpeedEngine``."""
        self._check_setup()
        return self._engine

    @property
    def model(self) -> nn.Module:
        """The DeepSpeed engine (call it for the forward pass)."""
        return self.engine

    @property
    def module(self) -> nn.Module:
        """The model inside the engine (in bf16/fp16 when that precision is used)."""
        return self.engine.module

    @property
    def optimizer(self) -> Any:
        """DeepSpeed's optimizer wrapper (the client AdamW itself for ZeRO-0 fp32)."""
        return self.engine.optimizer

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The client AdamW's groups, which DeepSpeed's wrappers use for the update (``lr`` writes take effect)."""
        return self.engine.optimizer.param_groups

    def _backward(self, loss: Tensor) -> None:
        """``engine.backward`` without DeepSpeed's own division by the accumulation steps."""
        engine = self.engine
        engine.set_gradient_accumulation_boundary(not self._in_no_sync)
        engine.backward(loss, scale_wrt_gas=False)

    def _plain_optimizer(self) -> bool:
        """Whether DeepSpeed drives the client optimizer directly (ZeRO-0 fp32): no norm or overflow check."""
        return self.engine.optimizer is self._client_optimizer

    def _step(self) -> dict[str, Any]:
        """``engine.step()``; ZeRO-0 fp32 gets the norm and the non-finite check from here."""
        engine = self.engine
        if self._plain_optimizer():
            params = [p for group in engine.optimizer.param_groups for p in group["params"]]
            grad_norm = float(_total_grad_norm(params))
            if not math.isfinite(grad_norm):
                logger.warning("Non-finite gradient norm (%s): skipping this optimizer step.", grad_norm)
                engine.zero_grad()
                return {"grad_norm": grad_norm, "skipped": True}
            engine.step()
            return {"grad_norm": grad_norm, "skipped": False}
        engine.step()
        norm = engine.get_global_grad_norm()
        grad_norm = None if norm is None else float(norm)
        skipped = not engine.was_step_applied() or (grad_norm is not None and not math.isfinite(grad_norm))
        if skipped:
            logger.warning("DeepSpeed skipped this optimizer step (gradient norm %s).", grad_norm)
        return {"grad_norm": grad_norm, "skipped": skipped}

    def state_dict(self) -> dict[str, Any]:
        """Not available: ZeRO shards the optimizer state. Use :meth:`save` / :meth:`load`.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError("The DeepSpeed backend keeps sharded optimizer state; use save()/load(), which "
                                  "write DeepSpeed's own checkpoint layout.")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Not available: use :meth:`load`.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError("The DeepSpeed backend restores its state with load(), from a folder written by "
                                  "save().")

    def _zero_grad(self) -> None:
        """Clears the gradients held by the model and by DeepSpeed's optimizer wrapper.

        ZeRO 1/2 also keep the gradients reduced by earlier micro-steps in their own partition buffers; they are
        dropped the way DeepSpeed itself drops them after an fp16 overflow. ZeRO-3's own ``zero_grad`` restarts its
        accumulation (the next reduced gradient overwrites its buffers).
        """
        engine = self.engine
        optimizer = engine.optimizer
        if not self._plain_optimizer():
            optimizer.zero_grad(set_to_none=True)
        engine.zero_grad()
        if self.zero_stage == 3:
            return
        averaged = getattr(optimizer, "averaged_gradients", None)
        if isinstance(averaged, dict):
            for buffers in (averaged, getattr(optimizer, "all_grad_tensors", None)):
                if isinstance(buffers, dict):
                    for key in list(buffers):
                        buffers[key] = None
            release = getattr(optimizer, "_release_preflattened_grad_buffers", None)
            if callable(release):
                release()
            if hasattr(optimizer, "micro_step_id"):
                optimizer.micro_step_id = -1  # DeepSpeed's INITIAL_MICRO_STEP_ID, as set by its step()

    def _save_state(self, folder: Path) -> None:
        """``engine.save_checkpoint`` with tag ``state`` (collective: every rank writes its ZeRO shard)."""
        self.engine.save_checkpoint(os.fspath(folder), tag=DEEPSPEED_TAG, client_state={}, save_latest=True)

    def _load_state(self, folder: Path) -> None:
        """``engine.load_checkpoint`` with module and optimizer states (collective).

        Raises:
            FileNotFoundError: If ``folder`` holds no DeepSpeed checkpoint.
        """
        if not (folder / DEEPSPEED_TAG).is_dir():
            raise FileNotFoundError(f"No DeepSpeed checkpoint in {folder} (no '{DEEPSPEED_TAG}' folder).")
        load_path, _ = self.engine.load_checkpoint(
            os.fspath(folder), tag=DEEPSPEED_TAG, load_optimizer_states=True, load_lr_scheduler_states=False,
            load_module_strict=True,
        )
        if load_path is None:
            raise FileNotFoundError(f"DeepSpeed could not load a checkpoint from {folder}.")

    def consolidated_state_dict(self) -> dict[str, Tensor]:
        """The fp32 master weights (DeepSpeed's ``safe_get_full_fp32_param`` for ZeRO) plus the buffers.

        Collective for ZeRO 1/2/3: call it on every rank; every rank gets full, unpartitioned tensors. Under
        ZeRO-3 the module's own parameters are empty placeholders: trained ones come from the gathered fp32
        optimizer partitions, frozen ones are gathered from the module's partitions.
        """
        from deepspeed.utils import safe_get_full_fp32_param

        if self.zero_stage == 3:
            return self._zero3_state_dict(safe_get_full_fp32_param)

        engine = self.engine
        masters: dict[int, Tensor] = {}
        optimizer = engine.optimizer
        # Unfused fp16/bf16 ZeRO-0 wrapper: parallel lists of half-precision params and their fp32 copies.
        half_groups = getattr(optimizer, "fp16_groups", None)
        fp32_groups = getattr(optimizer, "fp32_groups", None)
        if isinstance(half_groups, list) and isinstance(fp32_groups, list) and len(half_groups) == len(fp32_groups):
            for half_group, fp32_group in zip(half_groups, fp32_groups):
                if isinstance(half_group, list) and isinstance(fp32_group, list) and len(half_group) == len(fp32_group):
                    for half, full in zip(half_group, fp32_group):
                        if isinstance(full, Tensor) and full.shape == half.shape:
                            masters[id(half)] = full
        state = dict(engine.module.state_dict())
        for name, param in engine.module.named_parameters(remove_duplicate=False):
            if name not in state:
                continue
            full = safe_get_full_fp32_param(param) if param.requires_grad else None
            if full is None:
                full = masters.get(id(param))
            if full is None:
                if param.requires_grad and param.dtype != torch.float32:
                    logger.warning("No fp32 master copy found for %s; using its %s weights.", name, param.dtype)
                full = param
            state[name] = full.detach().reshape(param.shape)
        return _fp32_cpu_copy(state)

    def _zero3_state_dict(self, full_fp32: Any) -> dict[str, Tensor]:
        """:meth:`consolidated_state_dict` under ZeRO-3 (collective; same parameter order on every rank).

        Args:
            full_fp32: DeepSpeed's ``safe_get_full_fp32_param``.
        """
        module = self.engine.module
        state = dict(module.state_dict())
        gathered: dict[int, Tensor] = {}
        for name, param in module.named_parameters(remove_duplicate=False):
            if id(param) not in gathered:
                full = full_fp32(param) if param.requires_grad else None
                if full is None:  # frozen (or in no optimizer group): gather the module's own partitions
                    with self._deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                        full = param.detach().to("cpu", copy=True)
                shape = getattr(param, "ds_shape", param.shape)
                gathered[id(param)] = full.detach().reshape(shape).to("cpu", torch.float32, copy=True)
            if name in state:
                state[name] = gathered[id(param)]
        return _fp32_cpu_copy(state)


# ------------------------------------------------------------------------------------------------- factory


def build_backend(name: str, env: DistributedEnv, **opts: Any) -> TrainingBackend:
    """Creates a backend by name.

    Args:
        name: ``"auto"`` (DDP when ``env.world_size > 1``, else local), ``"local"``, ``"ddp"`` or ``"deepspeed"``.
        env: The process's distributed environment.
        **opts: ``precision`` (all backends); ``find_unused_parameters`` (DDP); ``zero_stage``,
            ``micro_batch_size``, ``config_overrides``, ``config_source`` (DeepSpeed). Options meant for another backend are ignored
            (with a log message when they differ from their defaults).

    Returns:
        The (not yet set up) backend.

    Raises:
        ValueError: For an unknown backend name.
        TypeError: For an unknown option.
    """
    if name not in BACKEND_NAMES:
        raise ValueError(f"Unknown training backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}.")
    if name == "auto":
        name = "ddp" if env.world_size > 1 else "local"
    accepted: dict[str, dict[str, Any]] = {
        "local": {"precision": "auto"},
        "ddp": {"precision": "auto", "find_unused_parameters": False},
        "deepspeed": {"precision": "auto", "zero_stage": 0, "micro_batch_size": 1, "config_overrides": None,
                      "config_source": None},
    }
    known = {key for options in accepted.values() for key in options}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise TypeError(f"Unknown backend option(s) {unknown}; known: {sorted(known)}.")
    kwargs: dict[str, Any] = {}
    for key, value in opts.items():
        if key in accepted[name]:
            kwargs[key] = value
        elif value != accepted[next(k for k in accepted if key in accepted[k])][key]:
            logger.info("Backend option %s=%r does not apply to the %s backend; ignored.", key, value, name)
    backend_classes: dict[str, type[TrainingBackend]] = {
        "local": LocalBackend, "ddp": DDPBackend, "deepspeed": DeepSpeedBackend,
    }
    return backend_classes[name](env, **kwargs)
