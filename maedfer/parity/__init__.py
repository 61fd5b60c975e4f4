"""Parity checks against golden outputs of the official code: models (``models``), data loading (``data``) and the
pre-training dataset replay (``pretrain_data``). Nothing in the library imports these modules."""
