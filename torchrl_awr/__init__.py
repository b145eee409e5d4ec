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

__all__ = [
    "ActionStdSchedule",
    "AWRLoss",
    "GaussianSampler",
    "NonFiniteLossInputError",
    "ObservationNormalizer",
    "make_awr_actor",
    "make_awr_critic",
    "make_collection_policy",
]
__version__ = "0.1.0"
