"""maedfer against the official model files, side by side: same weights, same inputs, one process, timed alternately.

You need a checkout of each official repository (MAE-DFER, SVFAP, HiCMAE) in one folder; nothing of it is shipped
here. The official classes are imported from that folder at run time, built with the official recipe arguments, and
their state dict is loaded into the maedfer model of the same name (keys are identical), so both sides compute the
same function.

    git clone https://github.com/sunlicai/MAE-DFER official/MAE-DFER   # likewise SVFAP, HiCMAE
    maedfer benchmark-official --official-root official
    maedfer benchmark-official --official-root official --systems mae_dfer --cases forward pretrain_step \\
        --precision bf16 --json bench.json

Cases: ``forward`` (batch 1, inference mode), ``train_step`` (batch 1, forward + cross-entropy + backward),
``pretrain_step`` (batch 2: model, targets, loss, backward; the official side computes its targets with the same
maedfer objective, so only the model differs; for HiCMAE, whose official forward returns a tuple, the loss is the mean
square of every output on both sides). Precisions: ``fp32``; ``bf16`` (both sides under the same bf16
autocast, fp32 weights); ``bf16-path`` (official under bf16 autocast; maedfer's bf16 inference path, which also
casts the weights once: :func:`maedfer.compile.optimize_for_inference`); ``bf16-vs-fp32`` (maedfer's bf16 path against
the official fp32, the only CPU precision the official code offers). ``--compile`` adds a third column timed in the
same alternation: a compiled copy of the maedfer model (for forward cases of the bf16 path inductor with frozen
weights, :func:`maedfer.compile.optimize_for_inference`; otherwise :func:`maedfer.compile.compile_model`); its first
warm-up run compiles. The ratio is official time / maedfer time (> 1: maedfer faster), from medians of alternating
runs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import maedfer
from maedfer.compile import compile_model, optimize_for_inference
from maedfer.engine.backends import autocast_context, resolve_precision
from maedfer.models import example_inputs
from maedfer.apps.profiling import device_description
from maedfer.tasks import VideoReconstructionObjective


@dataclass(frozen=True)
class OfficialModel:
    """Where an official model lives and how the official recipe builds it."""

    repo: str
    module: str
    name: str  # official registered function, a name maedfer's registry also accepts
    kwargs: dict


# The official recipe arguments (DFEW / CREMA-D fine-tuning scripts, VoxCeleb2 pre-training scripts), passed to the
# official registered function of that name.
_FINETUNE_COMMON = dict(all_frames=16, tubelet_size=2, drop_path_rate=0.1, use_mean_pooling=True, init_scale=0.001)
FINETUNE = {
    "videomae": OfficialModel("MAE-DFER", "modeling_finetune", "vit_base_patch16_160",
                              dict(num_classes=7, **_FINETUNE_COMMON)),
    "mae_dfer": OfficialModel("MAE-DFER", "modeling_finetune", "vit_base_dim512_no_depth_patch16_160", dict(
        num_classes=7, depth=16, attn_type="local_global", lg_region_size=[2, 5, 10], lg_classify_token_type="region",
        **_FINETUNE_COMMON)),
    "svfap": OfficialModel("SVFAP", "modeling_finetune", "svfap_base_patch16_160", dict(
        num_classes=7, stage_depths=[12, 6, 3], temporal_kernel_size=2, num_bottleneck_tokens=[8], **_FINETUNE_COMMON)),
    "hicmae": OfficialModel("HiCMAE", "modeling_finetune_av", "avit_dim512_patch16_160_a256", dict(
        num_classes=6, attn_type="joint", depth=10, depth_audio=10, fusion_depth=2, **_FINETUNE_COMMON)),
}
PRETRAIN = {
    "mae_dfer": (OfficialModel("MAE-DFER", "modeling_pretrain", "pretrain_videomae_base_dim512_no_depth_patch16_160",
                               dict(drop_path_rate=0.0, decoder_depth=4, encoder_depth=16, attn_type="local_global",
                                    lg_region_size=[2, 5, 10])),
                 dict(patch_size=16, frame_diff_group_size=2)),
    "svfap": (OfficialModel("SVFAP", "modeling_pretrain", "pretrain_svfap_base_patch16_160", dict(
        drop_path_rate=0.0, decoder_depth=4, stage_depths=[12, 6, 3], num_bottleneck_tokens=[8],
        temporal_kernel_size=2)), dict(patch_size=16)),
    "hicmae": (OfficialModel("HiCMAE", "modeling_pretrain_av", "pretrain_hicmae_dim512_patch16_160_a256", dict(
        drop_path_rate=0.0, encoder_depth=10, decoder_depth=4, encoder_depth_audio=10, decoder_depth_audio=4,
        encoder_fusion_depth=2, inter_contrastive_temperature=0.07, return_intermediate_features=[3, 6, 9])), None),
}


def official_dependency_message(error: ModuleNotFoundError, path: Path) -> str:
    """The one-line error for an official module whose import failed on a package this environment lacks."""
    missing = (error.name or "").split(".")[0]
    hint = ' (pip install "maedfer[official]")' if missing in ("timm", "torchvision") else ""
    return f"error: the official code {path} imports {error.name!r}, which is not installed{hint}"


def import_official(root: Path, spec: OfficialModel) -> Callable[..., torch.nn.Module]:
    """The official model function, imported from ``root/<repo>/<module>.py`` under a private module name."""
    folder = root / spec.repo
    path = folder / f"{spec.module}.py"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found: --official-root must hold checkouts of MAE-DFER, SVFAP, HiCMAE")
    key = f"_official_{spec.repo.replace('-', '_')}_{spec.module}"
    if key not in sys.modules:
        # The official modules import their siblings by plain name (``modeling_finetune``), and the three
        # repositories reuse those names: hide other repositories' siblings while this one loads.
        siblings = {file.stem for file in folder.glob("*.py")}
        hidden = {name: sys.modules.pop(name) for name in siblings if name in sys.modules}
        sys.path.insert(0, str(folder))
        try:
            module_spec = importlib.util.spec_from_file_location(key, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[key] = module
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module_spec.loader.exec_module(module)
        except ModuleNotFoundError as error:
            sys.modules.pop(key, None)
            raise SystemExit(official_dependency_message(error, path)) from None
        finally:
            sys.path.remove(str(folder))
            for name in siblings:
                sys.modules.pop(name, None)
            sys.modules.update(hidden)
    return getattr(sys.modules[key], spec.name)


def build_pair(root: Path, spec: OfficialModel, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(official, maedfer) models with identical weights."""
    torch.manual_seed(0)
    official = import_official(root, spec)(**spec.kwargs)
    ours = maedfer.create_model(spec.name, **spec.kwargs)
    try:
        missing, unexpected = ours.load_state_dict(official.state_dict(), strict=False)
    except RuntimeError as error:  # shape mismatches
        raise SystemExit(f"error: {spec.name}: the official weights do not fit: {str(error)[:400]}") from None
    if missing or unexpected:
        raise SystemExit(f"error: state dicts differ for {spec.name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return official.to(device), ours.to(device)


def _first(output):
    return output[0] if isinstance(output, (tuple, list)) else output


def _mean_square_of_outputs(output) -> torch.Tensor:
    """A loss touching every floating output: tuple (official) or dataclass (maedfer)."""
    values = output if isinstance(output, (tuple, list)) else vars(output).values()
    tensors = [t for t in values if torch.is_tensor(t) and t.is_floating_point()]
    return sum(t.float().square().mean() for t in tensors)


def timed_pair(steps: dict[str, Callable[[], object]], device: torch.device, warmup: int, repeats: int) -> dict:
    """Run the named steps alternately; per name the list of seconds."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(warmup + repeats):
        for name, step in steps.items():
            sync()
            start = time.perf_counter()
            step()
            sync()
            if index >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def make_steps(case: str, system: str, root: Path, device: torch.device, precision: str, compile: bool):
    """Closures timed side by side: ``official``, ``maedfer`` and, with ``compile``, ``compiled`` (a compiled copy
    of the maedfer model)."""
    official_precision, ours_precision = {
        "fp32": ("fp32", "fp32"), "bf16": ("bf16", "bf16"), "bf16-path": ("bf16", "bf16"),
        "bf16-vs-fp32": ("fp32", "bf16")}[precision]
    if case == "pretrain_step":
        spec, objective_kwargs = PRETRAIN[system]
    else:
        spec, objective_kwargs = FINETUNE[system], None
    official, ours = build_pair(root, spec, device)
    batch = 2 if case == "pretrain_step" else 1
    inputs = tuple(t.to(device) for t in example_inputs(ours, batch, generator=torch.Generator().manual_seed(0)))
    compiled = copy.deepcopy(ours) if compile else None
    if case == "forward" and precision in ("bf16-path", "bf16-vs-fp32"):
        optimize_for_inference(ours, "bf16")
        if compiled is not None:
            optimize_for_inference(compiled, "bf16", compile=True)
    elif compiled is not None:
        compile_model(compiled)
    objective = VideoReconstructionObjective(**objective_kwargs) if objective_kwargs else None

    def step(model, call, prec: str):
        if case == "forward":
            model.eval()

            def run():
                with torch.inference_mode(), autocast_context(device, prec):
                    return _first(call(*inputs)).float()
            return run
        model.train()

        def run():
            model.zero_grad(set_to_none=True)
            with autocast_context(device, prec):
                out = call(*inputs)
                if case == "pretrain_step" and objective is None:
                    loss = _mean_square_of_outputs(out)
                elif objective is not None:
                    out = _first(out)
                    targets = objective.targets(inputs[0], inputs[1])
                    loss = objective.loss(out.float(), targets)["loss"]
                else:
                    loss = F.cross_entropy(_first(out).float(), torch.zeros(batch, dtype=torch.long, device=device))
            loss.backward()
            return loss.detach()
        return run

    steps = {
        "official": step(official, official, official_precision),
        "maedfer": step(ours, ours, ours_precision),
    }
    if compiled is not None:
        steps["compiled"] = step(compiled, compiled, ours_precision)
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-root", type=Path, required=True, help="folder with MAE-DFER/, SVFAP/, HiCMAE/")
    parser.add_argument("--systems", nargs="+", default=["videomae", "mae_dfer", "svfap", "hicmae"],
                        choices=sorted(FINETUNE))
    parser.add_argument("--cases", nargs="+", default=["forward", "train_step", "pretrain_step"],
                        choices=("forward", "train_step", "pretrain_step"))
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16", "bf16-path", "bf16-vs-fp32"],
                        choices=("fp32", "bf16", "bf16-path", "bf16-vs-fp32"))
    parser.add_argument("--compile", action="store_true",
                        help="also time a torch.compile'd copy of the maedfer model (a third column)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    machine = device_description(device)
    if any(precision != "fp32" for precision in args.precision):
        resolve_precision("bf16", device)  # warns where the CPU has no native bf16 (hours instead of minutes)
    print(f"# {machine}; median of {args.repeats} alternating runs after {args.warmup} warm-up; ratio = official / maedfer")
    header = f"{'system':<10} {'case':<14} {'precision':<13} {'official s':>10} {'maedfer s':>10} {'ratio':>6}"
    if args.compile:
        header += f" {'compiled s':>10} {'ratio':>6} {'compiled/eager':>14}"
    print(header)
    rows = []
    for case in args.cases:
        for system in args.systems:
            if case == "pretrain_step" and system not in PRETRAIN:
                continue
            for precision in args.precision:
                steps = make_steps(case, system, args.official_root, device, precision, args.compile)
                times = timed_pair(steps, device, args.warmup, args.repeats)
                official_s, ours_s = (statistics.median(times[k]) for k in ("official", "maedfer"))
                row = dict(system=system, case=case, precision=precision, compile=args.compile,
                           official_s=official_s, maedfer_s=ours_s, ratio=official_s / ours_s)
                line = (f"{system:<10} {case:<14} {precision:<13} {official_s:>10.3f} {ours_s:>10.3f} "
                        f"{row['ratio']:>6.2f}")
                if "compiled" in times:
                    compiled_s = statistics.median(times["compiled"])
                    row.update(compiled_s=compiled_s, compiled_ratio=official_s / compiled_s,
                               compile_speedup=ours_s / compiled_s)
                    line += f" {compiled_s:>10.3f} {row['compiled_ratio']:>6.2f} {row['compile_speedup']:>14.2f}"
                rows.append(row)
                print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
