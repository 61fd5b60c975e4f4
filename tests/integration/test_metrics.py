"""Classification and regression metrics, correlation losses, distributed gathering and fold summaries.

Expected values are computed by hand from the definitions in the MAE-DFER and SVFAP papers/repositories and the HiCMAE paper/repository.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maedfer.engine.metrics import (
    ccc,
    ccc_loss,
    classification_metrics,
    confusion_matrix,
    format_fold_table,
    gather_predictions,
    mae,
    mse,
    pcc,
    pcc_loss,
    regression_metrics,
    rmse,
    save_confusion_matrix,
    summarize_folds,
)

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------ classification
def test_confusion_matrix_rows_are_true_classes() -> None:
    targets = [0, 0, 1, 1, 1, 2]
    preds = [0, 1, 1, 1, 0, 2]
    cm = confusion_matrix(preds, targets, 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[1, 1, 0], [1, 2, 0], [0, 0, 1]])
    np.testing.assert_array_equal(confusion_matrix(torch.tensor(preds), np.array(targets), 4)[:3, :3], cm)


def test_uar_war_f1_hand_computed() -> None:
    # cm = [[1,1,0],[1,2,0],[0,0,1]]: recalls 1/2, 2/3, 1 -> UAR 13/18; WAR 4/6.
    metrics = classification_metrics([0, 1, 1, 1, 0, 2], [0, 0, 1, 1, 1, 2], 3, label_names=["a", "b", "c"])
    assert metrics["uar"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert metrics["war"] == pytest.approx(4 / 6)
    assert metrics["f1_micro"] == pytest.approx(4 / 6)
    # per-class F1 = 2tp / (2tp + fp + fn): a: 2/(2+1+1) = 0.5; b: 4/(4+1+1) = 2/3; c: 1
    assert metrics["f1_macro"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert metrics["f1_weighted"] == pytest.approx((0.5 * 2 + 2 / 3 * 3 + 1.0 * 1) / 6)
    assert metrics["per_class_recall"] == pytest.approx({"a": 0.5, "b": 2 / 3, "c": 1.0})
    assert metrics["missing_classes"] == [] and metrics["num_samples"] == 6


def test_class_missing_from_targets_is_excluded_not_nan() -> None:
    targets = [0, 0, 1, 2, 2, 2]
    preds = [0, 3, 1, 2, 2, 0]  # class 3 is predicted but never true
    cm = confusion_matrix(preds, targets, 4)
    np.testing.assert_array_equal(cm, [[1, 0, 0, 1], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]])
    metrics = classification_metrics(preds, targets, 4, label_names=["ang", "hap", "neu", "sur"])
    assert metrics["uar"] == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
    assert not math.isnan(metrics["uar"])
    assert metrics["missing_classes"] == ["sur"]
    assert metrics["per_class_recall"]["sur"] is None
    assert metrics["war"] == pytest.approx(4 / 6)
    # F1: ang 2/(2+1+1) = 0.5, hap 1, neu 4/(4+0+1) = 0.8, sur 0 (predicted once, never true) -> scikit-learn's
    # macro average over the labels present in targets or predictions.
    assert metrics["f1_macro"] == pytest.approx((0.5 + 1.0 + 0.8 + 0.0) / 4)
    assert metrics["f1_weighted"] == pytest.approx((0.5 * 2 + 1.0 * 1 + 0.8 * 3) / 6)
    # a class absent from both targets and predictions is left out of the macro F1
    absent = classification_metrics([0, 1, 1], [0, 1, 0], 5)
    assert absent["f1_macro"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert absent["missing_classes"] == ["2", "3", "4"]


def test_top1_top5_from_logits() -> None:
    logits = np.array(
        [
            [9, 8, 7, 6, 5, 4],  # true 0: rank 1
            [9, 8, 7, 6, 5, 4],  # true 2: rank 3
            [9, 8, 7, 6, 5, 4],  # true 5: rank 6
            [1, 2, 3, 4, 5, 6],  # true 1: rank 5
        ],
        dtype=np.float32,
    )
    targets = [0, 2, 5, 1]
    metrics = classification_metrics(logits.argmax(1), targets, 6, logits=logits)
    assert metrics["top1"] == pytest.approx(1 / 4)
    assert metrics["top5"] == pytest.approx(3 / 4)
    small = classification_metrics([0, 1], [0, 0], 3, logits=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.5]])
    assert small["top5"] == 1.0  # top-min(5, K)


def test_classification_input_validation() -> None:
    with pytest.raises(ValueError, match="class indices"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1], [0], 3)
    with pytest.raises(ValueError, match="label names"):
        classification_metrics([0], [0], 2, label_names=["x"])
    with pytest.raises(ValueError):
        classification_metrics([], [], 2)


def test_save_confusion_matrix_csv_and_png(tmp_path: Path) -> None:
    cm = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    names = ["anger", "happy, excited", "neutral"]
    csv_path, png_path = tmp_path / "out" / "cm.csv", tmp_path / "out" / "cm.png"
    save_confusion_matrix(cm, names, csv_path, png_path, title="fold 1")
    with csv_path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["true\\pred", *names]
    assert rows[1] == ["anger", "5", "1", "0"] and rows[2] == ["happy, excited", "2", "3", "0"]
    assert rows[3] == ["neutral", "0", "0", "0"]
    with Image.open(png_path) as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cm.csv", "cm.png"]  # no temporaries left
    save_confusion_matrix(cm, None, tmp_path / "only.csv")
    assert (tmp_path / "only.csv").read_text().splitlines()[0] == "true\\pred,0,1,2"
    with pytest.raises(ValueError):
        save_confusion_matrix(np.ones((2, 3)), None, tmp_path / "bad.csv")


# ------------------------------------------------------------------------------------------------ regression
def test_ccc_identical_negated_and_hand_values() -> None:
    x = np.array([-1.5, -0.5, 0.5, 1.5])  # zero mean
    for ddof in (0, 1):
        assert ccc(x, x, ddof=ddof)[0] == pytest.approx(1.0)
        assert ccc(-x, x, ddof=ddof)[0] == pytest.approx(-1.0)
    preds, targets = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])
    # population: var_p 2/3, var_t 8/3, cov 4/3, mean diff 2 -> (8/3) / (2/3 + 8/3 + 4) = 8/22
    assert ccc(preds, targets, ddof=0)[0] == pytest.approx(8 / 22)
    # official np.cov (N - 1): var_p 1, var_t 4, cov 2 -> 4 / (1 + 4 + 4) = 4/9
    assert ccc(preds, targets)[0] == pytest.approx(4 / 9)
    two = ccc(np.stack([preds, x[:3]], 1), np.stack([targets, x[:3]], 1))
    assert two.shape == (2,) and two == pytest.approx([4 / 9, 1.0])


def test_pcc_mse_mae_rmse_hand_values() -> None:
    preds = np.array([[1.0, 0.0], [2.0, 2.0], [3.0, 1.0]])
    targets = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 3.0]])
    # column 0: dp = [-1,0,1], dt = [-1,1,0] -> 1 / sqrt(2 * 2) = 0.5
    # column 1: dp = [-1,1,0], dt = [-1,-1,2] -> (1 - 1 + 0) / sqrt(2 * 6) = 0
    assert pcc(preds, targets) == pytest.approx([0.5, 0.0], abs=1e-12)
    errors = preds - targets  # [[0,0],[-1,2],[1,-2]]
    assert mse(preds, targets) == pytest.approx([2 / 3, 8 / 3])
    assert mae(preds, targets) == pytest.approx([2 / 3, 4 / 3])
    assert rmse(preds, targets) == pytest.approx([math.sqrt(2 / 3), math.sqrt(8 / 3)])
    metrics = regression_metrics(preds, targets, names=["valence", "arousal"])
    assert metrics["mse"] == pytest.approx(float((errors**2).mean()))
    assert metrics["rmse"] == pytest.approx((math.sqrt(2 / 3) + math.sqrt(8 / 3)) / 2)  # mean of per-target RMSEs
    assert metrics["mae"] == pytest.approx(1.0) and metrics["acc"] == pytest.approx(0.0)
    assert metrics["pcc_valence"] == pytest.approx(0.5) and metrics["mae_arousal"] == pytest.approx(4 / 3)
    assert metrics["num_samples"] == 3
    far = regression_metrics([[5.0]], [[0.0]])
    assert far["acc"] == pytest.approx(-4.0)  # not clipped
    assert far["pcc"] == 1.0  # one sample: 1.0 as the official metric


def test_correlation_losses_hand_values() -> None:
    preds = torch.tensor([[1.0, 0.5], [2.0, -0.5], [3.0, 1.5]], requires_grad=True)
    targets = torch.tensor([[2.0, 0.5], [4.0, -0.5], [6.0, 1.5]])
    loss = ccc_loss(preds, targets)
    assert loss.item() == pytest.approx(1 - (8 / 22 + 1.0) / 2, rel=1e-6)  # population CCC, whole batch
    loss.backward()
    assert preds.grad is not None and torch.isfinite(preds.grad).all()
    # CCC has no epsilon: scaling both inputs by 1e-3 does not change it.
    assert ccc_loss(preds.detach() * 1e-3, targets * 1e-3).item() == pytest.approx(1 - (8 / 22 + 1.0) / 2, rel=1e-4)
    # PCC: population cov 1/3, variances 2/3 -> (1/3) / (2/3 + 1e-6)
    p = torch.tensor([1.0, 2.0, 3.0])
    t = torch.tensor([1.0, 3.0, 2.0])
    assert pcc_loss(p, t).item() == pytest.approx(1 - (1 / 3) / (2 / 3 + 1e-6), rel=1e-6)
    # at a 1e-3 scale the 1e-6 in the denominator matters: cov 1/3e-6, sqrt(var var) 2/3e-6 -> 0.2
    assert pcc_loss(p * 1e-3, t * 1e-3).item() == pytest.approx(1 - (1 / 3e6) / (2 / 3e6 + 1e-6), rel=1e-4)
    assert pcc_loss(p * 1e-3, t * 1e-3).item() == pytest.approx(0.8, rel=1e-4)
    with pytest.raises(ValueError):
        ccc_loss(torch.zeros(1, 2), torch.zeros(1, 2))


# ------------------------------------------------------------------------------------------------ gathering
def test_gather_predictions_without_process_group_deduplicates() -> None:
    preds = np.array([[0.1, 0.9], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]])
    targets = np.array([1, 0, 1, 1])
    out_preds, out_targets, ids = gather_predictions(preds, targets, torch.tensor([7, 2, 7, 4]))
    assert ids == [2, 4, 7]
    np.testing.assert_array_equal(out_preds, preds[[1, 3, 0]])
    np.testing.assert_array_equal(out_targets, [0, 1, 1])
    with pytest.raises(ValueError):
        gather_predictions(preds, targets[:3], [0, 1, 2, 3])


GATHER_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import torch.distributed as dist
    from maedfer.engine.metrics import classification_metrics, gather_predictions

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    # 5 samples over 2 ranks, DistributedSampler-style padding: rank 0 gets 0, 2, 4; rank 1 gets 1, 3, 0 (repeat)
    ids = [[0, 2, 4], [1, 3, 0]][rank]
    labels = np.array([0, 1, 1, 0, 2])
    preds = np.array([0, 1, 0, 0, 2])
    out_preds, out_labels, out_ids = gather_predictions(preds[ids], labels[ids], ids)
    metrics = classification_metrics(out_preds, out_labels, 3)
    with open(sys.argv[1] + f"/rank{rank}.json", "w") as handle:
        json.dump({"ids": out_ids, "preds": out_preds.tolist(), "uar": metrics["uar"]}, handle)
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gather_predictions_two_processes_exact(tmp_path: Path) -> None:
    script = tmp_path / "gather.py"
    script.write_text(GATHER_SCRIPT)
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for proc in procs:
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output.decode(errors="replace")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for result in results:
        assert result["ids"] == [0, 1, 2, 3, 4]  # the padded repeat of sample 0 is dropped
        assert result["preds"] == [0, 1, 0, 0, 2]
        # recalls: class 0 {0, 3} -> 2/2, class 1 {1, 2} -> 1/2, class 2 {4} -> 1/1
        assert result["uar"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)


# ------------------------------------------------------------------------------------------------ folds
def test_summarize_folds_sample_std() -> None:
    results = [{"uar": 0.6, "war": 0.70, "num_videos": 10}, {"uar": 0.7, "war": 0.75}, {"uar": 0.8, "war": 0.80}]
    summary = summarize_folds(results)
    assert set(summary) == {"uar", "war"}  # num_videos is not in every fold
    assert summary["uar"][0] == pytest.approx(0.7)
    assert summary["uar"][1] == pytest.approx(0.1)  # sqrt(((-0.1)^2 + 0 + 0.1^2) / (3 - 1)); population: 0.0816
    assert summary["war"] == pytest.approx((0.75, 0.05))
    assert summarize_folds([{"uar": 0.5}])["uar"] == (0.5, 0.0)
    with pytest.raises(ValueError):
        summarize_folds([])


def test_format_fold_table() -> None:
    results = [{"uar": 0.6, "war": 0.7}, {"uar": 0.7, "war": 0.75}, {"uar": 0.8, "war": 0.8}]
    table = format_fold_table(["1", "2", "3"], results)
    lines = table.splitlines()
    assert lines[0] == "| fold | uar | war |"
    assert lines[1] == "|---|---|---|"
    assert lines[2] == "| 1 | 0.6000 | 0.7000 |"
    assert lines[5] == "| mean ± std | 0.7000 ± 0.1000 | 0.7500 ± 0.0500 |"
    assert "ddof=1" in table and "3 fold" in table
    only = format_fold_table([1, 2], [{"uar": 0.5, "war": 0.6}, {"uar": 0.7, "war": 0.6}], ["war"], digits=2)
    assert only.splitlines()[0] == "| fold | war |" and "| mean ± std | 0.60 ± 0.00 |" in only
    with pytest.raises(ValueError):
        format_fold_table(["1"], [{"uar": 0.5}, {"uar": 0.6}])
