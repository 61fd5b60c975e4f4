"""Launchers on the CPU: the real ``deepspeed`` launcher (``--local_rank``), a user's DeepSpeed JSON, ZeRO-3 with full
final weights and exact resume, and SLURM-style ``srun`` tasks (no RANK/WORLD_SIZE; gloo, 2 processes).

Expected values come from plain PyTorch (AdamW on the whole batch, freshly built models' state dicts), from an
uninterrupted run compared with a resumed one, or are written out by hand; never from the code under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from maedfer.apps.launchers import launcher_overrides, resolve_backend_name
from maedfer.apps.train import build_parser
from maedfer.checkpoint import read_checkpoint
from maedfer.config import ConfigError, load_config
from maedfer.engine.backends import DeepSpeedBackend, build_backend, load_deepspeed_json
from maedfer.engine.distributed import DistributedEnv, cleanup, free_port, init_distributed
from test_backends import (  # noqa: F401  (clean_launch_env, _destroy_group_at_end: fixtures)
    LAUNCH_VARS,
    OPTIM,
    _destroy_group_at_end,
    clean_launch_env,
    make_data,
    make_groups,
    make_model,
    params_of,
    reference_train,
    train_steps,
)
from test_train import ROOT, _pretrain_args, world  # noqa: F401  (world: the session's tiny synthetic world)



def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------- DeepSpeed JSON


def _json_backend(file: Path, stage: int = 2, precision: str = "bf16") -> DeepSpeedBackend:
    backend = build_backend("deepspeed", DistributedEnv(), zero_stage=stage, precision=precision, micro_batch_size=16,
                            config_overrides=load_deepspeed_json(file), config_source=str(file))
    assert isinstance(backend, DeepSpeedBackend)
    return backend


def test_user_deepspeed_json_reaches_the_engine(tmp_path: Path, clean_launch_env: DistributedEnv) -> None:
    file = _write(tmp_path / "ds.json", json.dumps({
        "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": 2, "bf16": {"enabled": "auto"},
        "zero_optimization": {"stage": 2, "reduce_bucket_size": 123456, "allgather_bucket_size": 234568},
        "steps_per_print": 7,
    }, indent=2))
    backend = _json_backend(file)
    model = make_model()
    backend.setup(model, make_groups(model), {**OPTIM, "accum_steps": 2})
    engine = backend.engine
    assert engine.zero_reduce_bucket_size() == 123456 and engine.zero_allgather_bucket_size() == 234568
    assert engine.steps_per_print() == 7
    assert engine.train_micro_batch_size_per_gpu() == 16 and engine.gradient_accumulation_steps() == 2
    assert engine.bfloat16_enabled() and engine.zero_optimization_stage() == 2
    x, y = make_data()
    losses = train_steps(backend, x, y, steps=2, accum=2)
    assert all(torch.isfinite(torch.tensor(losses)))


@pytest.mark.parametrize(("content", "message"), [
    ({"gradient_accumulation_steps": 4}, r"'gradient_accumulation_steps' is 4 .*set optim.accum_steps"),
    ({"train_micro_batch_size_per_gpu": 8}, r"'train_micro_batch_size_per_gpu' is 8 .*set data.batch_size"),
    ({"train_batch_size": 64}, r"'train_batch_size' is 64 .*gives 16"),
    ({"zero_optimization": {"stage": 3}}, r"'zero_optimization.stage' is 3 .*set train.zero_stage"),
    ({"bf16": {"enabled": False}}, r"'bf16.enabled' is False .*set train.precision"),
    ({"gradient_clipping": 1.0}, r"'gradient_clipping' is 1.0 .*set optim.clip_grad"),
    ({"optimizer": {"type": "Adam", "params": {"lr": 1e-3}}}, r"remove the 'optimizer' section"),
    ({"scheduler": {"type": "WarmupLR"}}, r"remove the 'scheduler' section"),
])
def test_contradicting_deepspeed_json_is_an_error_naming_file_and_key(
    tmp_path: Path, clean_launch_env: DistributedEnv, content: dict[str, Any], message: str,
) -> None:
    file = _write(tmp_path / "mine.json", json.dumps(content))
    backend = _json_backend(file)
    model = make_model()
    with pytest.raises(ValueError, match=message) as info:
        backend.setup(model, make_groups(model), OPTIM)
    assert str(file) in str(info.value)


def test_bad_deepspeed_json_names_file_and_line(tmp_path: Path) -> None:
    broken = _write(tmp_path / "broken.json", '{\n  "steps_per_print": 10,\n  "zero_optimization": {"stage": 2,,}\n}\n')
    with pytest.raises(ValueError, match=rf"{broken}:3:\d+: invalid JSON"):
        load_deepspeed_json(broken)
    listed = _write(tmp_path / "list.json", "[1, 2]")
    with pytest.raises(ValueError, match=rf"{listed}: a DeepSpeed config must be a JSON object"):
        load_deepspeed_json(listed)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_deepspeed_json(tmp_path / "missing.json")


# ------------------------------------------------------------------------------------- launcher arguments


def test_deepspeed_launcher_arguments_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    parser = build_parser()
    # What `deepspeed script.py ARGS` runs: script.py --local_rank=N ARGS
    args = parser.parse_intermixed_args(["--local_rank=1", "--config", "x.yaml", "train.epochs=2", "--deepspeed",
                                         "--deepspeed_config", "ds.json"])
    assert args.config == "x.yaml" and args.overrides == ["train.epochs=2"]
    assert launcher_overrides(args) == ["train.backend=deepspeed", "train.deepspeed_config=ds.json"]
    assert os.environ["LOCAL_RANK"] == "1"  # the environment lacked it

    monkeypatch.setenv("LOCAL_RANK", "0")
    args = parser.parse_intermixed_args(["--local-rank", "3", "--deepspeed-config=other.json"])
    assert launcher_overrides(args) == ["train.deepspeed_config=other.json"]
    assert os.environ["LOCAL_RANK"] == "0"  # the launcher's environment wins


def test_backend_resolution_and_its_errors() -> None:
    def backend(*overrides: str, world_size: int = 1) -> str:
        return resolve_backend_name(load_config(None, list(overrides)), world_size)

    assert backend() == "local" and backend(world_size=2) == "ddp"
    assert backend("train.deepspeed_config=ds.json") == "deepspeed"
    assert backend("train.backend=deepspeed", "train.zero_stage=3") == "deepspeed"
    with pytest.raises(ConfigError, match="train.deepspeed_config=ds.json needs train.backend 'deepspeed'"):
        backend("train.backend=ddp", "train.deepspeed_config=ds.json")
    with pytest.raises(ConfigError, match="train.zero_stage=2 needs train.backend=deepspeed"):
        backend("train.zero_stage=2", world_size=2)
    with pytest.raises(ConfigError, match="ema_decay does not combine with train.zero_stage=3"):
        backend("train.backend=deepspeed", "train.zero_stage=3", "train.ema_decay=0.999")


# ------------------------------------------------------------------------------- ZeRO-3, two processes


def _zero3_worker(rank: int, world_size: int, port: int, out_dir: str, precision: str) -> None:
    """Train 2 steps, save, train 2 more (uninterrupted); a fresh engine loads the save and trains the same 2 steps
    (resumed). Each rank trains on its half of the batch; ``unused`` is frozen."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank), DS_ACCELERATOR="cpu")
    torch.set_num_threads(1)
    env = init_distributed(device="cpu")
    x, y = make_data()
    xs, ys = x.chunk(world_size)[rank], y.chunk(world_size)[rank]

    def zero3(precision: str, seed: int) -> DeepSpeedBackend:
        backend = build_backend("deepspeed", env, zero_stage=3, precision=precision, micro_batch_size=8,
                                config_overrides={"zero_optimization": {"stage3_param_persistence_threshold": 0}})
        model = make_model(seed)
        model.unused.weight.requires_grad_(False)
        groups = make_groups(model)
        groups[1]["params"] = [p for p in groups[1]["params"] if p.requires_grad]
        backend.setup(model, groups, OPTIM)
        assert isinstance(backend, DeepSpeedBackend)
        return backend

    first = zero3(precision, seed=0)
    local_numel = {n: p.numel() for n, p in first.module.named_parameters()}
    train_steps(first, xs, ys, steps=2)
    first.save(Path(out_dir) / "ds", {"epoch": 1})
    train_steps(first, xs, ys, steps=2)
    uninterrupted = first.consolidated_state_dict()
    resumed = zero3(precision, seed=99)
    assert resumed.load(Path(out_dir) / "ds") == {"epoch": 1}
    train_steps(resumed, xs, ys, steps=2)
    resumed_weights = resumed.consolidated_state_dict()
    with resumed.autocast():  # a non-finite loss on one rank: the step is skipped everywhere
        loss = torch.nn.functional.mse_loss(resumed.model(xs).float(), ys) * (float("nan") if rank == 1 else 1.0)
    resumed.backward(loss)
    nan_step = resumed.step()
    unchanged = all(torch.equal(v, resumed_weights[k]) for k, v in resumed.consolidated_state_dict().items())
    torch.save({"uninterrupted": uninterrupted, "resumed": resumed_weights, "local_numel": local_numel,
                "nan_step": nan_step, "unchanged_after_nan": unchanged}, Path(out_dir) / f"rank{rank}.pt")
    cleanup()


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=pytest.mark.slow)])
def test_zero3_two_processes_full_weights_and_exact_resume(tmp_path: Path, precision: str) -> None:
    """(bf16 ZeRO-3 also runs in the default tier through the deepspeed-launcher test below.)"""
    start = time.perf_counter()
    mp.spawn(_zero3_worker, args=(2, free_port(), str(tmp_path), precision), nprocs=2, join=True)
    print(f"ZeRO-3 {precision}, 2 processes, 2 engines each: {time.perf_counter() - start:.1f} s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    x, y = make_data()
    initial = make_model().state_dict()
    reference = params_of(reference_train(make_model(), x, y, steps=4))
    result = ranks[0]
    assert all(n == 0 for n in result["local_numel"].values())  # the module holds no weights: all partitioned
    weights = result["uninterrupted"]
    assert {k: v.shape for k, v in weights.items()} == {k: v.shape for k, v in initial.items()}
    assert all(v.dtype == torch.float32 for v in weights.values())
    for name in weights:
        assert torch.equal(result["resumed"][name], weights[name]), (precision, name)  # resume is exact
        assert torch.equal(ranks[1]["uninterrupted"][name], weights[name]), name  # same on every rank
    assert all(r["nan_step"]["skipped"] is True and r["unchanged_after_nan"] for r in ranks)
    # Two half batches, gradients averaged = the whole batch: plain AdamW (fp32 exactly up to float rounding;
    # bf16 computes in bfloat16 from bf16-rounded initial weights).
    tolerance = {"fp32": 1e-6, "bf16": 5e-3}[precision]
    for name, value in reference.items():
        torch.testing.assert_close(weights[name], value, rtol=0, atol=tolerance, msg=f"{precision} {name}")
    # The frozen weight is gathered from the module's own partitions (fp32: exactly the initial value).
    if precision == "fp32":
        assert torch.equal(weights["unused.weight"], initial["unused.weight"])
    assert not torch.equal(weights["body.0.weight"], initial["body.0.weight"])


# -------------------------------------------------------------------- the deepspeed launcher, end to end

DS_JSON = {
    "train_micro_batch_size_per_gpu": "auto",
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0, "reduce_bucket_size": 100000},
    "steps_per_print": 1000,
}


def _subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS and not k.startswith("SLURM_")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _deepspeed_pretrain(world: Path, out: Path, ds_json: Path, *extra: str) -> subprocess.CompletedProcess:
    """``deepspeed --num_gpus 2 pretrain/pretrain.py --deepspeed_config ds.json ...`` on the CPU (the launcher only
    counts "GPUs" to start one process each; DeepSpeed's CPU accelerator and gloo do the work)."""
    launcher = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port", str(free_port())]
    args = _pretrain_args(world, out, "data.batch_size=2", "train.precision=bf16", "train.zero_stage=3",
                          "train.tensorboard=false",
                          "train.epochs=2", "train.save_every_epochs=1", "train.keep_checkpoints=0", *extra)
    return subprocess.run([*launcher, str(ROOT / "pretrain" / "pretrain.py"), "--deepspeed_config", str(ds_json),
                           *args], cwd=ROOT, env=_subprocess_env(), capture_output=True, text=True, timeout=400)


@pytest.fixture(scope="module")
def zero3_run(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """A 2-epoch ZeRO-3 bf16 pre-training under the deepspeed launcher, checkpointed after each epoch."""
    root = tmp_path_factory.mktemp("zero3")
    ds_json = _write(root / "ds.json", json.dumps(DS_JSON))
    start = time.perf_counter()
    proc = _deepspeed_pretrain(world, root / "run", ds_json)
    print(f"deepspeed launcher, ZeRO-3 bf16, 2 processes, 2 epochs: {time.perf_counter() - start:.1f} s")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return root


def test_deepspeed_launcher_zero3_writes_full_weights(zero3_run: Path) -> None:
    run = zero3_run / "run"
    log = (run / "log.txt").read_text()
    assert "2 process(es)" in log and "ZeRO-3 bf16" in log and "ds.json merged" in log
    weights = read_checkpoint(run / "checkpoint-last.pth")["model"]
    from maedfer.apps.train import build_model

    cfg = load_config(run / "config.yaml")
    assert cfg.train.zero_stage == 3 and cfg.train.deepspeed_config == str(zero3_run / "ds.json")
    assert cfg.train.backend == "auto"  # --deepspeed_config alone picked DeepSpeed
    cfg.model.checkpoint = None
    model = build_model(cfg)  # what inference and fine-tuning build
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in weights.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
    model.load_state_dict(weights, strict=True)
    assert not torch.equal(weights["encoder.patch_embed.proj.weight"], expected["encoder.patch_embed.proj.weight"])


@pytest.mark.slow
def test_deepspeed_launcher_zero3_resume_gives_the_same_weights(world: Path, zero3_run: Path) -> None:  # noqa: F811
    """Resume a second run from the first run's epoch-1 ZeRO-3 checkpoint: the final weights are bitwise equal."""
    checkpoints = sorted((zero3_run / "run").glob("checkpoint-e0001-s*"))
    assert len(checkpoints) == 1 and (checkpoints[0] / "state").is_dir()
    proc = _deepspeed_pretrain(world, zero3_run / "resumed", zero3_run / "ds.json", f"train.resume={checkpoints[0]}")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "resumed from" in (zero3_run / "resumed" / "log.txt").read_text()
    reference = read_checkpoint(zero3_run / "run" / "checkpoint-last.pth")["model"]
    resumed = read_checkpoint(zero3_run / "resumed" / "checkpoint-last.pth")["model"]
    assert reference.keys() == resumed.keys()
    for key in reference:
        assert torch.equal(reference[key], resumed[key]), key


# ------------------------------------------------------------------------------------------ SLURM (srun)


def test_srun_style_tasks_train_without_torchrun(world: Path, tmp_path: Path) -> None:  # noqa: F811
    """Two tasks as ``srun --ntasks=2 python pretrain/pretrain.py`` starts them: only SLURM_* variables (and
    MASTER_PORT); the rendezvous address comes from the first host of the compressed node list."""
    out = tmp_path / "slurm"
    args = _pretrain_args(world, out, "train.epochs=1", "train.max_steps_per_epoch=1", "train.tensorboard=false")
    port = free_port()
    procs = []
    for rank in range(2):
        env = _subprocess_env()
        env.update(SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURM_NTASKS="2", SLURM_JOB_ID="777",
                   SLURM_JOB_NODELIST="127.0.0.[1-2]", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "pretrain" / "pretrain.py"), *args], cwd=ROOT,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    log = (out / "log.txt").read_text()
    assert "2 process(es)" in log  # without the SLURM variables each task would be a run of its own
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and history[0]["train"]["loss"] > 0
    assert (out / "checkpoint-last.pth").is_file()
