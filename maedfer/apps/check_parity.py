"""Compare maedfer with golden outputs of the official code.

Usage:
    maedfer check-parity tests/fixtures/official [more files or folders] [--systems mae_dfer,svfap,hicmae]
    maedfer check-parity tests/fixtures/official_data --systems data

Prints ``PASS <file> max_abs_err=<x>`` or ``FAIL <file> <reason>`` per model fixture, and one such line per record
group (``<file>:<group>``) for the data-pipeline fixtures; exits 1 if anything fails or has a system/kind that
maedfer does not support.
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from maedfer.parity.models import run_parity


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="fixture files or folders of *.pt fixtures")
    parser.add_argument("--systems", default=None, help="comma-separated systems to check (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the fixtures)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each fixture compared")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()] if args.systems else None
    try:
        results = run_parity(args.paths, systems)
    except FileNotFoundError as error:  # a path that is neither a fixture file nor a folder
        print(f"error: {error}", file=sys.stderr)
        return 2
    for result in results:
        print(result.line())
        if args.verbose and result.checked:
            print("    compared: " + ", ".join(result.checked))
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    if not results:
        print("no fixture matched", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
