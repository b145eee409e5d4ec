"""Shared helpers: tiny actors/critics with known weights and synthetic batches."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl.data import Bounded
from torchrl.modules import ValueOperator

from torchrl_awr import make_awr_actor
from torchrl_awr.recipe import factories

from recipe_helpers import ProbedTrainer

OBS_DIM = 3
ACT_DIM = 2
# The known linear critic V(s) = s . CRITIC_W + CRITIC_B.
CRITIC_W = (0.5, -1.0, 2.0)
CRITIC_B = 0.25


# Every available device: a CUDA case runs where a GPU is (benchmarks/gpu_check.sh) and skips elsewhere.
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def probed(monkeypatch):
    """The recipe builds a :class:`ProbedTrainer`, which records each batch's policy gaps."""
    ProbedTrainer.gaps, ProbedTrainer.stale_gaps = [], []
    monkeypatch.setattr(factories, "AWRTrainer", ProbedTrainer)
    return ProbedTrainer


def output_layer(module: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of a module (the output layer of the AWR MLPs)."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)][-1]


def linear_critic(out_key: str = "state_value", obs_key: str = "observation") -> ValueOperator:
    """V(s) = s . CRITIC_W + CRITIC_B as a ValueOperator."""
    layer = nn.Linear(OBS_DIM, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([CRITIC_W]))
        layer.bias.fill_(CRITIC_B)
    return ValueOperator(layer, in_keys=[obs_key], out_keys=[out_key])


def critic_value(obs: torch.Tensor) -> torch.Tensor:
    """Reference for :func:`linear_critic`, shape ``obs.shape[:-1]``, in float64."""
    return obs.double() @ torch.tensor(CRITIC_W, dtype=torch.float64) + CRITIC_B


def box_spec(low=(-1.0, 0.0), high=(1.0, 4.0)) -> Bounded:
    return Bounded(torch.tensor(low), torch.tensor(high), shape=(len(low),))


def linear_gaussian_actor(weight, bias, spec=None, **kwargs):
    """AWR "normal" actor with no hidden layer: normalised mean = obs @ weight.T + bias."""
    spec = box_spec() if spec is None else spec
    actor = make_awr_actor(OBS_DIM, spec, hidden_sizes=(), **kwargs)
    layer = output_layer(actor)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return actor


def gaussian_log_prob(action, loc, std) -> torch.Tensor:
    """Closed-form log N(action; loc, std^2) summed over the last dim, in float64."""
    action, loc, std = (torch.as_tensor(x, dtype=torch.float64) for x in (action, loc, std))
    z = (action - loc) / std
    return (-0.5 * z**2 - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def trajectory_batch(batch: int = 3, time: int = 6, seed: int = 0) -> TensorDict:
    """Random ``[batch, time]`` rollouts with terminations and truncations.

    Next observations are drawn independently of the following step's observation, so
    estimators that use V(s_{t+1}) (GAE) and V(s'_t) (TD) give different numbers.
    """
    g = torch.Generator().manual_seed(seed)
    terminated = torch.zeros(batch, time, 1, dtype=torch.bool)
    truncated = torch.zeros(batch, time, 1, dtype=torch.bool)
    terminated[0, 2] = True  # row 0: termination mid-batch, last step runs on
    truncated[1, 3] = True  # row 1: truncation mid-batch
    terminated[1, time - 1] = True  # ... and a termination at the last step
    truncated[2, 1] = True  # row 2: truncation then termination
    terminated[2, 4] = True
    return TensorDict(
        {
            "observation": torch.randn(batch, time, OBS_DIM, generator=g),
            "action": torch.rand(batch, time, ACT_DIM, generator=g) * 2 - 1,
            "next": {
                "observation": torch.randn(batch, time, OBS_DIM, generator=g),
                "reward": torch.randn(batch, time, 1, generator=g),
                "done": terminated | truncated,
                "terminated": terminated,
            },
        },
        [batch, time],
    )
