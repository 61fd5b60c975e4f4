"""Convert an official (or maedfer) ``.pth`` checkpoint to a safetensors weights file.

Examples:
    # keep the file's own keys (pre-training checkpoints stay pre-training weights)
    maedfer convert-checkpoint checkpoint-49.pth mae_dfer_pretrain.safetensors

    # load into a model first (official transfer rules, strict shapes) and save that model's weights
    maedfer convert-checkpoint dfew_fold1.pth mae_dfer_dfew1.safetensors --model mae_dfer_base

    # a released checkpoint of the model zoo: convert, check it loads into the card's model, write a card
    maedfer convert-checkpoint checkpoint-49.pth mae_dfer_voxceleb2_pretrain.safetensors \\
        --card models/mae_dfer/mae_dfer_voxceleb2_pretrain.md      # or: --card-id mae_dfer_voxceleb2_pretrain

The file is read with ``torch.load(weights_only=True)`` (only ``argparse.Namespace`` is allow-listed), the weights are
taken from ``model`` / ``module`` / ``state_dict``, and the output is written atomically. The header metadata records
the source file name, its sha256, with ``--model`` the model name (with a card, also the card id) and the output
names (``label_names``, a JSON list: ``--label-names``, else the ones a maedfer checkpoint carries, else the card's).

With ``--card`` / ``--card-id`` (see ``models/README.md``) the tool also
  * refuses a source whose sha256 differs from a digest already recorded in the card;
  * loads the written safetensors file into the card's registry model (``create_model(model, **model_kwargs)``)
    and prints the missing and unexpected keys (``--strict``: fail if there are any);
  * writes the card of the converted file next to it (``--card-out``, default: the target with the suffix ``.md``),
    with the sha256 of the source and of the safetensors file, the command and the maedfer version.
Expected problems (missing file, unreadable checkpoint, shapes that do not fit, bad card) are reported on one line
on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import maedfer
from maedfer.checkpoint import (
    CheckpointError,
    atomic_write_text,
    checkpoint_encoder_width,
    extract_state_dict,
    load_checkpoint,
    load_safetensors,
    read_checkpoint,
    save_safetensors,
    stored_label_names,
)
from maedfer.hub import HubError
from maedfer.utils import sha256_file
from maedfer.apps.model_cards import (
    CARDS_FOLDER,
    ModelCard,
    card_for_converted,
    find_card,
    load_card_model,
    read_model_card,
)

EXPECTED_ERRORS = (FileNotFoundError, CheckpointError, ValueError, KeyError, HubError, ImportError)


def one_line(error: BaseException, max_lines: int = 4) -> str:
    """The error's message on one line: its first ``max_lines`` lines joined, with a count of the rest."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [type(error).__name__]
    more = f" ... ({len(lines) - max_lines} more lines)" if len(lines) > max_lines else ""
    return " | ".join(lines[:max_lines]) + more


def resolve_card(args: argparse.Namespace) -> ModelCard | None:
    """The card named by ``--card`` or ``--card-id`` (``None`` without either)."""
    if args.card is not None:
        return read_model_card(args.card)
    if args.card_id is not None:
        return find_card(args.card_id, args.cards_folder)
    return None


def check_card(card: ModelCard, target: Path, strict: bool) -> dict[str, Any]:
    """Loads ``target`` into the card's model, prints the report and returns the ``load_check`` card entry
    (with the encoder width found in the file, which settles the width of cards that read it from the file)."""
    _model, report = load_card_model(card, target, strict=strict)
    width = checkpoint_encoder_width(load_safetensors(target))
    print(report)
    if report.missing_keys or report.unexpected_keys:
        print(f"warning: {target} does not fill {card.model} exactly: {len(report.missing_keys)} missing and "
              f"{len(report.unexpected_keys)} unexpected keys (see above)", file=sys.stderr)
    return {
        "model": card.model,
        "model_kwargs": dict(card.model_kwargs),
        "encoder_width": width,
        "loaded_tensors": len(report.loaded_keys),
        "missing_keys": list(report.missing_keys),
        "unexpected_keys": list(report.unexpected_keys),
    }


def convert(args: argparse.Namespace, command: str) -> int:
    """The conversion itself; expected errors propagate to :func:`main`."""
    from ..hub import resolve_checkpoint

    args.source = resolve_checkpoint(args.source)  # a link or hf:// file is downloaded (verified, cached) first
    card = resolve_card(args)
    card_out: Path | None = None
    if card is not None:
        card_out = args.card_out or args.target.with_suffix(".md")
        if card.path is not None and card_out.resolve() == card.path.resolve():
            raise ValueError(f"--card-out {card_out} would overwrite the card it is made from")

    metadata = {"source": args.source.name, "source_sha256": sha256_file(args.source), "format": "maedfer"}
    if card is not None:
        if card.sha256 is not None and card.sha256 != metadata["source_sha256"]:
            raise ValueError(
                f"{args.source} has sha256 {metadata['source_sha256']}, but the card {card.path or card.id} records "
                f"{card.sha256} for the released file: not the same download"
            )
        metadata["card_id"] = card.id
    payload = read_checkpoint(args.source)  # read once
    # the output names: given, else the ones the checkpoint carries (a maedfer run's), else the card's
    label_names = args.label_names or stored_label_names(payload, args.source) or (card.label_names if card else None)
    if args.model is None:
        state_dict, key = extract_state_dict(payload, source=str(args.source))
        weights = state_dict
        print(f"read {len(state_dict)} tensors from {args.source} (key: {key or '<top level>'})")
    else:
        overrides = {} if args.num_classes is None else {"num_classes": args.num_classes}
        model = maedfer.create_model(args.model, **overrides)
        report = load_checkpoint(model, payload, strict=args.strict, source=str(args.source))
        print(report)
        weights = model.state_dict()
        metadata["model"] = args.model
    save_safetensors(weights, args.target, metadata=metadata, label_names=label_names or None)
    print(f"wrote {len(weights)} tensors to {args.target} (source sha256 {metadata['source_sha256']})")

    if card is not None and card_out is not None:
        try:
            load_check = check_card(card, args.target, args.strict)
        except CheckpointError as error:
            raise CheckpointError(
                f"{args.target} was written, but it does not load into the card's model {card.model}: {error}"
            ) from error
        target_sha256 = sha256_file(args.target)
        text = card_for_converted(
            card, target_sha256, args.target, source_sha256=metadata["source_sha256"],
            source_name=args.source.name, command=command, load_check=load_check,
        )
        atomic_write_text(card_out, text)
        print(f"wrote card {card_out} (safetensors sha256 {target_sha256})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path,
                        help="checkpoint to read (.pth / .pt / .bin), or an https:// link or hf://owner/repo/file")
    parser.add_argument("target", type=Path, help="safetensors file to write")
    parser.add_argument("--model", default=None, help="registered model to load the weights into before saving")
    parser.add_argument("--num-classes", type=int, default=None, help="head size of --model (default: the model's)")
    parser.add_argument("--label-names", nargs="+", default=None, metavar="NAME",
                        help="output names in label order, stored in the header (default: the ones the checkpoint "
                             "carries, else the card's)")
    parser.add_argument("--strict", action="store_true",
                        help="fail on missing or unexpected keys (with --model, and in the --card load check)")
    cards = parser.add_mutually_exclusive_group()
    cards.add_argument("--card", type=Path, default=None, help="model card of the released file (models/.../ID.md)")
    cards.add_argument("--card-id", default=None, help="id of a card in --cards-folder (e.g. mae_dfer_dfew_fold1)")
    parser.add_argument("--cards-folder", type=Path, default=CARDS_FOLDER,
                        help=f"where --card-id looks (default {CARDS_FOLDER})")
    parser.add_argument("--card-out", type=Path, default=None,
                        help="card to write for the converted file (default: TARGET with the suffix .md)")
    args = parser.parse_args(argv)
    if args.card_out is not None and args.card is None and args.card_id is None:
        parser.error("--card-out needs --card or --card-id")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    raw_args = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "tools/convert_checkpoint.py", *raw_args])
    try:
        return convert(args, command)
    except EXPECTED_ERRORS as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
