"""Training tasks: a model plus an objective, called on a batch dict, returning ``{"loss": ...}``."""

from .base import Task, detach_logs
from .pretrain import MaskedVideoPretrainTask, VideoReconstructionObjective

__all__ = ["MaskedVideoPretrainTask", "Task", "VideoReconstructionObjective", "detach_logs"]
