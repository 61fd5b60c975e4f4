#!/usr/bin/env python
"""Fine-tuning and evaluation (classification or regression), one fold or several.

    python finetune/finetune.py                                   # tiny demo: fine-tune the demo pre-training
    torchrun --nproc_per_node=4 finetune/finetune.py --config finetune/configs/dfew_mae_dfer.yaml --folds 1-5
    python finetune/finetune.py --config finetune/configs/crema_d_hicmae.yaml --folds 1-5 train.backend=deepspeed

Evaluate only (no optimizer, no training; the test set with the official test views):

    python finetune/finetune.py --eval --checkpoint runs/demo_finetune/checkpoint-last.pth   # a run's own config
    python finetune/finetune.py --config dfew_mae_dfer --eval --checkpoint dfew_fold1.pth --model mae_dfer_dfew_fold1
    torchrun --nproc_per_node=4 finetune/finetune.py --config dfew_mae_dfer --folds 1-5 --eval \
        --checkpoint 'mae_dfer_dfew_fold{fold}' --output-dir runs/eval_dfew/{fold}      # released weights by card id

``--eval`` writes ``test_metrics.json``, ``confusion_matrix.csv`` / ``.png`` and ``test_predictions.csv`` (one row per
clip: true and predicted label, scores) into ``train.output_dir`` or ``--output-dir``; with ``--folds`` it scores one
checkpoint per fold (``{fold}`` in ``--checkpoint``) and writes the mean +- std table.

Extra arguments are dotted config overrides. ``--folds 1-5`` runs the folds one after another (``{fold}`` in the
config's paths) and writes ``folds_summary.md`` / ``.json`` (mean +- std) next to the fold outputs. Without
``--config`` the demo configuration ``finetune/configs/demo.yaml`` is used; ``--config`` also takes the name of a file
there (``--config dfew_mae_dfer``). Installed, the same command is ``maedfer finetune``.
"""

import sys

from maedfer.apps.train import finetune_main

if __name__ == "__main__":
    finetune_main(sys.argv[1:])
