"""torchrl-awr: Advantage-Weighted Regression for TorchRL."""

from torchrl_awr.exploration import ActionStdSchedule
from torchrl_awr.loss import AWRLoss, NonFiniteLossInputError
from torchrl_awr.models import (
    GaussianSampler,
    ObservationNormalizer,
    make_awr_actor,
    make_awr_critic,
    make_collection_policy,
)
from torchrl_awr.store import ShuffledPassSampler, TrajectoryStore
from torchrl_awr.trainer import AWRTrainer, AWRTrainerConfig

__all__ = [
    "ActionStdSchedule",
    "AWRLoss",
    "AWRTrainer",
    "AWRTrainerConfig",
    "GaussianSampler",
    "NonFiniteLossInputError",
    "ObservationNormalizer",
    "ShuffledPassSampler",
    "TrajectoryStore",
    "make_awr_actor",
    "make_awr_critic",
    "make_collection_policy",
]
__version__ = "0.1.0"
