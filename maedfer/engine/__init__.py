"""Training engine: distributed setup, backends (local / DDP / DeepSpeed), optimizer groups, schedules, metrics and
the one training loop."""

from .backends import DDPBackend, DeepSpeedBackend, LocalBackend, TrainingBackend, build_backend
from .distributed import DistributedEnv, init_distributed, seed_everything
from .ema import ModelEma
from .optim import param_groups, scaled_lr
from .schedule import cosine_schedule
from .trainer import NonFiniteLossError, Trainer, TrainState, find_latest_checkpoint

__all__ = [
    "DDPBackend",
    "DeepSpeedBackend",
    "DistributedEnv",
    "LocalBackend",
    "ModelEma",
    "NonFiniteLossError",
    "TrainState",
    "Trainer",
    "TrainingBackend",
    "build_backend",
    "cosine_schedule",
    "find_latest_checkpoint",
    "init_distributed",
    "param_groups",
    "scaled_lr",
    "seed_everything",
]
