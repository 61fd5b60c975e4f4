"""Forward-pass latency of registered models, fused (SDPA) vs manual attention, eager vs torch.compile, in one process.

Examples:
    maedfer benchmark                                   # the paper models, CPU, 2 threads
    maedfer benchmark --models mae_dfer_base --batch 8 --device cuda --precision bf16
    maedfer benchmark --attention both --json bench.json
    maedfer benchmark --attention fused --compile --train   # eager vs compiled, forward and training step

Timing: ``--warmup`` untimed calls, then ``--repeats`` timed calls under ``torch.inference_mode()``; the median and
the minimum are reported (CUDA calls are synchronised). The machine, threads and versions are printed with the table.
``--compile`` adds a row per model and attention mode with the model compiled (``maedfer.compile.compile_model``);
the compile happens in its first warm-up call, whose time is reported as ``compile s``. ``--train`` also times a
training step (forward, squared-output loss, backward, AdamW; ``maedfer.apps.profiling.measure_training_step``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

import maedfer
from maedfer.compile import compile_model
from maedfer.engine.backends import autocast_context, resolve_precision
from maedfer.layers import use_fused_attention
from maedfer.models import example_inputs
from maedfer.apps.profiling import measure_training_step


_FIRST_CALL: list[float] = []  # time of the first call of each _time_forward (the compile, for compiled models)


def _time_forward(model: torch.nn.Module, inputs: tuple, warmup: int, repeats: int, autocast) -> list[float]:
    sync = torch.cuda.synchronize if inputs[0].is_cuda else (lambda: None)
    times = []
    with torch.inference_mode(), autocast:
        for index in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            model(*inputs)
            sync()
            if index == 0:
                _FIRST_CALL.append(time.perf_counter() - start)
            if index >= warmup:
                times.append(time.perf_counter() - start)
    return times


def machine_description(device: torch.device) -> str:
    """One line naming the processor / GPU, threads and library versions."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        where = f"{cpu}, {torch.get_num_threads()} threads"
    return f"{where}; torch {torch.__version__}; python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mae_dfer_base", "videomae_base_160", "svfap_base", "hicmae_base"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="fp32",
                        help="autocast precision (auto: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--compile", action="store_true", help="also time each model under torch.compile")
    parser.add_argument("--train", action="store_true", help="also time a training step")
    parser.add_argument("--attention", choices=("fused", "manual", "both"), default="both")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device)
    modes = ("fused", "manual") if args.attention == "both" else (args.attention,)
    machine = machine_description(device)
    print(f"# {machine}; batch {args.batch}; {precision}; median of {args.repeats} after {args.warmup} warm-up")
    print(f"{'model':<28} {'params':>12} {'attention':>9} {'compiled':>8} {'median s':>9} {'min s':>8} "
          f"{'clips/s':>8} {'compile s':>9} {'train s':>8}")
    rows = []
    for name in args.models:
        for compiled in (False, True) if args.compile else (False,):
            torch.manual_seed(0)
            model = maedfer.create_model(name).to(device).eval()
            inputs = tuple(t.to(device) for t in example_inputs(model, args.batch))
            params = sum(p.numel() for p in model.parameters())
            if compiled:
                torch._dynamo.reset()
                compile_model(model)
            for mode in modes:
                with use_fused_attention(mode == "fused"):
                    times = _time_forward(model, inputs, args.warmup, args.repeats, autocast_context(device, precision))
                    train = None
                    if args.train:
                        train = measure_training_step(model, inputs, precision=precision, warmup=args.warmup,
                                                      repeats=args.repeats)["step_ms"] / 1e3
                median = statistics.median(times)
                row = {
                    "model": name,
                    "params": params,
                    "attention": mode,
                    "compiled": compiled,
                    "batch": args.batch,
                    "precision": precision,
                    "device": str(device),
                    "median_s": median,
                    "min_s": min(times),
                    "clips_per_s": args.batch / median,
                    "first_call_s": times[0] if args.warmup == 0 else _FIRST_CALL[-1],
                    "train_step_s": train,
                }
                rows.append(row)
                print(f"{name:<28} {params:>12,} {mode:>9} {str(compiled):>8} {median:>9.3f} {min(times):>8.3f} "
                      f"{row['clips_per_s']:>8.2f} {row['first_call_s']:>9.1f} "
                      f"{'-' if train is None else format(train, '.3f'):>8}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"machine": machine, "results": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
