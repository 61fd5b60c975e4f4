"""Profiling: parameters, multiply-adds with fused attention counted, throughput, latency, memory and MFU.

Details: ``docs/modules.md``, section ``maedfer/apps/profiling.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from ..engine.backends import autocast_context, resolve_precision
from ..layers import use_fused_attention

__all__ = [
    "MacCount",
    "PAPER_CONFIGS",
    "ProfileReport",
    "count_macs",
    "count_parameters",
    "device_peak_flops",
    "fvcore_macs",
    "measure_inference",
    "measure_training_step",
    "profile_model",
]

logger = logging.getLogger(__name__)
aten = torch.ops.aten

# The four paper configurations: label -> registered model (batch 1, 16x160x160 clips; HiCMAE adds 256x128 fbank).
PAPER_CONFIGS: dict[str, str] = {
    "videomae_vit_b": "videomae_base_160",
    "mae_dfer": "mae_dfer_base",
    "svfap": "svfap_base",
    "hicmae": "hicmae_base",
}

# Dense peak throughput (FLOP/s) per precision of GPUs we know; MFU is reported only for these.
_PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H100": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12, "tf32": 494e12},
    "H200": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12, "tf32": 494e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12, "tf32": 156e12},
    "L4": {"bf16": 121e12, "fp16": 121e12, "fp32": 30.3e12, "tf32": 60e12},
}

# Ops whose count is already in "fvcore units" (not 2 x multiply-adds).
_ELEMENTWISE_UNITS = {"native_layer_norm", "native_layer_norm_backward"}


# --------------------------------------------------------------------------------------------- counting
def _sdpa_cpu_forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _sdpa_cpu_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


def _layer_norm(inputs, *args, out_shape=None, **kwargs) -> int:
    return 5 * math.prod(inputs)


def _custom_mapping() -> dict[Any, Callable[..., int]]:
    mapping: dict[Any, Callable[..., int]] = {aten.native_layer_norm: _layer_norm}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_forward
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _sdpa_cpu_backward
    return mapping


@dataclass
class MacCount:
    """A multiply-add count.

    Attributes:
        macs: Multiply-adds (fvcore convention, LayerNorm at 5 per element).
        by_operator: The same split by operator name.
        by_module: Split by top-level module (fvcore only).
        counter: Which counter produced it.
    """

    macs: float
    by_operator: dict[str, float] = field(default_factory=dict)
    by_module: dict[str, float] = field(default_factory=dict)
    counter: str = "flop_counter"

    @property
    def gmacs(self) -> float:
        """``macs / 1e9``."""
        return self.macs / 1e9

    @property
    def gflops(self) -> float:
        """``2 * macs / 1e9`` (a multiply-add is two floating-point operations)."""
        return 2 * self.macs / 1e9


def count_macs(fn: Callable[[], Any]) -> MacCount:
    """Count the multiply-adds of running ``fn()`` (forward, or forward + backward) with ``FlopCounterMode``.

    Args:
        fn: A no-argument callable, e.g. ``lambda: model(video)``.
    """
    mode = FlopCounterMode(display=False, custom_mapping=_custom_mapping())
    with mode:
        fn()
    by_operator: dict[str, float] = {}
    for op, flops in mode.get_flop_counts()["Global"].items():
        name = op.__name__.split(".")[0] if hasattr(op, "__name__") else str(op).split(".")[-1]
        units = flops if name in _ELEMENTWISE_UNITS else flops / 2
        by_operator[name] = by_operator.get(name, 0.0) + units
    return MacCount(macs=sum(by_operator.values()), by_operator=by_operator)


def _output_tensors(out: Any) -> tuple[torch.Tensor, ...]:
    """The tensors of a model output: a tensor, or the tensor fields (and lists of tensors) of a dataclass."""
    if isinstance(out, torch.Tensor):
        return (out,)
    tensors = []
    for value in vars(out).values():
        if isinstance(value, torch.Tensor):
            tensors.append(value)
        elif isinstance(value, (list, tuple)):
            tensors.extend(v for v in value if isinstance(v, torch.Tensor))
    return tuple(tensors)


class _TupleOutput(nn.Module):
    """Makes any maedfer model traceable by fvcore: flattens dataclass outputs into a tuple of tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _output_tensors(self.model(*inputs))


def _fvcore_sdpa_handle(inputs: list, outputs: list) -> int:
    from fvcore.nn.jit_handles import get_shape

    query, key, value = (get_shape(i) for i in inputs[:3])
    batch_heads = math.prod(query[:-2])
    length, dim = query[-2:]
    return batch_heads * length * key[-2] * (dim + value[-1])


def fvcore_macs(model: nn.Module, inputs: Sequence[torch.Tensor]) -> MacCount:
    """Count multiply-adds of ``model(*inputs)`` with fvcore (``pip install fvcore``), fused attention included.

    Raises:
        ImportError: If fvcore is not installed.
    """
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from fvcore.nn import FlopCountAnalysis
    except ImportError as err:
        raise ImportError('fvcore_macs needs fvcore: pip install "maedfer[profile]" (or pip install fvcore)') from err
    wrapped = _TupleOutput(model)
    analysis = FlopCountAnalysis(wrapped, tuple(inputs))
    analysis.set_op_handle("aten::scaled_dot_product_attention", _fvcore_sdpa_handle)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with torch.no_grad():
        total = float(analysis.total())
    by_module = {name.removeprefix("model."): float(v) for name, v in analysis.by_module().items() if name.count(".") == 1}
    return MacCount(
        macs=total,
        by_operator={k: float(v) for k, v in analysis.by_operator().items()},
        by_module=by_module,
        counter="fvcore",
    )


def count_parameters(model: nn.Module) -> dict[str, Any]:
    """Total, trainable and per top-level module parameter counts (shared tensors counted once)."""
    seen: set[int] = set()
    total = trainable = 0
    groups: dict[str, int] = {}
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
        group = name.split(".")[0]
        groups[group] = groups.get(group, 0) + param.numel()
    return {"total": total, "trainable": trainable, "by_module": groups}


# --------------------------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB (process peak RSS)


def _timed(step: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> list[float]:
    times = []
    for index in range(warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return times


def measure_inference(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    *,
    precision: str = "fp32",
    warmup: int = 2,
    repeats: int = 5,
) -> dict[str, float]:
    """Forward latency and throughput under ``torch.inference_mode`` (CUDA-synchronised on GPU).

    Returns:
        ``latency_ms`` (median per batch), ``latency_min_ms``, ``ms_per_clip``, ``clips_per_s``, ``peak_memory_mb``
        (GPU: peak allocated; CPU: the process's peak RSS).
    """
    device = inputs[0].device
    batch = inputs[0].shape[0]
    precision = resolve_precision(precision, device)
    model.eval()
    _peak_memory_reset(device)
    with torch.inference_mode(), autocast_context(device, precision):
        times = _timed(lambda: model(*inputs), device, warmup, repeats)
    median = statistics.median(times)
    return {
        "latency_ms": 1e3 * median,
        "latency_min_ms": 1e3 * min(times),
        "ms_per_clip": 1e3 * median / batch,
        "clips_per_s": batch / median,
        "peak_memory_mb": _peak_memory_mb(device),
    }


def _training_loss(model: nn.Module, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """A stand-in loss touching every output: the mean square of each output tensor, summed."""
    return sum(t.float().pow(2).mean() for t in _output_tensors(model(*inputs)))  # type: ignore[return-value]


def measure_training_step(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    *,
    precision: str = "fp32",
    warmup: int = 1,
    repeats: int = 3,
) -> dict[str, float]:
    """Time one training step: forward, a squared-output loss, backward and an AdamW step.

    Returns:
        ``step_ms`` (median), ``train_clips_per_s``, ``train_peak_memory_mb``.
    """
    device = inputs[0].device
    batch = inputs[0].shape[0]
    precision = resolve_precision(precision, device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(device, precision):
            loss = _training_loss(model, inputs)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    _peak_memory_reset(device)
    times = _timed(step, device, warmup, repeats)
    median = statistics.median(times)
    model.eval()
    return {"step_ms": 1e3 * median, "train_clips_per_s": batch / median, "train_peak_memory_mb": _peak_memory_mb(device)}


def device_peak_flops(device: torch.device, precision: str) -> float | None:
    """Dense peak FLOP/s of a known GPU for ``precision`` (fp32 counts TF32 tensor cores when enabled); else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in _PEAK_FLOPS.items():
        if key in name:
            if precision == "fp32" and torch.backends.cuda.matmul.allow_tf32:
                return peaks["tf32"]
            return peaks.get(precision)
    return None


def device_description(device: torch.device) -> str:
    """The processor or GPU, with thread count and torch version."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}; torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    from ..engine.backends import cpu_has_native_bf16

    isa = torch.backends.cpu.get_cpu_capability()
    bf16 = "" if cpu_has_native_bf16() else ", no native bf16"
    return f"{cpu} ({isa}{bf16}), {torch.get_num_threads()} threads; torch {torch.__version__}"


# --------------------------------------------------------------------------------------------- reports
@dataclass
class ProfileReport:
    """Everything :func:`profile_model` measured for one model (JSON-serialisable through :meth:`as_dict`)."""

    model: str
    kind: str
    batch: int
    input_shapes: list[list[int]]
    precision: str
    attention: str
    device: str
    params: int
    params_trainable: int
    params_by_module: dict[str, int]
    gmacs: float
    gflops: float
    views: int
    gmacs_all_views: float
    gmacs_fvcore: float | None = None
    counters_agree: bool | None = None
    gmacs_by_module: dict[str, float] = field(default_factory=dict)
    inference: dict[str, float] = field(default_factory=dict)
    training: dict[str, float] = field(default_factory=dict)
    mfu_inference: float | None = None
    mfu_training: float | None = None
    paper_config: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """All fields, plus the inference and training figures repeated at the top level (flat JSON)."""
        return {**asdict(self), **self.inference, **self.training}


def _geometry_overrides(name: str, frames: int | None, img: int | None, audio_len: int | None) -> dict[str, Any]:
    from ..registry import model_entry

    entry = model_entry(name)
    overrides: dict[str, Any] = {}
    if frames is not None:
        overrides["all_frames" if entry.official and entry.kind == "finetune" else "num_frames"] = frames
    if img is not None:
        overrides["img_size"] = img
    if audio_len is not None:
        if entry.system != "hicmae":
            raise ValueError(f"--audio-len only applies to HiCMAE models, not {name}")
        overrides["img_size_audio" if entry.official else "audio_size"] = (audio_len, 128)
    return overrides


@contextlib.contextmanager
def counting_official_work(model: nn.Module) -> Iterator[None]:
    """Count what the official model computes: turn off maedfer's dead-branch skipping (``skip_unused`` of the
    LGI-Former's 'region' head) for the duration, so MAC counts equal the papers' and fvcore's official figures."""
    switched = [m for m in model.modules() if getattr(m, "skip_unused", False)]
    for module in switched:
        module.skip_unused = False
    try:
        yield
    finally:
        for module in switched:
            module.skip_unused = True


@contextlib.contextmanager
def _attention_mode(official_style: bool) -> Iterator[None]:
    if official_style:
        with use_fused_attention(False):
            yield
    else:
        yield


def profile_model(
    name: str,
    *,
    batch: int = 1,
    frames: int | None = None,
    img: int | None = None,
    audio_len: int | None = None,
    mode: str | None = None,
    views: int = 1,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    official_style: bool = False,
    measure_speed: bool = True,
    train_step: bool = True,
    use_fvcore: bool = True,
    warmup: int = 2,
    repeats: int = 5,
    overrides: dict[str, Any] | None = None,
    compile: bool = False,
) -> ProfileReport:
    """Profile a registered model.

    Args:
        name: Registered model name.
        batch: Clips per batch.
        frames: Frames per clip (default: the model's).
        img: Frame size (default: the model's).
        audio_len: Spectrogram frames for HiCMAE (default 256).
        mode: ``"finetune"`` or ``"pretrain"``; must match the model's kind (default: the model's kind).
        views: Test views per video; GMACs are also reported times this (the official protocol uses 4: 2 x 2).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` autocast for the timings (counts are precision independent).
        device: ``"cpu"`` or ``"cuda"``.
        official_style: Eager manual attention in fp32 (what the official code runs), to compare with the fused path.
        measure_speed: Time inference.
        train_step: Also time a training step.
        use_fvcore: Cross-check the count with fvcore when it is installed.
        warmup, repeats: Timing iterations.
        overrides: Extra constructor arguments.
        compile: Time the model under ``torch.compile`` (:func:`maedfer.compile.compile_model`; counts are eager).
    """
    from ..models import example_inputs
    from ..registry import create_model, model_entry

    entry = model_entry(name)
    if mode is not None and mode != entry.kind:
        raise ValueError(f"{name} is a {entry.kind} model; pick a {mode} model (see maedfer.list_models(kind={mode!r}))")
    if official_style:
        precision = "fp32"
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    kwargs = {**_geometry_overrides(name, frames, img, audio_len), **(overrides or {})}
    torch.manual_seed(0)
    model = create_model(name, **kwargs).to(device).eval()
    inputs = tuple(t.to(device) for t in example_inputs(model, batch))
    params = count_parameters(model)
    notes: list[str] = []
    with torch.no_grad(), _attention_mode(official_style), counting_official_work(model):
        count = count_macs(lambda: model(*inputs))
    fv = None
    agree = None
    by_module: dict[str, float] = {}
    if use_fvcore:
        try:
            with counting_official_work(model):
                fv = fvcore_macs(model, inputs)
        except ImportError as err:
            notes.append(str(err))
        else:
            agree = math.isclose(fv.macs, count.macs, rel_tol=1e-3)
            by_module = {k: v / 1e9 for k, v in fv.by_module.items()}
            if not agree:
                notes.append(f"counters disagree: FlopCounterMode {count.gmacs:.4f} vs fvcore {fv.gmacs:.4f} GMACs")
                logger.warning("%s: %s", name, notes[-1])
    report = ProfileReport(
        model=name,
        kind=entry.kind,
        batch=batch,
        input_shapes=[list(t.shape) for t in inputs],
        precision=precision,
        attention="manual (official style)" if official_style else "fused (SDPA)",
        device=device_description(device),
        params=params["total"],
        params_trainable=params["trainable"],
        params_by_module=params["by_module"],
        gmacs=count.gmacs / batch,
        gflops=count.gflops / batch,
        views=views,
        gmacs_all_views=views * count.gmacs / batch,
        gmacs_fvcore=None if fv is None else fv.gmacs / batch,
        counters_agree=agree,
        gmacs_by_module={k: v / batch for k, v in by_module.items()},
        notes=notes,
    )
    if measure_speed:
        if compile:
            from ..compile import compile_model

            compile_model(model)
            notes.append("timed under torch.compile (the compile itself is in the warm-up)")
        with _attention_mode(official_style):
            report.inference = measure_inference(model, inputs, precision=precision, warmup=warmup, repeats=repeats)
            if train_step:
                report.training = measure_training_step(
                    model, inputs, precision=precision, warmup=max(1, warmup // 2), repeats=max(1, repeats // 2)
                )
        peak = device_peak_flops(device, precision)
        if peak is not None:
            flops_per_clip = 2 * count.macs / batch
            report.mfu_inference = flops_per_clip * report.inference["clips_per_s"] / peak
            if report.training:
                # forward + backward ~ 3x the forward FLOPs
                report.mfu_training = 3 * flops_per_clip * report.training["train_clips_per_s"] / peak
        elif device.type == "cuda":
            notes.append("MFU not reported: unknown GPU peak")
    return report


# ------------------------------------------------------------------------------------------ command line

#: Help text of ``maedfer profile`` (and ``tools/profile_model.py``).
CLI_DESCRIPTION = """Profile maedfer models: parameters, GMACs/GFLOPs (fused attention counted), throughput, latency, memory, MFU.

Examples:
    maedfer profile --model mae_dfer_base
    maedfer profile --model hicmae_base --batch 8 --device cuda --precision bf16 --json hicmae.json
    maedfer profile --compare videomae_base_160 mae_dfer_base svfap_base hicmae_base
    maedfer profile --model svfap_base --official-style          # eager manual attention, fp32
    maedfer profile --paper-configs --views 4 --json paper.json  # the four paper models

GMACs follow the papers' (and fvcore's) convention: one multiply-add = 1; GFLOPs = 2 x GMACs. Both counters
(torch FlopCounterMode and fvcore, each with fused attention registered) are run; the tool says if they disagree.
"""


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(reports: list[ProfileReport]) -> None:
    """One row per model."""
    views = reports[0].views if reports else 1
    header = (
        f"{'model':<30} {'params':>12} {'GMACs':>8} {'GMACs x' + str(views):>10} {'GFLOPs':>8} {'agree':>5} "
        f"{'ms/clip':>8} {'clips/s':>8} {'train c/s':>9} {'peak MB':>8} {'MFU':>6}"
    )
    print(header)
    for r in reports:
        agree = "-" if r.counters_agree is None else ("yes" if r.counters_agree else "NO")
        print(
            f"{r.model:<30} {r.params:>12,} {r.gmacs:>8.2f} {r.gmacs_all_views:>10.2f} {r.gflops:>8.2f} {agree:>5} "
            f"{_fmt(r.inference.get('ms_per_clip'), '.1f'):>8} {_fmt(r.inference.get('clips_per_s'), '.2f'):>8} "
            f"{_fmt(r.training.get('train_clips_per_s'), '.2f'):>9} "
            f"{_fmt(r.inference.get('peak_memory_mb'), '.0f'):>8} {_fmt(r.mfu_inference, '.1%'):>6}"
        )
    for r in reports:
        for note in r.notes:
            print(f"note ({r.model}): {note}")


def main(argv: list[str] | None = None) -> int:
    from ..registry import model_entry

    parser = argparse.ArgumentParser(description=CLI_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="registered model name (see maedfer.list_models())")
    what.add_argument("--compare", nargs="+", metavar="MODEL", help="profile several models in one run")
    what.add_argument("--paper-configs", action="store_true", help="the four paper configurations")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default: the model's)")
    parser.add_argument("--img", type=int, default=None, help="frame size (default: the model's)")
    parser.add_argument("--audio-len", type=int, default=None, help="fbank frames for HiCMAE (default 256)")
    parser.add_argument("--mode", choices=("finetune", "pretrain"), default=None)
    parser.add_argument("--views", type=int, default=1, help="test views per video (official protocol: 4)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="fp32",
                        help="autocast precision (auto: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--compile", action="store_true", help="time the model under torch.compile")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--official-style", action="store_true", help="eager manual attention in fp32")
    parser.add_argument("--no-speed", action="store_true", help="only count parameters and MACs")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step timing")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="use each model's tiny test size (smoke tests)")
    parser.add_argument("--json", default=None, help="write the reports to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.paper_configs:
        jobs = list(PAPER_CONFIGS.items())
    else:
        jobs = [(None, name) for name in ([args.model] if args.model else args.compare)]
    reports = []
    for label, name in jobs:
        overrides = model_entry(name).tiny_overrides if args.tiny else None
        report = profile_model(
            name,
            batch=args.batch,
            frames=args.frames,
            img=args.img,
            audio_len=args.audio_len,
            mode=args.mode,
            views=args.views,
            precision=args.precision,
            device=args.device,
            official_style=args.official_style,
            measure_speed=not args.no_speed,
            train_step=not args.no_train,
            warmup=args.warmup,
            repeats=args.repeats,
            overrides=overrides,
            compile=args.compile,
        )
        report.paper_config = label
        reports.append(report)
    print(f"# {reports[0].device}; batch {args.batch}; {reports[0].precision}; attention {reports[0].attention}")
    print_table(reports)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([r.as_dict() for r in reports], handle, indent=2)
        print(f"wrote {args.json}")
    return 1 if any(r.counters_agree is False for r in reports) else 0

