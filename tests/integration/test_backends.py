"""Training backends (local, DDP, DeepSpeed) and the distributed helpers, on the CPU.

Expected values come from plain PyTorch loops written here (``torch.optim.AdamW`` on the whole batch), from
closed-form first Adam steps, or from comparisons between independent runs; never from the backend under test.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from maedfer.engine.backends import (
    DDPBackend,
    DeepSpeedBackend,
    LocalBackend,
    TrainingBackend,
    build_backend,
)
from maedfer.engine.distributed import (
    DistributedEnv,
    all_gather_object,
    all_reduce_mean,
    cleanup,
    free_port,
    get_world_size,
    init_distributed,
    seed_everything,
)

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
OPTIM = {"lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.05, "clip_grad": None, "accum_steps": 1}
LR_SCALES = (1.0, 0.5)  # weights, biases (+ unused parameters)
logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ helpers


class TinyNet(nn.Module):
    """8 -> 16 -> 1 MLP plus a parameter that never takes part in the forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
        self.unused = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def make_model(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


def make_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Weights with decay at lr_scale 1, biases and the unused layer without decay at lr_scale 0.5."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and not n.startswith("unused")]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and not n.startswith("unused"))]
    return [
        {"params": decay, "weight_decay": OPTIM["weight_decay"], "lr_scale": LR_SCALES[0]},
        {"params": other, "weight_decay": 0.0, "lr_scale": LR_SCALES[1]},
    ]


def make_data(n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (n, 8) and targets (n, 1) of a fixed linear function."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=gen)
    w_true = torch.linspace(-1.0, 1.0, 8).unsqueeze(1)
    return x, x @ w_true + 0.5


def params_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().float().clone() for n, p in module.named_parameters()}


def set_lr(groups: list[dict[str, Any]], base_lr: float) -> None:
    for group in groups:
        group["lr"] = base_lr * group["lr_scale"]


def train_steps(backend: TrainingBackend, x: torch.Tensor, y: torch.Tensor, steps: int, accum: int = 1,
                lr: float = OPTIM["lr"], norms: list[float] | None = None) -> list[float]:
    """The training loop's calling pattern; each micro-step takes an equal slice of the batch.

    Returns the loss of each step; the reported gradient norms are appended to ``norms`` when given.
    """
    losses = []
    for _ in range(steps):
        total = 0.0
        for micro, (xs, ys) in enumerate(zip(x.chunk(accum), y.chunk(accum))):
            context = backend.no_sync() if micro < accum - 1 else contextlib.nullcontext()
            with context, backend.autocast():  # the same context object is entered again for the backward pass
                loss = nn.functional.mse_loss(backend.model(xs).float(), ys)
            with context:
                backend.backward(loss / accum)
            total += float(loss.detach()) / accum
        set_lr(backend.param_groups, lr)
        result = backend.step()
        assert result["skipped"] is False
        if norms is not None:
            norms.append(result["grad_norm"])
        losses.append(total)
    return losses


def reference_grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Total gradient norm of the whole-batch MSE loss at the model's current weights (plain autograd)."""
    model = copy.deepcopy(model)
    grads = torch.autograd.grad(nn.functional.mse_loss(model(x), y), list(model.body.parameters()))
    return math.sqrt(sum(float(g.pow(2).sum()) for g in grads))


def reference_train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, clip: float | None = None,
                    lr: float = OPTIM["lr"]) -> nn.Module:
    """Plain PyTorch: AdamW on the whole batch with the same groups and settings."""
    model = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(make_groups(model), lr=lr, betas=OPTIM["betas"], eps=OPTIM["eps"])
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        set_lr(optimizer.param_groups, lr)
        optimizer.step()
    return model


@pytest.fixture
def clean_launch_env(monkeypatch: pytest.MonkeyPatch) -> DistributedEnv:
    """No launcher variables (restored afterwards, whatever the backend sets), DeepSpeed on the CPU."""
    for var in LAUNCH_VARS:
        monkeypatch.setenv(var, "0")  # records the original state so that teardown restores it
        monkeypatch.delenv(var)
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    return DistributedEnv()


@pytest.fixture(scope="module", autouse=True)
def _destroy_group_at_end() -> Any:
    """DeepSpeed creates a one-process gloo group in this process; remove it when the module is done."""
    yield
    cleanup()


def deepspeed_backend(stage: int, precision: str, micro_batch_size: int = 16) -> DeepSpeedBackend:
    backend = build_backend("deepspeed", DistributedEnv(), zero_stage=stage, precision=precision,
                            micro_batch_size=micro_batch_size)
    assert isinstance(backend, DeepSpeedBackend)
    return backend


def timed_setup(backend: DeepSpeedBackend, model: nn.Module, cfg: dict[str, Any]) -> None:
    start = time.perf_counter()
    backend.setup(model, make_groups(model), cfg)
    logger.warning("DeepSpeed ZeRO-%d %s setup: %.2f s (initialize %.2f s)", backend.zero_stage,
                   backend.precision, time.perf_counter() - start, backend.init_seconds)


# ---------------------------------------------------------------------------------------- distributed.py


def test_init_distributed_single_process_creates_no_group(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    had_group = dist.is_initialized()
    env = init_distributed(device="cpu")
    assert (env.rank, env.local_rank, env.world_size, env.device) == (0, 0, 1, torch.device("cpu"))
    assert env.is_main and not env.is_distributed
    assert dist.is_initialized() == had_group
    if not had_group:
        assert all_gather_object({"a": 1}) == [{"a": 1}]
        assert torch.equal(all_reduce_mean(torch.tensor([2, 4])), torch.tensor([2.0, 4.0], dtype=torch.float64))
        assert get_world_size() == 1


def test_init_distributed_rejects_bad_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        init_distributed(device="cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2"):
        init_distributed(device="cpu")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    if not dist.is_initialized():
        with pytest.raises(ValueError, match="MASTER_ADDR"):
            init_distributed(device="cpu")


def test_seed_everything_depends_on_seed_and_rank() -> None:
    seed_everything(7, rank=0)
    first = torch.rand(4)
    seed_everything(7, rank=0)
    assert torch.equal(torch.rand(4), first)
    assert seed_everything(7, rank=1) == 8
    assert not torch.equal(torch.rand(4), first)


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert 0 < port < 65536


# --------------------------------------------------------------------------------------- factory/errors


def test_build_backend_auto_and_errors() -> None:
    assert isinstance(build_backend("auto", DistributedEnv()), LocalBackend)
    assert build_backend("local", DistributedEnv(), precision="auto", zero_stage=0).name == "local"
    with pytest.raises(ValueError, match="Unknown training backend"):
        build_backend("horovod", DistributedEnv())
    with pytest.raises(TypeError, match="zero_sage"):
        build_backend("local", DistributedEnv(), zero_sage=2)
    with pytest.raises(ValueError, match="WORLD_SIZE=2"):
        LocalBackend(DistributedEnv(world_size=2))
    if not dist.is_initialized():
        with pytest.raises(RuntimeError, match="process group"):
            DDPBackend(DistributedEnv())


def test_deepspeed_fp16_on_cpu_is_refused() -> None:
    with pytest.raises(ValueError, match="DeepSpeed supports bf16/fp32 on CPU"):
        DeepSpeedBackend(DistributedEnv(), precision="fp16")


def test_missing_deepspeed_gives_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "deepspeed", None)
    with pytest.raises(ImportError, match=r'pip install "maedfer\[deepspeed\]"'):
        DeepSpeedBackend(DistributedEnv(), precision="fp32")


# ------------------------------------------------------------------------------------------------ local


def test_local_backend_trains_and_matches_plain_pytorch() -> None:
    x, y = make_data()
    model = make_model()
    expected = reference_train(model, x, y, steps=8)
    backend = LocalBackend(DistributedEnv())
    backend.setup(model, make_groups(model), OPTIM)
    assert backend.precision == "fp32"
    losses = train_steps(backend, x, y, steps=8)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0]
    got = params_of(backend.module)
    for name, value in params_of(expected).items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-7, msg=name)


def test_local_gradient_accumulation_equals_full_batch() -> None:
    x, y = make_data()
    model = make_model()
    expected = reference_train(model, x, y, steps=3)
    backend = LocalBackend(DistributedEnv())
    backend.setup(model, make_groups(model), {**OPTIM, "accum_steps": 4})
    norms: list[float] = []
    train_steps(backend, x, y, steps=3, accum=4, norms=norms)
    assert norms[0] == pytest.approx(reference_grad_norm(make_model(), x, y), rel=1e-5)
    got = params_of(backend.module)
    for name, value in params_of(expected).items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-6, msg=name)


def _abandon_window_then_train(backend: TrainingBackend, x: torch.Tensor, y: torch.Tensor) -> None:
    """A micro-step with garbage gradients inside no_sync, dropped with zero_grad, then three normal steps."""
    context = backend.no_sync()
    with context, backend.autocast():
        garbage = backend.model(x[:8] * 100.0).float().pow(2).mean() * 1e3
    with context:
        backend.backward(garbage)
    backend.zero_grad()
    train_steps(backend, x, y, steps=3, accum=2)


def test_local_zero_grad_abandons_accumulation_window() -> None:
    x, y = make_data()
    model = make_model()
    expected = reference_train(model, x, y, steps=3)
    backend = LocalBackend(DistributedEnv())
    backend.setup(model, make_groups(model), {**OPTIM, "accum_steps": 2})
    _abandon_window_then_train(backend, x, y)
    got = params_of(backend.module)
    for name, value in params_of(expected).items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-6, msg=name)


def test_step_after_unsynced_backward_is_an_error() -> None:
    model = make_model()
    backend = LocalBackend(DistributedEnv())
    backend.setup(model, make_groups(model), OPTIM)
    x, y = make_data()
    with backend.no_sync():
        backend.backward(nn.functional.mse_loss(backend.model(x), y))
    with pytest.raises(RuntimeError, match="no_sync"):
        backend.step()


def _first_adam_step_expectation(w0: torch.Tensor, grad: torch.Tensor, clip: float, lr: float,
                                 eps: float) -> torch.Tensor:
    """Closed form of AdamW's first step (no decay): m_hat = g, v_hat = g**2, so w -= lr * g / (|g| + eps)."""
    clipped = grad * (clip / (grad.norm() + 1e-6))
    return w0 - lr * clipped / (clipped.abs() + eps)


CLIP_INPUT = torch.tensor([[3.0, 4.0, 0.0, 12.0]])  # d(sum(w . x))/dw = x, |x| = 13


def _clip_run(backend: TrainingBackend) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    model = nn.Linear(4, 1, bias=False)
    w0 = model.weight.detach().clone()
    cfg = {"lr": 0.1, "eps": 1.0, "weight_decay": 0.0, "clip_grad": 1.3}
    backend.setup(model, [{"params": list(model.parameters()), "weight_decay": 0.0}], cfg)
    with backend.autocast():
        loss = backend.model(CLIP_INPUT).sum()
    backend.backward(loss)
    result = backend.step()
    return result, w0, backend.module.weight.detach().float().clone()


def test_local_clipping_reports_pre_clip_norm_and_clips() -> None:
    result, w0, w1 = _clip_run(LocalBackend(DistributedEnv()))
    assert result["skipped"] is False
    assert result["grad_norm"] == pytest.approx(13.0, rel=1e-6)
    expected = _first_adam_step_expectation(w0, CLIP_INPUT, clip=1.3, lr=0.1, eps=1.0)
    torch.testing.assert_close(w1, expected, rtol=1e-5, atol=1e-6)


def test_local_nan_gradient_skips_step() -> None:
    model = make_model()
    backend = LocalBackend(DistributedEnv())
    backend.setup(model, make_groups(model), OPTIM)
    x, y = make_data()
    before = params_of(backend.module)
    backend.backward(nn.functional.mse_loss(backend.model(x), y) * float("nan"))
    result = backend.step()
    assert result["skipped"] is True and math.isnan(result["grad_norm"])
    after = params_of(backend.module)
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert all(p.grad is None for p in backend.module.parameters())
    assert backend.optimizer.state_dict()["state"] == {}
    assert train_steps(backend, x, y, steps=1)  # a normal step still works afterwards
    assert not torch.equal(params_of(backend.module)["body.0.weight"], before["body.0.weight"])


def test_local_fp16_scaler_skips_overflow_and_backs_off() -> None:
    model = make_model()
    backend = LocalBackend(DistributedEnv(), precision="fp16")
    backend.setup(model, make_groups(model), OPTIM)
    assert backend.scaler is not None
    scale = backend.scaler.get_scale()
    x, y = make_data()
    before = params_of(backend.module)
    with backend.autocast():
        loss = nn.functional.mse_loss(backend.model(x).float(), y) * float("inf")
    backend.backward(loss)
    result = backend.step()
    assert result["skipped"] is True
    assert backend.scaler.get_scale() == scale * 0.5  # GradScaler's default backoff factor
    assert all(torch.equal(before[n], p) for n, p in params_of(backend.module).items())
    losses = train_steps(backend, x, y, steps=4)
    assert losses[-1] < losses[0]


def test_local_save_load_resume_is_bitwise(tmp_path: Path) -> None:
    x, y = make_data()
    cfg = {**OPTIM, "clip_grad": 0.5}

    def fresh() -> LocalBackend:
        model = make_model()
        backend = LocalBackend(DistributedEnv())
        backend.setup(model, make_groups(model), cfg)
        return backend

    uninterrupted = fresh()
    train_steps(uninterrupted, x, y, steps=5)

    first = fresh()
    train_steps(first, x, y, steps=2)
    assert first.save(tmp_path / "ckpt", {"epoch": 2, "note": "mid-run"}) == tmp_path / "ckpt"
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["client_state.pth", "training_state.pth"]
    assert TrainingBackend.has_checkpoint(tmp_path / "ckpt")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "training_state.pth").write_bytes((tmp_path / "ckpt" / "training_state.pth").read_bytes())
    assert not first.has_checkpoint(tmp_path / "partial")
    with pytest.raises(FileNotFoundError, match="client_state.pth"):
        first.load(tmp_path / "partial")

    resumed = LocalBackend(DistributedEnv())
    other_init = make_model(seed=99)  # the weights must come from the checkpoint
    resumed.setup(other_init, make_groups(other_init), cfg)
    client = resumed.load(tmp_path / "ckpt")
    assert client == {"epoch": 2, "note": "mid-run"}
    train_steps(resumed, x, y, steps=3)
    want, got = params_of(uninterrupted.module), params_of(resumed.module)
    assert all(torch.equal(want[n], got[n]) for n in want)


# -------------------------------------------------------------------------------------------- DeepSpeed


@pytest.mark.parametrize(("stage", "precision"), [(0, "fp32"), (0, "bf16"), (2, "fp32"), (2, "bf16")])
def test_deepspeed_single_process_trains_and_skips_nan(stage: int, precision: str,
                                                       clean_launch_env: DistributedEnv) -> None:
    x, y = make_data()
    model = make_model()
    backend = deepspeed_backend(stage, precision)
    timed_setup(backend, model, OPTIM)
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        assert os.environ.get(var), f"{var} was not set for DeepSpeed"
    assert os.environ["DS_ACCELERATOR"] == "cpu"
    losses = train_steps(backend, x, y, steps=8)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses

    # A group at lr 0 must not move: the learning rate written into param_groups reaches DeepSpeed's update.
    frozen = [n for n, p in backend.module.named_parameters() if p.ndim == 1]
    before = params_of(backend.module)
    for group in backend.param_groups:
        group["lr"] = OPTIM["lr"] if group["lr_scale"] == LR_SCALES[0] else 0.0
    with backend.autocast():
        loss = nn.functional.mse_loss(backend.model(x).float(), y)
    backend.backward(loss)
    assert backend.step()["skipped"] is False
    after = params_of(backend.module)
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert not torch.equal(before["body.0.weight"], after["body.0.weight"])

    # Non-finite gradients: the step is skipped and nothing changes.
    with backend.autocast():
        loss = nn.functional.mse_loss(backend.model(x).float(), y) * float("nan")
    backend.backward(loss)
    result = backend.step()
    assert result["skipped"] is True
    assert result["grad_norm"] is None or not math.isfinite(result["grad_norm"])
    final = params_of(backend.module)
    assert all(torch.equal(after[n], final[n]) for n in after)

    consolidated = backend.consolidated_state_dict()
    assert set(consolidated) == set(model.state_dict())
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" for v in consolidated.values())
    if precision == "bf16":
        # fp32 master weights: finer than bf16, and the model's bf16 weights are those masters rounded.
        weight = consolidated["body.0.weight"]
        assert not torch.equal(weight, weight.to(torch.bfloat16).float())
        for name, param in backend.module.named_parameters():
            assert torch.equal(param.detach(), consolidated[name].to(param.dtype)), name
    else:
        assert all(torch.equal(consolidated[n], final[n]) for n in final)


def test_deepspeed_fp32_stage0_matches_local(clean_launch_env: DistributedEnv) -> None:
    x, y = make_data()
    model = make_model()
    local = LocalBackend(DistributedEnv())
    local_model = copy.deepcopy(model)
    local.setup(local_model, make_groups(local_model), OPTIM)
    train_steps(local, x, y, steps=3)

    backend = deepspeed_backend(0, "fp32")
    timed_setup(backend, model, OPTIM)
    train_steps(backend, x, y, steps=3)
    got, want = params_of(backend.module), params_of(local.module)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_deepspeed_accumulation_and_clipping_match_full_batch(stage: int, clean_launch_env: DistributedEnv) -> None:
    x, y = make_data()
    model = make_model()
    expected = reference_train(model, x, y, steps=3, clip=0.3)
    backend = deepspeed_backend(stage, "fp32", micro_batch_size=8)
    timed_setup(backend, model, {**OPTIM, "clip_grad": 0.3, "accum_steps": 2})
    norms: list[float] = []
    train_steps(backend, x, y, steps=3, accum=2, norms=norms)
    assert norms[0] == pytest.approx(reference_grad_norm(make_model(), x, y), rel=1e-5)
    got = params_of(backend.module)
    for name, value in params_of(expected).items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-5, msg=name)
    consolidated = backend.consolidated_state_dict()
    for name, value in got.items():
        assert torch.equal(consolidated[name], value)


@pytest.mark.parametrize(("stage", "precision"), [(0, "bf16"), (1, "bf16"), (2, "fp32"), (2, "bf16"), (3, "fp32"),
                                                 (3, "bf16")])
def test_deepspeed_zero_grad_abandons_accumulation_window(stage: int, precision: str,
                                                          clean_launch_env: DistributedEnv) -> None:
    x, y = make_data()
    model = make_model()
    backend = deepspeed_backend(stage, precision, micro_batch_size=8)
    timed_setup(backend, copy.deepcopy(model), {**OPTIM, "accum_steps": 2})
    _abandon_window_then_train(backend, x, y)
    clean = deepspeed_backend(stage, precision, micro_batch_size=8)
    timed_setup(clean, copy.deepcopy(model), {**OPTIM, "accum_steps": 2})
    train_steps(clean, x, y, steps=3, accum=2)
    got, want = backend.consolidated_state_dict(), clean.consolidated_state_dict()
    for name, value in want.items():
        assert torch.equal(got[name], value), name


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_deepspeed_clipping_reports_pre_clip_norm(stage: int, clean_launch_env: DistributedEnv) -> None:
    result, w0, w1 = _clip_run(deepspeed_backend(stage, "fp32", micro_batch_size=1))
    assert result["skipped"] is False
    assert result["grad_norm"] == pytest.approx(13.0, rel=1e-5)
    expected = _first_adam_step_expectation(w0, CLIP_INPUT, clip=1.3, lr=0.1, eps=1.0)
    torch.testing.assert_close(w1, expected, rtol=1e-5, atol=1e-6)


def test_deepspeed_save_load_resume(tmp_path: Path, clean_launch_env: DistributedEnv) -> None:
    x, y = make_data()
    first = deepspeed_backend(2, "bf16")
    model = make_model()
    timed_setup(first, model, OPTIM)
    train_steps(first, x, y, steps=2)
    first.save(tmp_path / "ds", {"epoch": 2, "rng": torch.arange(3)})
    assert first.has_checkpoint(tmp_path / "ds")
    assert (tmp_path / "ds" / "latest").is_file() and (tmp_path / "ds" / "state").is_dir()
    train_steps(first, x, y, steps=3)
    uninterrupted = first.consolidated_state_dict()

    resumed = deepspeed_backend(2, "bf16")
    other_init = make_model(seed=99)
    timed_setup(resumed, other_init, OPTIM)
    client = resumed.load(tmp_path / "ds")
    assert client["epoch"] == 2 and torch.equal(client["rng"], torch.arange(3))
    train_steps(resumed, x, y, steps=3)
    got = resumed.consolidated_state_dict()
    for name, value in uninterrupted.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-6, msg=name)
    # The bf16 weights DeepSpeed computes with are the fp32 masters rounded.
    for name, param in resumed.module.named_parameters():
        assert param.dtype == torch.bfloat16
        assert torch.equal(param.detach(), got[name].to(torch.bfloat16)), name
    with pytest.raises(NotImplementedError, match="save"):
        resumed.state_dict()


# -------------------------------------------------------------------------------------- two processes


def _launch_env(rank: int, world_size: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank), DS_ACCELERATOR="cpu")
    torch.set_num_threads(1)


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """Rank ``rank`` trains on its half of the batch: one plain step, two accumulated steps, one NaN step."""
    _launch_env(rank, world_size, port)
    env = init_distributed(device="cpu")
    backend = build_backend("auto", env, find_unused_parameters=True)
    model = make_model()
    backend.setup(model, make_groups(model), OPTIM)
    x, y = make_data()
    xs, ys = x.chunk(world_size)[rank], y.chunk(world_size)[rank]
    norms: list[float] = []
    train_steps(backend, xs, ys, steps=1, norms=norms)
    train_steps(backend, xs, ys, steps=2, accum=2, norms=norms)
    trained = params_of(backend.module)
    with backend.autocast():
        loss = nn.functional.mse_loss(backend.model(xs), ys) * (float("nan") if rank == 1 else 1.0)
    backend.backward(loss)
    nan_result = backend.step()
    unchanged = all(torch.equal(trained[n], p) for n, p in params_of(backend.module).items())
    torch.save({"name": backend.name, "params": trained, "nan_result": nan_result, "unchanged": unchanged,
                "norms": norms},
               Path(out_dir) / f"ddp_rank{rank}.pt")
    cleanup()


def _deepspeed_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    """ZeRO-2 bf16 on two CPU processes: three steps on each rank's half of the batch."""
    _launch_env(rank, world_size, port)
    env = init_distributed(device="cpu")
    backend = build_backend("deepspeed", env, zero_stage=2, precision="bf16", micro_batch_size=8)
    model = make_model()
    start = time.perf_counter()
    backend.setup(model, make_groups(model), OPTIM)
    setup_seconds = time.perf_counter() - start
    x, y = make_data()
    xs, ys = x.chunk(world_size)[rank], y.chunk(world_size)[rank]
    losses = train_steps(backend, xs, ys, steps=4)
    consolidated = backend.consolidated_state_dict()
    module = {n: p.detach().clone() for n, p in backend.module.named_parameters()}
    torch.save({"losses": losses, "consolidated": consolidated, "module": module, "setup_seconds": setup_seconds,
                "init_seconds": backend.init_seconds}, Path(out_dir) / f"ds_rank{rank}.pt")
    cleanup()


def test_ddp_two_processes_match_single_process_on_whole_batch(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"ddp_rank{r}.pt") for r in range(2)]
    x, y = make_data()
    expected = params_of(reference_train(make_model(), x, y, steps=3))
    after_one = reference_train(make_model(), x, y, steps=1)
    expected_norms = [reference_grad_norm(make_model(), x, y), reference_grad_norm(after_one, x, y)]
    for result in ranks:
        assert result["name"] == "ddp"
        assert result["norms"][:2] == pytest.approx(expected_norms, rel=1e-5)
        for name, value in expected.items():
            torch.testing.assert_close(result["params"][name], value, rtol=0, atol=1e-6, msg=name)
        assert result["nan_result"]["skipped"] is True
        assert result["unchanged"] is True
    assert all(torch.equal(ranks[0]["params"][n], ranks[1]["params"][n]) for n in expected)


def test_deepspeed_zero2_bf16_two_processes(tmp_path: Path) -> None:
    start = time.perf_counter()
    mp.spawn(_deepspeed_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"ds_rank{r}.pt") for r in range(2)]
    logger.warning("2-process DeepSpeed ZeRO-2 bf16: total %.1f s, setup %s s, initialize %s s",
                   time.perf_counter() - start, [round(r["setup_seconds"], 2) for r in ranks],
                   [round(r["init_seconds"], 2) for r in ranks])
    for name, value in ranks[0]["consolidated"].items():
        assert torch.equal(value, ranks[1]["consolidated"][name]), name
        assert value.dtype == torch.float32
    for name, value in ranks[0]["module"].items():
        assert value.dtype == torch.bfloat16
        assert torch.equal(value, ranks[1]["module"][name]), name
        assert torch.equal(value, ranks[0]["consolidated"][name].to(torch.bfloat16)), name
    initial = params_of(make_model())
    assert not torch.equal(ranks[0]["consolidated"]["body.0.weight"], initial["body.0.weight"])
    total = [ranks[0]["losses"][i] + ranks[1]["losses"][i] for i in range(4)]
    assert all(math.isfinite(v) for v in total)
    assert total[-1] < total[0]


def test_cleanup_gives_back_the_linear_that_zero3_replaced(clean_launch_env: DistributedEnv) -> None:
    """DeepSpeed ZeRO-3 swaps torch.nn.functional.linear for its memory-efficient version for the whole process;
    cleanup() must restore the real one (fvcore counts, and every later model, depend on it)."""
    real = torch._C._nn.linear  # what torch.nn.functional.linear is in a fresh process
    model = make_model()
    timed_setup(deepspeed_backend(3, "fp32"), model, OPTIM)
    assert torch.nn.functional.linear is not real  # ZeRO-3 did replace it (otherwise this test checks nothing)
    cleanup()
    assert torch.nn.functional.linear is real
