#!/usr/bin/env python
"""Fine-tuning and evaluation (classification or regression), one fold or several.

    python finetune/finetune.py                                   # tiny demo: fine-tune the demo pre-training
    torchrun --nproc_per_node=4 finetune/finetune.py --config finetune/configs/dfew_mae_dfer.yaml --folds 1-5
    python finetune/finetune.py --config finetune/configs/crema_d_hicmae.yaml --folds 1-5 train.backend=deepspeed

Extra arguments are dotted config overrides. ``--folds 1-5`` runs the folds one after another (``{fold}`` in the
config's paths) and writes ``folds_summary.md`` / ``.json`` (mean +- std) next to the fold outputs. Without
``--config`` the demo configuration ``finetune/configs/demo.yaml`` is used.
"""

import sys
from pathlib import Path

from maedfer.apps.train import main

DEMO = Path(__file__).resolve().parent / "configs" / "demo.yaml"

if __name__ == "__main__":
    main(sys.argv[1:], default_config=DEMO)
