#!/usr/bin/env python
"""How much reduced precision changes a fine-tuned model's answers: fp32 against maedfer's bf16 path on a test split.

Same as ``maedfer precision-agreement``; the code is :mod:`maedfer.apps.precision_agreement`.
"""

from maedfer.apps.precision_agreement import main

if __name__ == "__main__":
    raise SystemExit(main())
