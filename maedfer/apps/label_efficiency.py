"""Label efficiency on the synthetic face world: what self-supervised pre-training buys as labels get scarce.

One command pre-trains a masked autoencoder once on the unlabelled training clips, then measures test UAR against the
number of labelled clips per class, for a linear probe and for full fine-tuning, from the pre-trained weights and
from random weights, over several seeds; it writes ``results.json``, ``results.md`` and a PNG plot.
Details: ``docs/modules.md``, section ``maedfer/apps/label_efficiency.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["PRESETS", "LabelEfficiencySettings", "main", "run_label_efficiency"]

logger = logging.getLogger(__name__)

#: Protocols and initialisations, in the order of the table.
PROTOCOLS: tuple[str, ...] = ("linear_probe", "finetune")
INITS: tuple[str, ...] = ("pretrained", "random")


@dataclass
class LabelEfficiencySettings:
    """Sizes and schedules of one label-efficiency study.

    Attributes:
        world: :func:`maedfer.synthetic.make_synthetic_world` settings of the world (generated under ``--world``).
        num_frames: Frames per clip fed to the model (the world's clips are sampled with ``sampling_rate``).
        sampling_rate: Frame stride.
        size: Input size (the world's frame size).
        pretrain_model: Registry name of the masked autoencoder.
        finetune_model: Registry name of the matching classifier.
        model_kwargs: Size of the encoder (shared by both).
        decoder_kwargs: Size of the pre-training decoder.
        mask_type: ``"tube"``, ``"part_window"`` or ``"random"``.
        mask_ratio: Fraction of masked tokens.
        mask_window: Window of a part-window mask.
        frame_diff_group_size: MAE-DFER's motion target group size (``None``: plain pixels).
        pretrain_steps: Pre-training steps.
        pretrain_batch: Pre-training batch size.
        pretrain_lr: Peak pre-training learning rate (AdamW, betas 0.9 / 0.95, warm-up then cosine).
        labels_per_class: Labelled training clips per class to measure at.
        seeds: Seeds (each draws its own labelled subset, head and random initialisation).
        probe_epochs: Linear-probe epochs over the cached features.
        probe_batch: Linear-probe batch size.
        probe_lr: Linear-probe learning rate.
        finetune_steps: Fine-tuning steps at every label count (the same budget for both initialisations).
        finetune_batch: Fine-tuning batch size.
        finetune_lr: Fine-tuning learning rate.
        weight_decay: Fine-tuning and pre-training weight decay.
    """

    world: dict[str, Any]
    num_frames: int = 8
    sampling_rate: int = 1
    size: int = 64
    pretrain_model: str = "videomae_pretrain_base_160"
    finetune_model: str = "videomae_base_160"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    decoder_kwargs: dict[str, Any] = field(default_factory=dict)
    mask_type: str = "tube"
    mask_ratio: float = 0.9
    mask_window: tuple[int, int] | None = None
    frame_diff_group_size: int | None = 2
    pretrain_steps: int = 2000
    pretrain_batch: int = 16
    pretrain_lr: float = 1.5e-3
    labels_per_class: tuple[int, ...] = (4, 16, 64)
    seeds: int = 5
    probe_epochs: int = 100
    probe_batch: int = 16
    probe_lr: float = 1e-2
    finetune_steps: int = 300
    finetune_batch: int = 8
    finetune_lr: float = 1e-3
    weight_decay: float = 0.05


# A tiny plain ViT whose tokens span the whole 8-frame clip (tubelet 8: a 1 x 4 x 4 token grid of 16 x 16 patches).
_TINY_VIT = dict(patch_size=16, tubelet_size=8, embed_dim=64, depth=4, num_heads=4)
_TINY_DECODER = dict(decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)

#: ``full``: the study shown in the README; ``toy``: a seconds-long smoke run of the same code (tests).
PRESETS: dict[str, LabelEfficiencySettings] = {
    "full": LabelEfficiencySettings(
        # The demo world's identities, classes and clip counts, rendered at 8 frames over the same 1.28 s (6.25 fps)
        # instead of 32 frames that the model samples every 4th of; frames only, a single validation clip per class.
        world=dict(num_identities=48, clips_per_class={"train": 80, "val": 1, "test": 16}, num_frames=8, fps=6.25,
                   size=64, formats=["frames"]),
        model_kwargs=_TINY_VIT, decoder_kwargs=_TINY_DECODER, mask_type="tube", mask_ratio=0.75,
        frame_diff_group_size=8, pretrain_steps=3000,
    ),
    "toy": LabelEfficiencySettings(
        world=dict(num_identities=6, clips_per_class={"train": 3, "val": 1, "test": 2}, num_frames=8, fps=6.25,
                   size=32, formats=["frames"]),
        size=32, model_kwargs=dict(patch_size=8, tubelet_size=8, embed_dim=16, depth=1, num_heads=2),
        decoder_kwargs=dict(decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2), mask_type="tube",
        mask_ratio=0.75, frame_diff_group_size=8, pretrain_steps=4, pretrain_batch=4, labels_per_class=(1, 2),
        seeds=2, probe_epochs=2, probe_batch=4, finetune_steps=2, finetune_batch=4,
    ),
}


# ---------------------------------------------------------------------------------------------------------- data
@dataclass
class ClipSet:
    """A split held in memory: ``videos`` ``(N, 3, T, H, W)`` normalised clips and ``labels`` ``(N,)`` int64."""

    videos: torch.Tensor
    labels: torch.Tensor


def load_split(annotations: Path, settings: LabelEfficiencySettings) -> ClipSet:
    """Every clip of an annotation file, decoded once the way validation reads it (centre view, no augmentation)."""
    from ..data.video_datasets import VideoClipDataset

    dataset = VideoClipDataset(annotations, "validation", num_frames=settings.num_frames,
                               sampling_rate=settings.sampling_rate, input_size=settings.size,
                               short_side_size=settings.size, skip_bad_samples=False)
    items = [dataset[index] for index in range(len(dataset))]
    return ClipSet(torch.stack([item["video"] for item in items]),
                   torch.stack([torch.as_tensor(item["label"]) for item in items]).long())


def labelled_subset(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of ``per_class`` clips of every class drawn at random with ``seed`` (all of a class if it has fewer)."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in labels.unique().tolist():
        members = (labels == cls).nonzero().flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values


def _random_flip(videos: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each clip of ``(B, 3, T, H, W)`` horizontally with probability 1/2."""
    flip = torch.rand(videos.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None, None], videos.flip(-1), videos)


# ------------------------------------------------------------------------------------------------------ training
def _train(task: Any, batches: Callable[[int], dict[str, torch.Tensor]], steps: int, lr: float, *,
           weight_decay: float, betas: tuple[float, float] = (0.9, 0.999), warmup_fraction: float = 0.1) -> list[float]:
    """``steps`` AdamW steps of a task (official parameter groups; linear warm-up then cosine to ``lr / 100``)."""
    from ..engine.optim import param_groups
    from ..engine.schedule import cosine_schedule

    groups = param_groups(task.model, weight_decay=weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas)
    schedule = cosine_schedule(lr, lr / 100, 1, steps, warmup_steps=max(1, int(warmup_fraction * steps)))
    task.train()
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = float(schedule[step])
        loss = task(batches(step))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def pretrain(train: ClipSet, settings: LabelEfficiencySettings, seed: int = 0) -> tuple[nn.Module, list[float]]:
    """Masked-autoencoder pre-training on the clips of ``train`` (labels unused), with random horizontal flips."""
    from ..masking import build_mask_generator
    from ..registry import create_model
    from ..tasks.pretrain import MaskedVideoPretrainTask, VideoReconstructionObjective

    torch.manual_seed(seed)
    model = create_model(settings.pretrain_model, img_size=settings.size, num_frames=settings.num_frames,
                         **settings.model_kwargs, **settings.decoder_kwargs)
    embed = model.encoder.patch_embed
    objective = VideoReconstructionObjective(patch_size=embed.patch_size, tubelet_size=embed.tubelet_size,
                                             normalize_target=True,
                                             frame_diff_group_size=settings.frame_diff_group_size)
    task = MaskedVideoPretrainTask(model, objective)
    masks = build_mask_generator(settings.mask_type, embed.grid_size, settings.mask_ratio, settings.mask_window)
    generator = torch.Generator().manual_seed(seed)
    batch = settings.pretrain_batch

    def batches(step: int) -> dict[str, torch.Tensor]:
        index = torch.randint(0, len(train.labels), (batch,), generator=generator)
        return {"video": _random_flip(train.videos[index], generator), "mask": masks.batch(batch, generator)}

    losses = _train(task, batches, settings.pretrain_steps, settings.pretrain_lr, weight_decay=settings.weight_decay,
                    betas=(0.9, 0.95))
    return model.eval(), losses


def _classifier(settings: LabelEfficiencySettings, num_classes: int, weights: Mapping[str, torch.Tensor] | None,
                seed: int) -> nn.Module:
    """The fine-tuning model, from the pre-trained ``weights`` (a pre-training state dict) or random weights."""
    from ..checkpoint import load_checkpoint
    from ..registry import create_model

    torch.manual_seed(seed)
    model = create_model(settings.finetune_model, img_size=settings.size, num_frames=settings.num_frames,
                         num_classes=num_classes, **settings.model_kwargs)
    if weights is not None:
        load_checkpoint(model, {"model": dict(weights)}, source="the label-efficiency pre-training")
    return model


@torch.no_grad()
def _predict(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Class predictions ``(N,)`` of ``forward`` over ``inputs`` in chunks."""
    return torch.cat([forward(inputs[start:start + chunk]).argmax(-1) for start in range(0, len(inputs), chunk)])


def _uar(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    from ..engine.metrics import classification_metrics

    return float(classification_metrics(preds.numpy(), labels.numpy(), num_classes)["uar"])


def linear_probe_uar(model: nn.Module, train: ClipSet, test: ClipSet, settings: LabelEfficiencySettings,
                     num_classes: int, seed: int) -> float:
    """Test UAR of a linear probe (frozen ``model``, cached un-augmented features, BatchNorm + linear head)."""
    from ..tasks.linear_probe import LinearProbe, LinearProbeTask

    probe = LinearProbe(model, num_classes).eval()
    train_features = torch.cat([probe.forward_features(train.videos[s:s + 64]) for s in range(0, len(train.labels), 64)])
    test_features = torch.cat([probe.forward_features(test.videos[s:s + 64]) for s in range(0, len(test.labels), 64)])
    torch.manual_seed(seed)
    task = LinearProbeTask(probe, num_classes=num_classes)
    generator = torch.Generator().manual_seed(seed)
    batch = min(settings.probe_batch, len(train.labels))
    steps = max(1, settings.probe_epochs * len(train.labels) // batch)

    def batches(step: int) -> dict[str, torch.Tensor]:
        index = torch.randint(0, len(train.labels), (batch,), generator=generator)
        return {"features": train_features[index], "label": train.labels[index]}

    _train(task, batches, steps, settings.probe_lr, weight_decay=0.0)
    probe.eval()
    return _uar(_predict(lambda f: probe(features=f), test_features), test.labels, num_classes)


def finetune_uar(model: nn.Module, train: ClipSet, test: ClipSet, settings: LabelEfficiencySettings,
                 num_classes: int, seed: int) -> float:
    """Test UAR after fine-tuning every weight of ``model`` (cross-entropy, random horizontal flips)."""
    from ..tasks.finetune import ClassificationTask

    task = ClassificationTask(model, num_classes=num_classes, label_smoothing=0.0)
    generator = torch.Generator().manual_seed(seed)
    batch = min(settings.finetune_batch, len(train.labels))

    def batches(step: int) -> dict[str, torch.Tensor]:
        index = torch.randint(0, len(train.labels), (batch,), generator=generator)
        return {"video": _random_flip(train.videos[index], generator), "label": train.labels[index]}

    _train(task, batches, settings.finetune_steps, settings.finetune_lr, weight_decay=settings.weight_decay)
    model.eval()
    return _uar(_predict(lambda v: model(video=v), test.videos), test.labels, num_classes)


# --------------------------------------------------------------------------------------------------------- study
def run_label_efficiency(settings: LabelEfficiencySettings, world_root: Path, out_dir: Path) -> dict[str, Any]:
    """Generate (or reuse) the world, pre-train once, and measure every (protocol, init, labels, seed) cell.

    Returns:
        The content of ``results.json``: ``settings``, ``runs`` (one row per cell: ``protocol``, ``init``,
        ``labels_per_class``, ``seed``, ``uar``, ``seconds``), ``summary`` (mean and std of the UAR per protocol,
        init and label count), ``chance``, ``timings`` and the pre-training losses.
    """
    from ..checkpoint import save_checkpoint
    from ..synthetic import EMOTION_CLASSES, ensure_synthetic_world

    started = time.perf_counter()
    load_at_start = _load_average()
    timings: dict[str, float] = {}
    world_root = ensure_synthetic_world(world_root, settings.world)
    timings["world_s"] = time.perf_counter() - started
    mark = time.perf_counter()
    train = load_split(world_root / "classification" / "train.csv", settings)
    test = load_split(world_root / "classification" / "test.csv", settings)
    num_classes = len(EMOTION_CLASSES)
    timings["load_s"] = time.perf_counter() - mark
    logger.info("world: %d training clips (unlabelled for pre-training), %d test clips of unseen identities",
                len(train.labels), len(test.labels))

    mark = time.perf_counter()
    pretrained, losses = pretrain(train, settings)
    save_checkpoint({"model": pretrained.state_dict(), "settings": _jsonable(dataclasses.asdict(settings))},
                    out_dir / "pretrain" / "checkpoint-last.pth")
    # What fine-tuning and probing start from: the encoder (the decoder is not part of the classifier).
    weights = {key: value.detach().clone() for key, value in pretrained.state_dict().items()
               if key.startswith("encoder.")}
    timings["pretrain_s"] = time.perf_counter() - mark
    logger.info("pre-training: %d steps in %.0f s, loss %.4f -> %.4f", settings.pretrain_steps, timings["pretrain_s"],
                float(np.mean(losses[:20])), float(np.mean(losses[-20:])))

    runs: list[dict[str, Any]] = []
    for per_class in settings.labels_per_class:
        for seed in range(settings.seeds):
            subset = labelled_subset(train.labels, per_class, seed)
            labelled = ClipSet(train.videos[subset], train.labels[subset])
            for protocol in PROTOCOLS:
                for init in INITS:
                    mark = time.perf_counter()
                    model = _classifier(settings, num_classes, weights if init == "pretrained" else None, seed)
                    measure = linear_probe_uar if protocol == "linear_probe" else finetune_uar
                    uar = measure(model, labelled, test, settings, num_classes, seed)
                    runs.append(dict(protocol=protocol, init=init, labels_per_class=per_class, seed=seed, uar=uar,
                                     seconds=round(time.perf_counter() - mark, 2)))
                    logger.info("%s %s, %d labels per class, seed %d: test UAR %.1f %%", protocol, init, per_class,
                                seed, 100 * uar)
    timings["measure_s"] = time.perf_counter() - started - timings["world_s"] - timings["load_s"] - timings["pretrain_s"]
    timings["total_s"] = time.perf_counter() - started
    return dict(settings=_jsonable(dataclasses.asdict(settings)), chance=1.0 / num_classes,
                num_train_clips=len(train.labels), num_test_clips=len(test.labels), runs=runs,
                summary=summarize(runs), timings={k: round(v, 1) for k, v in timings.items()},
                pretrain_loss={"first": float(np.mean(losses[:20])), "last": float(np.mean(losses[-20:]))},
                machine={"torch_threads": torch.get_num_threads(), "load_average_start": load_at_start,
                         "load_average_end": _load_average()})


def _load_average() -> list[float] | None:
    """The 1 / 5 / 15-minute load averages (other work slows the study down), or ``None`` where unknown."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def summarize(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and (population) standard deviation of the test UAR per protocol, init and label count."""
    cells: dict[tuple[str, str, int], list[float]] = {}
    for row in runs:
        cells.setdefault((row["protocol"], row["init"], row["labels_per_class"]), []).append(float(row["uar"]))
    return [dict(protocol=p, init=i, labels_per_class=k, uar_mean=float(np.mean(v)), uar_std=float(np.std(v)),
                 seeds=len(v)) for (p, i, k), v in cells.items()]


def format_table(results: Mapping[str, Any]) -> str:
    """Markdown table: one row per protocol and init, one column per label count (mean +/- std over seeds, %)."""
    summary = results["summary"]
    counts = sorted({row["labels_per_class"] for row in summary})
    seeds = max(row["seeds"] for row in summary)
    lines = [
        f"| test UAR (%), mean +/- std over {seeds} seeds | " + " | ".join(f"{k} labels / class" for k in counts) + " |",
        "|---|" + "---|" * len(counts),
    ]
    for protocol in PROTOCOLS:
        for init in INITS:
            cells = {row["labels_per_class"]: row for row in summary if row["protocol"] == protocol
                     and row["init"] == init}
            values = [f"{100 * cells[k]['uar_mean']:.1f} +/- {100 * cells[k]['uar_std']:.1f}" if k in cells else "-"
                      for k in counts]
            lines.append(f"| {protocol.replace('_', ' ')}, {init} | " + " | ".join(values) + " |")
    lines.append(f"\nChance: {100 * results['chance']:.1f} %. Test: {results['num_test_clips']} clips of unseen "
                 f"identities. Wall time: {results['timings']['total_s']:.0f} s "
                 f"({', '.join(f'{k} {v:.0f}' for k, v in results['timings'].items() if k != 'total_s')}).")
    return "\n".join(lines) + "\n"


def save_plot(results: Mapping[str, Any], path: Path) -> Path:
    """Test UAR against labelled clips per class (log scale), one line per protocol and init, seeds as dots."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..utils import atomic_write

    figure = Figure(figsize=(7.0, 4.2), dpi=120)
    axes = figure.add_subplot()
    styles = {("linear_probe", "pretrained"): ("tab:blue", "-"), ("linear_probe", "random"): ("tab:blue", "--"),
              ("finetune", "pretrained"): ("tab:red", "-"), ("finetune", "random"): ("tab:red", "--")}
    for (protocol, init), (colour, line) in styles.items():
        cells = sorted((row for row in results["summary"] if row["protocol"] == protocol and row["init"] == init),
                       key=lambda row: row["labels_per_class"])
        if not cells:
            continue
        counts = [row["labels_per_class"] for row in cells]
        means = [100 * row["uar_mean"] for row in cells]
        stds = [100 * row["uar_std"] for row in cells]
        label = f"{'linear probe' if protocol == 'linear_probe' else 'fine-tuning'}, {init} init"
        axes.errorbar(counts, means, yerr=stds, color=colour, linestyle=line, marker="o", capsize=3, label=label)
        dots = [(row["labels_per_class"], 100 * row["uar"]) for row in results["runs"]
                if row["protocol"] == protocol and row["init"] == init]
        axes.scatter([d[0] for d in dots], [d[1] for d in dots], color=colour, s=8, alpha=0.4)
    axes.axhline(100 * results["chance"], color="grey", linewidth=1, linestyle=":", label="chance")
    axes.set_ylim(0, 100)
    axes.set_xscale("log", base=2)
    counts = sorted({row["labels_per_class"] for row in results["summary"]})
    axes.set_xticks(counts, [str(k) for k in counts])
    axes.set_xlabel("labelled training clips per class")
    axes.set_ylabel("test UAR (%)")
    axes.set_title("Synthetic world: what masked-autoencoder pre-training buys")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    canvas = FigureCanvasAgg(figure)

    def write(handle: Any, _tmp: Path) -> None:
        canvas.print_png(handle)

    atomic_write(path, write)
    return path


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))


# ----------------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full", help="study size (default: full)")
    parser.add_argument("--out", default="runs/label_efficiency", help="output folder")
    parser.add_argument("--world", default=None, help="synthetic world folder (default: runs/label_efficiency_world"
                        " for the full preset, <out>/world otherwise)")
    parser.add_argument("--plot", default=None, help="also copy the PNG here (e.g. models/demo/label_efficiency.png)")
    parser.add_argument("--labels", type=int, nargs="+", default=None, help="labelled clips per class to measure")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds")
    parser.add_argument("--pretrain-steps", type=int, default=None)
    parser.add_argument("--finetune-steps", type=int, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the study and write ``results.json``, ``results.md`` and ``label_efficiency.png`` under ``--out``."""
    from ..utils import atomic_write_text

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    settings = dataclasses.replace(PRESETS[args.preset])
    for name, value in (("labels_per_class", tuple(args.labels) if args.labels else None), ("seeds", args.seeds),
                        ("pretrain_steps", args.pretrain_steps), ("finetune_steps", args.finetune_steps)):
        if value is not None:
            setattr(settings, name, value)
    if settings.seeds < 1 or not settings.labels_per_class or min(settings.labels_per_class) < 1:
        raise SystemExit("--seeds and every --labels value must be >= 1")
    out_dir = Path(args.out)
    world = Path(args.world) if args.world else (
        Path("runs/label_efficiency_world") if args.preset == "full" else out_dir / "world")
    results = run_label_efficiency(settings, world, out_dir)
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2) + "\n")
    table = format_table(results)
    atomic_write_text(out_dir / "results.md", table)
    plot = save_plot(results, out_dir / "label_efficiency.png")
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plot, args.plot)
    logger.info("results in %s\n%s", out_dir, table)
    return results
