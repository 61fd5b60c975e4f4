#!/usr/bin/env python
"""Masked-autoencoder pre-training (MAE-DFER, SVFAP, HiCMAE, VideoMAE).

    python pretrain/pretrain.py                                   # tiny demo on the synthetic face world (CPU)
    torchrun --nproc_per_node=8 pretrain/pretrain.py --config pretrain/configs/mae_dfer_voxceleb2.yaml
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        pretrain/pretrain.py --config pretrain/configs/hicmae_voxceleb2.yaml train.backend=deepspeed
    deepspeed --num_gpus 8 pretrain/pretrain.py --config mae_dfer_voxceleb2 --deepspeed_config ds.json train.zero_stage=3
    srun python pretrain/pretrain.py --config mae_dfer_voxceleb2    # SLURM tasks (pretrain/slurm/*.sbatch)

Extra arguments are dotted config overrides (``train.epochs=3 data.batch_size=16``). Without ``--config`` the demo
configuration ``pretrain/configs/demo.yaml`` is used; ``--config`` also takes the name of a file there
(``--config mae_dfer_voxceleb2``). Installed, the same command is ``maedfer pretrain``.
"""

import sys

from maedfer.apps.train import pretrain_main

if __name__ == "__main__":
    pretrain_main(sys.argv[1:])
