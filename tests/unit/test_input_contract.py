"""One input contract (``model(video=..., audio=...)`` per ``input_modalities``) and evaluation in one place."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import maedfer
from maedfer.models import AudioViT, example_inputs
from maedfer.models.contract import input_modalities
from maedfer.tasks.evaluate import evaluate

FINETUNE = maedfer.list_models(kind="finetune")


def tiny(name: str, **overrides) -> nn.Module:
    return maedfer.create_model(name, **{**maedfer.model_entry(name).tiny_overrides, **overrides}).eval()


def expected_modalities(name: str) -> tuple[str, ...]:
    """HiCMAE is the audio-visual system; every other registered fine-tuning model reads video only."""
    return ("video", "audio") if maedfer.model_entry(name).system == "hicmae" else ("video",)


def contract_models() -> list[tuple[str, nn.Module, tuple[str, ...]]]:
    """Every registered tiny fine-tuning model, HiCMAE's single-modality variants and a standalone audio ViT."""
    models = [(name, tiny(name), expected_modalities(name)) for name in FINETUNE]
    for modality in ("video", "audio"):
        models.append((f"hicmae_base/{modality}", tiny("hicmae_base", modality=modality), (modality,)))
    audio_vit = AudioViT(input_size=(32, 16), patch_size=8, embed_dim=32, num_heads=2, depth=1, num_classes=4).eval()
    models.append(("AudioViT", audio_vit, ("audio",)))
    return models


def test_registry_lists_fine_tuning_models() -> None:
    assert {"mae_dfer_base", "svfap_base", "videomae_base_160", "hicmae_base"} <= set(FINETUNE)


@pytest.mark.parametrize("name, model, modalities", contract_models(), ids=lambda v: v if isinstance(v, str) else "")
def test_keyword_call_equals_positional_call(name: str, model: nn.Module, modalities: tuple[str, ...]) -> None:
    assert model.input_modalities == modalities and input_modalities(model) == modalities
    inputs = example_inputs(model, 2, generator=torch.Generator().manual_seed(0))
    assert len(inputs) == len(modalities)
    with torch.no_grad():
        positional = model(*inputs)
        keywords = model(**dict(zip(modalities, inputs)))
        reversed_order = model(**dict(reversed(list(zip(modalities, inputs)))))
    assert positional.shape == (2, model.num_classes)
    assert torch.equal(positional, keywords) and torch.equal(positional, reversed_order)


@pytest.mark.parametrize("name, model, modalities", contract_models(), ids=lambda v: v if isinstance(v, str) else "")
def test_wrong_or_missing_modality_raises(name: str, model: nn.Module, modalities: tuple[str, ...]) -> None:
    inputs = dict(zip(modalities, example_inputs(model, 1, generator=torch.Generator().manual_seed(0))))
    model_name = type(model).__name__
    for other in {"video", "audio"} - set(modalities):
        with pytest.raises(TypeError, match=f"{model_name}.*{other}="):
            model(**inputs, **{other: torch.zeros(1)})
    for needed in modalities:
        rest = {k: v for k, v in inputs.items() if k != needed}
        with pytest.raises(ValueError, match=f"{model_name} needs an? {needed} input"):
            model(**rest)
    first = modalities[0]
    with pytest.raises(TypeError, match="twice"):
        model(inputs[first], **inputs)
    with pytest.raises(TypeError, match="positional"):
        model(*inputs.values(), torch.zeros(1))


def test_input_modalities_looks_through_wrappers_and_rejects_models_without_one() -> None:
    model = tiny("hicmae_base")
    assert input_modalities(nn.DataParallel(model)) == ("video", "audio")
    with pytest.raises(TypeError, match="Linear states no input_modalities"):
        input_modalities(nn.Linear(2, 2))


# ---------------------------------------------------------------------------------------------------- evaluation
def view_batches(model: nn.Module, labels: list, views: int = 2) -> list[dict]:
    """An in-memory test loader: ``views`` segments per video, batches of 2 views that cross video borders, and the
    last view repeated at the end (as a distributed sampler pads)."""
    generator = torch.Generator().manual_seed(3)
    rows = []
    for video, label in enumerate(labels):
        for segment in range(views):
            inputs = example_inputs(model, 1, generator=generator)
            row = dict(zip(input_modalities(model), (x[0] for x in inputs)))
            row.update(label=torch.as_tensor(label), index=torch.tensor(video), path=f"clip{video}.mp4",
                       segment=torch.tensor(segment), crop=torch.tensor(0))
            rows.append(row)
    rows.append(rows[-1])
    batches = []
    for start in range(0, len(rows), 2):
        chunk = rows[start : start + 2]
        batch = {key: [row[key] for row in chunk] for key in chunk[0]}
        batches.append({k: v if k == "path" else torch.stack(v) for k, v in batch.items()})
    return batches


def per_view_outputs(model: nn.Module, batches: list[dict]) -> dict[str, dict[int, torch.Tensor]]:
    """``{path: {segment: (K,) output}}`` from calling the model view by view (first occurrence kept)."""
    result: dict[str, dict[int, torch.Tensor]] = {}
    with torch.no_grad():
        for batch in batches:
            for row, path in enumerate(batch["path"]):
                inputs = {m: batch[m][row : row + 1] for m in input_modalities(model)}
                result.setdefault(path, {}).setdefault(int(batch["segment"][row]), model(**inputs)[0].double())
    return result


def test_classification_evaluation_matches_hand_computed_metrics() -> None:
    torch.manual_seed(0)
    model = tiny("mae_dfer_base", num_classes=3)
    labels = [0, 1, 2, 1, 0]
    batches = view_batches(model, labels)
    outputs = per_view_outputs(model, batches)
    preds = []
    for video in range(len(labels)):
        views = outputs[f"clip{video}.mp4"]
        assert sorted(views) == [0, 1]
        probs = sum(torch.softmax(v, dim=0) for v in views.values()) / 2
        preds.append(int(probs.argmax()))
    hits = [p == t for p, t in zip(preds, labels)]
    recalls = [sum(h for h, t in zip(hits, labels) if t == k) / labels.count(k) for k in range(3)]
    confusion = [[sum(1 for p, t in zip(preds, labels) if t == row and p == col) for col in range(3)] for row in range(3)]

    result = evaluate(model, batches, task="classification", num_classes=3, device="cpu")
    assert result.metrics["num_videos"] == len(labels)
    assert result.metrics["war"] == pytest.approx(sum(hits) / len(labels))
    assert result.metrics["uar"] == pytest.approx(sum(recalls) / 3)
    assert result.confusion.tolist() == confusion
    assert not model.training


class MeanRegressor(nn.Module):
    """An audio-visual regressor: ``[mean(video), mean(audio)]`` per sample, read by keyword only."""

    input_modalities = ("video", "audio")

    def forward(self, *, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return torch.stack([video.flatten(1).mean(1), audio.flatten(1).mean(1)], dim=1)


def test_regression_evaluation_averages_views_and_scores_by_hand() -> None:
    model = MeanRegressor()
    batches = []
    for start in range(0, 6, 2):  # videos v0..v2, two segments each, rows spread over batches
        rows = [(f"v{(start + r) // 2}", (start + r) % 2) for r in range(2)]
        batches.append({
            "video": torch.stack([torch.full((3, 2, 2), float(i + s)) for i, (_, s) in enumerate(rows, start)]),
            "audio": torch.stack([torch.full((1, 2), float(-i)) for i, _ in enumerate(rows, start)]),
            "label": torch.tensor([[float(v), -2.0 * v] for v in ((start + r) // 2 for r in range(2))]),
            "index": torch.arange(start, start + 2),
            "path": [path for path, _ in rows],
            "segment": torch.tensor([s for _, s in rows]),
        })
    # per view: video value i + segment, audio value -i (i = row number 0..5); per video the mean of its 2 views
    views = [(i + i % 2, -i) for i in range(6)]
    per_video = [((views[2 * v][0] + views[2 * v + 1][0]) / 2, (views[2 * v][1] + views[2 * v + 1][1]) / 2) for v in range(3)]
    errors = [(a - v, b + 2.0 * v) for v, (a, b) in enumerate(per_video)]  # labels (v, -2v)
    mse = sum(e * e for pair in errors for e in pair) / 6
    mae = sum(abs(e) for pair in errors for e in pair) / 6

    result = evaluate(model, batches, task="regression", num_classes=2, device="cpu")
    assert result.confusion is None and result.metrics["num_videos"] == 3
    assert result.metrics["mse"] == pytest.approx(mse) and result.metrics["mae"] == pytest.approx(mae)
    assert result.scalars()["rmse"] == pytest.approx(
        sum(math.sqrt(sum(errors[v][k] ** 2 for v in range(3)) / 3) for k in range(2)) / 2
    )
