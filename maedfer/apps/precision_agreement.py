"""How much reduced precision changes a fine-tuned model's answers: fp32 against maedfer's bf16 path on a test split.

    maedfer precision-agreement runs/demo_finetune/checkpoint-last.pth            # the demo model, CPU
    maedfer precision-agreement CKPT --compile --json agreement.json

The checkpoint's stored training config names the test split. Every test view is run through the model in fp32 and
through :func:`maedfer.compile.optimize_for_inference` in bf16 (weights cast once, bf16 autocast; ``--compile`` also
compiles it); the tool prints the largest softmax difference over all views and classes, and the share of views and
of videos (views averaged, as the evaluation does) whose top-1 class is the same.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

from maedfer.apps.inference import load_inference_model
from maedfer.compile import optimize_for_inference
from maedfer.data.build import build_data
from maedfer.engine.backends import autocast_context


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a maedfer fine-tuning checkpoint (with its training config)")
    parser.add_argument("--compile", action="store_true", help="compile the bf16 model (inductor, frozen weights)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = load_inference_model(args.checkpoint, device="cpu")
    if loaded.config is None or loaded.task != "classification":
        parser.error(f"{args.checkpoint}: needs a classification checkpoint written by maedfer's trainer")
    data = build_data(loaded.config, loaded.model)
    if data.test_loader is None:
        parser.error(f"{args.checkpoint}: its config has no test split")
    fp32 = loaded.model.eval()
    bf16 = optimize_for_inference(copy.deepcopy(fp32), "bf16", compile=args.compile)
    device = torch.device("cpu")
    probs: dict[str, list[torch.Tensor]] = {"fp32": [], "bf16": []}
    videos: list[str] = []
    with torch.inference_mode():
        for batch in data.test_loader:
            inputs = [batch[key] for key in ("video", "audio") if key in batch and torch.is_tensor(batch[key])]
            probs["fp32"].append(fp32(*inputs).float().softmax(-1))
            with autocast_context(device, "bf16"):
                probs["bf16"].append(bf16(*inputs).float().softmax(-1))
            videos.extend(batch["path"])  # the video each view was cut from
    full, half = torch.cat(probs["fp32"]), torch.cat(probs["bf16"])
    rows: dict[str, list[int]] = {}
    for row, video in enumerate(videos):
        rows.setdefault(video, []).append(row)
    per_video = [(full[r].mean(0), half[r].mean(0)) for r in rows.values()]
    result = {
        "checkpoint": str(args.checkpoint),
        "views": len(full),
        "videos": len(per_video),
        "max_softmax_difference": float((full - half).abs().max()),
        "top1_agreement_views": float((full.argmax(-1) == half.argmax(-1)).float().mean()),
        "top1_agreement_videos": sum(int(a.argmax() == b.argmax()) for a, b in per_video) / len(per_video),
        "compiled": args.compile,
    }
    for key, value in result.items():
        print(f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
