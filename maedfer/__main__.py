"""``python -m maedfer <command> ...`` (and ``torchrun -m maedfer pretrain ...``): the ``maedfer`` console command."""

from maedfer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
