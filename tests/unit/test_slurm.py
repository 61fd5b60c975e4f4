"""SLURM environment detection (maedfer.engine.slurm): node-list expansion and rank / world / rendezvous variables.

Expected values are written out by hand from SLURM's documented host-list syntax and variable meanings.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from maedfer.config import load_config
from maedfer.engine.slurm import MASTER_PORT_BASE, adopt_slurm_env, expand_nodelist, slurm_launch_env


@pytest.mark.parametrize(("nodelist", "hosts"), [
    ("node07", ["node07"]),
    ("node[01-04,07]", ["node01", "node02", "node03", "node04", "node07"]),
    ("gpu[8-11]", ["gpu8", "gpu9", "gpu10", "gpu11"]),
    ("a[098-101]", ["a098", "a099", "a100", "a101"]),
    ("n[1-2],login,m[3]", ["n1", "n2", "login", "m3"]),
    ("rack[1-2]-node[1,3]", ["rack1-node1", "rack1-node3", "rack2-node1", "rack2-node3"]),
    ("dgx-[1-2]-ib", ["dgx-1-ib", "dgx-2-ib"]),
    ("127.0.0.[1-2]", ["127.0.0.1", "127.0.0.2"]),
])
def test_expand_nodelist(nodelist: str, hosts: list[str]) -> None:
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize(("nodelist", "message"), [
    ("node[01-04", "unbalanced '\\['"),
    ("node01-04]", "unbalanced '\\]'"),
    ("node[4-1]", "backwards"),
    ("node[a-b]", "cannot read the range 'a-b'"),
    ("", "names no host"),
    ("x[[1]]", "nested"),
])
def test_expand_nodelist_rejects_malformed_lists(nodelist: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expand_nodelist(nodelist, "SLURM_JOB_NODELIST")


SRUN_TASK_5 = {  # task 5 of 16 (2 nodes x 8), the second node's task 5
    "SLURM_PROCID": "13", "SLURM_LOCALID": "5", "SLURM_NTASKS": "16", "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NODELIST": "gpu-node[07-08]",
}


def test_srun_task_gives_rank_world_local_rank_and_rendezvous() -> None:
    assert slurm_launch_env(SRUN_TASK_5) == {
        "RANK": "13", "WORLD_SIZE": "16", "LOCAL_RANK": "5", "MASTER_ADDR": "gpu-node07",
        "MASTER_PORT": str(MASTER_PORT_BASE + 4242),
    }


def test_step_task_count_and_step_nodelist_win_over_the_job_s() -> None:
    env = {**SRUN_TASK_5, "SLURM_NTASKS": "32", "SLURM_STEP_NUM_TASKS": "16", "SLURM_STEP_NODELIST": "gpu-node[08]"}
    derived = slurm_launch_env(env)
    assert derived is not None and derived["WORLD_SIZE"] == "16" and derived["MASTER_ADDR"] == "gpu-node08"


def test_explicit_master_address_and_port_are_kept() -> None:
    env = {**SRUN_TASK_5, "MASTER_ADDR": "10.0.0.3", "MASTER_PORT": "29555"}
    derived = slurm_launch_env(env)
    assert derived is not None and (derived["MASTER_ADDR"], derived["MASTER_PORT"]) == ("10.0.0.3", "29555")


def test_the_port_from_a_large_job_id_stays_below_the_ephemeral_range() -> None:
    derived = slurm_launch_env({**SRUN_TASK_5, "SLURM_JOB_ID": "987654321"})
    assert derived is not None
    assert MASTER_PORT_BASE <= int(derived["MASTER_PORT"]) < 32768


@pytest.mark.parametrize("launcher_var", ["RANK", "WORLD_SIZE"])
def test_torchrun_or_deepspeed_variables_win(launcher_var: str) -> None:
    assert slurm_launch_env({**SRUN_TASK_5, launcher_var: "0"}) is None


def test_not_a_slurm_task() -> None:
    assert slurm_launch_env({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2"}) is None  # an allocation, no srun task
    assert slurm_launch_env({}) is None


def test_single_task_needs_no_rendezvous() -> None:
    assert slurm_launch_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == {
        "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}


def test_bad_slurm_variables_are_errors() -> None:
    with pytest.raises(ValueError, match="SLURM_PROCID=16 must be smaller than SLURM_NTASKS=16"):
        slurm_launch_env({**SRUN_TASK_5, "SLURM_PROCID": "16"})
    with pytest.raises(ValueError, match="SLURM_LOCALID='x'"):
        slurm_launch_env({**SRUN_TASK_5, "SLURM_LOCALID": "x"})
    no_nodes = {k: v for k, v in SRUN_TASK_5.items() if k != "SLURM_JOB_NODELIST"}
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        slurm_launch_env(no_nodes)
    no_job = {k: v for k, v in SRUN_TASK_5.items() if k != "SLURM_JOB_ID"}
    with pytest.raises(ValueError, match="MASTER_PORT"):
        slurm_launch_env(no_job)


def test_adopt_writes_the_variables_into_the_environment() -> None:
    environ = dict(SRUN_TASK_5)
    adopt_slurm_env(environ)
    assert (environ["RANK"], environ["WORLD_SIZE"], environ["LOCAL_RANK"], environ["MASTER_ADDR"]) == (
        "13", "16", "5", "gpu-node07")
    before = dict(environ)
    assert adopt_slurm_env(environ) is None  # now RANK is set: nothing changes
    assert environ == before


SBATCH = Path(__file__).resolve().parents[2] / "pretrain" / "slurm" / "mae_dfer_voxceleb2.sbatch"


def test_the_documented_sbatch_script_is_valid_and_its_overrides_load() -> None:
    """The README's 2 x 8 GPU recipe: valid bash, 2 nodes x 8 tasks, and its config + overrides load (total 160)."""
    assert subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True).returncode == 0
    text = SBATCH.read_text()
    assert "#SBATCH --nodes=2" in text and "#SBATCH --ntasks-per-node=8" in text and "#SBATCH --gpus-per-node=8" in text
    script = f'eval "$(sed -n "/^CONFIG=/p; /^OVERRIDES=(/,/^)/p" {SBATCH})"; echo "$CONFIG"; printf "%s\\n" "${{OVERRIDES[@]}}"'
    lines = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.split()
    config, overrides = lines[0], lines[1:]
    cfg = load_config(SBATCH.parents[2] / config, overrides)
    assert cfg.data.batch_size * 16 == 160  # the official total batch of the MAE-DFER VoxCeleb2 recipe
