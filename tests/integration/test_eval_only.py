"""Evaluate only (``finetune.py --eval --checkpoint``) and label names stored with a model.

One tiny fine-tuning run on a small synthetic world, set up as a custom dataset with its own ``data.label_names``;
then its checkpoint is scored again by ``--eval`` (from the run's file, its checkpoint folder, its stored config and a
converted safetensors file, and over two "folds"), and ``predict`` reads the names back.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maedfer.apps.train import main
from maedfer.checkpoint import read_checkpoint, read_safetensors_metadata, stored_label_names
from maedfer.engine.distributed import free_port
from maedfer.synthetic import make_synthetic_world

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "finetune" / "configs" / "demo.yaml"

# The fine-tuning demo at tiny size (as tests/integration/test_train.py shrinks it), from random weights.
TINY = [
    "model.name=mae_dfer_base", "model.checkpoint=null", "model.kwargs.img_size=32", "model.kwargs.patch_size=8",
    "model.kwargs.num_frames=8", "model.kwargs.embed_dim=32", "model.kwargs.depth=2", "model.kwargs.num_heads=2",
    "model.kwargs.region_size=[2,2,4]", "data.num_frames=8", "data.input_size=32", "data.short_side_size=32",
    "data.batch_size=4", "data.num_workers=0", "optim.warmup_epochs=0", "train.tensorboard=false",
    "train.epochs=1", "data.labels_per_class=null",
]
# Not the registry's names of the synthetic classes: these can only come from the config.
NAMES = ["joy", "grief", "calm", "rage", "awe", "disgust", "dread"]


def _custom_dataset(world: Path) -> list[str]:
    """The world's classification split as a dataset the registry does not know, with its own label names."""
    return [
        "data.dataset=my_faces", *(f"data.{split}_file={world / 'classification' / f'{split}.csv'}"
                                   for split in ("train", "val", "test")),
        f"data.label_names=[{','.join(NAMES)}]",
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of one finished tiny fine-tuning run (checkpoint-last.pth, a checkpoint folder, metrics)."""
    base = tmp_path_factory.mktemp("eval_only")
    world = base / "world"
    make_synthetic_world(world, num_identities=6, clips_per_class=2, num_frames=16, size=32, preview=False)
    out = base / "run"
    main(["--config", str(DEMO), *TINY, *_custom_dataset(world), f"train.output_dir={out}"])
    return out


def _eval(run: Path, out: Path, *args: str) -> dict:
    return main(["--eval", "--output-dir", str(out), *args])


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "test_metrics.json").read_text())


def test_eval_reproduces_the_runs_test_metrics_bit_for_bit(run: Path, tmp_path: Path) -> None:
    world = run.parent / "world"
    reference = _metrics(run)
    assert reference["num_videos"] == 14

    # the YAML and the overrides of the run, as a user re-scoring it would type them
    result = _eval(run, tmp_path / "yaml", "--config", str(DEMO), "--checkpoint", str(run / "checkpoint-last.pth"),
                   *TINY, *_custom_dataset(world))
    assert _metrics(tmp_path / "yaml") == reference  # every value, exactly
    assert result["test"]["uar"] == reference["uar"]
    assert (tmp_path / "yaml" / "confusion_matrix.csv").read_text() == (run / "confusion_matrix.csv").read_text()
    assert (tmp_path / "yaml" / "confusion_matrix.png").stat().st_size > 1000
    assert not list((tmp_path / "yaml").glob("checkpoint*"))  # nothing trained, nothing saved

    # no --config: the checkpoint's own config; the run's resumable checkpoint folder holds the same weights
    _eval(run, tmp_path / "stored", "--checkpoint", str(run / "checkpoint-last.pth"))
    assert _metrics(tmp_path / "stored") == reference
    folder = next(p for p in run.iterdir() if p.is_dir() and p.name.startswith("checkpoint-e"))
    _eval(run, tmp_path / "folder", "--checkpoint", str(folder))
    assert _metrics(tmp_path / "folder") == reference


def test_eval_of_a_linear_probe_run(run: Path, tmp_path: Path) -> None:
    """A linear-probe run's checkpoint (frozen model + BatchNorm / linear probe head) is scored as the run scored it."""
    probe = tmp_path / "probe"
    main(["--config", str(DEMO), *TINY, *_custom_dataset(run.parent / "world"), "train.linear_probe=true",
          f"train.output_dir={probe}"])
    _eval(run, tmp_path / "eval", "--checkpoint", str(probe / "checkpoint-last.pth"))
    assert _metrics(tmp_path / "eval") == _metrics(probe)


def test_regression_eval(run: Path, tmp_path: Path) -> None:
    """A valence / arousal run: the same metrics again, and per clip the true and predicted values of both targets."""
    out = tmp_path / "run"
    main(["--config", str(DEMO), *TINY, "train.task=regression", "model.kwargs.num_classes=2", "data.synthetic={}",
          f"data.root={run.parent / 'world'}", f"train.output_dir={out}"])
    _eval(run, tmp_path / "eval", "--checkpoint", str(out / "checkpoint-last.pth"))
    metrics = _metrics(tmp_path / "eval")
    assert metrics == _metrics(out)
    assert not (tmp_path / "eval" / "confusion_matrix.csv").exists()
    with (tmp_path / "eval" / "test_predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 14 and list(rows[0])[1:] == ["true_valence", "true_arousal", "pred_valence", "pred_arousal"]
    for index, target in enumerate(("valence", "arousal")):
        error = sum(abs(float(r[f"pred_{target}"]) - float(r[f"true_{target}"])) for r in rows) / len(rows)
        assert error == pytest.approx(metrics[f"mae_{index}"], rel=1e-6)


def test_torchrun_two_processes(run: Path, tmp_path: Path) -> None:
    """Distributed evaluation: each rank scores half the views, rank 0 writes the gathered (de-duplicated) result."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               str(ROOT / "finetune" / "finetune.py"), "--eval", "--checkpoint", str(run / "checkpoint-last.pth"),
               "--output-dir", str(tmp_path)]
    proc = subprocess.run(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _metrics(tmp_path) == _metrics(run)
    assert (tmp_path / "test_predictions.csv").read_text().count("\n") == 1 + 14
    assert "2 process(es)" in (tmp_path / "log.txt").read_text()


def _eval_worker(rank: int, port: int, checkpoint: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    main(["--eval", "--checkpoint", checkpoint, "--output-dir", out])
    # the group main() created is gone before the process exits: gloo aborts an exiting process that still holds one
    # ("terminate called without an active exception", pytorch/pytorch#190489)
    Path(out, f"group_left_{rank}").write_text(str(torch.distributed.is_initialized()))


def test_main_destroys_the_process_group_it_created(run: Path, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_eval_worker, args=(free_port(), str(run / "checkpoint-last.pth"), str(tmp_path)), nprocs=2, join=True)
    assert [(tmp_path / f"group_left_{rank}").read_text() for rank in (0, 1)] == ["False", "False"]
    assert _metrics(tmp_path) == _metrics(run)


def test_predictions_csv_names_every_clip(run: Path, tmp_path: Path) -> None:
    _eval(run, tmp_path, "--checkpoint", str(run / "checkpoint-last.pth"))
    with (tmp_path / "test_predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    test_csv = run.parent / "world" / "classification" / "test.csv"
    clips = [line.split()[0] for line in test_csv.read_text().splitlines() if line.strip()]
    assert sorted(row["video"] for row in rows) == sorted(clips)
    metrics = _metrics(run)
    for row in rows:
        scores = [float(row[f"score_{name}"]) for name in NAMES]
        assert abs(sum(scores) - 1.0) < 1e-9  # mean of softmax probabilities
        assert row["prediction_name"] == NAMES[int(row["prediction"])] == NAMES[max(range(7), key=scores.__getitem__)]
        assert row["label_name"] == NAMES[int(row["label"])]
    # WAR is the fraction of clips predicted right
    assert sum(int(row["correct"]) for row in rows) / len(rows) == pytest.approx(metrics["war"], abs=1e-12)
    # the confusion matrix is labelled with the run's own names
    assert (tmp_path / "confusion_matrix.csv").read_text().splitlines()[0].split(",")[1:] == NAMES


def test_safetensors_official_pth_and_folds_summary(run: Path, tmp_path: Path) -> None:
    from maedfer.apps.convert_checkpoint import main as convert

    world = run.parent / "world"
    converted = tmp_path / "tiny.safetensors"
    assert convert([str(run / "checkpoint-last.pth"), str(converted)]) == 0
    assert json.loads(read_safetensors_metadata(converted)["label_names"]) == NAMES
    # a file without a config: the model comes from --config and the overrides
    _eval(run, tmp_path / "st", "--config", str(DEMO), "--checkpoint", str(converted), *TINY, *_custom_dataset(world))
    reference = _metrics(run)
    assert _metrics(tmp_path / "st") == reference

    # two folds: {fold} in the checkpoint pattern. Fold 1 is saved as the official scripts save (weights, epoch and
    # an argparse.Namespace; no config: the model comes from --config), fold 2 is a maedfer checkpoint with another head
    folds = tmp_path / "folds"
    (folds / "fold1").mkdir(parents=True)
    payload = read_checkpoint(run / "checkpoint-last.pth")
    official = {"model": payload["model"], "epoch": 0, "args": argparse.Namespace(model="vit_tiny", nb_classes=7)}
    torch.save(official, folds / "fold1" / "model.pth")
    generator = torch.Generator().manual_seed(0)
    payload["model"] = {**payload["model"], "head.weight": 30 * torch.randn(payload["model"]["head.weight"].shape,
                                                                            generator=generator)}
    (folds / "fold2").mkdir()
    torch.save(payload, folds / "fold2" / "model.pth")
    results = main(["--eval", "--config", str(DEMO), *TINY, *_custom_dataset(world), "--folds", "1-2",
                    "--checkpoint", str(folds / "fold{fold}" / "model.pth"),
                    "--output-dir", str(tmp_path / "scores" / "fold{fold}")])
    assert results["1"]["test"] == reference and _metrics(tmp_path / "scores" / "fold1") == reference
    second = _metrics(tmp_path / "scores" / "fold2")
    # fold 2 was scored with its own weights (the tiny model's class choices may coincide; its scores do not)
    predictions = [(tmp_path / "scores" / f"fold{i}" / "test_predictions.csv").read_text() for i in (1, 2)]
    assert predictions[0] != predictions[1]
    summary = json.loads((tmp_path / "scores" / "folds_summary.json").read_text())
    assert summary["folds"] == ["1", "2"]
    assert summary["per_fold"][0]["uar"] == reference["uar"] and summary["per_fold"][1]["uar"] == second["uar"]
    mean, std = summary["summary"]["uar"]
    assert mean == pytest.approx((reference["uar"] + second["uar"]) / 2)
    assert std == pytest.approx(abs(reference["uar"] - second["uar"]) / 2 ** 0.5)
    table = (tmp_path / "scores" / "folds_summary.md").read_text()
    assert "±" in table and table.count("\n") >= 4


def test_missing_checkpoint_is_a_clear_error(run: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "checkpoint-last.pth"
    with pytest.raises(SystemExit) as error:
        _eval(run, tmp_path / "out", "--checkpoint", str(missing))
    assert str(missing) in str(error.value.code)
    # with folds, a missing fold fails before any fold is scored
    (tmp_path / "f1").mkdir()
    shutil.copy(run / "checkpoint-last.pth", tmp_path / "f1" / "model.pth")
    with pytest.raises(SystemExit) as error:
        main(["--eval", "--folds", "1-2", "--checkpoint", str(tmp_path / "f{fold}" / "model.pth"),
              "--output-dir", str(tmp_path / "scores")])
    assert str(tmp_path / "f2" / "model.pth") in str(error.value.code)
    assert not (tmp_path / "scores").exists()


def test_card_ids_resolve_through_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``{fold}`` in a card-id pattern becomes the fold number (the DFEW fold name ``split01`` is no card); offline with
    an empty cache, the hub's refusal is reported on one line naming the card."""
    monkeypatch.setenv("MAEDFER_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MAEDFER_OFFLINE", "1")
    with pytest.raises(SystemExit) as error:
        main(["--eval", "--config", str(ROOT / "finetune" / "configs" / "dfew_mae_dfer.yaml"), "--folds", "1",
              "--checkpoint", "mae_dfer_dfew_fold{fold}", "--output-dir", str(tmp_path / "out")])
    message = str(error.value.code)
    assert "mae_dfer_dfew_fold1" in message and "not in the cache" in message
    assert not (tmp_path / "out").exists()


def test_labels_travel_with_the_checkpoint_to_predict_and_features(run: Path, tmp_path: Path) -> None:
    from maedfer.apps.features import extract_features_to_folder
    from maedfer.apps.inference import load_inference_model
    from maedfer.apps.predict import predict_video, write_csv

    payload = read_checkpoint(run / "checkpoint-last.pth")
    assert payload["label_names"] == NAMES and stored_label_names(payload) == NAMES
    loaded = load_inference_model(run / "checkpoint-last.pth")
    assert loaded.label_names == NAMES
    clip = next((run.parent / "world" / "videos").glob("*.mp4"))
    prediction = predict_video(loaded, clip, detect_faces=False)
    assert prediction.label_names == NAMES and prediction.mean().label in NAMES
    written = write_csv(prediction, tmp_path / "prediction.csv").read_text().splitlines()
    assert [f"prob_{name}" for name in NAMES] == written[0].split(",")[-7:]
    assert written[1].split(",")[-9] in NAMES  # each window's top class, by name

    # features written with the model carry its names too (safetensors header and the manifest's settings)
    extract_features_to_folder(loaded, [clip], tmp_path / "features", format="safetensors", detect_faces=False)
    (stored,) = (tmp_path / "features").glob("*.safetensors")
    assert json.loads(read_safetensors_metadata(stored)["label_names"]) == NAMES
    manifest = (tmp_path / "features" / "manifest.jsonl").read_text().splitlines()
    assert json.loads(manifest[0])["settings"]["label_names"] == NAMES


def test_label_names_must_fit_the_model(tmp_path: Path) -> None:
    from maedfer.config import ConfigError

    with pytest.raises(ConfigError, match="data.label_names has 2 names .* 7 classes"):
        main(["--config", str(DEMO), *TINY, "data.label_names=[a,b]", f"train.output_dir={tmp_path}"])
