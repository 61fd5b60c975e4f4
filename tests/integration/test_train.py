"""End-to-end training: main(argv) pre-training -> fine-tuning, kill-and-resume equality, torchrun (gloo) with 2
processes, DeepSpeed on CPU, k-fold summaries, non-finite losses."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from maedfer.checkpoint import read_checkpoint
from maedfer.synthetic import make_synthetic_world
from maedfer.engine.distributed import free_port
from maedfer.apps.train import main

ROOT = Path(__file__).resolve().parents[2]

# A tiny LGI-Former (token grid (4, 4, 4), regions (2, 2, 4)) on a small synthetic world: the demo configs, shrunk,
# with the MAE-DFER model and part-window mask named here too so that these tests keep testing them if the demo
# changes; data.synthetic={} keeps the test world as it is.
TINY_MODEL = [
    "model.kwargs.img_size=32", "model.kwargs.patch_size=8", "model.kwargs.num_frames=8", "model.kwargs.embed_dim=32",
    "model.kwargs.depth=2", "model.kwargs.num_heads=2", "model.kwargs.region_size=[2,2,4]",
]
TINY_DATA = ["data.synthetic={}", "data.num_frames=8", "data.input_size=32", "data.short_side_size=32", "data.batch_size=4",
             "data.num_workers=0", "optim.warmup_epochs=0", "train.log_every_steps=1"]


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world") / "synthetic"
    make_synthetic_world(root, num_identities=6, clips_per_class=2, num_frames=16, size=32, preview=False)
    return root


def _pretrain_args(world: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--config", str(ROOT / "pretrain" / "configs" / "demo.yaml"),
        f"data.root={world}", f"train.output_dir={out}", "model.name=mae_dfer_pretrain_base",
        "data.mask_type=part_window", "model.kwargs.decoder_embed_dim=16",
        *TINY_MODEL, *TINY_DATA, *extra,
    ]


def _finetune_args(world: Path, out: Path, checkpoint: Path | None, *extra: str) -> list[str]:
    args = [
        "--config", str(ROOT / "finetune" / "configs" / "demo.yaml"),
        f"data.root={world}", f"train.output_dir={out}", "model.name=mae_dfer_base", *TINY_MODEL, *TINY_DATA,
        *extra,
    ]
    args.append(f"model.checkpoint={checkpoint}" if checkpoint else "model.checkpoint=null")
    return args


def test_pretrain_then_finetune_writes_everything(world: Path, tmp_path: Path) -> None:
    pre = main(_pretrain_args(world, tmp_path / "pre", "train.epochs=2"))
    assert pre["steps"] == 2 * (14 // 4) and pre["nonfinite_losses"] == 0
    last = tmp_path / "pre" / "checkpoint-last.pth"
    assert last.is_file() and (tmp_path / "pre" / "config.yaml").is_file()
    assert (tmp_path / "pre" / "tensorboard").is_dir() and (tmp_path / "pre" / "log.txt").is_file()
    weights = read_checkpoint(last)["model"]
    assert any(k.startswith("decoder.") for k in weights)  # the whole pre-training model

    ft = main(_finetune_args(world, tmp_path / "ft", last, "train.epochs=1"))
    metrics = json.loads((tmp_path / "ft" / "test_metrics.json").read_text())
    assert metrics["num_videos"] == 14 and 0.0 <= metrics["uar"] <= 1.0 and ft["test"]["war"] == metrics["war"]
    assert (tmp_path / "ft" / "confusion_matrix.csv").read_text().count("\n") >= 8
    assert (tmp_path / "ft" / "confusion_matrix.png").stat().st_size > 1000
    history = json.loads((tmp_path / "ft" / "history.json").read_text())
    assert "uar" in history[0]["validation"]


def test_finetune_starts_from_the_pretrained_encoder(world: Path, tmp_path: Path) -> None:
    main(_pretrain_args(world, tmp_path / "pre", "train.epochs=1"))
    pre = read_checkpoint(tmp_path / "pre" / "checkpoint-last.pth")["model"]
    from maedfer.config import load_config
    from maedfer.apps.train import build_model

    cfg = load_config(ROOT / "finetune" / "configs" / "demo.yaml",
                      ["model.name=mae_dfer_base", *TINY_MODEL, f"model.checkpoint={tmp_path / 'pre' / 'checkpoint-last.pth'}"])
    model = build_model(cfg)
    torch.testing.assert_close(model.blocks[0].first_attn.q.weight, pre["encoder.blocks.0.first_attn.q.weight"])
    torch.testing.assert_close(model.lg_region_tokens, pre["encoder.lg_region_tokens"])


def _final_weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path / "checkpoint-last.pth")["model"]


def test_kill_and_resume_gives_the_same_result(world: Path, tmp_path: Path) -> None:
    """SIGKILL a run after its first step checkpoint, restart it, and compare with an uninterrupted run bitwise."""
    # 10 epochs x 3 steps; the kill comes right after the step-4 checkpoint, with ~26 steps still to go.
    args = ["train.epochs=10", "train.save_every_steps=2", "train.keep_checkpoints=0", "model.kwargs.drop_path_rate=0.1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    script = str(ROOT / "pretrain" / "pretrain.py")

    def launch(out: Path) -> subprocess.Popen:
        cmd = [sys.executable, script, *_pretrain_args(world, out, *args)]
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    reference = launch(tmp_path / "reference")
    assert reference.wait(timeout=300) == 0, reference.stderr.read().decode()[-3000:]

    interrupted = tmp_path / "interrupted"
    proc = launch(interrupted)
    deadline = time.time() + 240
    while time.time() < deadline and not list(interrupted.glob("checkpoint-e*-s0000004")):
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (interrupted / "checkpoint-last.pth").exists()
    resumed = launch(interrupted)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-3000:]
    assert "resumed from" in (interrupted / "log.txt").read_text()

    ref, res = _final_weights(tmp_path / "reference"), _final_weights(interrupted)
    assert ref.keys() == res.keys()
    for key in ref:
        assert torch.equal(ref[key], res[key]), key


def test_torchrun_two_processes_gloo(world: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"]
    pre_args = _pretrain_args(world, tmp_path / "pre", "train.epochs=1")
    proc = subprocess.run([*run, str(ROOT / "pretrain" / "pretrain.py"), *pre_args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in (tmp_path / "pre" / "log.txt").read_text()
    ft_args = _finetune_args(world, tmp_path / "ft", tmp_path / "pre" / "checkpoint-last.pth", "train.epochs=1",
                             "train.find_unused_parameters=false")  # no unused parameters left
    run[-1] = f"--master_port={free_port()}"
    proc = subprocess.run([*run, str(ROOT / "finetune" / "finetune.py"), *ft_args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "ft" / "test_metrics.json").read_text())
    assert metrics["num_videos"] == 14  # gathered across both ranks, padding de-duplicated


def test_deepspeed_backend_on_cpu(world: Path, tmp_path: Path) -> None:
    # A fresh process: DeepSpeed caches process groups globally, as a real launch does.
    args = _pretrain_args(world, tmp_path / "ds", "train.epochs=1", "train.backend=deepspeed", "train.zero_stage=2",
                          "train.precision=bf16")
    proc = subprocess.run([sys.executable, str(ROOT / "pretrain" / "pretrain.py"), *args], cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deepspeed" in (tmp_path / "ds" / "log.txt").read_text().lower()
    weights = _final_weights(tmp_path / "ds")
    assert all(v.dtype == torch.float32 for v in weights.values())  # consolidated fp32 weights
    state = json.loads((tmp_path / "ds" / "history.json").read_text())
    assert len(state) == 1 and state[0]["train"]["loss"] > 0


def test_kfold_runner_writes_a_summary(world: Path, tmp_path: Path) -> None:
    for fold in ("1", "2"):
        target = tmp_path / "splits" / fold
        target.mkdir(parents=True)
        for split in ("train", "val", "test"):
            shutil.copy(world / "classification" / f"{split}.csv", target / f"{split}.csv")
    results = main(_finetune_args(
        world, tmp_path / "runs" / "{fold}", None, "train.epochs=1", "--folds", "1-2",
        f"data.train_file={tmp_path}/splits/{{fold}}/train.csv", f"data.val_file={tmp_path}/splits/{{fold}}/val.csv",
        f"data.test_file={tmp_path}/splits/{{fold}}/test.csv", "data.dataset=custom",
    ))
    assert set(results) == {"1", "2"}
    table = (tmp_path / "runs" / "folds_summary.md").read_text()
    assert "±" in table and "uar" in table.lower()
    summary = json.loads((tmp_path / "runs" / "folds_summary.json").read_text())
    assert len(summary["per_fold"]) == 2


def test_nonfinite_losses_are_skipped_then_stop_the_run(world: Path, tmp_path: Path, monkeypatch) -> None:
    from maedfer.engine.trainer import NonFiniteLossError
    from maedfer.tasks.pretrain import MaskedVideoPretrainTask

    original = MaskedVideoPretrainTask.__call__
    calls = {"n": 0}

    def sometimes_nan(self, batch):
        out = original(self, batch)
        calls["n"] += 1
        if calls["n"] == 2:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(MaskedVideoPretrainTask, "__call__", sometimes_nan)
    result = main(_pretrain_args(world, tmp_path / "one_nan", "train.epochs=1"))
    assert result["nonfinite_losses"] == 1 and result["steps"] == 14 // 4 - 1

    monkeypatch.setattr(MaskedVideoPretrainTask, "__call__", lambda self, batch: {"loss": torch.tensor(float("inf"))})
    with pytest.raises(NonFiniteLossError, match="consecutive non-finite"):
        main(_pretrain_args(world, tmp_path / "all_nan", "train.epochs=1", "train.max_nonfinite_steps=1"))
