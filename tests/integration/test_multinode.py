"""Beyond one process, on one machine (CPU, gloo): two torchrun "nodes" on 127.0.0.1 with a c10d rendezvous train to the
weights of one process with the same total batch, and an elastic torchrun (--max-restarts) whose worker is SIGKILLed
mid-epoch restarts, resumes from the last step checkpoint and ends with the weights of an uninterrupted run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from maedfer.apps.shards import main as make_shards
from maedfer.checkpoint import read_checkpoint
from maedfer.engine.distributed import free_port
from maedfer.synthetic import make_synthetic_world

from test_train import ROOT, _pretrain_args

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
SCRIPT = str(ROOT / "pretrain" / "pretrain.py")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("multinode_world") / "synthetic"
    make_synthetic_world(root, num_identities=6, clips_per_class=2, num_frames=16, size=32, preview=False)
    return root


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(out / "checkpoint-last.pth")["model"]


def _torchrun(*options: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *options]


def _start(command: list[str], stderr_file: Path) -> subprocess.Popen:
    """A launcher in its own process group, its stderr in a file (a pipe nobody reads could fill up and block it)."""
    with open(stderr_file, "wb") as err:
        return subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)


def _tail(path: Path, size: int = 3000) -> str:
    return path.read_text(errors="replace")[-size:]


@contextlib.contextmanager
def _reaped(processes: list[subprocess.Popen]) -> Iterator[None]:
    """Kills each launcher's whole process group (torchrun and its workers) when the block fails or times out."""
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_two_nodes_match_one_process_with_the_same_total_batch(world: Path, tmp_path: Path) -> None:
    """2 nodes x 1 process x batch 2 == 1 process x batch 4: the per-file sampler gives step k of the two ranks the
    clips of step k of the single process, every clip's draws depend on (seed, epoch, index) only, and DDP averages the
    two equal-sized halves of the batch mean. Only the order of the floating-point sums differs (the gradient
    all-reduce), so the weights agree to float32 rounding amplified by 3 AdamW steps (atol 1e-6), not bitwise;
    drop-path is off because it draws from each process's own RNG."""
    common = ["train.epochs=1", "model.kwargs.drop_path_rate=0.0", "train.tensorboard=false"]
    single = subprocess.run([sys.executable, SCRIPT, *_pretrain_args(world, tmp_path / "one", *common)], cwd=ROOT,
                            env=ENV, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]

    port = free_port()
    rendezvous = ["--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                  "--rdzv-id=maedfer-two-nodes"]
    args = _pretrain_args(world, tmp_path / "two", *common, "data.batch_size=2")
    nodes = [_start(_torchrun(*rendezvous, "--local-addr=127.0.0.1", SCRIPT, *args), tmp_path / f"node{i}.err")
             for i in range(2)]
    with _reaped(nodes):
        for i, node in enumerate(nodes):
            assert node.wait(timeout=600) == 0, _tail(tmp_path / f"node{i}.err")
    log = (tmp_path / "two" / "log.txt").read_text()
    assert "2 process(es)" in log and "total batch 4" in log
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6, msg=key)


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children += [int(c) for c in text]
    return children


@pytest.mark.parametrize("data_format", ["shards", "files"])
def test_elastic_restart_after_a_killed_worker_loses_nothing(world: Path, tmp_path: Path, data_format: str) -> None:
    """torchrun --max-restarts=1 with 2 processes (gloo); one worker is SIGKILLed right after the step-4 checkpoint
    (epoch 0, mid-epoch); torchrun restarts the group, which resumes from the newest checkpoint and must end with the
    weights of an uninterrupted run, bit for bit."""
    args = ["train.epochs=3", "train.save_every_steps=2", "train.keep_checkpoints=0", "train.tensorboard=false",
            "model.kwargs.drop_path_rate=0.1", "data.batch_size=1", "data.num_workers=2"]
    if data_format == "shards":
        shards = tmp_path / "shards"
        assert make_shards(["--annotations", str(world / "pretrain" / "train.csv"), "--out", str(shards),
                            "--clips-per-shard", "2", "--workers", "1"]) == 0
        args += ["data.format=shards", f"data.shards={shards / 'train-index.json'}"]
    else:
        args += ["train.max_steps_per_epoch=6"]

    def launch(out: Path) -> subprocess.Popen:
        command = _torchrun("--nproc-per-node=2", "--max-restarts=1", "--rdzv-backend=c10d",
                            f"--rdzv-endpoint=127.0.0.1:{free_port()}", "--rdzv-id=maedfer-elastic",
                            SCRIPT, *_pretrain_args(world, out, *args))
        return _start(command, out.parent / f"{out.name}.err")

    reference = launch(tmp_path / "reference")
    with _reaped([reference]):
        assert reference.wait(timeout=900) == 0, _tail(tmp_path / "reference.err")

    out = tmp_path / "interrupted"
    run = launch(out)
    with _reaped([run]):
        deadline = time.time() + 600
        while time.time() < deadline and not (out / "checkpoint-e0000-s0000004" / "client_state.pth").is_file():
            time.sleep(0.01)
        assert run.poll() is None, "the run finished before a worker could be killed"
        workers = _children(run.pid)
        assert len(workers) == 2, workers
        os.kill(workers[1], signal.SIGKILL)
        code = run.wait(timeout=900)
    stderr = _tail(tmp_path / "interrupted.err", 1 << 20)
    assert code == 0, stderr[-3000:]
    assert "exitcode: -9" in stderr, stderr[-3000:]  # torchrun saw the killed worker...
    log = (out / "log.txt").read_text()
    assert log.count("process(es) on") == 2  # ...and started the group again,
    assert "resumed from" in log and "checkpoint-e0000-s00000" in log  # which resumed mid-epoch 0

    ref, res = _weights(tmp_path / "reference"), _weights(out)
    assert ref.keys() == res.keys()
    for key in ref:
        assert torch.equal(ref[key], res[key]), key
