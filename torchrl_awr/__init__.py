"""torchrl-awr: Advantage-Weighted Regression for TorchRL."""
from torchrl_awr.loss import AWRLoss, NonFiniteLossInputError
from torchrl_awr.models import (
    ObservationNormalizer,
    make_awr_actor,
    make_awr_critic,
)

__all__ = [
    "AWRLoss",
    "NonFiniteLossInputError",
    "ObservationNormalizer",
    "make_awr_actor",
    "make_awr_critic",
]
__version__ = "0.1.0"
