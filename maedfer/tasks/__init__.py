"""Training tasks: a model plus an objective, called on a batch dict, returning ``{"loss": ...}``."""

from .base import Task, detach_logs
from .pretrain import (
    AudioVisualReconstructionObjective,
    MaskedAudioVisualPretrainTask,
    MaskedVideoPretrainTask,
    VideoReconstructionObjective,
    contrastive_logits,
    hierarchical_contrastive_loss,
)

__all__ = [
    "AudioVisualReconstructionObjective",
    "MaskedAudioVisualPretrainTask",
    "MaskedVideoPretrainTask",
    "Task",
    "VideoReconstructionObjective",
    "contrastive_logits",
    "detach_logs",
    "hierarchical_contrastive_loss",
]
