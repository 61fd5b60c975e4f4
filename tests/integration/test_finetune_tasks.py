"""Fine-tuning tasks: keyword inputs per ``input_modalities``, classification and regression losses, training on a fixed batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import maedfer
from maedfer.engine.optim import param_groups
from maedfer.tasks.finetune import ClassificationTask, RegressionTask, soft_target_cross_entropy


def tiny(name: str, **overrides) -> nn.Module:
    return maedfer.create_model(name, **{**maedfer.model_entry(name).tiny_overrides, **overrides})


class FixedOutput(nn.Module):
    """Returns a learnable ``(B, K)`` table; records how it was called."""

    def __init__(self, values: torch.Tensor, input_modalities: tuple[str, ...] = ("video",)) -> None:
        super().__init__()
        self.values = nn.Parameter(values.clone())
        self.input_modalities = input_modalities
        self.calls: list[tuple[tuple, tuple]] = []

    def forward(self, *args, **kwargs) -> torch.Tensor:
        self.calls.append((tuple(type(a).__name__ for a in args), tuple(sorted(kwargs))))
        return self.values


def fixed_batch(batch: int = 4, audio: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    out = {
        "video": torch.randn(batch, 3, 8, 32, 32, generator=generator),
        "label": torch.arange(batch) % 3,
        "index": torch.arange(batch) + 10,
    }
    if audio:
        out["audio"] = torch.randn(batch, 1, 32, 16, generator=generator)
    return out


def train_steps(task, batch: dict, steps: int, lr: float = 2e-3) -> list[float]:
    optimizer = torch.optim.AdamW(param_groups(task.model, weight_decay=0.0), lr=lr)
    task.train()
    losses = []
    for _ in range(steps):
        out = task(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    return losses


# --------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("name, audio", [("mae_dfer_base", False), ("hicmae_base", True)])
def test_classification_loss_decreases_on_fixed_batch(name: str, audio: bool) -> None:
    torch.manual_seed(0)
    model = tiny(name, drop_path_rate=0.0)
    task = ClassificationTask(model, num_classes=model.num_classes)
    batch = fixed_batch(audio=audio)
    losses = train_steps(task, batch, steps=8)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.05, losses
    out = task(batch)
    assert set(out) == {"loss", "acc"} and not out["acc"].requires_grad and 0.0 <= out["acc"].item() <= 1.0


def test_regression_loss_decreases_on_fixed_batch() -> None:
    torch.manual_seed(0)
    model = tiny("hicmae_base", drop_path_rate=0.0, num_classes=3)
    task = RegressionTask(model, loss="mse")
    batch = fixed_batch(audio=True)
    batch["label"] = torch.tensor([[0.5, -1.0, 1.5], [1.0, 0.0, -0.5], [-1.0, 0.5, 0.0], [0.0, 1.0, 1.0]])
    losses = train_steps(task, batch, steps=8, lr=5e-3)
    assert losses[-1] < losses[0] * 0.8, losses


# --------------------------------------------------------------------------------------------------- dispatch
@pytest.mark.parametrize("modalities", [("video",), ("video", "audio"), ("audio",)])
def test_inputs_follow_the_model_input_modalities(modalities: tuple[str, ...]) -> None:
    model = FixedOutput(torch.zeros(2, 3), modalities)
    batch = {"label": torch.tensor([0, 1]), "video": torch.zeros(2, 1, 4, 4), "audio": torch.zeros(2, 1, 4, 4)}
    ClassificationTask(model, num_classes=3)(batch)
    assert model.calls == [((), tuple(sorted(modalities)))]  # keywords only, the other modality left out
    missing = {"label": torch.tensor([0, 1])}
    with pytest.raises(ValueError, match="missing"):
        ClassificationTask(model, num_classes=3)(missing)


def test_real_audio_visual_and_single_modality_models() -> None:
    torch.manual_seed(0)
    batch = fixed_batch(batch=2, audio=True)
    for modality in ("video", "audio"):
        model = tiny("hicmae_base", modality=modality)
        assert model.modality == modality
        only = {k: v for k, v in batch.items() if k in (modality, "label")}
        out = ClassificationTask(model, num_classes=model.num_classes)(only)
        assert out["loss"].requires_grad


# --------------------------------------------------------------------------------------------------- losses
def test_soft_target_cross_entropy_equals_cross_entropy_for_one_hot() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([0, 2, 1])
    one_hot = F.one_hot(labels, 3).float()
    assert soft_target_cross_entropy(logits, one_hot).item() == pytest.approx(F.cross_entropy(logits, labels).item())
    soft = torch.softmax(torch.tensor([[0.3, 0.1, -1.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), dim=1)
    assert soft_target_cross_entropy(logits, soft).item() == pytest.approx(F.cross_entropy(logits, soft).item())
    with pytest.raises(ValueError, match="B, K"):
        soft_target_cross_entropy(logits, soft[:, :2])

    class NoMix:
        def __call__(self, video, labels, audio=None):
            return video, F.one_hot(labels, 3).float(), audio

    plain = ClassificationTask(FixedOutput(logits), num_classes=3, label_smoothing=0.0)
    mixed = ClassificationTask(FixedOutput(logits), num_classes=3, mixup=NoMix())
    batch = {"video": torch.zeros(3, 1), "label": labels}
    assert mixed(batch)["loss"].item() == pytest.approx(plain(batch)["loss"].item())


def test_label_smoothing_value() -> None:
    # K = 2, logits [0, ln 3]: p = [1/4, 3/4]; label 0, s = 0.1:
    # (1 - s) * ln 4 + s / 2 * (ln 4 + ln 4/3)
    logits = torch.tensor([[0.0, math.log(3.0)]])
    task = ClassificationTask(FixedOutput(logits), num_classes=2, label_smoothing=0.1)
    loss = task({"video": torch.zeros(1, 1), "label": torch.tensor([0])})["loss"].item()
    assert loss == pytest.approx(0.9 * math.log(4) + 0.05 * (math.log(4) + math.log(4 / 3)), rel=1e-6)
    unsmoothed = ClassificationTask(FixedOutput(logits), num_classes=2, label_smoothing=0.0)
    assert unsmoothed({"video": torch.zeros(1, 1), "label": torch.tensor([0])})["loss"].item() == pytest.approx(
        math.log(4), rel=1e-6
    )


def test_mixup_used_in_training_only_and_acc_against_hard_labels() -> None:
    from maedfer.data.augment import Mixup

    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [3.0, 0.0, 0.0]])
    model = FixedOutput(logits)
    mixup = Mixup(num_classes=3, mixup_alpha=0.8, cutmix_alpha=0.0, rng=np.random.default_rng(0))
    task = ClassificationTask(model, num_classes=3, mixup=mixup)
    batch = {"video": torch.randn(4, 3, 2, 4, 4), "label": torch.tensor([0, 1, 2, 1])}
    out = task.train()(batch)
    assert out["acc"].item() == pytest.approx(3 / 4)
    # training loss uses the mixed soft targets, so it differs from the plain smoothed CE
    plain = F.cross_entropy(logits, batch["label"], label_smoothing=0.1).item()
    assert out["loss"].item() != pytest.approx(plain, abs=1e-6)
    assert task.eval()(batch)["loss"].item() == pytest.approx(plain, rel=1e-6)


@pytest.mark.parametrize(
    "loss, expected",
    [
        # errors e = outputs - targets = [[0.5, -2.0], [-0.5, 1.0]]
        ("mse", (0.25 + 4.0 + 0.25 + 1.0) / 4),
        ("l1", (0.5 + 2.0 + 0.5 + 1.0) / 4),
        ("smooth_l1", (0.5 * 0.25 + (2.0 - 0.5) + 0.5 * 0.25 + (1.0 - 0.5)) / 4),
    ],
)
def test_regression_elementwise_losses(loss: str, expected: float) -> None:
    outputs = torch.tensor([[1.5, -1.0], [0.5, 2.0]])
    targets = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    out = RegressionTask(FixedOutput(outputs), loss=loss)({"video": torch.zeros(2, 1), "label": targets})
    assert out["loss"].item() == pytest.approx(expected)
    assert out["mae"].item() == pytest.approx(1.0)


def test_regression_correlation_losses() -> None:
    outputs = torch.tensor([[1.0], [2.0], [3.0]])
    ccc_task = RegressionTask(FixedOutput(outputs), loss="ccc")
    # population CCC of [1,2,3] vs [2,4,6] = 8/22
    loss = ccc_task({"video": torch.zeros(3, 1), "label": torch.tensor([2.0, 4.0, 6.0])})["loss"]
    assert loss.item() == pytest.approx(1 - 8 / 22, rel=1e-6)
    pcc_task = RegressionTask(FixedOutput(outputs), loss="pcc")
    loss = pcc_task({"video": torch.zeros(3, 1), "label": torch.tensor([[1.0], [3.0], [2.0]])})["loss"]
    assert loss.item() == pytest.approx(1 - (1 / 3) / (2 / 3 + 1e-6), rel=1e-6)
    with pytest.raises(ValueError, match="loss must be"):
        RegressionTask(FixedOutput(outputs), loss="mse+kl")


def test_output_shape_checked() -> None:
    task = ClassificationTask(FixedOutput(torch.zeros(2, 4)), num_classes=3)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        task({"video": torch.zeros(2, 1), "label": torch.tensor([0, 1])})
    regression = RegressionTask(FixedOutput(torch.zeros(2, 2)))
    with pytest.raises(ValueError):
        regression({"video": torch.zeros(2, 1), "label": torch.zeros(2, 3)})
