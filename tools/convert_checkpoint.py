#!/usr/bin/env python
"""Convert an official (or maedfer) ``.pth`` checkpoint to a safetensors weights file.

Examples:
    # keep the file's own keys (pre-training checkpoints stay pre-training weights)
    python tools/convert_checkpoint.py checkpoint-49.pth mae_dfer_pretrain.safetensors

    # load into a model first (official transfer rules, strict shapes) and save that model's weights
    python tools/convert_checkpoint.py dfew_fold1.pth mae_dfer_dfew1.safetensors --model mae_dfer_base

The file is read with ``torch.load(weights_only=True)`` (only ``argparse.Namespace`` is allow-listed), the weights are
taken from ``model`` / ``module`` / ``state_dict``, and the output is written atomically. The header metadata records
the source file name, its sha256 and, with ``--model``, the model name.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path

import maedfer
from maedfer.checkpoint import extract_state_dict, load_checkpoint, read_checkpoint, save_safetensors


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="checkpoint to read (.pth / .pt / .bin)")
    parser.add_argument("target", type=Path, help="safetensors file to write")
    parser.add_argument("--model", default=None, help="registered model to load the weights into before saving")
    parser.add_argument("--num-classes", type=int, default=None, help="head size of --model (default: the model's)")
    parser.add_argument("--strict", action="store_true", help="with --model: fail on missing or unexpected keys")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    metadata = {"source": args.source.name, "source_sha256": sha256_of(args.source), "format": "maedfer"}
    if args.model is None:
        state_dict, key = extract_state_dict(read_checkpoint(args.source), source=str(args.source))
        weights = state_dict
        print(f"read {len(state_dict)} tensors from {args.source} (key: {key or '<top level>'})")
    else:
        overrides = {} if args.num_classes is None else {"num_classes": args.num_classes}
        model = maedfer.create_model(args.model, **overrides)
        report = load_checkpoint(model, args.source, strict=args.strict)
        print(report)
        weights = model.state_dict()
        metadata["model"] = args.model
    save_safetensors(weights, args.target, metadata=metadata)
    print(f"wrote {len(weights)} tensors to {args.target} (source sha256 {metadata['source_sha256']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
