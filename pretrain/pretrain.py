#!/usr/bin/env python
"""Masked-autoencoder pre-training (MAE-DFER, SVFAP, HiCMAE, VideoMAE).

    python pretrain/pretrain.py                                   # tiny demo on the synthetic face world (CPU)
    torchrun --nproc_per_node=8 pretrain/pretrain.py --config pretrain/configs/mae_dfer_voxceleb2.yaml
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        pretrain/pretrain.py --config pretrain/configs/hicmae_voxceleb2.yaml train.backend=deepspeed

Extra arguments are dotted config overrides (``train.epochs=3 data.batch_size=16``). Without ``--config`` the demo
configuration ``pretrain/configs/demo.yaml`` is used.
"""

import sys
from pathlib import Path

from maedfer.apps.train import main

DEMO = Path(__file__).resolve().parent / "configs" / "demo.yaml"

if __name__ == "__main__":
    main(sys.argv[1:], default_config=DEMO)
