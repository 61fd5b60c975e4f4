"""GPU check: the paper models and the pre-training systems on one device, in one command, with a JSON report.

    maedfer gpu-check --out gpu_check.json                    # one GPU, full-size models (< 8 min on an H100)
    maedfer gpu-check --device cpu --tiny --out report.json   # the same checks on tiny models (about 1 min)

Three sections (``--sections`` picks some):

* ``models``: each paper model (``mae_dfer_base``, ``videomae_base_160``, ``svfap_base``, ``hicmae_base``; their
  registry tiny sizes with ``--tiny``) runs forward + backward on fixed random inputs in fp32 (eager, TF32 off: the
  reference), then under bf16 autocast eager and compiled (``torch.compile``); the relative L2 error of the logits and
  of a few parameter gradients (first, middle and last weight matrix, and all gradients together) must stay within
  :data:`TOLERANCES`.
* ``train``: one pre-training step of each system (MAE-DFER, SVFAP, HiCMAE, VideoMAE) through the real trainer
  (``maedfer.apps.train.run`` on the official recipe config, the data switched to a tiny synthetic world) under DDP (one
  process; NCCL on GPU, gloo on CPU) and DeepSpeed ZeRO-2, bf16. The step must finish with a finite loss and finite
  fp32 weights that moved away from the initial ones. ``train.compile=true`` is passed to the DDP runs when the
  config has that field.
* ``profile``: ``maedfer.apps.profiling.profile_model`` of the MAE-DFER and ViT-B pre-training models at batch 32 (2 with
  ``--tiny``) in bf16: GMACs from both counters (they must agree), training throughput and, on a known GPU, MFU.

Compilation is the slow part on a CPU: there only the first model is compiled unless ``--compile-all``;
``--skip-compile`` compiles nothing. A check whose requirement is missing (DeepSpeed, CUDA) is reported as
``skipped`` with the reason. The exit code is 1 when any check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import maedfer
from maedfer.engine.backends import autocast_context
from maedfer.models import example_inputs
from maedfer.apps.profiling import device_description, profile_model
from maedfer.registry import create_model, model_entry

logger = logging.getLogger("maedfer.gpu_check")

SEED = 0

PAPER_MODELS: tuple[str, ...] = ("mae_dfer_base", "videomae_base_160", "svfap_base", "hicmae_base")

# Relative L2 error, ||x - x_fp32|| / ||x_fp32||, against the fp32 eager pass. bf16 keeps 8 significant bits
# (unit round-off 2^-8 = 3.9e-3); with fp32 accumulation a 12-block network lands around 1e-2 on its logits, its
# gradients a little higher (they pass through the network twice).
TOLERANCES: dict[str, float] = {
    "bf16_logits_rel_l2": 3e-2,
    "bf16_grad_rel_l2": 6e-2,
    # The first pre-training loss of a system under DeepSpeed (bf16 weights) against DDP (fp32 weights, bf16
    # autocast): same initial weights, clips and masks, so only the rounding differs.
    "backend_loss_rel_diff": 2e-2,
}

# One pre-training step: system -> (pre-training model, recipe config name, extra overrides). VideoMAE has no recipe of its
# own here: the MAE-DFER recipe with the ViT, tube masking and plain normalised pixels (VideoMAE's objective).
SYSTEMS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mae_dfer": ("mae_dfer_pretrain_base", "mae_dfer_voxceleb2", ()),
    "svfap": ("svfap_pretrain_base", "svfap_voxceleb2", ()),
    "hicmae": ("hicmae_pretrain_base", "hicmae_voxceleb2", ()),
    "videomae": (
        "videomae_pretrain_base_160", "mae_dfer_voxceleb2",
        ("data.mask_type=tube", "train.frame_diff_group_size=null"),
    ),
}
TRAIN_BACKENDS: tuple[str, ...] = ("ddp", "deepspeed_zero2")
# At least this fraction of the trainable parameter tensors must change in the step (AdamW moves every tensor with a
# gradient or weight decay by about the learning rate; a few may legitimately get neither).
MIN_CHANGED_FRACTION = 0.9

PROFILE_MODELS: dict[str, str] = {
    "mae_dfer_pretrain": "mae_dfer_pretrain_base", "vit_b_pretrain": "videomae_pretrain_base_160",
}

SECTIONS: tuple[str, ...] = ("models", "profile", "train")


class Skip(Exception):
    """Raised by a check whose requirement is missing; the message is the reason."""


@dataclass
class CheckResult:
    """One entry of the report."""

    name: str
    status: str  # "pass", "fail" or "skipped"
    seconds: float = 0.0
    numbers: dict[str, Any] = field(default_factory=dict)
    tolerance: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


@dataclass
class Settings:
    """What one run checks and how."""

    device: torch.device
    tiny: bool
    compile_models: tuple[str, ...]  # paper models compiled in the model checks
    compile_backend: str  # torch.compile backend of the model checks
    compile_systems: tuple[str, ...]  # systems whose DDP step runs with train.compile=true (if the config has it)
    work_dir: Path
    batch: int  # model checks and trainer steps
    profile_batch: int


# ------------------------------------------------------------------------------------------------- helpers
def relative_l2(value: torch.Tensor, reference: torch.Tensor) -> float:
    """``||value - reference|| / ||reference||`` in float64 (``inf`` for a non-finite value, 0/0 counts 0)."""
    value, reference = value.detach().double().cpu(), reference.detach().double().cpu()
    if not torch.isfinite(value).all():
        return math.inf
    norm = float(reference.norm())
    diff = float((value - reference).norm())
    if norm == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / norm


def run_check(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
    """Runs one check; an exception becomes a ``fail`` entry (with the error), :class:`Skip` a ``skipped`` one."""
    start = time.perf_counter()
    try:
        result = fn()
    except Skip as skip:
        result = CheckResult(name, "skipped", reason=str(skip))
    except Exception as exc:  # noqa: BLE001 - the report records any failure
        logger.error("%s failed:\n%s", name, traceback.format_exc())
        result = CheckResult(name, "fail", reason=f"{type(exc).__name__}: {exc}")
    result.name = name
    result.seconds = round(time.perf_counter() - start, 3)
    logger.info("%-40s %-7s %6.1f s %s", name, result.status, result.seconds, result.reason or "")
    return result


@contextlib.contextmanager
def strict_fp32(device: torch.device) -> Iterator[None]:
    """True fp32 matmuls and convolutions on CUDA (no TF32) for the reference pass."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {
        "python": platform.python_version(), "torch": torch.__version__,
        "maedfer": getattr(maedfer, "__version__", None),
        "cuda": torch.version.cuda, "cudnn": str(torch.backends.cudnn.version()) if torch.cuda.is_available() else None,
    }
    for package in ("deepspeed", "triton", "fvcore"):  # from the metadata: importing DeepSpeed picks its device
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _model_kwargs(name: str, tiny: bool) -> dict[str, Any]:
    return dict(model_entry(name).tiny_overrides) if tiny else {}


# ---------------------------------------------------------------------------------------------- model checks
def _watched_parameters(model: nn.Module) -> list[str]:
    """First, middle and last weight matrix (ndim >= 2) that receives a gradient."""
    names = [n for n, p in model.named_parameters() if p.ndim >= 2 and p.grad is not None and p.grad.abs().sum() > 0]
    return sorted({names[0], names[len(names) // 2], names[-1]}, key=names.index)


def _forward_backward(
    model: nn.Module, call: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor], cotangent: torch.Tensor,
    precision: str, device: torch.device,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and the gradients of ``sum(logits * cotangent)`` (a fixed random direction)."""
    model.zero_grad(set_to_none=True)
    with autocast_context(device, precision):
        logits = call(*inputs)
    logits = logits.float()
    (logits * cotangent).sum().backward()
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


def check_model(name: str, settings: Settings) -> list[CheckResult]:
    """``model/<name>/eager_bf16`` and ``model/<name>/compiled_bf16`` against the fp32 eager pass."""
    device = settings.device
    torch.manual_seed(SEED)
    model = create_model(name, **_model_kwargs(name, settings.tiny)).to(device).eval()
    generator = torch.Generator().manual_seed(SEED)
    inputs = tuple(t.to(device) for t in example_inputs(model, settings.batch, generator=generator))
    with strict_fp32(device):
        with torch.no_grad():
            shape = model(*inputs).shape
        cotangent = torch.randn(shape, generator=generator).to(device)
        ref_logits, ref_grads = _forward_backward(model, model, inputs, cotangent, "fp32", device)
    watched = _watched_parameters(model)
    tolerance = {"logits_rel_l2": TOLERANCES["bf16_logits_rel_l2"], "grad_rel_l2": TOLERANCES["bf16_grad_rel_l2"]}

    def compare(label: str, call: Callable[..., torch.Tensor]) -> CheckResult:
        start = time.perf_counter()
        logits, grads = _forward_backward(model, call, inputs, cotangent, "bf16", device)
        first_call = time.perf_counter() - start
        numbers: dict[str, Any] = {"logits_rel_l2": relative_l2(logits, ref_logits), "logits_shape": list(logits.shape)}
        for pname in watched:
            numbers[f"grad_rel_l2[{pname}]"] = relative_l2(grads[pname], ref_grads[pname])
        names = sorted(ref_grads)
        missing = [n for n in names if n not in grads]
        numbers["grad_rel_l2[all]"] = relative_l2(
            torch.cat([grads.get(n, torch.zeros_like(ref_grads[n])).flatten() for n in names]),
            torch.cat([ref_grads[n].flatten() for n in names]),
        )
        numbers["first_call_s"] = round(first_call, 3)
        if call is not model:
            numbers["compile_backend"] = settings.compile_backend
        bad = [k for k, v in numbers.items() if k.startswith("grad_rel_l2") and not v <= tolerance["grad_rel_l2"]]
        if not numbers["logits_rel_l2"] <= tolerance["logits_rel_l2"]:
            bad.insert(0, "logits_rel_l2")
        reason = None
        if missing:
            reason = f"no gradient for {len(missing)} parameter(s) in the {label} pass, e.g. {missing[0]}"
        elif bad:
            reason = "over tolerance: " + ", ".join(f"{k}={numbers[k]:.3g}" for k in bad)
        return CheckResult(f"model/{name}/{label}", "fail" if reason else "pass", numbers=numbers,
                           tolerance=tolerance, reason=reason)

    results = [run_check(f"model/{name}/eager_bf16", lambda: compare("eager_bf16", model))]
    compiled_name = f"model/{name}/compiled_bf16"
    if name not in settings.compile_models:
        why = ("--skip-compile" if not settings.compile_models
               else "compiled on CPU: only the first model (--compile-all)")
        results.append(CheckResult(compiled_name, "skipped", reason=why))
    else:
        torch._dynamo.reset()
        compiled = torch.compile(model, backend=settings.compile_backend)
        results.append(run_check(compiled_name, lambda: compare("compiled_bf16", compiled)))
    return results


# ----------------------------------------------------------------------------------------------- profiling
def check_profile(label: str, name: str, settings: Settings) -> CheckResult:
    """Counts, bf16 training throughput and (on a known GPU) MFU of a pre-training model."""
    cuda = settings.device.type == "cuda"
    report = profile_model(
        name, batch=settings.profile_batch, precision="bf16", device=settings.device,
        overrides=_model_kwargs(name, settings.tiny), warmup=2 if cuda else 1, repeats=5 if cuda else 2,
    )
    numbers = {
        "model": name, "batch": report.batch, "gmacs_per_clip": report.gmacs, "gmacs_fvcore": report.gmacs_fvcore,
        "counters_agree": report.counters_agree, "train_clips_per_s": report.training.get("train_clips_per_s"),
        "train_step_ms": report.training.get("step_ms"),
        "train_peak_memory_mb": report.training.get("train_peak_memory_mb"),
        "inference_clips_per_s": report.inference.get("clips_per_s"), "mfu_training": report.mfu_training,
        "mfu_inference": report.mfu_inference, "notes": report.notes,
    }
    problems = []
    if report.counters_agree is False:
        problems.append("FlopCounterMode and fvcore disagree")
    if not (numbers["train_clips_per_s"] or 0) > 0:
        problems.append("no training throughput")
    if report.mfu_training is not None and not 0 < report.mfu_training <= 1:
        problems.append(f"MFU {report.mfu_training:.3g} outside (0, 1]")
    reason = "; ".join(problems) or (None if report.mfu_training is not None else "MFU: needs a GPU of known peak")
    return CheckResult(f"profile/{label}", "fail" if problems else "pass", numbers=numbers,
                       tolerance={"mfu_range": [0, 1]}, reason=reason)


# -------------------------------------------------------------------------------------------- trainer steps
def world_settings(tiny: bool) -> dict[str, Any]:
    """The tiny synthetic world every trainer step reads (7 training clips; 64 px upscaled for full-size models)."""
    return {"num_identities": 3, "clips_per_class": {"train": 1, "val": 1, "test": 1}, "num_frames": 16,
            "size": 32 if tiny else 64, "preview": False}


def train_config_fields() -> set[str]:
    """The fields of the training config (``train.compile`` and ``train.compile_options`` are recent)."""
    from maedfer.config import TrainConfig

    return {f.name for f in dataclasses.fields(TrainConfig)}


def _compile_overrides(system: str, backend: str, settings: Settings) -> tuple[list[str], Any]:
    """Overrides that compile the trainer's model, and what the report says about it."""
    if backend != "ddp":
        return [], "off (DeepSpeed steps run eager)"
    if system not in settings.compile_systems:
        return [], ("off (--skip-compile)" if not settings.compile_systems
                    else "off (compiled on CPU: only the first system; --compile-all)")
    fields = train_config_fields()
    if "compile" not in fields:
        return [], "not available (the training config has no train.compile)"
    if settings.compile_backend == "inductor":
        return ["train.compile=true"], {"backend": "inductor"}
    if "compile_options" not in fields:
        return [], f"not available (no train.compile_options to pick the {settings.compile_backend} backend)"
    return (["train.compile=true", f"train.compile_options={{backend: {settings.compile_backend}}}"],
            {"backend": settings.compile_backend})


@contextlib.contextmanager
def single_process_group(device: torch.device) -> Iterator[None]:
    """A one-process default group (NCCL on GPU, gloo on CPU) with torchrun's variables set, as DDP needs."""
    import torch.distributed as dist

    from maedfer.engine.distributed import free_port

    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    created = not dist.is_initialized()
    if created:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    try:
        yield
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _detach_run_logging() -> None:
    """Closes the console / log.txt handlers ``maedfer.apps.train.run`` attached (each run adds its own)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_maedfer", False):
            root.removeHandler(handler)
            handler.close()


def check_train_step(system: str, backend: str, settings: Settings, reference_loss: float | None = None) -> CheckResult:
    """One optimizer step of ``system`` through ``maedfer.apps.train.run`` on ``backend`` (``ddp`` / ``deepspeed_zero2``).

    ``reference_loss``: the same system's loss under DDP, which a DeepSpeed step must match (see :data:`TOLERANCES`).
    """
    from maedfer.checkpoint import read_checkpoint
    from maedfer.config import load_config
    from maedfer.resources import config_path
    from maedfer.engine.distributed import seed_everything
    from maedfer.apps.train import build_model, run

    on_deepspeed = backend.startswith("deepspeed")
    if on_deepspeed and importlib.util.find_spec("deepspeed") is None:  # not imported here: it picks its device
        raise Skip("DeepSpeed is not installed (pip install deepspeed)")
    model_name, config, extra = SYSTEMS[system]
    out = settings.work_dir / "train" / f"{system}_{backend}"
    overrides = [
        "data.dataset=synthetic", f"data.root={settings.work_dir / 'world'}", "data.train_file=null",
        "data.fixed_crop=null", "data.num_workers=0", f"data.batch_size={settings.batch}",
        f"model.name={model_name}", "train.epochs=1", "train.max_steps_per_epoch=1", f"train.output_dir={out}",
        "train.precision=bf16", "train.tensorboard=false", "train.resume=none", "train.save_every_epochs=1",
        "train.log_every_steps=1", "optim.warmup_epochs=0", *extra,
    ]
    if settings.tiny:
        overrides += ["data.num_frames=8", "data.input_size=32", "data.short_side_size=32"]
    overrides += ["train.backend=deepspeed", "train.zero_stage=2"] if on_deepspeed else ["train.backend=ddp"]
    compile_overrides, compile_note = _compile_overrides(system, backend, settings)
    overrides += compile_overrides
    if compile_overrides:
        torch._dynamo.reset()  # a fresh cache per compiled model (the blocks' code is shared between models)
    cfg = load_config(config_path(config, "pretrain"), overrides)
    cfg.model.kwargs.update(_model_kwargs(model_name, settings.tiny))
    cfg.data.synthetic = world_settings(settings.tiny)

    seed_everything(cfg.train.seed)
    initial = {k: v.detach().clone() for k, v in build_model(cfg).state_dict().items()}
    trainable = {n for n, p in build_model(cfg).named_parameters() if p.requires_grad}
    try:
        result = run(cfg)
    finally:
        _detach_run_logging()
    final = read_checkpoint(out / "checkpoint-last.pth")["model"]
    history = json.loads((out / "history.json").read_text())
    loss = float(history[-1]["train"]["loss"])
    changed = [n for n in trainable if not torch.equal(final[n].float(), initial[n].float())]
    nonfinite = [n for n, v in final.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    not_fp32 = [n for n in trainable if final[n].dtype != torch.float32]
    numbers = {
        "model": model_name, "steps": result["steps"], "loss": loss, "nonfinite_losses": result["nonfinite_losses"],
        "changed_fraction": len(changed) / max(len(trainable), 1), "trainable_tensors": len(trainable),
        "compile": compile_note, "batch": settings.batch, "precision": "bf16",
        "zero_stage": 2 if on_deepspeed else None,
    }
    problems = []
    if result["steps"] != 1 or result["nonfinite_losses"]:
        problems.append(f"{result['steps']} step(s), {result['nonfinite_losses']} non-finite loss(es)")
    if not (math.isfinite(loss) and loss > 0):
        problems.append(f"loss {loss}")
    if nonfinite:
        problems.append(f"non-finite weights in {nonfinite[:3]}")
    if not_fp32:
        problems.append(f"final weights not fp32: {not_fp32[:3]}")
    tolerance: dict[str, Any] = {"min_changed_fraction": MIN_CHANGED_FRACTION}
    if reference_loss is not None:
        numbers["ddp_loss"] = reference_loss
        numbers["loss_rel_diff_vs_ddp"] = abs(loss - reference_loss) / abs(reference_loss)
        tolerance["loss_rel_diff_vs_ddp"] = TOLERANCES["backend_loss_rel_diff"]
        if not numbers["loss_rel_diff_vs_ddp"] <= TOLERANCES["backend_loss_rel_diff"]:
            problems.append(f"loss {loss:.5g} vs {reference_loss:.5g} under DDP")
    if numbers["changed_fraction"] < MIN_CHANGED_FRACTION:
        problems.append(f"only {numbers['changed_fraction']:.0%} of the trainable tensors changed")
    return CheckResult(f"train/{system}/{backend}", "fail" if problems else "pass", numbers=numbers,
                       tolerance=tolerance, reason="; ".join(problems) or None)


# ---------------------------------------------------------------------------------------------------- driver
def check_names(sections: Sequence[str]) -> list[str]:
    """The names of the checks of ``sections``, in report order."""
    names = [f"model/{m}/{kind}" for m in PAPER_MODELS for kind in ("eager_bf16", "compiled_bf16")] * (
        "models" in sections)
    names += [f"profile/{label}" for label in PROFILE_MODELS] * ("profile" in sections)
    names += [f"train/{s}/{b}" for b in TRAIN_BACKENDS for s in SYSTEMS] * ("train" in sections)
    return names


def run_checks(settings: Settings, sections: Sequence[str]) -> list[CheckResult]:
    """Every check of the chosen sections, in report order (all skipped when the device is an absent GPU)."""
    if settings.device.type == "cuda" and not torch.cuda.is_available():
        reason = "CUDA is not available (maedfer gpu-check --device cpu --tiny runs the CPU version)"
        return [CheckResult(name, "skipped", reason=reason) for name in check_names(sections)]
    results: list[CheckResult] = []
    if "models" in sections:
        for name in PAPER_MODELS:
            results.extend(check_model(name, settings))
    if "profile" in sections:
        for label, name in PROFILE_MODELS.items():
            results.append(run_check(f"profile/{label}", lambda n=name, lab=label: check_profile(lab, n, settings)))
    if "train" in sections:
        from maedfer.synthetic import ensure_synthetic_world

        start = time.perf_counter()
        ensure_synthetic_world(settings.work_dir / "world", world_settings(settings.tiny))
        logger.info("synthetic world ready in %.1f s", time.perf_counter() - start)
        ddp_loss: dict[str, float] = {}
        with single_process_group(settings.device):
            for backend in TRAIN_BACKENDS:
                for system in SYSTEMS:
                    result = run_check(f"train/{system}/{backend}", lambda s=system, b=backend: check_train_step(
                        s, b, settings, None if b == "ddp" else ddp_loss.get(s)))
                    if backend == "ddp" and result.status == "pass":
                        ddp_loss[system] = result.numbers["loss"]
                    results.append(result)
    return results


def build_report(settings: Settings, results: list[CheckResult], seconds: float, argv: Sequence[str]) -> dict[str, Any]:
    """The JSON report: device, versions, settings, tolerances, every check, and a summary."""
    counts = {status: sum(r.status == status for r in results) for status in ("pass", "fail", "skipped")}
    return {
        "tool": "tools/gpu_check.py",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(argv),
        "device": (device_description(settings.device) if settings.device.type != "cuda" or torch.cuda.is_available()
                   else "CUDA requested but not available"),
        "device_type": settings.device.type,
        "versions": _versions(),
        "settings": {"tiny": settings.tiny, "batch": settings.batch, "profile_batch": settings.profile_batch,
                     "compile_models": list(settings.compile_models), "compile_backend": settings.compile_backend,
                     "compile_systems": list(settings.compile_systems),
                     "train_compile_field": "compile" in train_config_fields(), "seed": SEED},
        "tolerances": {**TOLERANCES, "min_changed_fraction": MIN_CHANGED_FRACTION},
        "checks": [dataclasses.asdict(r) for r in results],
        "summary": {**counts, "seconds": round(seconds, 1)},
        "passed": counts["fail"] == 0,
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the checks, writes the report, prints a summary; 0 when nothing failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="the registry's tiny model sizes (CPU smoke run)")
    parser.add_argument("--out", default="gpu_check_report.json", help="JSON report path")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--skip-compile", action="store_true", help="no torch.compile anywhere")
    parser.add_argument("--compile-all", action="store_true", help="compile every model on CPU too (slow)")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend of the model checks (default: inductor on GPU; aot_eager on CPU, "
                             "where a cold inductor build of one tiny model takes 1-4 minutes)")
    parser.add_argument("--batch", type=int, default=None, help="clips per model check / trainer step (GPU 4, CPU 2)")
    parser.add_argument("--profile-batch", type=int, default=None, help="profiling batch (32; 2 with --tiny)")
    parser.add_argument("--work-dir", default=None, help="synthetic world and runs (default: a temporary folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")

    device = torch.device(args.device)
    if device.type == "cuda" and torch.cuda.is_available() and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    cuda = device.type == "cuda"
    systems = tuple(SYSTEMS)
    if args.skip_compile:
        compile_models, compile_systems = (), ()
    elif cuda or args.compile_all:
        compile_models, compile_systems = PAPER_MODELS, systems
    else:  # a CPU compiles slowly: one model and one trainer step
        compile_models, compile_systems = PAPER_MODELS[:1], systems[:1]
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        work_dir = Path(args.work_dir) if args.work_dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        settings = Settings(
            device=device, tiny=args.tiny, compile_models=compile_models,
            compile_backend=args.compile_backend or ("inductor" if cuda else "aot_eager"),
            compile_systems=compile_systems, work_dir=work_dir,
            batch=args.batch or (4 if cuda else 2),
            profile_batch=args.profile_batch or (2 if args.tiny and not cuda else 32),
        )
        results = run_checks(settings, args.sections)
    seconds = time.perf_counter() - start
    report = _json_safe(build_report(settings, results, seconds, sys.argv[1:] if argv is None else argv))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nGPU check on {report['device']}")
    for entry in report["checks"]:
        print(f"  {entry['status']:<7} {entry['name']:<36} {entry['seconds']:7.1f} s  {entry['reason'] or ''}")
    summary = report["summary"]
    print(f"{summary['pass']} passed, {summary['fail']} failed, {summary['skipped']} skipped "
          f"in {summary['seconds']} s; report: {out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
