"""TD(lambda) over time-ordered tensors and the critic helpers, against Python loops."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torchrl.modules import ValueOperator

from torchrl_awr.targets import critic_values, next_values, td_lambda_returns

OBS_DIM = 3
GAMMA, LMBDA = 0.9, 0.8


def linear_critic() -> ValueOperator:
    """A deterministic V(s) = s . w + b."""
    layer = nn.Linear(OBS_DIM, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -1.0, 2.0]]))
        layer.bias.fill_(0.25)
    return ValueOperator(layer, in_keys=["observation"])


def value_of(obs: torch.Tensor) -> float:
    return float(obs.double() @ torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64) + 0.25)


def random_steps(n_envs: int, steps: int, generator: torch.Generator):
    """``[n_envs, steps]`` transitions with ~15% terminations and ~15% truncations.

    As a collector writes them: inside an episode a step's observation is the previous step's
    next observation; after a done step the next one starts from a fresh (reset) observation.
    """
    u = torch.rand(n_envs, steps, 1, generator=generator)
    terminated = u < 0.15
    truncated = (u >= 0.15) & (u < 0.3)
    next_observation = torch.randn(n_envs, steps, OBS_DIM, generator=generator)
    observation = torch.randn(n_envs, steps, OBS_DIM, generator=generator)
    continues = ~(terminated | truncated)[:, :-1]
    observation[:, 1:] = torch.where(continues, next_observation[:, :-1], observation[:, 1:])
    data = {
        "observation": observation,
        "action": torch.rand(n_envs, steps, 2, generator=generator) * 2 - 1,
        "next": {
            "observation": next_observation,
            "reward": torch.randn(n_envs, steps, 1, generator=generator),
            "done": terminated | truncated,
            "terminated": terminated,
        },
    }
    return TensorDict(data, [n_envs, steps])


def reference_returns(steps: list[TensorDict]) -> list[float]:
    """TD(lambda) of one env's chronological steps by a plain backward loop.

    Terminated: bootstrap 0; truncated (done, not terminated): bootstrap V(s'); the newest step
    is a cut: bootstrap V(s') and no continuation.
    """
    returns = [0.0] * len(steps)
    following = None
    for t in reversed(range(len(steps))):
        step = steps[t]
        reward = float(step["next", "reward"])
        next_value = value_of(step["next", "observation"])
        if bool(step["next", "terminated"]):
            g = reward
        elif bool(step["next", "done"]) or following is None:
            g = reward + GAMMA * next_value
        else:
            g = reward + GAMMA * ((1 - LMBDA) * next_value + LMBDA * following)
        returns[t] = g
        following = g
    return returns


def test_td_lambda_returns_matches_loop():
    g = torch.Generator().manual_seed(1)
    batch = random_steps(2, 9, g)
    with torch.no_grad():
        next_value = linear_critic()(batch["next"].clone())["state_value"]
    returns = td_lambda_returns(
        batch["next", "reward"],
        next_value,
        batch["next", "done"],
        batch["next", "terminated"],
        gamma=GAMMA,
        lmbda=LMBDA,
    )
    for env in range(2):
        expected = reference_returns(list(batch[env].unbind(0)))
        torch.testing.assert_close(
            returns[env, :, 0].double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("length,block", [(1, 8), (8, 8), (9, 8), (700, 8), (700, 3), (64, 64)])
def test_td_lambda_returns_blockwise_match_a_backward_loop(length, block):
    """Sequences shorter, equal and longer than a block, and several levels of blocks."""
    g = torch.Generator().manual_seed(length + block)
    reward = torch.randn(3, length, 1, generator=g)
    next_value = torch.randn(3, length, 1, generator=g)
    done = torch.rand(3, length, 1, generator=g) < 0.01
    done[1] = False  # one env without any episode end: the longest carry
    terminated = done & (torch.rand(3, length, 1, generator=g) < 0.5)
    expected = torch.zeros(3, length, 1, dtype=torch.float64)
    for env in range(3):
        following = 0.0
        for t in reversed(range(length)):
            r, v = float(reward[env, t]), float(next_value[env, t])
            if terminated[env, t]:
                following = r
            elif done[env, t] or t == length - 1:
                following = r + GAMMA * v
            else:
                following = r + GAMMA * ((1 - LMBDA) * v + LMBDA * following)
            expected[env, t] = following
    got = td_lambda_returns(reward, next_value, done, terminated, gamma=GAMMA, lmbda=LMBDA, block=block)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_next_values_reuse_the_next_steps_value_and_evaluate_only_the_cuts():
    """V(s') is the next step's V(s) inside an episode; the critic sees only done and newest steps."""
    critic = linear_critic()
    seen = []
    critic.register_forward_hook(lambda module, args, out: seen.append(out["observation"].shape[0]))
    value = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])  # [1 env, T=4, 1], time order
    done = torch.tensor([[[False], [True], [False], [False]]])
    next_observation = torch.zeros(4, 1, OBS_DIM)  # storage layout [rows, n_envs, D]
    next_observation[2, 0] = torch.tensor([1.0, 0.0, 0.0])  # chronological step 1 (done)
    next_observation[0, 0] = torch.tensor([0.0, 0.0, 1.0])  # chronological step 3 (newest)
    rows = torch.tensor([3, 2, 1, 0])  # the ring's rows, oldest first
    next_inputs = TensorDict({"observation": next_observation}, [4, 1])
    got = next_values(critic, value, done, next_inputs, rows)
    assert got[0, :, 0].tolist() == [2.0, 0.75, 4.0, 2.25]
    assert seen == [2]


def test_critic_values_in_chunks():
    """Rows go through the critic a chunk at a time, and come back in their input shape."""
    critic = linear_critic()
    seen = []
    critic.register_forward_hook(lambda module, args, out: seen.append(out["observation"].shape[0]))
    observation = torch.arange(2 * 5 * OBS_DIM, dtype=torch.float32).view(2, 5, OBS_DIM)
    got = critic_values(critic, TensorDict({"observation": observation}, [2, 5]), chunk_rows=4)
    assert seen == [4, 4, 2]
    expected = observation @ torch.tensor([0.5, -1.0, 2.0]) + 0.25
    torch.testing.assert_close(got, expected.unsqueeze(-1))
